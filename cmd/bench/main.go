// Command bench measures what the Tracewire agent costs a traced Go service:
// throughput and latency without and with the agent, the agent's CPU and
// memory, lost spans, and the kernel time of its probes. Run it as root from
// the repository root: go run ./cmd/bench [-quick] [-hookcost].
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"
)

func main() {
	quick := flag.Bool("quick", false, "short windows (the whole run stays under 2 minutes)")
	hookcost := flag.Bool("hookcost", false, "run the hook-cost micro-benchmark instead")
	only := flag.String("only", "", "run one scenario only: bystander (a service the agent does not trace) or python (a target traced from the wire)")
	out := flag.String("out", "", "JSON output (default bench/results.json, bench/results-quick.json or bench/hookcost.json)")
	pin := flag.Bool("pin", true, "pin services to CPU 1 and the load generator to CPU 0")
	window := flag.Duration("window", 0, "override the measured window of each scenario round")
	rounds := flag.Int("rounds", 0, "override the number of off/on round pairs")
	trapNs := flag.Float64("uprobe-trap-ns", 500, "assumed kernel cost of one uprobe hit outside the BPF program (see -hookcost)")
	hookCalls := flag.Int("hook-calls", 200000, "-hookcost: calls per measurement (single-stepped probes make a tenth)")
	hookRounds := flag.Int("hook-rounds", 5, "-hookcost: rounds; the median is reported")
	flag.Parse()
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, nil)))

	cl := &cleanups{}
	// SIGINT/SIGTERM cancel the run, which unwinds to cl.run below within a
	// few seconds; a second signal kills at once (Pdeathsig takes the
	// children along, but the sysctl is not restored then).
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	context.AfterFunc(ctx, stop)

	var err error
	switch {
	case os.Geteuid() != 0:
		err = fmt.Errorf("must run as root (the agent and the BPF probes need it)")
	case *hookcost:
		err = runHookCost(ctx, cl, *pin, *hookCalls, *hookRounds, or(*out, "bench/hookcost.json"))
	default:
		set := presets(*quick, *window, *rounds)
		set.UprobeTrapNs = *trapNs
		def := "bench/results.json"
		if *quick {
			def = "bench/results-quick.json"
		}
		err = runBench(ctx, cl, set, *pin, *only, or(*out, def))
	}
	cl.run()
	switch {
	case ctx.Err() != nil:
		slog.Error("interrupted; children stopped")
		os.Exit(130)
	case err != nil:
		slog.Error("bench failed", "err", err)
		os.Exit(1)
	}
}

func or(s, def string) string {
	if s != "" {
		return s
	}
	return def
}

// presets: full runs ~10 s windows; quick fits the whole run in 2 minutes.
func presets(quick bool, window time.Duration, rounds int) settings {
	s := settings{
		Warmup: secs(2 * time.Second), Window: secs(10 * time.Second), Rounds: 2,
		Sustain: secs(60 * time.Second), SustainRate: 20000, SustainConc: 16,
		LowRate: 1000, LowRateWindow: secs(20 * time.Second),
	}
	if quick {
		s.Quick = true
		s.Warmup, s.Window = secs(500*time.Millisecond), secs(2*time.Second)
		s.Sustain, s.LowRateWindow = secs(10*time.Second), secs(5*time.Second)
	}
	if window > 0 {
		s.Window = secs(window)
	}
	if rounds > 0 {
		s.Rounds = rounds
	}
	return s
}

// runBench builds, starts the services, runs every scenario and reports.
func runBench(ctx context.Context, cl *cleanups, set settings, pin bool, only, out string) error {
	bins, err := build(ctx)
	if err != nil {
		return err
	}
	e := &env{cl: cl, bins: bins, trapNs: set.UprobeTrapNs}
	var svcCPUs []int
	pinning := "none (-pin=false)"
	if pin && runtime.NumCPU() >= 2 {
		// Load and services on separate cores keep them from taking turns
		// on one; the agent may run on either, as it would in production.
		if err := pinSelf(0); err != nil {
			return err
		}
		runtime.GOMAXPROCS(1)
		svcCPUs, e.agentCPUs = []int{1}, []int{0, 1}
		pinning = "services on CPU 1; load generator and OTLP receiver (this process, GOMAXPROCS=1) on CPU 0; agent unpinned (CPUs 0-1)"
	}
	restore, err := setBPFStats("1")
	if err != nil {
		return err
	}
	cl.add(restore)
	if e.recv, err = startReceiver(); err != nil {
		return err
	}
	cl.add(e.recv.close)
	if e.svcA, err = startService(cl, bins.svcA, svcCPUs); err != nil {
		return err
	}
	if e.svcB, err = startService(cl, bins.svcB, svcCPUs); err != nil {
		return err
	}

	res := results{Started: time.Now().UTC(), Settings: set, Pinning: pinning, Host: hostInfo()}
	switch only {
	case "bystander":
		if res.Bystander, err = runBystander(ctx, e, set, svcCPUs); err != nil {
			return err
		}
		fmt.Printf("bystander req/s ratio on/off: %.3f over %d rounds\n", res.Bystander.Ratio, set.Rounds)
		return writeJSON(out, res)
	case "python":
		py, err := runPython(ctx, e, set, svcCPUs)
		if err != nil {
			return err
		}
		res.Scenarios = append(res.Scenarios, py)
		res.printTable(os.Stdout)
		return writeJSON(out, res)
	case "":
	default:
		return fmt.Errorf("unknown scenario %q (want bystander or python)", only)
	}
	if res.Scenarios, err = runScenarios(ctx, e, set); err != nil {
		return err
	}
	if res.Sustained, err = runSustained(ctx, e, set); err != nil {
		return err
	}
	if res.LowRate, err = runLowRate(ctx, e, set); err != nil {
		return err
	}
	if res.Bystander, err = runBystander(ctx, e, set, svcCPUs); err != nil {
		return err
	}
	py, err := runPython(ctx, e, set, svcCPUs)
	if err != nil {
		return err
	}
	res.Scenarios = append(res.Scenarios, py)
	res.evaluate()
	res.printTable(os.Stdout)
	return writeJSON(out, res)
}
