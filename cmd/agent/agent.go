package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"github.com/tracewire/tracewire/export"
	"github.com/tracewire/tracewire/internal/gobin"
	"github.com/tracewire/tracewire/internal/k8sresource"
	"github.com/tracewire/tracewire/internal/kernel"
	"github.com/tracewire/tracewire/internal/pipeline"
	"github.com/tracewire/tracewire/probes"
	"github.com/tracewire/tracewire/procscan"
	"github.com/tracewire/tracewire/spans"
)

// exitedGrace is how long an exited process's description is kept for the
// events it produced just before it died.
const exitedGrace = 30 * time.Second

// agent connects discovery to the probes and keeps each target's description.
type agent struct {
	probes []*probes.Probe
	pipe   *pipeline.Pipeline
	scan   *procscan.Scanner // set once discovery runs, for its counters
	log    *slog.Logger
	// runStats: the kernel counts the programs' runs (TRACEWIRE_PROBE_STATS).
	runStats bool

	mu      sync.Mutex
	procs   map[int]*target
	exited  map[int]*target
	skipped map[kernel.FileID]string // executables that cannot be instrumented, with why
	// attachFailures counts target processes a probe could not instrument,
	// by probe ("" when none could).
	attachFailures map[string]uint64
}

type target struct {
	proc   *spans.Process
	file   kernel.FileID
	probes []*probes.Probe // those that instrument it
	gone   time.Time
}

func newAgent(ps []*probes.Probe, pipe *pipeline.Pipeline, log *slog.Logger) *agent {
	return &agent{
		probes:  ps,
		pipe:    pipe,
		log:     log,
		procs:   map[int]*target{},
		exited:  map[int]*target{},
		skipped: map[kernel.FileID]string{},

		attachFailures: map[string]uint64{},
	}
}

// Appeared instruments a new target process. Failures are logged once per
// executable; every other target keeps working.
func (a *agent) Appeared(t procscan.Target) {
	a.mu.Lock()
	reason, bad := a.skipped[t.File]
	if bad {
		a.attachFailures[""]++
	}
	a.mu.Unlock()
	if bad {
		a.log.Debug("target cannot be instrumented", "pid", t.PID, "exe", t.ExeName, "reason", reason)
		return
	}
	// A program that is not Go (bin nil) is for the wire path alone.
	bin, err := gobin.Open(t.Exe)
	switch {
	case errors.Is(err, gobin.ErrNotGo):
		a.log.Debug("not a Go program: traced from the wire", "pid", t.PID, "exe", t.ExeName, "reason", err)
		bin = nil
	case err != nil:
		a.failed(t, err)
		return
	default:
		// Reading the executable (its DWARF) and loading probes (kernel
		// BTF) leave megabytes of garbage; new targets are rare, so return
		// it once the file is closed rather than keep it resident: the
		// heap goal set by a collection while it was still live would let
		// the idle agent keep ~10 MiB.
		defer func() {
			bin.Close()
			debug.FreeOSMemory()
		}()
	}
	// Described before its probes attach: the first events may be decoded
	// while the other probes are still being added.
	p := a.describe(t, bin)
	a.mu.Lock()
	a.procs[t.PID] = &target{proc: p, file: t.File}
	delete(a.exited, t.PID)
	a.mu.Unlock()
	added, err := a.add(t, bin)
	a.mu.Lock()
	if err != nil {
		delete(a.procs, t.PID)
	} else {
		a.procs[t.PID].probes = added
	}
	a.mu.Unlock()
	if err != nil {
		a.failed(t, err)
		return
	}
	a.log.Info("tracing target", "pid", t.PID, "exe", t.ExeName, "service", p.ServiceName, "go", p.RuntimeVersion)
}

// describe builds the target's description, its spans' resource (bin is
// nil for a program that is not Go: its runtime is not named, rather than
// guessed).
func (a *agent) describe(t procscan.Target, bin *gobin.Binary) *spans.Process {
	p := &spans.Process{
		PID:         t.PID,
		ExeName:     t.ExeName,
		ServiceName: t.ExeName,
		Detected:    k8sresource.Attrs(t.PID, t.Env),
	}
	if bin != nil {
		p.RuntimeName, p.RuntimeVersion = "go", bin.GoVersion
	}
	// As the target's own SDK would: OTEL_SERVICE_NAME, else service.name
	// from OTEL_RESOURCE_ATTRIBUTES, else the executable name.
	if v := t.Env["OTEL_RESOURCE_ATTRIBUTES"]; v != "" {
		var err error
		if p.ResourceAttrs, err = export.ParseResourceAttrs(v); err != nil {
			a.log.Warn("ignoring the target's OTEL_RESOURCE_ATTRIBUTES", "pid", t.PID, "err", err)
		}
	}
	for _, at := range p.ResourceAttrs {
		if at.Key == "service.name" && at.Str != "" {
			p.ServiceName = at.Str
		}
	}
	if v := t.Env["OTEL_SERVICE_NAME"]; v != "" {
		p.ServiceName = v
	}
	return p
}

// failed reports a target that could not be instrumented. A failure that
// comes from the executable itself (not Go, unknown version, no hooked
// function) is remembered for the file, so its next processes are skipped
// quietly; one that comes from the system (an attach or map error, the
// process gone) is not: the next process of the file is tried again.
func (a *agent) failed(t procscan.Target, err error) {
	if !sameProcess(t) {
		a.log.Debug("target exited while it was being instrumented", "pid", t.PID, "exe", t.ExeName, "reason", err)
		return
	}
	a.mu.Lock()
	a.attachFailures[""]++
	a.mu.Unlock()
	var errno syscall.Errno
	if errors.As(err, &errno) {
		a.log.Warn("cannot instrument target now; its next process will be tried again", "pid", t.PID, "exe", t.ExeName, "reason", err)
		return
	}
	a.log.Warn("cannot instrument target", "pid", t.PID, "exe", t.ExeName, "reason", err)
	a.mu.Lock()
	a.skipped[t.File] = err.Error()
	a.mu.Unlock()
}

// sameProcess tells whether t's process still runs the file it was found with.
func sameProcess(t procscan.Target) bool {
	id, err := kernel.StatFile(fmt.Sprintf("/proc/%d/exe", t.PID))
	return err == nil && id == t.File
}

// add gives the target to every probe; it is instrumented when at least one
// applies (a program without database/sql still gets its HTTP spans).
func (a *agent) add(t procscan.Target, bin *gobin.Binary) ([]*probes.Probe, error) {
	var added []*probes.Probe
	var errs []error
	var failedProbes []string
	for _, p := range a.probes {
		err := p.Add(t.PID, t.File, t.Exe, bin)
		switch {
		case err == nil:
			added = append(added, p)
		case errors.Is(err, probes.ErrNotUsed):
			a.log.Debug("probe does not apply", "pid", t.PID, "exe", t.ExeName, "probe", p.Name(), "reason", err)
		default:
			errs = append(errs, fmt.Errorf("%s: %w", p.Name(), err))
			failedProbes = append(failedProbes, p.Name())
		}
	}
	if len(added) == 0 {
		return nil, errors.Join(append(errs, errors.New("no probe applies"))...)
	}
	if len(errs) > 0 {
		// The library is there but cannot be traced (e.g. a stripped binary
		// with a grpc-go version the offsets table does not know).
		a.mu.Lock()
		for _, p := range failedProbes {
			a.attachFailures[p]++
		}
		a.mu.Unlock()
		a.log.Warn("some libraries of the target are not traced", "pid", t.PID, "exe", t.ExeName, "reason", errors.Join(errs...))
	}
	return added, nil
}

// Exited releases the process's probes; its description stays a while for
// events still in flight.
func (a *agent) Exited(pid int) {
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	for p, t := range a.exited {
		if now.Sub(t.gone) > exitedGrace {
			delete(a.exited, p)
		}
	}
	t, ok := a.procs[pid]
	if !ok {
		return
	}
	delete(a.procs, pid)
	t.gone = now
	a.exited[pid] = t
	for _, p := range t.probes {
		p.Remove(pid, t.file)
	}
	a.log.Info("target exited", "pid", pid, "exe", t.proc.ExeName)
}

// process returns the description of pid, also shortly after it exited.
func (a *agent) process(pid int) *spans.Process {
	a.mu.Lock()
	defer a.mu.Unlock()
	if t, ok := a.procs[pid]; ok {
		return t.proc
	}
	if t, ok := a.exited[pid]; ok {
		return t.proc
	}
	return nil
}

// reportCounters logs the counters at debug level now and then.
func (a *agent) reportCounters(ctx context.Context, b *export.Batcher) {
	tick := time.NewTicker(30 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			a.logCounters(slog.LevelDebug, b)
		}
	}
}

func (a *agent) logCounters(level slog.Level, b *export.Batcher) {
	st := b.Stats()
	attrs := []any{
		"spans_exported", st.Exported, "spans_dropped", st.Dropped, "spans_queued", st.Queued,
		"spans_dropped_queue_full", st.DroppedQueueFull, "spans_dropped_rejected", st.DroppedRejected,
		"spans_dropped_shutdown", st.DroppedShutdown,
		"failed_uploads", st.FailedUploads, "unsampled_spans", a.pipe.Counts().Unsampled.Load(),
		"unsampled_overflow_spans", a.pipe.Counts().HeldOverflow.Load(),
	}
	if a.scan != nil {
		for k, v := range a.scan.Counters() {
			attrs = append(attrs, k, v)
		}
	}
	a.mu.Lock()
	for p, v := range a.attachFailures {
		attrs = append(attrs, "attach_failures_"+orAll(p), v)
	}
	a.mu.Unlock()
	for _, p := range a.probes {
		kc, err := p.Counters()
		if err != nil {
			a.log.Warn("cannot read kernel counters", "probe", p.Name(), "err", err)
		}
		for k, v := range kc {
			attrs = append(attrs, p.Name()+"_"+k, v)
		}
	}
	a.log.Log(context.Background(), level, "counters", attrs...)
}

// orAll names the failures no probe could avoid.
func orAll(probe string) string {
	if probe == "" {
		return "all"
	}
	return probe
}
