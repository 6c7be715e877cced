package metrics

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"
	"unsafe"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/tracewire/tracewire/export"
	"github.com/tracewire/tracewire/spans"
)

// manualRecorder returns a Recorder whose providers are read by the
// returned readers, one per provider made.
func manualRecorder(t *testing.T) (*Recorder, func() []*sdkmetric.ManualReader) {
	t.Helper()
	var mu sync.Mutex
	var readers []*sdkmetric.ManualReader
	r := newRecorder(export.ResourceConfig{HostName: "node1", AgentVersion: "test"}, func(p sdkmetric.Producer) ([]sdkmetric.Reader, func(), error) {
		rd := sdkmetric.NewManualReader(sdkmetric.WithProducer(p))
		mu.Lock()
		readers = append(readers, rd)
		mu.Unlock()
		return []sdkmetric.Reader{rd}, func() {}, nil
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	t.Cleanup(func() { _ = r.Shutdown(context.Background()) })
	return r, func() []*sdkmetric.ManualReader {
		mu.Lock()
		defer mu.Unlock()
		return readers
	}
}

func span(p *spans.Process, kind spans.Kind, ms int64, isErr bool, attrs ...spans.Attr) *spans.Span {
	return &spans.Span{Process: p, Kind: kind, StartNs: 1e9, EndNs: 1e9 + ms*1e6, Error: isErr, Attrs: attrs}
}

func collect(t *testing.T, rd *sdkmetric.ManualReader) metricdata.ResourceMetrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := rd.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	return rm
}

// points returns metric name's data points by their attributes' encoding.
func points(t *testing.T, rm metricdata.ResourceMetrics, name string) map[string]metricdata.HistogramDataPoint[float64] {
	t.Helper()
	out := map[string]metricdata.HistogramDataPoint[float64]{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			if m.Unit != "s" {
				t.Errorf("%s: unit %q, want s", name, m.Unit)
			}
			h, ok := m.Data.(metricdata.Histogram[float64])
			if !ok {
				t.Fatalf("%s: %T, want a histogram", name, m.Data)
			}
			for _, dp := range h.DataPoints {
				out[dp.Attributes.Encoded(attribute.DefaultEncoder())] = dp
			}
		}
	}
	return out
}

func enc(kvs ...attribute.KeyValue) string {
	s := attribute.NewSet(kvs...)
	return s.Encoded(attribute.DefaultEncoder())
}

func TestRecorderHistograms(t *testing.T) {
	r, readers := manualRecorder(t)
	p := &spans.Process{PID: 42, ExeName: "shop", ServiceName: "shop", RuntimeName: "go"}
	srv := func(status int64, route, path string) *spans.Span {
		return span(p, spans.KindServer, 20, status >= 500,
			spans.String("http.request.method", "GET"), spans.String("url.path", path),
			spans.String("url.scheme", "http"), spans.String("http.route", route),
			spans.Int("http.response.status_code", status), spans.String("network.protocol.version", "1.1"),
			spans.String("server.address", "localhost"), spans.Int("server.port", 8080),
			spans.String("client.address", "10.0.0.1"))
	}
	for i := range 3 {
		r.Observe(srv(200, "/users/{id}", "/users/"+string(rune('1'+i))))
	}
	// Unsampled spans count too: the recorder ignores TraceFlags.
	r.Observe(srv(503, "/status", "/status"))
	r.Observe(span(p, spans.KindClient, 5, true,
		spans.String("http.request.method", "POST"), spans.String("url.full", "http://api:9000/x?q=REDACTED"),
		spans.String("server.address", "api"), spans.Int("server.port", 9000)))
	r.Observe(span(p, spans.KindServer, 7, false,
		spans.String("rpc.system", "grpc"), spans.String("rpc.service", "shop.Cart"), spans.String("rpc.method", "Add"),
		spans.Int("rpc.grpc.status_code", 0), spans.String("client.address", "10.0.0.2")))
	r.Observe(span(p, spans.KindClient, 3, true,
		spans.String("db.system.name", "postgresql"), spans.String("db.query.text", "SELECT * FROM users WHERE id = ?"),
		spans.String("db.operation.name", "SELECT"), spans.String("db.collection.name", "users"),
		spans.String("server.address", "db"), spans.Int("server.port", 5432), spans.String("error.type", "*pgconn.PgError")))
	// Neither HTTP, RPC nor SQL: not a request.
	r.Observe(span(p, spans.KindInternal, 1, false))

	rds := readers()
	if len(rds) != 1 {
		t.Fatalf("%d providers, want 1 for one process", len(rds))
	}
	rm := collect(t, rds[0])
	if v, _ := rm.Resource.Set().Value("process.pid"); v.AsInt64() != 42 {
		t.Errorf("resource process.pid = %v, want 42", v.String())
	}
	if v, _ := rm.Resource.Set().Value("service.name"); v.AsString() != "shop" {
		t.Errorf("resource service.name = %v, want shop", v.String())
	}

	s := points(t, rm, "http.server.request.duration")
	ok := s[enc(attribute.String("http.request.method", "GET"), attribute.String("http.route", "/users/{id}"),
		attribute.String("url.scheme", "http"), attribute.String("network.protocol.version", "1.1"),
		attribute.Int64("http.response.status_code", 200))]
	if ok.Count != 3 || ok.Sum < 0.0599 || ok.Sum > 0.0601 {
		t.Errorf("200 /users/{id}: count %d sum %v, want 3 and 0.06 s (points %v)", ok.Count, ok.Sum, keys(s))
	}
	bad := s[enc(attribute.String("http.request.method", "GET"), attribute.String("http.route", "/status"),
		attribute.String("url.scheme", "http"), attribute.String("network.protocol.version", "1.1"),
		attribute.Int64("http.response.status_code", 503), attribute.String("error.type", "503"))]
	if bad.Count != 1 || len(s) != 2 {
		t.Errorf("503 /status: count %d, want 1; points %v", bad.Count, keys(s))
	}
	want := map[string]string{
		"http.client.request.duration": enc(attribute.String("http.request.method", "POST"), attribute.String("server.address", "api"),
			attribute.Int64("server.port", 9000), attribute.String("error.type", "_OTHER")),
		"rpc.server.duration": enc(attribute.String("rpc.system", "grpc"), attribute.String("rpc.service", "shop.Cart"),
			attribute.String("rpc.method", "Add"), attribute.Int64("rpc.grpc.status_code", 0)),
		"db.client.operation.duration": enc(attribute.String("db.system.name", "postgresql"), attribute.String("db.operation.name", "SELECT"),
			attribute.String("db.collection.name", "users"), attribute.String("server.address", "db"),
			attribute.String("error.type", "*pgconn.PgError")),
	}
	for name, attrs := range want {
		got := points(t, rm, name)
		if len(got) != 1 || got[attrs].Count != 1 {
			t.Errorf("%s: points %v, want one with %s", name, keys(got), attrs)
		}
	}
	if got := points(t, rm, "rpc.client.duration"); len(got) != 0 {
		t.Errorf("rpc.client.duration: %v, want nothing", keys(got))
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestRecorderProviderPerProcess(t *testing.T) {
	r, readers := manualRecorder(t)
	a := &spans.Process{PID: 1, ServiceName: "a"}
	b := &spans.Process{PID: 2, ServiceName: "b"}
	get := func(p *spans.Process) *spans.Span {
		return span(p, spans.KindServer, 1, false, spans.String("http.request.method", "GET"), spans.Int("http.response.status_code", 200))
	}
	r.Observe(get(a))
	r.Observe(get(b))
	r.Observe(get(a))
	rds := readers()
	if len(rds) != 2 {
		t.Fatalf("%d providers, want one per process", len(rds))
	}
	for i, want := range []uint64{2, 1} {
		rm := collect(t, rds[i])
		var n uint64
		for _, dp := range points(t, rm, "http.server.request.duration") {
			n += dp.Count
		}
		if n != want {
			t.Errorf("provider %d: %d requests, want %d", i, n, want)
		}
	}
}

func TestRecorderCardinalityLimit(t *testing.T) {
	r, readers := manualRecorder(t)
	p := &spans.Process{PID: 1}
	for i := range CardinalityLimit + 10 {
		r.Observe(span(p, spans.KindClient, 1, false, spans.String("http.request.method", "GET"),
			spans.String("server.address", "h"), spans.Int("server.port", int64(i+1))))
	}
	got := points(t, collect(t, readers()[0]), "http.client.request.duration")
	if len(got) != CardinalityLimit {
		t.Errorf("%d attribute sets, want the limit %d", len(got), CardinalityLimit)
	}
	if of := got[enc(attribute.Bool("otel.metric.overflow", true))]; of.Count != 11 {
		t.Errorf("overflow set counts %d, want 11", of.Count)
	}
}

func TestRecorderSelf(t *testing.T) {
	r, readers := manualRecorder(t)
	err := r.RegisterSelf(func() SelfStats {
		return SelfStats{Exported: 7, Unsampled: 3, Queued: 2, Targets: 1, Dropped: map[string]uint64{"queue_full": 5},
			Events: map[EventKey]uint64{{"nethttp", "injected"}: 9}}
	})
	if err != nil {
		t.Fatal(err)
	}
	rm := collect(t, readers()[0])
	if v, _ := rm.Resource.Set().Value("service.name"); v.AsString() != "tracewire" {
		t.Errorf("self resource service.name = %q", v.AsString())
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			var dps []metricdata.DataPoint[int64]
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				dps = d.DataPoints
			case metricdata.Gauge[int64]:
				dps = d.DataPoints
			}
			for _, dp := range dps {
				name := m.Name
				for _, k := range []attribute.Key{"reason", "source", "event"} {
					if v, ok := dp.Attributes.Value(k); ok {
						name += "/" + v.AsString()
					}
				}
				got[name] = dp.Value
			}
		}
	}
	for name, v := range map[string]int64{
		"tracewire.spans.exported": 7, "tracewire.spans.unsampled": 3, "tracewire.export.queue.size": 2,
		"tracewire.targets.traced": 1, "tracewire.spans.dropped/queue_full": 5, "tracewire.spans.dropped/evicted": 0,
		"tracewire.events/nethttp/injected": 9,
	} {
		if g, ok := got[name]; !ok || g != v {
			t.Errorf("%s = %d (present %v), want %d", name, g, ok, v)
		}
	}
}

func TestObserveAllocs(t *testing.T) {
	r, _ := manualRecorder(t)
	p := &spans.Process{PID: 1}
	s := span(p, spans.KindServer, 1, false, spans.String("http.request.method", "GET"),
		spans.String("http.route", "/a"), spans.Int("http.response.status_code", 200))
	r.Observe(s)
	if n := testing.AllocsPerRun(100, func() { r.Observe(s) }); n > 0 {
		t.Errorf("Observe allocates %v times per span once warm", n)
	}
}

// TestRecorderIdleTarget: the provider of a process that made no span for
// idleTTL (it exited) is dropped; a later span of it makes a new one.
func TestRecorderIdleTarget(t *testing.T) {
	r, readers := manualRecorder(t)
	now := time.Unix(1e9, 0)
	r.now = func() time.Time { return now }
	a := &spans.Process{PID: 1}
	b := &spans.Process{PID: 2}
	get := func(p *spans.Process) *spans.Span {
		return span(p, spans.KindServer, 1, false, spans.String("http.request.method", "GET"))
	}
	r.Observe(get(a))
	now = now.Add(idleTTL / 2)
	r.Observe(get(b))
	now = now.Add(idleTTL/2 + time.Second)
	r.Observe(get(b))
	r.mu.RLock()
	_, hasA := r.targets[a]
	_, hasB := r.targets[b]
	r.mu.RUnlock()
	if hasA || !hasB {
		t.Errorf("after %v: a kept %v, b kept %v; want only b", idleTTL, hasA, hasB)
	}
	r.Observe(get(a))
	if n := len(readers()); n != 3 {
		t.Errorf("%d providers made, want 3 (a again)", n)
	}
}

// TestRecorderLabelsOutliveSpan: a span's strings live in memory reused for
// later spans; the series it made keep their labels.
func TestRecorderLabelsOutliveSpan(t *testing.T) {
	r, readers := manualRecorder(t)
	p := &spans.Process{PID: 42, ExeName: "shop", ServiceName: "shop", RuntimeName: "go"}
	route := []byte("/silent")
	s := span(p, spans.KindServer, 20, false,
		spans.String("http.request.method", "GET"), spans.String("http.route", unsafe.String(&route[0], len(route))),
		spans.Int("http.response.status_code", 200))
	r.Observe(s)
	copy(route, "oc-1GET") // the span's memory, reused
	got := points(t, collect(t, readers()[0]), "http.server.request.duration")
	want := enc(attribute.String("http.request.method", "GET"), attribute.String("http.route", "/silent"),
		attribute.Int("http.response.status_code", 200))
	if _, ok := got[want]; !ok || len(got) != 1 {
		t.Errorf("series %v, want only %s", got, want)
	}
}
