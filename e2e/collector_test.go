package e2e

import (
	"bufio"
	"flag"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tracewire/tracewire/internal/otlptest"
)

// collectorOutage is how long TestCollectorOutageMemory keeps the collector
// down; the documented figure comes from
// go test ./e2e -run TestCollectorOutageMemory -v -args -collector-outage=60s
var collectorOutage = flag.Duration("collector-outage", 8*time.Second, "how long TestCollectorOutageMemory keeps the collector down")

// TestCollectorFaults runs the real agent against a collector that answers
// 503 with Retry-After for a while, then recovers, then rejects with 400:
// the spans of the outage arrive exactly once and no earlier than the
// collector asked, the rejected ones are dropped and counted, and the spans
// after them arrive.
func TestCollectorFaults(t *testing.T) {
	requireEBPF(t)
	recv := otlptest.Start(t)
	a := startExe(t, copyExe(t, "hello-go126", "hello-faults"))
	promPort := freePort(t)
	ag := startAgent(t, recv, []string{a.name}, "OTEL_BSP_SCHEDULE_DELAY=100", "OTEL_METRICS_EXPORTER=prometheus",
		"OTEL_EXPORTER_PROMETHEUS_HOST=127.0.0.1", fmt.Sprintf("OTEL_EXPORTER_PROMETHEUS_PORT=%d", promPort))
	waitTraced(t, recv, a)

	// Overloaded: 503 with Retry-After: 2.
	mark := len(recv.Attempts())
	recv.SetFault(otlptest.Fault{Status: http.StatusServiceUnavailable, RetryAfter: "2"})
	const outage = 40
	sendPaths(t, a, "/users/outage-", outage)
	waitAttempts(t, recv, "two refusals", func(as []otlptest.Attempt) bool { return answered(as[mark:], http.StatusServiceUnavailable) >= 2 })
	recv.SetFault(otlptest.Fault{})
	checkPathsOnce(t, recv, a, "/users/outage-", outage)
	// Each attempt after a 503 came at least Retry-After later.
	as := recv.Attempts()[mark:]
	for i := 0; i+1 < len(as); i++ {
		if gap := as[i+1].At.Sub(as[i].At); as[i].Status == http.StatusServiceUnavailable && gap < 2*time.Second {
			t.Errorf("attempt %d came %v after a 503 with Retry-After: 2", mark+i+1, gap)
		}
	}

	// Rejected: 400 drops the batch, which is not sent again.
	mark = len(recv.Attempts())
	recv.SetFault(otlptest.Fault{Status: http.StatusBadRequest})
	const rejected = 20
	sendPaths(t, a, "/users/rejected-", rejected)
	waitAttempts(t, recv, "the rejected spans", func(as []otlptest.Attempt) bool { return spansAnswered(as[mark:], http.StatusBadRequest) >= rejected })
	recv.SetFault(otlptest.Fault{})
	const after = 20
	sendPaths(t, a, "/users/after-", after)
	checkPathsOnce(t, recv, a, "/users/after-", after)
	if n := count(recv, hasPrefix("/users/rejected-")); n != 0 {
		t.Errorf("%d rejected spans arrived", n)
	}
	if n := spansAnswered(recv.Attempts()[mark:], http.StatusBadRequest); n != rejected {
		t.Errorf("%d spans answered 400, want each of the %d sent once", n, rejected)
	}
	// The same drops, and the failed uploads, in the agent's own metrics.
	mfs := scrape(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", promPort))
	drops := map[string]float64{}
	for _, m := range mfs["tracewire_spans_dropped_total"].GetMetric() {
		drops[labels(m)["reason"]] = m.GetCounter().GetValue()
	}
	if drops["rejected"] != rejected || drops["queue_full"] != 0 {
		t.Errorf("tracewire_spans_dropped_total %v: want %d rejected, none for a full queue", drops, rejected)
	}
	uploads := map[string]uint64{}
	for _, m := range mfs["tracewire_export_duration_seconds"].GetMetric() {
		uploads[labels(m)["outcome"]] = m.GetHistogram().GetSampleCount()
	}
	if uploads["failed"] < 3 || uploads["ok"] == 0 { // two 503s and the 400 at least
		t.Errorf("tracewire_export_duration_seconds counts %v: want failed uploads counted", uploads)
	}

	if code := ag.terminate(t); code != 0 {
		t.Fatalf("agent exit %d", code)
	}
	c := agentCounters(t, ag)
	if c["spans_dropped_rejected"] != rejected || c["spans_dropped_queue_full"] != 0 || c["spans_dropped"] != rejected {
		t.Errorf("counters %v: want %d spans dropped, all as rejected", c, rejected)
	}
}

// TestCollectorOutageMemory measures the agent's memory while the collector
// is down for -collector-outage under 1000 requests/s, with the default
// queue (16384 spans): its RSS must stay bounded, and the queued spans must
// arrive exactly once when the collector is back.
func TestCollectorOutageMemory(t *testing.T) {
	requireEBPF(t)
	recv := otlptest.Start(t)
	a := startExe(t, copyExe(t, "hello-go126", "hello-outage"))
	// The OTEL_BSP_* defaults, but for the schedule delay the harness shortens.
	ag := startAgent(t, recv, []string{a.name}, "OTEL_BSP_SCHEDULE_DELAY=5000")
	waitTraced(t, recv, a)
	pid := ag.cmd.Process.Pid

	load := startLoad(a, 1000)
	time.Sleep(3 * time.Second) // steady state with a healthy collector
	before := rssKiB(t, pid, "VmRSS")
	recv.Stop()
	load.setPrefix("/users/mem-")
	start, sentBefore := time.Now(), load.sent()
	peak := before
	for time.Since(start) < *collectorOutage {
		time.Sleep(time.Second)
		peak = max(peak, rssKiB(t, pid, "VmRSS"))
	}
	load.setPrefix("/users/load-")
	sent, took := load.sent()-sentBefore, time.Since(start)
	load.stop()
	recv.Restart(t)
	time.Sleep(15 * time.Second) // the queue drains
	hwm := rssKiB(t, pid, "VmHWM")
	got := recv.Spans()
	seen := map[string]int{}
	for _, g := range got {
		if p, _ := otlptest.Attrs(g.Span.Attributes)["url.path"].(string); strings.HasPrefix(p, "/users/mem-") {
			seen[p]++
		}
	}
	for p, n := range seen {
		if n != 1 {
			t.Errorf("%s arrived %d times", p, n)
		}
	}
	if code := ag.terminate(t); code != 0 {
		t.Fatalf("agent exit %d", code)
	}
	c := agentCounters(t, ag)
	t.Logf("outage of %v at %.0f requests/s: %d requests, %d of their spans delivered after it; counters %v",
		took.Round(time.Second), float64(sent)/took.Seconds(), sent, len(seen), c)
	t.Logf("agent RSS: %d KiB before, %d KiB peak during the outage (+%d KiB), VmHWM %d KiB",
		before, peak, peak-before, hwm)
	// Every span of the outage was delivered or counted as dropped.
	if d := c["spans_dropped_queue_full"]; int64(len(seen))+d < int64(sent) {
		t.Errorf("%d requests during the outage, %d spans delivered and %d counted as dropped: some were lost silently", sent, len(seen), d)
	}
	if len(seen) > 16384 {
		t.Errorf("%d outage spans delivered, more than the queue holds", len(seen))
	}
	if peak-before > 64<<10 {
		t.Errorf("RSS grew by %d KiB during the outage: the queue is not bounding memory", peak-before)
	}
}

// sendPaths sends n requests to a, to prefix0, prefix1, ...
func sendPaths(t *testing.T, a *app, prefix string, n int) {
	t.Helper()
	for i := range n {
		get(t, a.url(fmt.Sprintf("%s%d", prefix, i)))
	}
}

// checkPathsOnce waits for the spans of sendPaths(prefix, n) and checks that
// each url.path arrived exactly once.
func checkPathsOnce(t *testing.T, recv *otlptest.Receiver, a *app, prefix string, n int) {
	t.Helper()
	match := func(g otlptest.Got) bool {
		return g.Resource["process.pid"] == int64(a.cmd.Process.Pid) && hasPrefix(prefix)(g)
	}
	recv.WaitSpans(t, 20*time.Second, match, n)
	time.Sleep(500 * time.Millisecond) // a duplicate would have arrived by now
	var got, want []string
	for _, g := range recv.Spans() {
		if match(g) {
			got = append(got, otlptest.Attrs(g.Span.Attributes)["url.path"].(string))
		}
	}
	for i := range n {
		want = append(want, fmt.Sprintf("%s%d", prefix, i))
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("url.path of the spans received: %v, want %v once each", got, want)
	}
}

// answered counts the attempts answered status.
func answered(as []otlptest.Attempt, status int) int {
	n := 0
	for _, a := range as {
		if a.Status == status {
			n++
		}
	}
	return n
}

// spansAnswered counts the spans of the attempts answered status.
func spansAnswered(as []otlptest.Attempt, status int) int {
	n := 0
	for _, a := range as {
		if a.Status == status {
			n += a.Spans
		}
	}
	return n
}

func waitAttempts(t *testing.T, recv *otlptest.Receiver, what string, done func([]otlptest.Attempt) bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !done(recv.Attempts()) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; export requests: %+v", what, recv.Attempts())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// agentCounters parses the last "counters" line the agent logged.
func agentCounters(t *testing.T, ag *agentProc) map[string]int64 {
	t.Helper()
	var last string
	for line := range strings.Lines(ag.stderr.String()) {
		if strings.Contains(line, "msg=counters") {
			last = line
		}
	}
	if last == "" {
		t.Fatalf("no counters in the agent log")
	}
	c := map[string]int64{}
	for _, f := range strings.Fields(last) {
		k, v, ok := strings.Cut(f, "=")
		if n, err := strconv.ParseInt(v, 10, 64); ok && err == nil {
			c[k] = n
		}
	}
	return c
}

// rssKiB reads a memory field (VmRSS, VmHWM) of /proc/pid/status.
func rssKiB(t *testing.T, pid int, field string) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("%s: %v", field, err)
			}
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// load sends requests to an app at a fixed rate from a few workers.
type load struct {
	prefix  atomic.Pointer[string]
	n       atomic.Int64
	stopped chan struct{}
	wg      sync.WaitGroup
}

func startLoad(a *app, perSecond int) *load {
	l := &load{stopped: make(chan struct{})}
	l.setPrefix("/users/load-")
	tokens := make(chan struct{}, perSecond)
	l.wg.Go(func() {
		defer close(tokens)
		const tick = 10 * time.Millisecond
		per := perSecond * int(tick) / int(time.Second)
		tk := time.NewTicker(tick)
		defer tk.Stop()
		for {
			select {
			case <-l.stopped:
				return
			case <-tk.C:
				for range per {
					select {
					case tokens <- struct{}{}:
					default: // the workers fall behind: do not queue up
					}
				}
			}
		}
	})
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}, Timeout: 5 * time.Second}
	for range 8 {
		l.wg.Go(func() {
			for range tokens {
				i := l.n.Add(1)
				resp, err := c.Get(a.url(fmt.Sprintf("%s%d", *l.prefix.Load(), i)))
				if err == nil {
					resp.Body.Close()
				}
			}
		})
	}
	return l
}

func (l *load) setPrefix(p string) { l.prefix.Store(&p) }

func (l *load) sent() int64 { return l.n.Load() }

func (l *load) stop() {
	close(l.stopped)
	l.wg.Wait()
}
