package metrics

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	promexp "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/tracewire/tracewire/spans"
)

// graphRecorder is a Recorder with the service graph on the first reader,
// its clock now.
func graphRecorder(t *testing.T, now *time.Time) (*Recorder, func() metricdata.ResourceMetrics) {
	t.Helper()
	r, readers := manualRecorder(t)
	r.now = func() time.Time { return *now }
	if err := r.startGraph(); err != nil {
		t.Fatal(err)
	}
	return r, func() metricdata.ResourceMetrics { return collect(t, readers()[0]) }
}

// edges returns metric name's counts (a counter's value, a histogram's
// count) by "client>server/connection_type", and the histograms' sums.
func edges(rm metricdata.ResourceMetrics, name string) (counts map[string]int64, sums map[string]float64) {
	counts, sums = map[string]int64{}, map[string]float64{}
	key := func(s attribute.Set) string {
		c, _ := s.Value("client")
		sv, _ := s.Value("server")
		ct, _ := s.Value("connection_type")
		return c.AsString() + ">" + sv.AsString() + "/" + ct.AsString()
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, dp := range d.DataPoints {
					counts[key(dp.Attributes)] += dp.Value
				}
			case metricdata.Histogram[float64]:
				for _, dp := range d.DataPoints {
					counts[key(dp.Attributes)] += int64(dp.Count)
					sums[key(dp.Attributes)] += dp.Sum
				}
			}
		}
	}
	return counts, sums
}

func httpSpan(p *spans.Process, kind spans.Kind, ms int64, trace byte, id, parent byte, isErr bool) *spans.Span {
	method := spans.String("http.request.method", "GET")
	s := span(p, kind, ms, isErr, method, spans.String("server.address", "10.0.0.9"))
	s.TraceID[0], s.SpanID[0], s.ParentID[0] = trace, id, parent
	return s
}

// TestGraphPairs: a client span and the server span it caused are one edge,
// whichever comes first; a failure on either side makes it failed; each
// histogram has its side's duration.
func TestGraphPairs(t *testing.T) {
	now := time.Unix(1e9, 0)
	r, collectAll := graphRecorder(t, &now)
	front := &spans.Process{PID: 1, ServiceName: "front"}
	back := &spans.Process{PID: 2, ServiceName: "back"}

	r.Observe(httpSpan(front, spans.KindClient, 30, 1, 10, 0, false)) // client first
	r.Observe(httpSpan(back, spans.KindServer, 20, 1, 11, 10, false))
	r.Observe(httpSpan(back, spans.KindServer, 200, 2, 21, 20, true)) // server first, failed
	r.Observe(httpSpan(front, spans.KindClient, 300, 2, 20, 0, false))
	r.Observe(httpSpan(front, spans.KindClient, 30, 3, 30, 0, true)) // client failed
	r.Observe(httpSpan(back, spans.KindServer, 20, 3, 31, 30, false))

	rm := collectAll()
	const e = "front>back/"
	if got, _ := edges(rm, "traces_service_graph_request_total"); got[e] != 3 || len(got) != 1 {
		t.Errorf("request_total %v, want %s 3 only", got, e)
	}
	if got, _ := edges(rm, "traces_service_graph_request_failed_total"); got[e] != 2 {
		t.Errorf("request_failed_total %v, want %s 2", got, e)
	}
	if n, sum := edges(rm, "traces_service_graph_request_server_seconds"); n[e] != 3 || !near(sum[e], 0.24) {
		t.Errorf("server_seconds count %d sum %v, want 3 and 0.24", n[e], sum[e])
	}
	if n, sum := edges(rm, "traces_service_graph_request_client_seconds"); n[e] != 3 || !near(sum[e], 0.36) {
		t.Errorf("client_seconds count %d sum %v, want 3 and 0.36", n[e], sum[e])
	}
	if v, _ := rm.Resource.Set().Value("service.name"); v.AsString() != "tracewire" {
		t.Errorf("service graph resource service.name = %q, want the agent's", v.AsString())
	}
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

// TestGraphVirtualNodes: after the wait, a client span without its server is
// an edge to its server.address; a server span whose client is not traced
// here is no edge, unless it is a root: Tempo's "user" client. A database
// call is an edge at once. gRPC spans are edges as HTTP ones are.
func TestGraphVirtualNodes(t *testing.T) {
	now := time.Unix(1e9, 0)
	r, collectAll := graphRecorder(t, &now)
	front := &spans.Process{PID: 1, ServiceName: "front"}
	back := &spans.Process{PID: 2, ServiceName: "back"}

	r.Observe(httpSpan(front, spans.KindClient, 40, 1, 10, 0, false))
	r.Observe(httpSpan(back, spans.KindServer, 20, 2, 21, 99, false)) // its client is elsewhere
	r.Observe(httpSpan(back, spans.KindServer, 20, 3, 31, 0, true))   // a root
	r.Observe(span(front, spans.KindClient, 5, false, spans.String("db.system.name", "postgresql"),
		spans.String("server.address", "db1")))
	r.Observe(span(front, spans.KindClient, 5, false, spans.String("rpc.system", "grpc"),
		spans.String("server.address", "10.0.0.8")))
	r.Observe(span(back, spans.KindServer, 5, false, spans.String("rpc.system", "grpc")))

	g := r.graph.Load()
	g.expire(now.Add(pairWait - time.Millisecond))
	if n := len(g.pending); n != 3 {
		t.Fatalf("%d spans pending before the wait is over, want 3", n)
	}
	g.expire(now.Add(pairWait))
	if n := len(g.pending); n != 0 {
		t.Errorf("%d spans pending after the wait, want 0", n)
	}
	rm := collectAll()
	want := map[string]int64{
		"front>10.0.0.9/virtual_node": 1, "user>back/virtual_node": 2, "front>db1/database": 1, "front>10.0.0.8/virtual_node": 1,
	}
	got, _ := edges(rm, "traces_service_graph_request_total")
	if len(got) != len(want) {
		t.Errorf("request_total %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("request_total %s = %d, want %d (all: %v)", k, got[k], v, got)
		}
	}
	if got, _ := edges(rm, "traces_service_graph_request_failed_total"); got["user>back/virtual_node"] != 1 || len(got) != 1 {
		t.Errorf("request_failed_total %v, want user>back 1 only", got)
	}
	// The side not traced counts 0 s, as in Tempo.
	if _, sum := edges(rm, "traces_service_graph_request_server_seconds"); sum["front>10.0.0.9/virtual_node"] != 0 || !near(sum["user>back/virtual_node"], 0.025) {
		t.Errorf("server_seconds sums %v", sum)
	}
	if _, sum := edges(rm, "traces_service_graph_request_client_seconds"); !near(sum["front>10.0.0.9/virtual_node"], 0.04) || sum["user>back/virtual_node"] != 0 {
		t.Errorf("client_seconds sums %v", sum)
	}
}

// TestGraphBound: at most maxPending spans wait for their pair; the others
// are not counted, and the first ones still pair.
func TestGraphBound(t *testing.T) {
	now := time.Unix(1e9, 0)
	r, collectAll := graphRecorder(t, &now)
	front := &spans.Process{PID: 1, ServiceName: "front"}
	back := &spans.Process{PID: 2, ServiceName: "back"}
	s := httpSpan(front, spans.KindClient, 1, 1, 7, 0, false)
	for i := range maxPending + 10 {
		s.TraceID[1], s.TraceID[2] = byte(i), byte(i>>8)
		r.Observe(s)
	}
	g := r.graph.Load()
	if n := len(g.pending); n != maxPending {
		t.Fatalf("%d spans pending, want %d", n, maxPending)
	}
	srv := httpSpan(back, spans.KindServer, 1, 1, 5, 0, false)
	srv.ParentID = s.SpanID
	r.Observe(srv) // TraceID[1:3] zero: the first client's call
	if got, _ := edges(collectAll(), "traces_service_graph_request_total"); got["front>back/"] != 1 {
		t.Errorf("request_total %v, want front>back 1", got)
	}
}

// TestGraphPrometheusNames: the Prometheus names are exactly Tempo's.
func TestGraphPrometheusNames(t *testing.T) {
	reg := prometheus.NewRegistry()
	a := newAgg(time.Now())
	exp, err := promexp.New(promexp.WithRegisterer(reg), promexp.WithProducer(a))
	if err != nil {
		t.Fatal(err)
	}
	sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))
	newGraph(a).record(edge{"a", "b", ""}, 1, 1, true)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, mf := range mfs {
		got[mf.GetName()] = true
	}
	for _, name := range []string{"traces_service_graph_request_total", "traces_service_graph_request_failed_total",
		"traces_service_graph_request_server_seconds", "traces_service_graph_request_client_seconds"} {
		if !got[name] {
			t.Errorf("no %s among %v", name, got)
		}
	}
}

// TestGraphAllocs: once its edge was seen, a call allocates nothing.
func TestGraphAllocs(t *testing.T) {
	now := time.Unix(1e9, 0)
	r, _ := graphRecorder(t, &now)
	front := &spans.Process{PID: 1, ServiceName: "front"}
	back := &spans.Process{PID: 2, ServiceName: "back"}
	c := httpSpan(front, spans.KindClient, 1, 1, 10, 0, false)
	s := httpSpan(back, spans.KindServer, 1, 1, 11, 10, false)
	root := httpSpan(front, spans.KindServer, 1, 2, 20, 0, false)
	call := func() {
		r.Observe(root)
		r.Observe(c)
		r.Observe(s)
	}
	call()
	if n := testing.AllocsPerRun(100, call); n > 0 {
		t.Errorf("a call allocates %v times once warm", n)
	}
}
