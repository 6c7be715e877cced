// Command agent traces Go programs found by name with eBPF and exports their
// spans over OTLP. Run it as root: agent --target NAME.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tracewire/tracewire/export"
	"github.com/tracewire/tracewire/internal/pipeline"
	"github.com/tracewire/tracewire/internal/sampling"
	"github.com/tracewire/tracewire/probes"
	"github.com/tracewire/tracewire/probes/dbsql"
	"github.com/tracewire/tracewire/probes/grpc"
	"github.com/tracewire/tracewire/probes/nethttp"
	"github.com/tracewire/tracewire/probes/wire"
	"github.com/tracewire/tracewire/procscan"
	"github.com/tracewire/tracewire/spans"
)

// version is the agent's version, reported as telemetry.sdk.version.
const version = "0.1.0"

// shutdownBudget bounds the flush on SIGTERM/SIGINT (the contract is 5 s).
const shutdownBudget = 4 * time.Second

type config struct {
	targets  []string
	exporter string
	logLevel slog.Level
}

type targetList []string

func (t *targetList) String() string { return strings.Join(*t, ",") }
func (t *targetList) Set(v string) error {
	if v == "" {
		return errors.New("empty target name")
	}
	*t = append(*t, v)
	return nil
}

// parseConfig reads flags and TRACEWIRE_TARGETS. An error means a usage
// problem (exit 2); the message was already printed with the usage.
func parseConfig(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var targets targetList
	fs.Var(&targets, "target", "trace processes whose comm or executable name is `NAME` (repeatable; also TRACEWIRE_TARGETS=a,b)")
	exporter := fs.String("exporter", "otlp", "where spans go: otlp (OTEL_EXPORTER_OTLP_* env) or console (waterfall on stdout)")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: agent --target NAME [--target NAME ...] [--exporter otlp|console] [--log-level LEVEL]\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	fail := func(format string, a ...any) (config, error) {
		err := fmt.Errorf(format, a...)
		fmt.Fprintf(stderr, "agent: %v\n", err)
		fs.Usage()
		return config{}, err
	}
	if fs.NArg() > 0 {
		return fail("unexpected argument %q", fs.Arg(0))
	}
	for _, t := range strings.Split(os.Getenv("TRACEWIRE_TARGETS"), ",") {
		if t = strings.TrimSpace(t); t != "" {
			targets = append(targets, t)
		}
	}
	if len(targets) == 0 {
		return fail("no target: give --target NAME or TRACEWIRE_TARGETS")
	}
	c := config{targets: targets, exporter: *exporter}
	if c.exporter != "otlp" && c.exporter != "console" {
		return fail("unknown exporter %q (want otlp or console)", c.exporter)
	}
	if err := c.logLevel.UnmarshalText([]byte(*level)); err != nil {
		return fail("bad --log-level %q", *level)
	}
	return c, nil
}

func main() {
	probes.RunDetacher()
	// One P unless GOMAXPROCS says otherwise: the agent's work is a chain
	// of hand-offs (ring reader, pipeline, batcher, uploads), which cost
	// less on one P than with work stealing between several (measured at
	// 40 000 spans/s: 3.6 -> 3.0 us of agent CPU a span; docs/performance.md).
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
	os.Exit(run(os.Args[1:]))
}

// cpuProfile writes the agent's CPU profile to path until stop is called:
// for finding where its time goes under load (docs/performance.md).
func cpuProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("TRACEWIRE_CPU_PROFILE: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("TRACEWIRE_CPU_PROFILE: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

func run(args []string) int {
	cfg, err := parseConfig(args, os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.logLevel}))
	slog.SetDefault(log)
	if path := os.Getenv("TRACEWIRE_CPU_PROFILE"); path != "" {
		stop, err := cpuProfile(path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "agent: %v\n", err)
			return 1
		}
		defer stop()
	}
	if err := checkHost(); err != nil {
		fmt.Fprintf(os.Stderr, "agent: %v\n", err)
		return 1
	}

	sink, err := newSink(cfg.exporter)
	if err != nil {
		fmt.Fprintf(os.Stderr, "agent: %v\n", err)
		return 1
	}
	opts, err := export.OptionsFromEnv()
	if err != nil {
		fmt.Fprintf(os.Stderr, "agent: %v\n", err)
		return 1
	}
	rec, err := startMetrics(log)
	if err != nil {
		fmt.Fprintf(os.Stderr, "agent: %v\n", err)
		return 1
	}
	sampler, err := sampling.FromEnv(os.Getenv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "agent: %v\n", err)
		return 1
	}
	runStats, err := boolFromEnv("TRACEWIRE_PROBE_STATS", false)
	if err != nil {
		fmt.Fprintf(os.Stderr, "agent: %v\n", err)
		return 1
	}
	join, err := boolFromEnv("TRACEWIRE_SAME_NODE_JOIN", true)
	if err != nil {
		fmt.Fprintf(os.Stderr, "agent: %v\n", err)
		return 1
	}
	if rec != nil {
		sink = timedSink{sink, rec.Uploaded}
	}
	batcher := export.NewBatcher(sink, opts, log)
	pcfg := pipeline.Config{Sampler: sampler, Export: batcher.Add, NoJoin: !join}
	if rec != nil {
		pcfg.Observe = rec.Observe
	}
	pipe := pipeline.New(pcfg)
	ps, shared, err := loadProbes(log, sampler)
	if err != nil {
		fmt.Fprintf(os.Stderr, "agent: eBPF is not usable on this host: %v\n", err)
		return 1
	}
	defer shared.Close()
	a := newAgent(ps, pipe, log)
	if runStats {
		c, err := probes.EnableRunStats()
		if err != nil {
			log.Warn("probe hits are not counted", "err", err)
		} else {
			defer c.Close()
			a.runStats = true
		}
	}
	scanner, err := procscan.New(cfg.targets, log)
	if err != nil {
		closeProbes(ps)
		fmt.Fprintf(os.Stderr, "agent: eBPF is not usable on this host: %v\n", err)
		return 1
	}
	a.scan = scanner
	startSelfMetrics(rec, a, batcher)
	log.Info("tracewire started", "targets", cfg.targets, "exporter", cfg.exporter, "sampler", sampler.Name, "sampler_ratio", sampler.Ratio,
		"sampler_rate_limit", sampler.RateLimit, "sampler_keep_errors", sampler.KeepErrors)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	scanDone := make(chan struct{})
	go func() { scanner.Run(ctx, a); close(scanDone) }()
	var probesDone sync.WaitGroup
	for _, p := range ps {
		probesDone.Go(func() { p.Run(ctx.Done(), a.process, pipe.Add) })
	}
	go a.reportCounters(ctx, batcher)

	<-ctx.Done()
	log.Info("stopping: detaching probes and flushing spans")
	// Detach first so nothing new arrives, then read what the kernel already
	// produced, then flush it all.
	for _, p := range ps {
		p.Detach()
	}
	scanner.Close()
	<-scanDone
	probesDone.Wait()
	pipe.Flush()
	flushCtx, cancel := context.WithTimeout(context.Background(), shutdownBudget)
	defer cancel()
	if err := batcher.Shutdown(flushCtx); err != nil {
		log.Error("flush on shutdown incomplete", "err", err)
	}
	stopMetrics(flushCtx, rec, log)
	a.logCounters(slog.LevelInfo, batcher)
	closeProbes(ps)
	return 0
}

// boolFromEnv reads the environment variable name as true or false, def
// when unset: TRACEWIRE_PROBE_STATS (whether the kernel counts the runs of
// every BPF program, for tracewire.probe.hits) and TRACEWIRE_SAME_NODE_JOIN.
func boolFromEnv(name string, def bool) (bool, error) {
	v := os.Getenv(name)
	if v == "" {
		return def, nil
	}
	on, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("bad %s %q: want true or false", name, v)
	}
	return on, nil
}

// decls are the probes the agent loads.
var decls = []probes.Decl{nethttp.Decl, dbsql.Decl, grpc.Decl, wire.Decl}

// loadProbes loads every probe's programs, sharing the maps they use
// together and the sampler.
func loadProbes(log *slog.Logger, sampler sampling.Config) ([]*probes.Probe, *probes.Shared, error) {
	shared := &probes.Shared{Sampler: &sampler}
	var ps []*probes.Probe
	for _, d := range decls {
		p, err := probes.Load(d, shared, log)
		if err != nil {
			closeProbes(ps)
			shared.Close()
			return nil, nil, err
		}
		ps = append(ps, p)
	}
	return ps, shared, nil
}

func closeProbes(ps []*probes.Probe) {
	for _, p := range ps {
		p.Close()
	}
}

// timedSink tells uploaded how long each upload attempt took.
type timedSink struct {
	export.Sink
	uploaded func(time.Duration, error)
}

func (t timedSink) Upload(ctx context.Context, batch []*spans.Span) error {
	start := time.Now()
	err := t.Sink.Upload(ctx, batch)
	t.uploaded(time.Since(start), err)
	return err
}

func newSink(kind string) (export.Sink, error) {
	res, err := export.ResourceConfigFromEnv(version)
	if err != nil {
		return nil, err
	}
	if kind == "console" {
		return export.NewConsoleSink(os.Stdout, res), nil
	}
	sink, err := export.NewOTLPSink(context.Background(), res)
	if err != nil {
		return nil, fmt.Errorf("OTLP exporter: %w", err)
	}
	return sink, nil
}
