package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	collectormetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	collectortracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/tracewire/tracewire/internal/otlptest"
)

// otelcolVersion is the OpenTelemetry Collector release the test builds; its
// stable modules are at v1.66.0, as the builder of that release defaults to.
const otelcolVersion = "v0.160.0"

// otelcolManifest is the builder's manifest; %s is the output directory.
// Only what the test uses: the OTLP receiver and the file exporter (the env
// provider is there because the collector's default URI scheme is env).
const otelcolManifest = `dist:
  name: otelcol
  module: github.com/tracewire/tracewire/e2e/otelcol
  description: OpenTelemetry Collector for tracewire's end-to-end test
  version: 0.160.0
  output_path: %s
receivers:
  - gomod: go.opentelemetry.io/collector/receiver/otlpreceiver v0.160.0
exporters:
  - gomod: github.com/open-telemetry/opentelemetry-collector-contrib/exporter/fileexporter v0.160.0
providers:
  - gomod: go.opentelemetry.io/collector/confmap/provider/envprovider v1.66.0
  - gomod: go.opentelemetry.io/collector/confmap/provider/fileprovider v1.66.0
`

var (
	otelcolOnce sync.Once
	otelcolBin  string
	otelcolErr  error
)

// buildOtelcol returns the collector binary, built with the collector
// builder the first time on this machine: it is kept in the user's cache
// directory under a name that changes with the manifest, since a cold build
// takes minutes. A failed build fails the test.
func buildOtelcol(t *testing.T) string {
	t.Helper()
	otelcolOnce.Do(func() {
		otelcolBin, otelcolErr = buildOtelcolOnce(t)
	})
	if otelcolErr != nil {
		t.Fatalf("build the OpenTelemetry Collector: %v", otelcolErr)
	}
	return otelcolBin
}

func buildOtelcolOnce(t *testing.T) (string, error) {
	root, err := os.UserCacheDir()
	if err != nil {
		root = os.TempDir()
	}
	sum := sha256.Sum256([]byte(otelcolManifest))
	dir := filepath.Join(root, fmt.Sprintf("tracewire-otelcol-%s-%x", otelcolVersion, sum[:6]))
	bin := filepath.Join(dir, "otelcol")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	// Build beside the result and rename it into place, so that a test
	// binary running at the same time never finds half a file.
	work, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	manifest := filepath.Join(work, "builder.yaml")
	out := filepath.Join(work, "out")
	if err := os.WriteFile(manifest, fmt.Appendf(nil, otelcolManifest, out), 0o644); err != nil {
		return "", err
	}
	start := time.Now()
	cmd := exec.Command("go", "run", "go.opentelemetry.io/collector/cmd/builder@"+otelcolVersion, "--config", manifest, "--verbose")
	cmd.Dir = work
	// -e: the builder's go mod tidy loads the tests of the file exporter,
	// one of which imports otlpencodingextension v0.160.0, whose zip the
	// module proxy here does not serve; the collector itself does not need
	// it, and go build still fails on any package it does need.
	cmd.Env = append(os.Environ(), "GOFLAGS=-e -buildvcs=false", "GOWORK=off")
	b, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%v: %v\n%s", cmd.Args, err, b)
	}
	if err := os.Rename(filepath.Join(out, "otelcol"), bin); err != nil {
		return "", fmt.Errorf("%w\nbuilder output:\n%s", err, b)
	}
	t.Logf("built the OpenTelemetry Collector %s in %v: %s", otelcolVersion, time.Since(start).Round(time.Second), bin)
	return bin, nil
}

// otelcol is a running collector that writes what it receives to two files
// of OTLP JSON lines.
type otelcol struct {
	endpoint        string // for OTEL_EXPORTER_OTLP_ENDPOINT
	traces, metrics string // the file exporters' files
	stderr          *bytes.Buffer
}

// startOtelcol runs bin with an OTLP/HTTP receiver on a free loopback port
// and waits until it listens; the test's cleanup kills it.
func startOtelcol(t *testing.T, bin string) *otelcol {
	t.Helper()
	dir := t.TempDir()
	port := freePort(t)
	c := &otelcol{
		endpoint: fmt.Sprintf("http://127.0.0.1:%d", port),
		traces:   filepath.Join(dir, "traces.jsonl"),
		metrics:  filepath.Join(dir, "metrics.jsonl"),
		stderr:   &bytes.Buffer{},
	}
	// No internal metrics: they would listen on :8888, which another
	// collector on the machine may hold.
	config := fmt.Sprintf(`receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:%d
exporters:
  file/traces:
    path: %s
    format: json
    flush_interval: 100ms
  file/metrics:
    path: %s
    format: json
    flush_interval: 100ms
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file/traces]
    metrics:
      receivers: [otlp]
      exporters: [file/metrics]
`, port, c.traces, c.metrics)
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config=file:"+path)
	cmd.Stdout = &syncWriter{w: c.stderr}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the collector: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("collector log:\n%s", c.stderr.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			conn.Close()
			return c
		}
		select {
		case <-done:
			t.Fatalf("the collector exited: %v", cmd.ProcessState)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the collector does not listen on %d after 30 s", port)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// spans returns every span in the collector's traces file so far.
func (c *otelcol) spans(t *testing.T) []otlptest.Got {
	t.Helper()
	var out []otlptest.Got
	for _, line := range jsonLines(t, c.traces) {
		var msg collectortracepb.ExportTraceServiceRequest
		if err := unmarshalOTLPJSON(line, &msg); err != nil {
			t.Fatalf("%s: %v\n%s", c.traces, err, line)
		}
		out = otlptest.AppendSpans(out, &msg)
	}
	return out
}

// metricsOut returns every metric in the collector's metrics file so far.
func (c *otelcol) metricsOut(t *testing.T) []otlptest.GotMetric {
	t.Helper()
	var out []otlptest.GotMetric
	for _, line := range jsonLines(t, c.metrics) {
		var msg collectormetricspb.ExportMetricsServiceRequest
		if err := unmarshalOTLPJSON(line, &msg); err != nil {
			t.Fatalf("%s: %v\n%s", c.metrics, err, line)
		}
		out = otlptest.AppendMetrics(out, &msg)
	}
	return out
}

// jsonLines returns the complete lines of path: the exporter may be in the
// middle of writing the last one.
func jsonLines(t *testing.T, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	b = b[:bytes.LastIndexByte(b, '\n')+1]
	var out [][]byte
	for line := range bytes.Lines(b) {
		if line = bytes.TrimSpace(line); len(line) > 0 {
			out = append(out, line)
		}
	}
	return out
}

// unmarshalOTLPJSON decodes one line of OTLP JSON. It differs from the
// protobuf JSON mapping in one way: trace and span ids are hex, not base64.
func unmarshalOTLPJSON(line []byte, msg proto.Message) error {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber() // keep 64-bit integers exact
	var v any
	if err := dec.Decode(&v); err != nil {
		return err
	}
	if err := hexIDsToBase64(v); err != nil {
		return err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return protojson.Unmarshal(b, msg)
}

func hexIDsToBase64(v any) error {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if s, ok := e.(string); ok && (k == "traceId" || k == "spanId" || k == "parentSpanId") {
				id, err := hex.DecodeString(s)
				if err != nil {
					return fmt.Errorf("%s %q: %w", k, s, err)
				}
				x[k] = base64.StdEncoding.EncodeToString(id)
				continue
			}
			if err := hexIDsToBase64(e); err != nil {
				return err
			}
		}
	case []any:
		for _, e := range x {
			if err := hexIDsToBase64(e); err != nil {
				return err
			}
		}
	}
	return nil
}

func countGot(spans []otlptest.Got, match func(otlptest.Got) bool) int {
	n := 0
	for _, g := range spans {
		if match(g) {
			n++
		}
	}
	return n
}

// serverSpan matches a's server spans whose url.path satisfies path.
func serverSpan(a *app, path func(string) bool) func(otlptest.Got) bool {
	return func(g otlptest.Got) bool {
		p, _ := otlptest.Attrs(g.Span.GetAttributes())["url.path"].(string)
		return g.Resource["process.pid"] == int64(a.cmd.Process.Pid) && g.Span.GetKind() == tracepb.Span_SPAN_KIND_SERVER && path(p)
	}
}

func is(want string) func(string) bool { return func(p string) bool { return p == want } }

// histogram is the last data point of one series of a histogram metric.
type histogram struct {
	metric *metricspb.Metric
	point  *metricspb.HistogramDataPoint
}

// lastPoints returns, for a's process, the latest data point of each series
// of the histogram name, by "route status" (the points are cumulative).
func lastPoints(ms []otlptest.GotMetric, a *app, name string) map[string]histogram {
	out := map[string]histogram{}
	for _, g := range ms {
		if g.Metric.GetName() != name || g.Resource["process.pid"] != int64(a.cmd.Process.Pid) {
			continue
		}
		for _, dp := range g.Metric.GetHistogram().GetDataPoints() {
			at := otlptest.Attrs(dp.GetAttributes())
			key := fmt.Sprintf("%v %v", at["http.route"], at["http.response.status_code"])
			if name == "http.client.request.duration" {
				key = fmt.Sprintf("%v:%v %v", at["server.address"], at["server.port"], at["http.response.status_code"])
			}
			if old, ok := out[key]; !ok || dp.GetTimeUnixNano() >= old.point.GetTimeUnixNano() {
				out[key] = histogram{metric: g.Metric, point: dp}
			}
		}
	}
	return out
}

// TestThroughOpenTelemetryCollector sends the agent's spans and metrics
// through a real OpenTelemetry Collector (OTLP/HTTP receiver, file exporter)
// and checks what the collector wrote, field by field: the collector accepts
// the agent's OTLP as it is, and nothing is lost, doubled or changed on the
// way.
func TestThroughOpenTelemetryCollector(t *testing.T) {
	requireEBPF(t)
	col := startOtelcol(t, buildOtelcol(t))
	// runAgent points the agent at an otlptest receiver; the endpoint below
	// comes later in the environment and wins (exec keeps the last value),
	// so nothing may arrive here.
	decoy := otlptest.Start(t)
	front := startExe(t, copyExe(t, "hello-go126", "otelcol-front"))
	back := startExe(t, copyExe(t, "hello-go126", "otelcol-back"))
	ag := startAgent(t, decoy, []string{front.name, back.name},
		"OTEL_EXPORTER_OTLP_ENDPOINT="+col.endpoint, "OTEL_METRICS_EXPORTER=otlp", "OTEL_METRIC_EXPORT_INTERVAL=500")

	// Warm up on /silent, a route of its own, until both are traced.
	deadline := time.Now().Add(30 * time.Second)
	for {
		get(t, front.url("/silent"))
		get(t, back.url("/silent"))
		time.Sleep(300 * time.Millisecond)
		spans := col.spans(t)
		if countGot(spans, serverSpan(front, is("/silent"))) > 0 && countGot(spans, serverSpan(back, is("/silent"))) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("targets not traced within 30 s (no /silent span in the collector's file)")
		}
	}

	const n = 20
	before := time.Now().UnixNano()
	for i := range n {
		if code := get(t, front.url(fmt.Sprintf("/users/oc-%d", i))); code != 200 {
			t.Fatalf("/users/oc-%d answered %d", i, code)
		}
	}
	// One call from front to back: three spans in one trace.
	if code := get(t, front.url("/call?url="+url.QueryEscape(back.url("/users/chain")))); code != 200 {
		t.Fatalf("/call answered %d", code)
	}
	after := time.Now().UnixNano()

	users := serverSpan(front, func(p string) bool { return strings.HasPrefix(p, "/users/oc-") })
	chainSpan := serverSpan(back, is("/users/chain"))
	deadline = time.Now().Add(15 * time.Second)
	for {
		spans := col.spans(t)
		if countGot(spans, users) >= n && countGot(spans, chainSpan) >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 15 s the collector wrote %d of the %d /users/oc-* spans and %d /users/chain spans",
				countGot(spans, users), n, countGot(spans, chainSpan))
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second) // a doubled span would be written by now
	spans := col.spans(t)

	// Traces: each path once, as the agent made it.
	host, _ := os.Hostname()
	var paths, want []string
	for _, g := range spans {
		if !users(g) {
			continue
		}
		s := g.Span
		p := otlptest.Attrs(s.GetAttributes())["url.path"].(string)
		paths = append(paths, p)
		checkResource(t, g.Resource, front, host)
		if g.Scope != "github.com/tracewire/tracewire/probes/nethttp" {
			t.Errorf("%s: scope %q", p, g.Scope)
		}
		if s.GetName() != "GET /users/{id}" {
			t.Errorf("%s: name %q, want GET /users/{id}", p, s.GetName())
		}
		checkAttrs(t, s.GetAttributes(), map[string]any{
			"http.request.method":       "GET",
			"url.path":                  p,
			"url.scheme":                "http",
			"http.route":                "/users/{id}",
			"http.response.status_code": int64(200),
			"server.address":            "127.0.0.1",
			"server.port":               int64(front.port),
			"client.address":            "127.0.0.1",
			"network.protocol.version":  "1.1",
		})
		checkIDs(t, s)
		if len(s.GetParentSpanId()) != 0 {
			t.Errorf("%s: parent %x, want none", p, s.GetParentSpanId())
		}
		if s.GetStatus().GetCode() != tracepb.Status_STATUS_CODE_UNSET {
			t.Errorf("%s: status %v, want unset", p, s.GetStatus().GetCode())
		}
		if st, end := int64(s.GetStartTimeUnixNano()), int64(s.GetEndTimeUnixNano()); st < before || end > after || end < st {
			t.Errorf("%s: span [%d, %d] outside the requests [%d, %d]", p, st, end, before, after)
		}
	}
	for i := range n {
		want = append(want, fmt.Sprintf("/users/oc-%d", i))
	}
	slices.Sort(paths)
	slices.Sort(want)
	if !slices.Equal(paths, want) {
		t.Errorf("url.path of the server spans: %v, want %v once each", paths, want)
	}

	// The chain: front server -> front client -> back server, one trace.
	var bServer *otlptest.Got
	for _, g := range spans {
		if chainSpan(g) {
			if bServer != nil {
				t.Fatal("two /users/chain spans")
			}
			bServer = &g
		}
	}
	if bServer == nil {
		t.Fatal("no /users/chain span")
	}
	var inTrace []otlptest.Got
	for _, g := range spans {
		if bytes.Equal(g.Span.GetTraceId(), bServer.Span.GetTraceId()) {
			inTrace = append(inTrace, g)
		}
	}
	if len(inTrace) != 3 {
		t.Fatalf("the chain's trace has %d spans, want 3", len(inTrace))
	}
	aServer := one(t, pick(inTrace, front, tracepb.Span_SPAN_KIND_SERVER), "front server")
	aClient := one(t, pick(inTrace, front, tracepb.Span_SPAN_KIND_CLIENT), "front client")
	checkChain(t, aServer, aClient, bServer.Span)
	if aServer.GetName() != "GET /call" || aClient.GetName() != "GET" || bServer.Span.GetName() != "GET /users/{id}" {
		t.Errorf("chain names %q, %q, %q; want GET /call, GET, GET /users/{id}", aServer.GetName(), aClient.GetName(), bServer.Span.GetName())
	}
	if at := otlptest.Attrs(aClient.GetAttributes()); at["server.port"] != int64(back.port) || at["http.response.status_code"] != int64(200) {
		t.Errorf("front client attributes %v, want server.port %d and status 200", at, back.port)
	}
	checkResource(t, bServer.Resource, back, host)

	// Metrics: what the spans say, counted once, with the spans' resource.
	// Every warm-up request that made a span was counted too, on /silent.
	wantServer := func(a *app) map[string]uint64 {
		w := map[string]uint64{"/silent 200": uint64(countGot(spans, serverSpan(a, is("/silent"))))}
		if a == front {
			w["/users/{id} 200"] = n
			w["/call 200"] = 1
		} else {
			w["/users/{id} 200"] = 1
		}
		return w
	}
	counts := func(ps map[string]histogram) map[string]uint64 {
		out := map[string]uint64{}
		for k, h := range ps {
			out[k] = h.point.GetCount()
		}
		return out
	}
	reached := func(got, want map[string]uint64) bool {
		for k, w := range want {
			if got[k] < w {
				return false
			}
		}
		return true
	}
	deadline = time.Now().Add(15 * time.Second)
	for {
		ms := col.metricsOut(t)
		if reached(counts(lastPoints(ms, front, "http.server.request.duration")), wantServer(front)) &&
			reached(counts(lastPoints(ms, back, "http.server.request.duration")), wantServer(back)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 15 s the collector's http.server.request.duration counts are %v for front and %v for back, want %v and %v",
				counts(lastPoints(ms, front, "http.server.request.duration")), counts(lastPoints(ms, back, "http.server.request.duration")),
				wantServer(front), wantServer(back))
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second) // two more pushes: a late or doubled count would show
	ms := col.metricsOut(t)
	for _, a := range []*app{front, back} {
		ps := lastPoints(ms, a, "http.server.request.duration")
		if got, want := counts(ps), wantServer(a); !maps.Equal(got, want) {
			t.Errorf("%s: http.server.request.duration counts %v, want %v", a.name, got, want)
		}
		for k, h := range ps {
			checkHistogram(t, a.name+" "+k, h)
			at := otlptest.Attrs(h.point.GetAttributes())
			if _, ok := at["url.path"]; ok {
				t.Errorf("%s %s: has url.path", a.name, k)
			}
			route, _, _ := strings.Cut(k, " ")
			checkAttrs(t, h.point.GetAttributes(), map[string]any{
				"http.request.method":       "GET",
				"http.route":                route,
				"http.response.status_code": int64(200),
				"url.scheme":                "http",
				"network.protocol.version":  "1.1",
			})
		}
	}
	client := lastPoints(ms, front, "http.client.request.duration")
	if got, want := counts(client), map[string]uint64{fmt.Sprintf("127.0.0.1:%d 200", back.port): 1}; !maps.Equal(got, want) {
		t.Errorf("front: http.client.request.duration counts %v, want %v", got, want)
	}
	for k, h := range client {
		checkHistogram(t, "front client "+k, h)
	}
	for _, g := range ms {
		if g.Metric.GetName() != "http.server.request.duration" {
			continue
		}
		for _, a := range []*app{front, back} {
			if g.Resource["process.pid"] == int64(a.cmd.Process.Pid) {
				checkResource(t, g.Resource, a, host)
			}
		}
	}

	if got, gotM := decoy.Spans(), decoy.Metrics(); len(got) != 0 || len(gotM) != 0 {
		t.Errorf("%d spans and %d metrics bypassed the collector", len(got), len(gotM))
	}
	// The agent had no export error: the collector took every request.
	if code := ag.terminate(t); code != 0 {
		t.Fatalf("agent exited with %d", code)
	}
	for line := range strings.Lines(ag.stderr.String()) {
		if strings.Contains(line, "level=ERROR") || strings.Contains(line, "level=WARN") {
			t.Errorf("agent: %s", line)
		}
	}
}

// checkResource checks the resource the agent gives a's spans and metrics.
func checkResource(t *testing.T, res map[string]any, a *app, host string) {
	t.Helper()
	for k, w := range map[string]any{
		"service.name":            a.name,
		"process.pid":             int64(a.cmd.Process.Pid),
		"process.executable.name": a.name,
		"process.runtime.name":    "go",
		"host.name":               host,
		"telemetry.sdk.name":      "tracewire",
		"telemetry.sdk.language":  "go",
	} {
		if res[k] != w {
			t.Errorf("%s: resource %s = %v, want %v", a.name, k, res[k], w)
		}
	}
}

// checkHistogram checks a duration histogram's shape after the collector.
func checkHistogram(t *testing.T, what string, h histogram) {
	t.Helper()
	if h.metric.GetUnit() != "s" {
		t.Errorf("%s: unit %q, want s", what, h.metric.GetUnit())
	}
	if tm := h.metric.GetHistogram().GetAggregationTemporality(); tm != metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_CUMULATIVE {
		t.Errorf("%s: temporality %v, want cumulative", what, tm)
	}
	p := h.point
	var inBuckets uint64
	for _, c := range p.GetBucketCounts() {
		inBuckets += c
	}
	if len(p.GetBucketCounts()) != len(p.GetExplicitBounds())+1 || inBuckets != p.GetCount() {
		t.Errorf("%s: %d buckets holding %d for %d bounds and count %d", what, len(p.GetBucketCounts()), inBuckets, len(p.GetExplicitBounds()), p.GetCount())
	}
	if p.GetSum() <= 0 || p.GetTimeUnixNano() < p.GetStartTimeUnixNano() {
		t.Errorf("%s: sum %v, time [%d, %d]", what, p.GetSum(), p.GetStartTimeUnixNano(), p.GetTimeUnixNano())
	}
}
