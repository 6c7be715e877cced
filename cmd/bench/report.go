package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"
)

// results is everything a run reports, as printed and as written to JSON.
type results struct {
	Started   time.Time        `json:"started"`
	Host      string           `json:"host"`
	Pinning   string           `json:"pinning"`
	Settings  settings         `json:"settings"`
	Notes     []string         `json:"notes"`
	Scenarios []scenarioResult `json:"scenarios"`
	Sustained agentRun         `json:"sustained"`
	LowRate   agentRun         `json:"low_rate"`
	Bystander bystanderResult  `json:"bystander"`
	Checks    []check          `json:"checks"`
}

// check is one metric against its target.
type check struct {
	Metric string  `json:"metric"`
	Value  float64 `json:"value"`
	Target string  `json:"target"`
	Pass   bool    `json:"pass"`
}

// notes explain how each number was obtained.
func notes(set settings) []string {
	return []string{
		fmt.Sprintf("kernel ns/span = BPF program run time (kernel.bpf_stats_enabled run_time_ns) per request, plus an ASSUMED %.0f ns per uprobe hit for the breakpoint trap and instruction emulation, which BPF stats do not see (measure it with -hookcost, set it with -uprobe-trap-ns); divided by the spans per request (plain 1, downstream 3)", set.UprobeTrapNs),
		"BPF run-time accounting is on during the whole run; it adds two clock reads to each program run, so the 'on' rounds pay slightly more than without it",
		"agent CPU = utime+stime of the agent process (/proc/PID/stat, 10 ms ticks) over the measured window, in % of one core; the probes' kernel time is spent in the traced services, not in the agent",
		"spans lost = spans expected for the measured requests (1 per plain request, 3 per downstream request) minus spans received for them, counted after the agent's SIGTERM flush",
		"ratio = mean over rounds of req/s with agent / req/s without; added latency = mean p50/p99 with minus without",
		"the added-p50 target is checked at concurrency 1: at c16 the requests queue on one service core and any added time is multiplied",
		"lost < 0 means more spans than expected: the spans of a trace outside the measured requests joined one of theirs; 'wrong trace' counts downstream server spans whose trace has no client span of the same request",
		"sustained and low-rate loads are paced (shared schedule over the workers); latencies are measured from each send, not from its scheduled time",
	}
}

// evaluate fills Notes and Checks from the measurements.
func (r *results) evaluate() {
	r.Notes = notes(r.Settings)
	add := func(metric string, v float64, target string, pass bool) {
		r.Checks = append(r.Checks, check{metric, v, target, pass})
	}
	rssIdle := r.Sustained.Stats.RSSIdleMiB
	for _, s := range r.Scenarios {
		var kern float64
		var n int
		for _, rd := range s.Rounds {
			if rd.Stats != nil {
				kern += rd.Stats.KernelNsSpan
				n++
				rssIdle = max(rssIdle, rd.Stats.RSSIdleMiB)
			}
		}
		switch s.Name {
		case "plain c1":
			add("plain c1: req/s ratio on/off", s.Ratio, ">= 0.97", s.Ratio >= 0.97)
			add("plain c1: added p50 (µs)", s.AddedP50us, "<= 3", s.AddedP50us <= 3)
		case "plain c16":
			add("plain c16: req/s ratio on/off", s.Ratio, ">= 0.90", s.Ratio >= 0.90)
		}
		if n > 0 {
			add(s.Name+": kernel µs per span", kern/float64(n)/1e3, "<= 2", kern/float64(n) <= 2000)
		}
	}
	rssIdle = max(rssIdle, r.LowRate.Stats.RSSIdleMiB)
	add(fmt.Sprintf("agent CPU at %s (%% of a core)", r.LowRate.Name), r.LowRate.Stats.CPUPercent, "<= 1", r.LowRate.Stats.CPUPercent <= 1)
	add("agent RSS idle, max over runs (MiB)", rssIdle, "<= 30", rssIdle <= 30)
	sus := r.Sustained
	rate := float64(total(sus.Stats.SpansByKind)) / sus.Load.Seconds
	add(fmt.Sprintf("agent RSS at end of sustained load, %.0f spans/s (MiB)", rate), sus.Stats.RSSEndMiB, "<= 60", sus.Stats.RSSEndMiB <= 60)
	add("lost spans in sustained run", float64(sus.Stats.SpansLost), "== 0", sus.Stats.SpansLost == 0)
	add("bystander (not traced, wire tracepoints on): req/s ratio on/off", r.Bystander.Ratio, ">= 0.99", r.Bystander.Ratio >= 0.99)
	if rate < 0.95*r.Settings.SustainRate {
		r.Notes = append(r.Notes, fmt.Sprintf("the sustained run reached %.0f spans/s, short of the %.0f asked, with the agent on, at concurrency %d",
			rate, r.Settings.SustainRate, r.Settings.SustainConc))
	}
}

func (r *results) printTable(w io.Writer) {
	mode := "full"
	if r.Settings.Quick {
		mode = "quick"
	}
	fmt.Fprintf(w, "Tracewire bench (%s), %s, %s\n", mode, r.Host, r.Started.Format(time.RFC3339))
	fmt.Fprintf(w, "pinning: %s\n", r.Pinning)
	fmt.Fprintf(w, "each round: %.1f s warm-up + %.1f s measured; %d rounds of (off, on) per scenario\n\n",
		time.Duration(r.Settings.Warmup).Seconds(), time.Duration(r.Settings.Window).Seconds(), r.Settings.Rounds)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tround\tagent\treq/s\tp50 µs\tp99 µs\terrors\tagent CPU %\tRSS idle MiB\tRSS end MiB\tspans got/expected\tlost\twrong trace\tkernel ns/span\t")
	for _, s := range r.Scenarios {
		for _, rd := range s.Rounds {
			printRow(tw, s.Name, fmt.Sprint(rd.Round), rd.Agent, s.Downstream, rd.Load, rd.Stats)
		}
		fmt.Fprintf(tw, "%s\t\t=>\tratio %.3f\tp50 %+.1f\tp99 %+.1f\t\t\t\t\t\t\t\t\t\n", s.Name, s.Ratio, s.AddedP50us, s.AddedP99us)
	}
	for _, a := range []agentRun{r.Sustained, r.LowRate} {
		printRow(tw, a.Name, "", true, false, a.Load, &a.Stats)
	}
	tw.Flush()

	fmt.Fprintln(w, "\nBPF programs, last 'on' round (BPF run time only; the uprobe trap is not included):")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tprogram\truns/request\tns/run\tns/request\t")
	for _, s := range r.Scenarios {
		last := s.Rounds[len(s.Rounds)-1].Stats
		for _, p := range last.Programs {
			fmt.Fprintf(tw, "%s\t%s\t%.3f\t%.0f\t%.0f\t\n", s.Name, p.Name, p.RunsPerReq, p.NsPerRun, p.NsPerReq)
		}
	}
	tw.Flush()

	fmt.Fprintln(w, "\nagent counters at exit (last msg=counters line):")
	for _, s := range r.Scenarios {
		for _, rd := range s.Rounds {
			if rd.Stats != nil {
				fmt.Fprintf(w, "  %s r%d: %s\n", s.Name, rd.Round, formatCounters(rd.Stats.Counters))
			}
		}
	}
	for _, a := range []agentRun{r.Sustained, r.LowRate} {
		fmt.Fprintf(w, "  %s: %s\n", a.Name, formatCounters(a.Stats.Counters))
	}

	fmt.Fprintln(w, "\ntargets:")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range r.Checks {
		res := "FAIL"
		if c.Pass {
			res = "PASS"
		}
		fmt.Fprintf(tw, "  %s\t%.3f\t%s\t%s\n", c.Metric, c.Value, c.Target, res)
	}
	tw.Flush()
	fmt.Fprintln(w, "\nnotes:")
	for _, n := range r.Notes {
		fmt.Fprintf(w, "  - %s\n", n)
	}
}

func printRow(w io.Writer, name, round string, on, downstream bool, l loadResult, st *agentStats) {
	agent := "off"
	if on {
		agent = "on"
	}
	fmt.Fprintf(w, "%s\t%s\t%s\t%.0f\t%.1f\t%.1f\t%d\t", name, round, agent, l.RPS, l.P50us, l.P99us, l.Errors)
	if st == nil {
		fmt.Fprintln(w, "\t\t\t\t\t\t\t")
		return
	}
	wrong := "-" // only a downstream request has a caller's trace to join
	if downstream {
		wrong = fmt.Sprint(st.WrongTrace)
	}
	fmt.Fprintf(w, "%.2f\t%.1f\t%.1f\t%d/%d\t%d\t%s\t%.0f\t\n", st.CPUPercent, st.RSSIdleMiB, st.RSSEndMiB,
		total(st.SpansByKind), st.SpansExpected, st.SpansLost, wrong, st.KernelNsSpan)
}

func formatCounters(c map[string]string) string {
	if c == nil {
		return "(no counters line)"
	}
	keys := slices.Sorted(maps.Keys(c))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + c[k]
	}
	return strings.Join(parts, " ")
}

// hostInfo names the kernel, CPU count and Go version.
func hostInfo() string {
	var u unix.Utsname
	kernel := "unknown kernel"
	if unix.Uname(&u) == nil {
		kernel = "Linux " + unix.ByteSliceToString(u.Release[:])
	}
	return fmt.Sprintf("%s, %d CPUs, %s", kernel, runtime.NumCPU(), runtime.Version())
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode results: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	fmt.Printf("\nwrote %s\n", path)
	return nil
}
