package e2e

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/tracewire/tracewire/internal/otlptest"
)

// scrape reads the agent's Prometheus endpoint.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	return mfs
}

func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// requestCounts returns pid's http.server.request.duration counts by
// "route status".
func requestCounts(mfs map[string]*dto.MetricFamily, pid int) map[string]uint64 {
	out := map[string]uint64{}
	for _, m := range mfs["http_server_request_duration_seconds"].GetMetric() {
		l := labels(m)
		if l["process_pid"] != strconv.Itoa(pid) {
			continue
		}
		out[l["http_route"]+" "+l["http_response_status_code"]] += m.GetHistogram().GetSampleCount()
	}
	return out
}

// TestMetrics: every request a traced server handles, sampled or not, is
// counted once in http.server.request.duration on the agent's Prometheus
// endpoint, by route and status, never by raw path; the agent's own
// counters are there too.
func TestMetrics(t *testing.T) {
	requireEBPF(t)
	recv := otlptest.Start(t)
	exe := copyExe(t, "hello-go126", "metricsapp")
	// A target no probe applies to: a Go program without HTTP, SQL or gRPC.
	idle := copyExe(t, "idle", "metricsidle")
	promPort := freePort(t)
	ag := startAgent(t, recv, []string{"metricsapp", "metricsidle"}, "OTEL_METRICS_EXPORTER=prometheus,otlp", "OTEL_METRIC_EXPORT_INTERVAL=500",
		"OTEL_EXPORTER_PROMETHEUS_HOST=127.0.0.1", fmt.Sprintf("OTEL_EXPORTER_PROMETHEUS_PORT=%d", promPort),
		"TRACEWIRE_PROBE_STATS=true")
	a := startExe(t, exe)
	sh := exec.Command(idle)
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sh.Process.Kill(); sh.Wait() })
	pid := a.cmd.Process.Pid
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", promPort)
	waitListening(t, promPort)

	// Warm up on a route of its own until the agent traces the process.
	deadline := time.Now().Add(30 * time.Second)
	for requestCounts(scrape(t, metricsURL), pid)["/silent 200"] == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no request metric within 30 s")
		}
		get(t, a.url("/silent"))
		time.Sleep(200 * time.Millisecond)
	}

	const users, unsampled, failed = 20, 5, 7
	for i := range users {
		req, err := http.NewRequest(http.MethodGet, a.url(fmt.Sprintf("/users/%d", i)), nil)
		if err != nil {
			t.Fatal(err)
		}
		if i < unsampled {
			// Not exported as spans, counted all the same.
			req.Header.Set("traceparent", fmt.Sprintf("00-%032x-%016x-00", i+1, i+1))
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	for range failed {
		if code := get(t, a.url("/status?code=503")); code != 503 {
			t.Fatalf("/status?code=503 answered %d", code)
		}
	}

	want := map[string]uint64{"/users/{id} 200": users, "/status 503": failed}
	var got map[string]uint64
	var mfs map[string]*dto.MetricFamily
	deadline = time.Now().Add(10 * time.Second)
	for {
		mfs = scrape(t, metricsURL)
		got = requestCounts(mfs, pid)
		if got["/users/{id} 200"] >= users && got["/status 503"] >= failed || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Late duplicates would show up now.
	time.Sleep(500 * time.Millisecond)
	mfs = scrape(t, metricsURL)
	got = requestCounts(mfs, pid)
	for k, n := range want {
		if got[k] != n {
			t.Errorf("http_server_request_duration_seconds %s: count %d, want %d (all: %v)", k, got[k], n, got)
		}
	}
	for _, m := range mfs["http_server_request_duration_seconds"].GetMetric() {
		if l := labels(m); l["http_route"] == "/status" && l["error_type"] != "503" {
			t.Errorf("/status 503 series has error_type %q, want 503", l["error_type"])
		}
	}
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if _, ok := labels(m)["url_path"]; ok {
				t.Errorf("%s has a url_path label", name)
			}
		}
	}
	if mf := mfs["tracewire_spans_exported_total"]; len(mf.GetMetric()) == 0 {
		t.Errorf("no tracewire_spans_exported_total")
	}
	// Every counter the agent logs is a metric too: the HTTP probe's.
	sources := map[string]bool{}
	for _, m := range mfs["tracewire_events_total"].GetMetric() {
		sources[labels(m)["source"]] = true
	}
	for _, src := range []string{"nethttp", "procscan", "sampler"} {
		if !sources[src] {
			t.Errorf("tracewire_events_total has no source %q (sources %v)", src, sources)
		}
	}
	// The idle program failed once; the HTTP server ran once per request at least.
	failures := map[string]float64{}
	for _, m := range mfs["tracewire_attach_failures_total"].GetMetric() {
		failures[labels(m)["probe"]] = m.GetCounter().GetValue()
	}
	if len(failures) != 1 || failures[""] != 1 {
		t.Errorf("tracewire_attach_failures_total %v, want 1 with no probe", failures)
	}
	// A plaintext server's requests trap nowhere: the ServeHTTP uprobe is
	// not attached (0 runs); syscall programs start and end them.
	hits := map[string]float64{}
	for _, m := range mfs["tracewire_probe_hits_total"].GetMetric() {
		if l := labels(m); l["probe"] == "nethttp" {
			hits[l["program"]] = m.GetCounter().GetValue()
		}
	}
	if hits["uprobe_serverHandler_ServeHTTP"] != 0 || hits["nethttp_exit_write"] < users+failed {
		t.Errorf("tracewire_probe_hits_total: ServeHTTP %v, want 0; write exits %v, want >= %d",
			hits["uprobe_serverHandler_ServeHTTP"], hits["nethttp_exit_write"], users+failed)
	}
	var unsampledTotal float64
	for _, m := range mfs["tracewire_spans_unsampled_total"].GetMetric() {
		unsampledTotal += m.GetCounter().GetValue()
	}
	if unsampledTotal < unsampled {
		t.Errorf("tracewire_spans_unsampled_total = %v, want >= %d", unsampledTotal, unsampled)
	}

	// The same counts reach the collector over OTLP, the last push on
	// SIGTERM included, with the target's resource.
	if code := ag.terminate(t); code != 0 {
		t.Fatalf("agent exited with %d", code)
	}
	var pushed uint64
	for _, g := range recv.Metrics() {
		if g.Metric.GetName() != "http.server.request.duration" || g.Resource["process.pid"] != int64(pid) {
			continue
		}
		if g.Metric.GetUnit() != "s" {
			t.Errorf("OTLP unit %q, want s", g.Metric.GetUnit())
		}
		for _, dp := range g.Metric.GetHistogram().GetDataPoints() {
			if otlptest.Attrs(dp.GetAttributes())["http.route"] == "/users/{id}" {
				pushed = max(pushed, dp.GetCount()) // cumulative
			}
		}
	}
	if pushed != users {
		t.Errorf("OTLP http.server.request.duration /users/{id}: count %d, want %d", pushed, users)
	}
	// Every span upload was timed, and they all went through.
	uploads := map[string]uint64{}
	for _, g := range recv.Metrics() {
		if g.Metric.GetName() != "tracewire.export.duration" {
			continue
		}
		for _, dp := range g.Metric.GetHistogram().GetDataPoints() {
			o, _ := otlptest.Attrs(dp.GetAttributes())["outcome"].(string)
			uploads[o] = max(uploads[o], dp.GetCount())
		}
	}
	if uploads["ok"] == 0 || uploads["failed"] != 0 {
		t.Errorf("tracewire.export.duration counts by outcome %v, want some ok and no failed", uploads)
	}
	for line := range strings.Lines(ag.stderr.String()) {
		if (strings.Contains(line, "level=ERROR") || strings.Contains(line, "level=WARN")) && !strings.Contains(line, "exe=metricsidle") {
			t.Errorf("agent: %s", line)
		}
	}
}

// TestMetricsBadSettings: a bad metrics setting stops the agent at start
// (exit 1) with the variable named.
func TestMetricsBadSettings(t *testing.T) {
	requireEBPF(t)
	agent := filepath.Join(buildAll(t), "agent")
	for _, env := range [][]string{
		{"OTEL_METRICS_EXPORTER=statsd"},
		{"OTEL_METRICS_EXPORTER=prometheus", "OTEL_EXPORTER_PROMETHEUS_PORT=metrics"},
		{"OTEL_METRICS_EXPORTER=otlp", "OTEL_METRIC_EXPORT_INTERVAL=1m"},
	} {
		cmd := exec.Command(agent, "--target", "x")
		cmd.Env = append(os.Environ(), env...)
		out, _ := cmd.CombinedOutput()
		name, _, _ := strings.Cut(env[len(env)-1], "=")
		if cmd.ProcessState.ExitCode() != 1 || !strings.Contains(string(out), name) {
			t.Errorf("%v: exit %d, output %q; want 1 and a message naming %s", env, cmd.ProcessState.ExitCode(), out, name)
		}
	}
}

// graphCounts returns the agent's traces_service_graph_request_total (or
// name's) values by "client>server".
func graphCounts(mfs map[string]*dto.MetricFamily, name string) map[string]float64 {
	out := map[string]float64{}
	for _, m := range mfs[name].GetMetric() {
		l := labels(m)
		v := m.GetCounter().GetValue()
		if h := m.GetHistogram(); h != nil {
			v = float64(h.GetSampleCount())
		}
		out[l["client"]+">"+l["server"]] += v
	}
	return out
}

// TestServiceGraph: a call from one traced service to another is one edge
// client>server, counted once from its two spans; a call to an untraced
// server is an edge to its address once the wait for a server span is
// over; a call from outside any trace comes from "user"; failed calls are
// counted apart.
func TestServiceGraph(t *testing.T) {
	requireEBPF(t)
	recv := otlptest.Start(t)
	front := copyExe(t, "hello-go126", "sg-front")
	back := copyExe(t, "hello-go126", "sg-back")
	promPort := freePort(t)
	startAgent(t, recv, []string{"sg-front", "sg-back"}, "OTEL_METRICS_EXPORTER=prometheus",
		"OTEL_EXPORTER_PROMETHEUS_HOST=127.0.0.1", fmt.Sprintf("OTEL_EXPORTER_PROMETHEUS_PORT=%d", promPort))
	a, b := startExe(t, front), startExe(t, back)
	raw := startRawServer(t)
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", promPort)
	waitListening(t, promPort)

	// Until both are traced, a call could find only one side: warm up
	// with calls that make no edge between them.
	deadline := time.Now().Add(30 * time.Second)
	for {
		mfs := scrape(t, metricsURL)
		if requestCounts(mfs, a.cmd.Process.Pid)["/silent 200"] > 0 && requestCounts(mfs, b.cmd.Process.Pid)["/silent 200"] > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("targets not traced within 30 s")
		}
		get(t, a.url("/silent"))
		get(t, b.url("/silent"))
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // the last warm-up spans
	before := graphCounts(scrape(t, metricsURL), "traces_service_graph_request_total")

	const calls, failed, external = 12, 3, 5
	call := func(url string, want int) {
		if code := get(t, a.url("/call?url="+url)); code != want {
			t.Fatalf("/call?url=%s answered %d, want %d", url, code, want)
		}
	}
	for range calls {
		call(b.url("/users/1"), 200)
	}
	for range failed {
		call(b.url("/status?code=503"), 503)
	}
	for range external {
		call(raw.url("/x"), 200)
	}

	// The calls to the raw server are counted once their wait is over.
	const toBack, toRaw, fromUser = "sg-front>sg-back", "sg-front>127.0.0.1", "user>sg-front"
	// The warm-up made only edges from user; the others start at 0.
	totals := func(mfs map[string]*dto.MetricFamily) map[string]float64 {
		got := graphCounts(mfs, "traces_service_graph_request_total")
		for k, v := range before {
			got[k] -= v
		}
		return got
	}
	var mfs map[string]*dto.MetricFamily
	deadline = time.Now().Add(15 * time.Second)
	for {
		mfs = scrape(t, metricsURL)
		if totals(mfs)[toRaw] >= external || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(time.Second) // late duplicates would show up now
	mfs = scrape(t, metricsURL)
	total := totals(mfs)
	for k, want := range map[string]float64{toBack: calls + failed, toRaw: external, fromUser: calls + failed + external, "user>sg-back": 0} {
		if total[k] != want {
			t.Errorf("traces_service_graph_request_total %s = %v, want %v (all: %v)", k, total[k], want, total)
		}
	}
	if got := graphCounts(mfs, "traces_service_graph_request_failed_total"); got[toBack] != failed || got[toRaw] != 0 {
		t.Errorf("traces_service_graph_request_failed_total %v, want %s %d and none to %s", got, toBack, failed, toRaw)
	}
	for _, name := range []string{"traces_service_graph_request_server_seconds", "traces_service_graph_request_client_seconds"} {
		if got := graphCounts(mfs, name); got[toBack] != calls+failed || got[toRaw] != external {
			t.Errorf("%s counts %v, want %s %d and %s %d", name, got, toBack, calls+failed, toRaw, external)
		}
	}
	// Tempo's connection_type: none between two traced services.
	want := map[string]string{toBack: "", toRaw: "virtual_node", fromUser: "virtual_node"}
	for _, m := range mfs["traces_service_graph_request_total"].GetMetric() {
		l := labels(m)
		if w, ok := want[l["client"]+">"+l["server"]]; ok && l["connection_type"] != w {
			t.Errorf("%s>%s: connection_type %q, want %q", l["client"], l["server"], l["connection_type"], w)
		}
	}
}
