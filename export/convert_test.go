package export

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	collectortracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/tracewire/tracewire/internal/otlptest"
	"github.com/tracewire/tracewire/spans"
)

func TestConvertSpanFields(t *testing.T) {
	s := &spans.Span{
		Process:    procA,
		Scope:      "github.com/tracewire/tracewire/probes/nethttp",
		TraceID:    [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
		SpanID:     [8]byte{21, 22, 23, 24, 25, 26, 27, 28},
		ParentID:   [8]byte{31, 32, 33, 34, 35, 36, 37, 38},
		TraceFlags: 1,
		TraceState: "vendor=x",
		Name:       "GET /cart",
		Kind:       spans.KindServer,
		StartNs:    1_700_000_000_123_456_789,
		EndNs:      1_700_000_000_223_456_789,
		Error:      true,
		StatusMsg:  "boom",
		Attrs:      []spans.Attr{spans.String("http.route", "/cart"), spans.Int("http.response.status_code", 500)},
	}
	rs := decodeRequest(t, newOTLPSink(otlpConfig{}, ResourceConfig{AgentVersion: "0.9.0"}), []*spans.Span{s})
	if len(rs) != 1 || len(rs[0].ScopeSpans) != 1 || len(rs[0].ScopeSpans[0].Spans) != 1 {
		t.Fatalf("want one resource, scope and span: %v", rs)
	}
	scope := rs[0].ScopeSpans[0].Scope
	if scope.GetName() != s.Scope || scope.GetVersion() != "0.9.0" {
		t.Errorf("scope = %q %q", scope.GetName(), scope.GetVersion())
	}
	p := rs[0].ScopeSpans[0].Spans[0]
	check := func(field string, ok bool) {
		t.Helper()
		if !ok {
			t.Errorf("%s wrong: %v", field, p)
		}
	}
	check("TraceId", bytes.Equal(p.TraceId, s.TraceID[:]))
	check("SpanId", bytes.Equal(p.SpanId, s.SpanID[:]))
	check("ParentSpanId", bytes.Equal(p.ParentSpanId, s.ParentID[:]))
	check("Flags", p.Flags == 1)
	check("TraceState", p.TraceState == "vendor=x")
	check("Name", p.Name == "GET /cart")
	check("Kind", p.Kind == tracepb.Span_SPAN_KIND_SERVER)
	check("StartTimeUnixNano", p.StartTimeUnixNano == 1_700_000_000_123_456_789)
	check("EndTimeUnixNano", p.EndTimeUnixNano == 1_700_000_000_223_456_789)
	check("Status", p.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR && p.GetStatus().GetMessage() == "boom")
	attrs := otlptest.Attrs(p.Attributes)
	check("Attributes", len(attrs) == 2 && attrs["http.route"] == "/cart" && attrs["http.response.status_code"] == int64(500))

	// A root span has no parent id and an unset status.
	s.ParentID, s.Error, s.Attrs = [8]byte{}, false, nil
	p = decodeRequest(t, newOTLPSink(otlpConfig{}, ResourceConfig{}), []*spans.Span{s})[0].ScopeSpans[0].Spans[0]
	check("root ParentSpanId", p.ParentSpanId == nil)
	check("root Status", p.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_UNSET)
	check("root Attributes", p.Attributes == nil)
}

func TestSpanKind(t *testing.T) {
	for k, want := range map[spans.Kind]tracepb.Span_SpanKind{
		spans.KindInternal: tracepb.Span_SPAN_KIND_INTERNAL,
		spans.KindServer:   tracepb.Span_SPAN_KIND_SERVER,
		spans.KindClient:   tracepb.Span_SPAN_KIND_CLIENT,
		0:                  tracepb.Span_SPAN_KIND_UNSPECIFIED,
	} {
		if got := spanKind(k); got != uint64(want) {
			t.Errorf("spanKind(%d) = %v, want %v", k, got, want)
		}
	}
}

func TestRequestGroupsByProcessAndScope(t *testing.T) {
	mk := func(p *spans.Process, scope string, i int) *spans.Span {
		s := testSpan(p, i)
		s.Scope = scope
		s.Attrs = []spans.Attr{spans.Int("i", int64(i)), spans.String("s", "v")}
		return s
	}
	batch := []*spans.Span{mk(procA, "x", 0), mk(procB, "x", 1), mk(procA, "y", 2), mk(procA, "x", 3), mk(procB, "x", 4)}
	sink := newOTLPSink(otlpConfig{}, ResourceConfig{})
	rs := decodeRequest(t, sink, batch)

	type scopeIDs struct {
		scope string
		ids   []int
	}
	var got [][]scopeIDs
	for _, r := range rs {
		var per []scopeIDs
		for _, ss := range r.ScopeSpans {
			e := scopeIDs{scope: ss.Scope.GetName()}
			for _, sp := range ss.Spans {
				if a := otlptest.Attrs(sp.Attributes); a["s"] != "v" || a["i"] != int64(sp.SpanId[7]) {
					t.Errorf("span %x has attributes %v", sp.SpanId, a)
				}
				e.ids = append(e.ids, int(sp.SpanId[7]))
			}
			per = append(per, e)
		}
		got = append(got, per)
	}
	want := [][]scopeIDs{
		{{"x", []int{0, 3}}, {"y", []int{2}}},
		{{"x", []int{1, 4}}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("grouping = %v, want %v", got, want)
	}
	if otlptest.Attrs(rs[0].Resource.Attributes)["service.name"] != "frontend" || otlptest.Attrs(rs[1].Resource.Attributes)["service.name"] != "cart" {
		t.Fatal("resources do not follow their processes")
	}
	// The next batch reuses the cached resource.
	cached := &sink.resources.get(procA, fixedNow)[0]
	decodeRequest(t, sink, batch[:1])
	if &sink.resources.get(procA, fixedNow)[0] != cached {
		t.Fatal("resource not cached")
	}
}

func TestRequestRepairsInvalidUTF8(t *testing.T) {
	s := testSpan(procA, 1)
	s.Name = "GET /caf\xc3" // cut mid-rune, as a probe may read it
	s.Attrs = []spans.Attr{spans.String("url.path", "/\xff")}
	rs := decodeRequest(t, newOTLPSink(otlpConfig{}, ResourceConfig{}), []*spans.Span{s})
	if name := rs[0].ScopeSpans[0].Spans[0].Name; !strings.HasPrefix(name, "GET /caf") || !strings.Contains(name, "\uFFFD") {
		t.Fatalf("name = %q", name)
	}
}

func BenchmarkRequest512(b *testing.B) {
	batch := make([]*spans.Span, 512)
	for i := range batch {
		s := testSpan(procA, i)
		s.ParentID = spanID(i + 1000)
		s.Attrs = []spans.Attr{
			spans.String("http.request.method", "GET"), spans.String("url.path", "/api/items"),
			spans.String("http.route", "/api/items"), spans.Int("http.response.status_code", 200),
			spans.String("server.address", "shop"), spans.Int("server.port", 8080),
		}
		batch[i] = s
	}
	sink := newOTLPSink(otlpConfig{}, ResourceConfig{HostName: "node-1"})
	buf := sink.encodeRequest(nil, batch, fixedNow)
	b.ReportAllocs()
	for b.Loop() {
		buf = sink.encodeRequest(buf[:0], batch, fixedNow)
	}
}

// decodeRequest encodes batch with sink and decodes it with the generated
// protobuf types, which also check every string is valid UTF-8.
func decodeRequest(t *testing.T, sink *otlpSink, batch []*spans.Span) []*tracepb.ResourceSpans {
	t.Helper()
	var req collectortracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(sink.encodeRequest(nil, batch, fixedNow), &req); err != nil {
		t.Fatalf("decode the encoded request: %v", err)
	}
	return req.ResourceSpans
}
