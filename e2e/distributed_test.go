package e2e

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/textproto"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/tracewire/tracewire/internal/otlptest"
)

// chain is service A (Go 1.22) calling service B (Go 1.26), both traced.
type chain struct {
	recv *otlptest.Receiver
	a, b *app
}

func startChain(t *testing.T) *chain {
	t.Helper()
	requireEBPF(t)
	c := &chain{recv: otlptest.Start(t)}
	c.a = startApp(t, "hello-go122")
	c.b = startApp(t, "hello-go126")
	startAgent(t, c.recv, []string{"hello-go122", "hello-go126"})
	waitTraced(t, c.recv, c.a)
	waitTraced(t, c.recv, c.b)
	return c
}

// callURL is A's /call (or another handler) with a downstream URL.
func (c *chain) callURL(handler, downstream string) string {
	return c.a.url(handler + "?url=" + url.QueryEscape(downstream))
}

// traceOf waits for the span of a's request to path, then for exactly n
// spans in its trace, and returns them.
func traceOf(t *testing.T, recv *otlptest.Receiver, a *app, path string, n int) []otlptest.Got {
	t.Helper()
	return traceOfRoot(t, recv, recv.WaitSpans(t, 10*time.Second, spanWithPath(a, path), 1)[0], n)
}

// traceOfRoot waits for exactly n spans in root's trace and returns them.
func traceOfRoot(t *testing.T, recv *otlptest.Receiver, root otlptest.Got, n int) []otlptest.Got {
	t.Helper()
	inTrace := func(g otlptest.Got) bool { return bytes.Equal(g.Span.TraceId, root.Span.TraceId) }
	got := recv.WaitSpans(t, 10*time.Second, inTrace, n)
	time.Sleep(500 * time.Millisecond) // extra spans would have arrived by now
	if c := count(recv, inTrace); c != n {
		for _, g := range recv.Spans() {
			if inTrace(g) {
				t.Logf("span %s kind %v parent %x attrs %v", g.Span.Name, g.Span.Kind, g.Span.ParentSpanId, otlptest.Attrs(g.Span.Attributes))
			}
		}
		t.Fatalf("trace %x has %d spans, want %d", root.Span.TraceId, c, n)
	}
	return got
}

// pick returns the spans of pid and kind.
func pick(spans []otlptest.Got, a *app, kind tracepb.Span_SpanKind) []*tracepb.Span {
	var out []*tracepb.Span
	for _, g := range spans {
		if g.Resource["process.pid"] == int64(a.cmd.Process.Pid) && g.Span.Kind == kind {
			out = append(out, g.Span)
		}
	}
	return out
}

func one(t *testing.T, s []*tracepb.Span, what string) *tracepb.Span {
	t.Helper()
	if len(s) != 1 {
		t.Fatalf("%d %s spans, want 1", len(s), what)
	}
	return s[0]
}

// checkChain checks the ids and parents of A server -> A client -> B server
// (the last link only the header the sk_msg program inserted carries).
func checkChain(t *testing.T, aServer, aClient, bServer *tracepb.Span) {
	t.Helper()
	for _, s := range []*tracepb.Span{aServer, aClient, bServer} {
		checkIDs(t, s)
	}
	if len(aServer.ParentSpanId) != 0 {
		t.Errorf("A server has parent %x", aServer.ParentSpanId)
	}
	if !bytes.Equal(aClient.ParentSpanId, aServer.SpanId) {
		t.Errorf("A client parent %x, want A server %x", aClient.ParentSpanId, aServer.SpanId)
	}
	if !bytes.Equal(bServer.ParentSpanId, aClient.SpanId) {
		t.Errorf("B server parent %x, want A client %x", bServer.ParentSpanId, aClient.SpanId)
	}
}

// TestDistributedChain: A server -> A client -> B server, one trace, exact
// ids, parents and client attributes.
func TestDistributedChain(t *testing.T) {
	c := startChain(t)
	down := c.b.url("/users/chain?token=secret&x=1")
	if got := get(t, c.callURL("/call", down)); got != 200 {
		t.Fatalf("A /call: %d", got)
	}
	spans := traceOf(t, c.recv, c.a, "/call", 3)
	aServer := one(t, pick(spans, c.a, tracepb.Span_SPAN_KIND_SERVER), "A server")
	aClient := one(t, pick(spans, c.a, tracepb.Span_SPAN_KIND_CLIENT), "A client")
	bServer := one(t, pick(spans, c.b, tracepb.Span_SPAN_KIND_SERVER), "B server")
	checkChain(t, aServer, aClient, bServer)
	if aClient.Name != "GET" {
		t.Errorf("client name %q", aClient.Name)
	}
	checkAttrs(t, aClient.Attributes, map[string]any{
		"http.request.method":       "GET",
		"url.full":                  fmt.Sprintf("http://127.0.0.1:%d/users/chain?token=REDACTED&x=REDACTED", c.b.port),
		"server.address":            "127.0.0.1",
		"server.port":               int64(c.b.port),
		"http.response.status_code": int64(200),
		"network.peer.address":      "127.0.0.1",
		"network.peer.port":         int64(c.b.port),
	})
	if aClient.Status.GetCode() != tracepb.Status_STATUS_CODE_UNSET {
		t.Errorf("client status %v", aClient.Status)
	}
	// The call lies inside A's request, and B's handling inside the call.
	if aClient.StartTimeUnixNano < aServer.StartTimeUnixNano || aClient.EndTimeUnixNano > aServer.EndTimeUnixNano {
		t.Errorf("client [%d,%d] outside server [%d,%d]", aClient.StartTimeUnixNano, aClient.EndTimeUnixNano, aServer.StartTimeUnixNano, aServer.EndTimeUnixNano)
	}
	if bServer.StartTimeUnixNano < aClient.StartTimeUnixNano || bServer.EndTimeUnixNano > aClient.EndTimeUnixNano {
		t.Errorf("B server [%d,%d] outside client [%d,%d]", bServer.StartTimeUnixNano, bServer.EndTimeUnixNano, aClient.StartTimeUnixNano, aClient.EndTimeUnixNano)
	}
	for _, s := range []string{"secret"} {
		for _, g := range c.recv.Spans() {
			for k, v := range otlptest.Attrs(g.Span.Attributes) {
				if strings.Contains(fmt.Sprint(v), s) {
					t.Errorf("%s = %v leaks a query value", k, v)
				}
			}
		}
	}
}

// TestFanOut: three calls from goroutines the handler started are three
// children of its span: 1 + 3 + 3 spans in one trace.
func TestFanOut(t *testing.T) {
	c := startChain(t)
	if got := get(t, c.a.url("/fanout?n=3&url="+url.QueryEscape(c.b.url("/users/fan")))); got != 200 {
		t.Fatalf("A /fanout: %d", got)
	}
	spans := traceOf(t, c.recv, c.a, "/fanout", 7)
	aServer := one(t, pick(spans, c.a, tracepb.Span_SPAN_KIND_SERVER), "A server")
	clients := pick(spans, c.a, tracepb.Span_SPAN_KIND_CLIENT)
	servers := pick(spans, c.b, tracepb.Span_SPAN_KIND_SERVER)
	if len(clients) != 3 || len(servers) != 3 {
		t.Fatalf("%d client and %d B server spans, want 3 and 3", len(clients), len(servers))
	}
	clientIDs := map[string]bool{}
	for _, cl := range clients {
		if !bytes.Equal(cl.ParentSpanId, aServer.SpanId) {
			t.Errorf("client parent %x, want %x", cl.ParentSpanId, aServer.SpanId)
		}
		clientIDs[string(cl.SpanId)] = true
	}
	parents := map[string]bool{}
	for _, s := range servers {
		if !clientIDs[string(s.ParentSpanId)] {
			t.Errorf("B server parent %x is not one of the client spans", s.ParentSpanId)
		}
		parents[string(s.ParentSpanId)] = true
	}
	if len(clientIDs) != 3 || len(parents) != 3 {
		t.Errorf("%d distinct client ids, %d distinct B parents", len(clientIDs), len(parents))
	}
}

// TestIncomingTraceparent: a valid header joins its trace (both hops), keeps
// tracestate and its sampled flag; an invalid one starts a new trace.
func TestIncomingTraceparent(t *testing.T) {
	c := startChain(t)
	send := func(path string, header map[string]string) {
		req, _ := http.NewRequest(http.MethodGet, c.callURL(path, c.b.url("/users/in"))+"&n=1", nil)
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	const traceID, parentID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	send("/call", map[string]string{"traceparent": "00-" + traceID + "-" + parentID + "-01", "tracestate": "vendor=abc,other=1"})
	spans := traceOf(t, c.recv, c.a, "/call", 3)
	aServer := one(t, pick(spans, c.a, tracepb.Span_SPAN_KIND_SERVER), "A server")
	if hex.EncodeToString(aServer.TraceId) != traceID || hex.EncodeToString(aServer.ParentSpanId) != parentID {
		t.Errorf("A server trace %x parent %x, want %s %s", aServer.TraceId, aServer.ParentSpanId, traceID, parentID)
	}
	if aServer.TraceState != "vendor=abc,other=1" {
		t.Errorf("tracestate %q", aServer.TraceState)
	}
	for _, g := range spans {
		if hex.EncodeToString(g.Span.TraceId) != traceID || g.Span.Flags&1 != 1 {
			t.Errorf("%s: trace %x flags %x", g.Span.Name, g.Span.TraceId, g.Span.Flags)
		}
	}

	// Not sampled: nothing is exported for that trace, on either hop.
	const unsampled = "5bf92f3577b34da6a3ce929d0e0e4736"
	send("/call", map[string]string{"traceparent": "00-" + unsampled + "-" + parentID + "-00"})
	// Invalid: a new trace of its own.
	send("/fanout", map[string]string{"traceparent": "00-xyz-" + parentID + "-01"})
	spans = traceOf(t, c.recv, c.a, "/fanout", 3)
	aServer = one(t, pick(spans, c.a, tracepb.Span_SPAN_KIND_SERVER), "A server")
	if len(aServer.ParentSpanId) != 0 || hex.EncodeToString(aServer.TraceId) == traceID {
		t.Errorf("invalid traceparent: trace %x parent %x", aServer.TraceId, aServer.ParentSpanId)
	}
	if n := count(c.recv, func(g otlptest.Got) bool { return hex.EncodeToString(g.Span.TraceId) == unsampled }); n != 0 {
		t.Errorf("%d spans exported for an unsampled trace", n)
	}
}

// TestTransportError: a call that gets no response is an error child span.
func TestTransportError(t *testing.T) {
	c := startChain(t)
	closed := freePort(t)
	if got := get(t, c.callURL("/call", fmt.Sprintf("http://127.0.0.1:%d/nothing", closed))); got != 502 {
		t.Fatalf("A /call to a closed port: %d", got)
	}
	spans := traceOf(t, c.recv, c.a, "/call", 2)
	aServer := one(t, pick(spans, c.a, tracepb.Span_SPAN_KIND_SERVER), "A server")
	aClient := one(t, pick(spans, c.a, tracepb.Span_SPAN_KIND_CLIENT), "A client")
	if !bytes.Equal(aClient.ParentSpanId, aServer.SpanId) {
		t.Errorf("client parent %x, want %x", aClient.ParentSpanId, aServer.SpanId)
	}
	if aClient.Status.GetCode() != tracepb.Status_STATUS_CODE_ERROR || aServer.Status.GetCode() != tracepb.Status_STATUS_CODE_ERROR {
		t.Errorf("client status %v, server status %v: want both Error", aClient.Status, aServer.Status)
	}
	checkAttrs(t, aClient.Attributes, map[string]any{
		"http.request.method": "GET",
		"url.full":            fmt.Sprintf("http://127.0.0.1:%d/nothing", closed),
		"server.address":      "127.0.0.1",
		"server.port":         int64(closed),
	})
}

// rawServer is an untraced HTTP/1.1 server that records every request's
// header block as received, with the index of its connection.
type rawServer struct {
	ln   net.Listener
	mu   sync.Mutex
	reqs []rawRequest
}

type rawRequest struct {
	conn   int
	header textproto.MIMEHeader
	raw    []byte // request line and headers
	body   []byte
}

func startRawServer(t *testing.T) *rawServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawServer{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for i := 0; ; i++ {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(i, conn)
		}
	}()
	return s
}

func (s *rawServer) url(path string) string { return "http://" + s.ln.Addr().String() + path }

func (s *rawServer) serve(id int, conn net.Conn) {
	defer conn.Close()
	br := bufio.NewReader(conn)
	for {
		// The head exactly as received: lines up to the empty one.
		var raw []byte
		for {
			line, err := br.ReadBytes('\n')
			if err != nil {
				return
			}
			raw = append(raw, line...)
			if string(line) == "\r\n" {
				break
			}
		}
		_, fields, _ := bytes.Cut(raw, []byte("\r\n"))
		h, err := textproto.NewReader(bufio.NewReader(bytes.NewReader(fields))).ReadMIMEHeader()
		if err != nil {
			return
		}
		body, err := readBody(br, h)
		if err != nil {
			return
		}
		s.mu.Lock()
		s.reqs = append(s.reqs, rawRequest{conn: id, header: h, raw: raw, body: body})
		s.mu.Unlock()
		if _, err := conn.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")); err != nil {
			return
		}
	}
}

// readBody reads a Content-Length or chunked body.
func readBody(br *bufio.Reader, h textproto.MIMEHeader) ([]byte, error) {
	if h.Get("Transfer-Encoding") == "chunked" {
		return io.ReadAll(httputil.NewChunkedReader(br))
	}
	n, _ := strconv.Atoi(h.Get("Content-Length"))
	body := make([]byte, n)
	_, err := io.ReadFull(br, body)
	return body, err
}

func (s *rawServer) requests() []rawRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]rawRequest(nil), s.reqs...)
}

// traceparentOf is the header a client span must have sent.
func traceparentOf(s *tracepb.Span) string {
	return fmt.Sprintf("00-%x-%x-01", s.TraceId, s.SpanId)
}

// TestTraceparentToUntracedServer: any downstream, traced or not, receives
// exactly one traceparent naming the client span.
func TestTraceparentToUntracedServer(t *testing.T) {
	c := startChain(t)
	raw := startRawServer(t)
	if got := get(t, c.callURL("/call", raw.url("/plain"))); got != 200 {
		t.Fatalf("A /call: %d", got)
	}
	spans := traceOf(t, c.recv, c.a, "/call", 2)
	aClient := one(t, pick(spans, c.a, tracepb.Span_SPAN_KIND_CLIENT), "A client")
	reqs := raw.requests()
	if len(reqs) != 1 {
		t.Fatalf("raw server got %d requests", len(reqs))
	}
	if tp := reqs[0].header.Values("Traceparent"); len(tp) != 1 || tp[0] != traceparentOf(aClient) {
		t.Errorf("traceparent %q, want exactly [%s]", tp, traceparentOf(aClient))
	}
}

// TestApplicationTraceparentKept: a request that already carries a
// traceparent (the application has its own SDK) is left untouched.
func TestApplicationTraceparentKept(t *testing.T) {
	c := startChain(t)
	raw := startRawServer(t)
	const own = "00-11111111111111111111111111111111-2222222222222222-01"
	if got := get(t, c.callURL("/call", raw.url("/sdk"))+"&tp="+own); got != 200 {
		t.Fatalf("A /call: %d", got)
	}
	traceOf(t, c.recv, c.a, "/call", 2)
	reqs := raw.requests()
	if len(reqs) != 1 {
		t.Fatalf("raw server got %d requests", len(reqs))
	}
	if tp := reqs[0].header.Values("Traceparent"); len(tp) != 1 || tp[0] != own {
		t.Errorf("traceparent %q, want exactly the application's [%s]", tp, own)
	}
}

// TestHTTP2NotTraced: HTTP/2 is not traced yet. Calls over TLS h2 (what a
// Go client speaks to any HTTPS server offering it) and over h2c, and
// requests served over h2c, give no span: never a failed one, and nothing
// the handler calls gets a parent that is never exported.
func TestHTTP2NotTraced(t *testing.T) {
	requireEBPF(t)
	recv := otlptest.Start(t)
	// go1.22: RoundTrip is the HTTP/2 client's function; since go1.23 it
	// is roundTrip, RoundTrip being inlined into its callers.
	old, cur, server := startApp(t, "hello-go122"), startApp(t, "hello-go126"), startApp(t, "hello-go125")
	startAgent(t, recv, []string{"hello-go122", "hello-go126", "hello-go125"})
	for _, a := range []*app{old, cur, server} {
		waitTraced(t, recv, a)
	}
	tlsH2 := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 {
			w.WriteHeader(http.StatusHTTPVersionNotSupported)
		}
	}))
	tlsH2.EnableHTTP2 = true
	tlsH2.StartTLS()
	defer tlsH2.Close()

	type call struct {
		caller *app
		path   string // the caller's handler
		url    string
	}
	var calls []call
	for i := range 4 {
		for _, a := range []*app{old, cur} {
			calls = append(calls, call{a, "/call", tlsH2.URL + "/h2"})
		}
		calls = append(calls, call{cur, "/call-h2c", server.url(fmt.Sprintf("/users/h2c-%d", i))})
	}
	for i, c := range calls {
		u := c.caller.url(c.path + "?url=" + url.QueryEscape(c.url))
		if c.path == "/call" {
			u += "&insecure=1"
		}
		if got := get(t, u); got != 200 {
			t.Fatalf("call %d (%s from %s): status %d", i, c.url, c.caller.name, got)
		}
	}
	for _, c := range calls {
		recv.WaitSpans(t, 10*time.Second, spanWithPath(c.caller, c.path), 1)
	}
	time.Sleep(time.Second) // a failed client span would have arrived by now
	for _, g := range recv.Spans() {
		if g.Span.Kind != tracepb.Span_SPAN_KIND_SERVER {
			t.Errorf("span %s kind %v status %v: HTTP/2 calls must give no span", g.Span.Name, g.Span.Kind, g.Span.Status)
		}
		if g.Span.Status.GetCode() != tracepb.Status_STATUS_CODE_UNSET {
			t.Errorf("span %s %v has status %v", g.Span.Name, otlptest.Attrs(g.Span.Attributes)["url.path"], g.Span.Status)
		}
		if p, _ := otlptest.Attrs(g.Span.Attributes)["url.path"].(string); strings.HasPrefix(p, "/users/h2c-") {
			t.Errorf("a request served over h2c has a span: %s", p)
		}
	}
	for _, a := range []*app{old, cur} {
		if n := count(recv, spanWithPath(a, "/call")); n != 4 {
			t.Errorf("%s: %d /call spans, want 4", a.name, n)
		}
	}
	if n := count(recv, spanWithPath(cur, "/call-h2c")); n != 4 {
		t.Errorf("%d /call-h2c spans, want 4", n)
	}
}

// TestPreexistingConnection: a keep-alive connection opened before the agent
// started carries traceparent once the agent runs.
func TestPreexistingConnection(t *testing.T) {
	requireEBPF(t)
	recv := otlptest.Start(t)
	raw := startRawServer(t)
	a := startApp(t, "hello-go125")
	call := a.url("/call?url=" + url.QueryEscape(raw.url("/before")))
	if got := get(t, call); got != 200 {
		t.Fatalf("A /call before the agent: %d", got)
	}
	startAgent(t, recv, []string{"hello-go125"})
	waitTraced(t, recv, a)
	if got := get(t, a.url("/call?url="+url.QueryEscape(raw.url("/after")))); got != 200 {
		t.Fatalf("A /call: %d", got)
	}
	spans := traceOf(t, recv, a, "/call", 2)
	aClient := one(t, pick(spans, a, tracepb.Span_SPAN_KIND_CLIENT), "A client")
	reqs := raw.requests()
	if len(reqs) != 2 || reqs[0].conn != reqs[1].conn {
		t.Fatalf("want 2 requests on one connection, got %+v", reqs)
	}
	if tp := reqs[0].header.Values("Traceparent"); len(tp) != 0 {
		t.Errorf("request before the agent has traceparent %q", tp)
	}
	if tp := reqs[1].header.Values("Traceparent"); len(tp) != 1 || tp[0] != traceparentOf(aClient) {
		t.Errorf("traceparent %q, want exactly [%s]", tp, traceparentOf(aClient))
	}
}

// TestBodiesByteExact: a 100 KB body relayed A -> B -> back is unchanged,
// with Content-Length and chunked, and the trace is still A -> A client -> B.
func TestBodiesByteExact(t *testing.T) {
	c := startChain(t)
	body := make([]byte, 100*1024)
	rand.Read(body)
	for _, chunked := range []string{"0", "1"} {
		u := c.a.url("/relay?chunked=" + chunked + "&url=" + url.QueryEscape(c.b.url("/echo")))
		resp, err := client.Post(u, "application/octet-stream", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || !bytes.Equal(got, body) {
			t.Fatalf("chunked=%s: status %d, %d bytes back (equal %v), err %v", chunked, resp.StatusCode, len(got), bytes.Equal(got, body), err)
		}
	}
	for _, root := range c.recv.WaitSpans(t, 10*time.Second, spanWithPath(c.a, "/relay"), 2) {
		inTrace := func(g otlptest.Got) bool { return bytes.Equal(g.Span.TraceId, root.Span.TraceId) }
		spans := c.recv.WaitSpans(t, 10*time.Second, inTrace, 3)
		aClient := one(t, pick(spans, c.a, tracepb.Span_SPAN_KIND_CLIENT), "A client")
		bServer := one(t, pick(spans, c.b, tracepb.Span_SPAN_KIND_SERVER), "B server")
		if aClient.Name != "POST" || !bytes.Equal(aClient.ParentSpanId, root.Span.SpanId) || !bytes.Equal(bServer.ParentSpanId, aClient.SpanId) {
			t.Errorf("client %q parent %x (want %x), B parent %x (want %x)", aClient.Name, aClient.ParentSpanId, root.Span.SpanId, bServer.ParentSpanId, aClient.SpanId)
		}
	}
	time.Sleep(500 * time.Millisecond)
	if n := count(c.recv, spanWithPath(c.b, "/echo")); n != 2 {
		t.Errorf("%d B /echo spans, want 2", n)
	}
}

// TestNonTargetUntouched: a process that is not a target sends through the
// same cgroup while the agent runs: no header, bytes unchanged.
func TestNonTargetUntouched(t *testing.T) {
	requireEBPF(t)
	recv := otlptest.Start(t)
	raw := startRawServer(t)
	dir := buildAll(t)
	exe, err := os.ReadFile(filepath.Join(dir, "hello-go126"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bystander"), exe, 0o755); err != nil {
		t.Fatal(err)
	}
	by := startApp(t, "bystander")
	a := startApp(t, "hello-go126")
	startAgent(t, recv, []string{"hello-go126"})
	waitTraced(t, recv, a)
	body := make([]byte, 100*1024)
	rand.Read(body)
	resp, err := client.Post(by.url("/relay?url="+url.QueryEscape(raw.url("/by"))), "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	reqs := raw.requests()
	if len(reqs) != 1 {
		t.Fatalf("raw server got %d requests", len(reqs))
	}
	if bytes.Contains(bytes.ToLower(reqs[0].raw), []byte("traceparent")) || !bytes.Equal(reqs[0].body, body) {
		t.Errorf("non-target request modified: head %q, body equal %v", reqs[0].raw, bytes.Equal(reqs[0].body, body))
	}
	if n := count(recv, func(g otlptest.Got) bool { return g.Resource["process.pid"] == int64(by.cmd.Process.Pid) }); n != 0 {
		t.Errorf("%d spans from a non-target process", n)
	}
}

// TestConsoleWaterfall: --exporter console prints the cross-process trace as
// one waterfall: the A server, its client call indented under it, and B's
// server span under that.
func TestConsoleWaterfall(t *testing.T) {
	requireEBPF(t)
	recv := otlptest.Start(t) // unused by the console exporter
	a := startApp(t, "hello-go122")
	b := startApp(t, "hello-go126")
	ag := startAgentArgs(t, recv, []string{"hello-go122", "hello-go126"}, []string{"--exporter", "console"}, "OTEL_BSP_SCHEDULE_DELAY=60000")
	waitAttached(t, ag, 2) // no exported span can prove it with this exporter
	if got := get(t, a.url("/call?url="+url.QueryEscape(b.url("/users/console")))); got != 200 {
		t.Fatalf("A /call: %d", got)
	}
	time.Sleep(300 * time.Millisecond)
	if code := ag.terminate(t); code != 0 {
		t.Fatalf("agent exit %d", code)
	}
	lines := strings.Split(ag.stdout.String(), "\n")
	for i, l := range lines {
		if !strings.HasPrefix(l, "trace ") || !strings.Contains(l, "spans=3") || i+3 >= len(lines) {
			continue
		}
		want := []string{"  hello-go122 ", "    hello-go122 ", "      hello-go126 "}
		kinds := []string{"GET /call", "GET ", "GET /users/{id}"}
		for j, w := range want {
			if l := lines[i+1+j]; !strings.HasPrefix(l, w) || !strings.Contains(l, kinds[j]) {
				t.Errorf("waterfall line %d = %q, want prefix %q and %q", j, l, w, kinds[j])
			}
		}
		return
	}
	t.Fatalf("no 3-span trace in the console output:\n%s", ag.stdout.String())
}

// TestConcurrentPropagation: 16 concurrent chains through a client that
// keeps only 2 idle connections (so connections are opened and closed all
// the time, and local ports reused): every downstream span is the child of
// its own client span.
func TestConcurrentPropagation(t *testing.T) {
	c := startChain(t)
	const n, workers = 96, 16
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				get(t, c.callURL("/call", c.b.url(fmt.Sprintf("/users/cc-%d", i))))
			}
		})
	}
	wg.Wait()
	isB := hasPrefix("/users/cc-")
	bSpans := c.recv.WaitSpans(t, 15*time.Second, isB, n)
	clients := map[string]*tracepb.Span{}
	c.recv.WaitSpans(t, 15*time.Second, func(g otlptest.Got) bool { return g.Span.Kind == tracepb.Span_SPAN_KIND_CLIENT }, n)
	for _, g := range c.recv.Spans() {
		if g.Span.Kind == tracepb.Span_SPAN_KIND_CLIENT {
			clients[string(g.Span.SpanId)] = g.Span
		}
	}
	for _, b := range bSpans {
		path := otlptest.Attrs(b.Span.Attributes)["url.path"].(string)
		cl, ok := clients[string(b.Span.ParentSpanId)]
		if !ok {
			t.Errorf("%s: parent %x is no client span", path, b.Span.ParentSpanId)
			continue
		}
		if want := c.b.url(path); otlptest.Attrs(cl.Attributes)["url.full"] != want || !bytes.Equal(cl.TraceId, b.Span.TraceId) {
			t.Errorf("%s: parent client span is for %v (trace %x vs %x)", path, otlptest.Attrs(cl.Attributes)["url.full"], cl.TraceId, b.Span.TraceId)
		}
	}
	if got := count(c.recv, isB); got != n {
		t.Errorf("%d downstream spans, want %d", got, n)
	}
}
