package e2e

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/tracewire/tracewire/internal/dbtest"
	"github.com/tracewire/tracewire/internal/otlptest"
)

const grpcScope = "github.com/tracewire/tracewire/probes/grpc"

// grpcPair is grpcapp twice: A serves HTTP and calls B over gRPC; B serves
// gRPC (the health service) and queries PostgreSQL.
type grpcPair struct {
	a, b     *app
	grpcPort int
	table    string
	recv     *otlptest.Receiver
	seen     map[string]bool // A's server spans already returned
}

func startGRPCPair(t *testing.T) *grpcPair {
	t.Helper()
	return startGRPCVariants(t, "grpcapp", "grpcapp")
}

// startGRPCVariants starts A and B from the builds named a and b, and the
// agent with env.
func startGRPCVariants(t *testing.T, a, b string, env ...string) *grpcPair {
	t.Helper()
	requireEBPF(t)
	srv := dbtest.RequirePostgres(t)
	p := &grpcPair{grpcPort: freePort(t), table: "users_grpc", recv: otlptest.Start(t), seen: map[string]bool{}}
	grpcAddr := fmt.Sprintf("127.0.0.1:%d", p.grpcPort)
	p.b = startAppArgs(t, b, []string{"-grpc", grpcAddr, "-dsn", srv.DSN, "-table", p.table})
	p.a = startAppArgs(t, a, []string{"-upstream", grpcAddr})
	startAgent(t, p.recv, []string{a, b}, env...)
	waitTraced(t, p.recv, p.a)
	waitTraced(t, p.recv, p.b)
	return p
}

// request sends one request to A and returns the trace of its server span:
// every span of that trace once n have arrived and no more follow.
func (p *grpcPair) request(t *testing.T, path string, status, n int) []otlptest.Got {
	t.Helper()
	if got := get(t, p.a.url(path)); got != status {
		t.Fatalf("GET %s: %d, want %d", path, got, status)
	}
	base, _, _ := strings.Cut(path, "?")
	isPath := spanWithPath(p.a, base)
	root := p.recv.WaitSpans(t, 10*time.Second, func(g otlptest.Got) bool {
		return isPath(g) && !p.seen[string(g.Span.SpanId)]
	}, 1)[0]
	p.seen[string(root.Span.SpanId)] = true
	return traceOfRoot(t, p.recv, root, n)
}

func grpcAttrs(method string, code int64, port int) map[string]any {
	return map[string]any{
		"rpc.system": "grpc", "rpc.service": "grpc.health.v1.Health", "rpc.method": method,
		"rpc.grpc.status_code": code, "server.address": "127.0.0.1", "server.port": int64(port),
	}
}

// checkGRPC checks a gRPC span's kind, name, parent and attributes; a
// server span also has the client's address and port.
// errMsg is the status message of an Error span, "" for a span that is not
// an error.
func checkGRPC(t *testing.T, s *tracepb.Span, kind tracepb.Span_SpanKind, method string, code int64, port int, parent *tracepb.Span, errMsg string) {
	t.Helper()
	if s.Kind != kind || s.Name != "grpc.health.v1.Health/"+method {
		t.Errorf("span %q %v, want grpc.health.v1.Health/%s %v", s.Name, s.Kind, method, kind)
	}
	if !bytes.Equal(s.ParentSpanId, parent.SpanId) || !bytes.Equal(s.TraceId, parent.TraceId) {
		t.Errorf("%s %v: parent %x in trace %x, want %x in %x", s.Name, kind, s.ParentSpanId, s.TraceId, parent.SpanId, parent.TraceId)
	}
	want := grpcAttrs(method, code, port)
	if kind == tracepb.Span_SPAN_KIND_SERVER {
		got := otlptest.Attrs(s.Attributes)
		want["client.address"] = "127.0.0.1"
		if p, _ := got["client.port"].(int64); p <= 0 {
			t.Errorf("client.port %v", got["client.port"])
		}
		want["client.port"] = got["client.port"]
	}
	checkAttrs(t, s.Attributes, want)
	if isErr := s.Status.GetCode() == tracepb.Status_STATUS_CODE_ERROR; isErr != (errMsg != "") || s.Status.GetMessage() != errMsg {
		t.Errorf("%s %v: status %v, want error message %q", s.Name, kind, s.Status, errMsg)
	}
}

// TestGRPCChain: an HTTP handler in A calls B over gRPC, B's handler runs a
// query. One trace of exactly 4 spans across the two processes: B's server
// span is joined to A's client span by connection and stream id, and its
// SQL span moves with it.
func TestGRPCChain(t *testing.T) {
	for _, c := range []struct{ a, b string }{
		{"grpcapp", "grpcapp"},
		{"grpcapp-v166", "grpcapp-v172"},
		{"grpcapp-v172", "grpcapp-v166"},
		// Without symbols and DWARF: offsets from the per-version table.
		{"grpcapp-stripped", "grpcapp-v172-stripped"},
		{"grpcapp-v172-stripped", "grpcapp-stripped"},
	} {
		t.Run(c.a+"->"+c.b, func(t *testing.T) { testGRPCChain(t, startGRPCVariants(t, c.a, c.b)) })
	}
}

func testGRPCChain(t *testing.T, p *grpcPair) {
	for i := range 3 {
		got := p.request(t, fmt.Sprintf("/check?service=db&i=%d", i), 200, 4)
		httpSpan := one(t, pick(got, p.a, tracepb.Span_SPAN_KIND_SERVER), "A's HTTP server span")
		cl := one(t, pick(got, p.a, tracepb.Span_SPAN_KIND_CLIENT), "A's gRPC client span")
		sv := one(t, pick(got, p.b, tracepb.Span_SPAN_KIND_SERVER), "B's gRPC server span")
		db := one(t, pick(got, p.b, tracepb.Span_SPAN_KIND_CLIENT), "B's SQL span")
		checkGRPC(t, cl, tracepb.Span_SPAN_KIND_CLIENT, "Check", 0, p.grpcPort, httpSpan, "")
		checkGRPC(t, sv, tracepb.Span_SPAN_KIND_SERVER, "Check", 0, p.grpcPort, cl, "")
		if db.Name != "SELECT "+p.table || !bytes.Equal(db.ParentSpanId, sv.SpanId) || !bytes.Equal(db.TraceId, httpSpan.TraceId) {
			t.Errorf("SQL span %q parent %x trace %x, want SELECT %s under %x in %x", db.Name, db.ParentSpanId, db.TraceId, p.table, sv.SpanId, httpSpan.TraceId)
		}
		if sv.StartTimeUnixNano < cl.StartTimeUnixNano || sv.EndTimeUnixNano > cl.EndTimeUnixNano {
			t.Errorf("server span [%d, %d] not within client span [%d, %d]", sv.StartTimeUnixNano, sv.EndTimeUnixNano, cl.StartTimeUnixNano, cl.EndTimeUnixNano)
		}
	}
}

// TestGRPCStatus: a non-OK status makes the client span an error; the
// server span is an error only for the codes semantic conventions name.
func TestGRPCStatus(t *testing.T) {
	p := startGRPCPair(t)
	for _, c := range []struct {
		service, msg string
		code         int64
		serverErr    bool
	}{{"missing", "no such service", 5, false}, {"internal", "boom", 13, true}} {
		got := p.request(t, "/check?service="+c.service, 502, 3)
		httpSpan := one(t, pick(got, p.a, tracepb.Span_SPAN_KIND_SERVER), "A's HTTP server span")
		cl := one(t, pick(got, p.a, tracepb.Span_SPAN_KIND_CLIENT), "A's gRPC client span")
		sv := one(t, pick(got, p.b, tracepb.Span_SPAN_KIND_SERVER), "B's gRPC server span")
		serverMsg := ""
		if c.serverErr {
			serverMsg = c.msg
		}
		checkGRPC(t, cl, tracepb.Span_SPAN_KIND_CLIENT, "Check", c.code, p.grpcPort, httpSpan, c.msg)
		checkGRPC(t, sv, tracepb.Span_SPAN_KIND_SERVER, "Check", c.code, p.grpcPort, cl, serverMsg)
	}
}

// TestGRPCStreaming: a server-streaming call of 3 messages is one client
// and one server span.
func TestGRPCStreaming(t *testing.T) {
	checkWatch(t, startGRPCPair(t))
}

// checkWatch makes A's handler make a server-streaming call to B and checks
// its 3 spans.
func checkWatch(t *testing.T, p *grpcPair) {
	t.Helper()
	got := p.request(t, "/watch", 200, 3)
	httpSpan := one(t, pick(got, p.a, tracepb.Span_SPAN_KIND_SERVER), "A's HTTP server span")
	cl := one(t, pick(got, p.a, tracepb.Span_SPAN_KIND_CLIENT), "A's gRPC client span")
	sv := one(t, pick(got, p.b, tracepb.Span_SPAN_KIND_SERVER), "B's gRPC server span")
	checkGRPC(t, cl, tracepb.Span_SPAN_KIND_CLIENT, "Watch", 0, p.grpcPort, httpSpan, "")
	checkGRPC(t, sv, tracepb.Span_SPAN_KIND_SERVER, "Watch", 0, p.grpcPort, cl, "")
}

// TestGRPCIncomingTraceparent: a traceparent in the call's metadata (an
// application with an SDK) is the server span's parent.
func TestGRPCIncomingTraceparent(t *testing.T) {
	p := startGRPCPair(t)
	const traceID, parentID = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	tp := "00-" + traceID + "-" + parentID + "-01"
	if got := get(t, p.a.url("/check-md?service=x&tp="+tp)); got != 200 {
		t.Fatalf("status %d", got)
	}
	tid, _ := hex.DecodeString(traceID)
	pid, _ := hex.DecodeString(parentID)
	match := func(g otlptest.Got) bool { return g.Scope == grpcScope && bytes.Equal(g.Span.TraceId, tid) }
	sv := p.recv.WaitSpans(t, 10*time.Second, match, 1)[0].Span
	if sv.Kind != tracepb.Span_SPAN_KIND_SERVER || !bytes.Equal(sv.ParentSpanId, pid) {
		t.Errorf("span %q %v parent %x, want the server span with parent %s", sv.Name, sv.Kind, sv.ParentSpanId, parentID)
	}
	if waitQuiet(p.recv, func(g otlptest.Got) bool { return match(g) && count(p.recv, match) > 1 }, 2*time.Second) {
		t.Errorf("more than one span in trace %s", traceID)
	}
}
