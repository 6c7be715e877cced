package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
)

// agentStats is what one agent run measured over its load window.
type agentStats struct {
	CPUPercent    float64        `json:"cpu_percent_of_core"`
	RSSIdleMiB    float64        `json:"rss_idle_mib"`
	RSSEndMiB     float64        `json:"rss_end_of_load_mib"`
	SpansByKind   map[string]int `json:"spans_by_kind"`
	SpansExpected int            `json:"spans_expected"`
	SpansLost     int            `json:"spans_lost"` // negative: more than expected
	// WrongTrace counts downstream server spans outside their caller's trace.
	WrongTrace   int               `json:"downstream_spans_in_wrong_trace,omitempty"`
	Programs     []progCost        `json:"programs"`
	KernelNsReq  float64           `json:"kernel_ns_per_request"`
	KernelNsSpan float64           `json:"kernel_ns_per_span"`
	Counters     map[string]string `json:"counters"`
}

// env is what every run shares.
type env struct {
	cl         *cleanups
	bins       binaries
	recv       *receiver
	svcA, svcB string // base URLs
	agentCPUs  []int  // nil: not pinned
	trapNs     float64
}

// plan is the shape of one load run.
type plan struct {
	downstream     bool
	workers        int
	warmup, window time.Duration
	rate           float64 // requests/s; 0 = closed loop
}

// url returns the request URL whose spans are keyed by path.
func (e *env) url(p plan, path string) string {
	if p.downstream {
		return e.svcA + "/call?url=" + url.QueryEscape(e.svcB+path)
	}
	return e.svcA + path
}

// spec gives the run tagged tag its own paths, so spans of other runs and of
// the warm-up never count.
func (e *env) spec(p plan, tag string) loadSpec {
	return loadSpec{
		warmURL:    e.url(p, "/users/"+tag+"-warm"),
		measureURL: e.url(p, "/users/"+tag),
		workers:    p.workers, warmup: p.warmup, window: p.window, rate: p.rate,
	}
}

// spansPerRequest: the service's server span, or for /call its server and
// client spans plus the downstream's server span.
func (p plan) spansPerRequest() int {
	if p.downstream {
		return 3
	}
	return 1
}

// withAgent starts the agent, waits until it traces the services, runs the
// load (sampling the agent at the window's edges), stops the agent and
// counts the spans of the measured requests.
func withAgent(ctx context.Context, e *env, p plan, tag string) (loadResult, agentStats, error) {
	var st agentStats
	e.recv.reset()
	ag, err := startChild(e.cl, e.agentCPUs, e.bins.agent,
		[]string{"--target", svcAName, "--target", svcBName},
		[]string{
			"OTEL_EXPORTER_OTLP_ENDPOINT=" + e.recv.endpoint(),
			"OTEL_BSP_SCHEDULE_DELAY=200",
			"OTEL_BSP_MAX_QUEUE_SIZE=65536",
			"OTEL_BSP_MAX_EXPORT_BATCH_SIZE=2048",
		})
	if err != nil {
		return loadResult{}, st, err
	}
	defer ag.stop(syscall.SIGKILL, time.Second) // for error paths; a no-op once stopped below
	if err := waitTraced(ctx, e, p, tag, ag); err != nil {
		return loadResult{}, st, err
	}
	pid := ag.pid()
	// Idle means after start-up: the other target may still be being
	// instrumented (its DWARF read) when the first one's span arrives.
	time.Sleep(2 * time.Second)
	if st.RSSIdleMiB, err = rssMiB(pid); err != nil {
		return loadResult{}, st, fmt.Errorf("agent: %w", err)
	}

	var s0, s1 sample
	res, err := runLoad(ctx, e.spec(p, tag), func() { s0 = takeSample(pid) }, func() { s1 = takeSample(pid) })
	if err = errors.Join(err, s0.err, s1.err); err != nil {
		return loadResult{}, st, fmt.Errorf("with agent: %w", err)
	}
	st.CPUPercent = float64(s1.ticks-s0.ticks) / clockTicks / s1.at.Sub(s0.at).Seconds() * 100
	st.RSSEndMiB = s1.rss
	st.Programs, st.KernelNsReq = programCosts(s0.progs, s1.progs, res.Requests, e.trapNs)
	st.KernelNsSpan = st.KernelNsReq / float64(p.spansPerRequest())

	// SIGTERM makes the agent read what the kernel still holds and flush it,
	// so counting after its exit misses only what it dropped.
	ag.stop(syscall.SIGTERM, 6*time.Second)
	if code := ag.cmd.ProcessState.ExitCode(); code != 0 {
		return res, st, fmt.Errorf("agent exited with %d:\n%s", code, tail(ag.stderr.String(), 20))
	}
	st.Counters = lastCounters(ag.stderr.String())
	path := "/users/" + tag
	if st.SpansByKind, err = e.recv.count(path); err != nil {
		return res, st, err
	}
	if p.downstream {
		if st.WrongTrace, err = e.recv.unlinked(path); err != nil {
			return res, st, err
		}
	}
	st.SpansExpected = res.Requests * p.spansPerRequest()
	st.SpansLost = st.SpansExpected - total(st.SpansByKind)
	return res, st, nil
}

// sample is the agent's state at one edge of the window.
type sample struct {
	at    time.Time
	ticks uint64
	rss   float64
	progs map[ebpf.ProgramID]progSample
	err   error
}

func takeSample(pid int) sample {
	s := sample{at: time.Now()}
	var e1, e2, e3 error
	s.ticks, e1 = cpuTicks(pid)
	s.rss, e2 = rssMiB(pid)
	s.progs, e3 = agentPrograms(pid)
	s.err = errors.Join(e1, e2, e3)
	return s
}

// waitTraced sends warm-up requests until their spans arrive: the agent has
// found the services and attached its probes.
func waitTraced(ctx context.Context, e *env, p plan, tag string, ag *child) error {
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; ; i++ {
		path := fmt.Sprintf("/users/%s-trace%d", tag, i)
		// Errors show as no span and end in the timeout below.
		_ = get(oneOffClient, e.url(p, path))
		for range 10 {
			n, err := e.recv.count(path)
			if err != nil {
				return err
			}
			if total(n) >= p.spansPerRequest() {
				return nil
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-ag.done:
				return fmt.Errorf("agent exited at start:\n%s", tail(ag.stderr.String(), 20))
			case <-time.After(50 * time.Millisecond):
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("agent traced no request within 30 s:\n%s", tail(ag.stderr.String(), 20))
		}
	}
}

// lastCounters parses the agent's last "msg=counters" log line (slog text:
// key=value pairs separated by spaces).
func lastCounters(stderr string) map[string]string {
	lines := strings.Split(stderr, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if !strings.Contains(lines[i], " msg=counters ") {
			continue
		}
		out := map[string]string{}
		for _, f := range strings.Fields(lines[i]) {
			k, v, ok := strings.Cut(f, "=")
			if ok && k != "time" && k != "level" && k != "msg" {
				out[k] = v
			}
		}
		return out
	}
	return nil
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
