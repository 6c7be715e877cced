package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
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
	s := &rawServer{}
	s.ln = listenEach(t, s.serve)
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

// TestHTTP2: requests served over HTTP/2 (net/http's bundled http2) give
// server spans with the HTTP/1 attribute set and network.protocol.version
// 2: over TLS with ALPN h2 and over h2c; 16 requests at once on one h2c
// connection, each handler's HTTP/1 call the child of its own request (and
// its traceparent on the wire); a stream the client resets while the
// handler still writes ends failed, with the status the handler wrote.
// A stripped server's (offsets from the tables) too. Calls made over
// HTTP/2 give client spans (Go 1.22's and 1.26's client);
// over h2c they carry traceparent in their HEADERS (sk_msg, HPACK), so the
// server's span is the client span's child, and an HTTP/2 server nobody
// traces decodes exactly one traceparent, the client span's.
func TestHTTP2(t *testing.T) {
	requireEBPF(t)
	recv := otlptest.Start(t)
	raw := startRawServer(t)
	rawH2 := startRawH2(t)
	// go1.22: RoundTrip is the HTTP/2 client's function; since go1.23 it
	// is roundTrip, RoundTrip being inlined into its callers.
	old, cur, h2c, tlsSrv := startApp(t, "hello-go122"), startApp(t, "hello-go126"), startApp(t, "hello-go125"), startApp(t, "tlsserver")
	stripped := startApp(t, "hello-stripped") // offsets from the tables
	startAgent(t, recv, []string{"hello-go122", "hello-go126", "hello-go125", "tlsserver", "hello-stripped"})
	for _, a := range []*app{old, cur, h2c, stripped} {
		waitTraced(t, recv, a)
	}
	// tlsserver is traced once a request of its own gives a span.
	tlsClient := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: 5 * time.Second}
	for i := 0; ; i++ {
		path := fmt.Sprintf("/users/warm-%d", i)
		if resp, err := tlsClient.Get(fmt.Sprintf("https://127.0.0.1:%d%s", tlsSrv.port, path)); err == nil {
			resp.Body.Close()
		}
		if waitQuiet(recv, spanWithPath(tlsSrv, path), 200*time.Millisecond) {
			break
		}
		if i == 100 {
			t.Fatal("tlsserver is not traced")
		}
	}
	recv.Reset()
	serverAttrs := func(a *app, path, route, scheme string, status int64) map[string]any {
		m := map[string]any{
			"http.request.method": "GET", "url.path": path, "url.scheme": scheme, "http.response.status_code": status,
			"network.protocol.version": "2", "server.address": "127.0.0.1", "server.port": int64(a.port), "client.address": "127.0.0.1",
		}
		if route != "" {
			m["http.route"] = route
		}
		return m
	}
	clientAttrs := func(full string, port int) map[string]any {
		return map[string]any{
			"http.request.method": "GET", "url.full": full, "server.address": "127.0.0.1", "server.port": int64(port),
			"http.response.status_code": int64(200), "network.protocol.version": "2",
		}
	}
	callerSpans := func(a *app, path string) (server, client *tracepb.Span) {
		t.Helper()
		sv := recv.WaitSpans(t, 10*time.Second, spanWithPath(a, path), 1)[0].Span
		kids := recv.WaitSpans(t, 10*time.Second, func(g otlptest.Got) bool { return bytes.Equal(g.Span.ParentSpanId, sv.SpanId) }, 1)
		return sv, kids[0].Span
	}

	// TLS with ALPN h2: Go callers of both HTTP/2 client functions.
	for i := range 2 {
		for _, a := range []*app{old, cur} {
			full := fmt.Sprintf("https://127.0.0.1:%d/users/%s-%d", tlsSrv.port, a.name, i)
			if got := get(t, a.url(fmt.Sprintf("/call?insecure=1&i=%d&url=%s", i, url.QueryEscape(full)))); got != 200 {
				t.Fatalf("%s /call over TLS h2: %d", a.name, got)
			}
			path := fmt.Sprintf("/users/%s-%d", a.name, i)
			sv := recv.WaitSpans(t, 10*time.Second, spanWithPath(tlsSrv, path), 1)[0].Span
			if sv.Kind != tracepb.Span_SPAN_KIND_SERVER || sv.Name != "GET /users/{id}" || sv.Status.GetCode() != tracepb.Status_STATUS_CODE_UNSET {
				t.Errorf("%s: span %q %v status %v", path, sv.Name, sv.Kind, sv.Status)
			}
			checkAttrs(t, sv.Attributes, serverAttrs(tlsSrv, path, "/users/{id}", "https", 200))
			checkIDs(t, sv)
			cl := recv.WaitSpans(t, 10*time.Second, func(g otlptest.Got) bool {
				return g.Span.Kind == tracepb.Span_SPAN_KIND_CLIENT && otlptest.Attrs(g.Span.Attributes)["url.full"] == full
			}, 1)[0].Span
			checkAttrs(t, cl.Attributes, clientAttrs(full, tlsSrv.port))
			caller := recv.WaitSpans(t, 10*time.Second, func(g otlptest.Got) bool { return bytes.Equal(g.Span.SpanId, cl.ParentSpanId) }, 1)[0]
			if caller.Resource["process.pid"] != int64(a.cmd.Process.Pid) || otlptest.Attrs(caller.Span.Attributes)["url.path"] != "/call" {
				t.Errorf("%s: client span's parent is %q of %v", full, caller.Span.Name, caller.Resource["process.pid"])
			}
		}
	}

	// A stripped server over h2c, from a traced client.
	if got := get(t, cur.url("/call-h2c?url="+url.QueryEscape(stripped.url("/users/stripped")))); got != 200 {
		t.Fatalf("/call-h2c to the stripped server: %d", got)
	}
	_, cl0 := callerSpans(cur, "/call-h2c")
	sv0 := recv.WaitSpans(t, 10*time.Second, spanWithPath(stripped, "/users/stripped"), 1)[0].Span
	if !bytes.Equal(sv0.ParentSpanId, cl0.SpanId) || !bytes.Equal(sv0.TraceId, cl0.TraceId) {
		t.Errorf("stripped: server span parent %x in %x, want the client span %x in %x", sv0.ParentSpanId, sv0.TraceId, cl0.SpanId, cl0.TraceId)
	}
	checkAttrs(t, sv0.Attributes, serverAttrs(stripped, "/users/stripped", "/users/{id}", "http", 200))
	recv.Reset()

	// h2c from a traced client: the header links both ends.
	for i := range 3 {
		path := fmt.Sprintf("/users/h2c-%d", i)
		if got := get(t, cur.url("/call-h2c?url="+url.QueryEscape(h2c.url(path)))); got != 200 {
			t.Fatalf("/call-h2c: %d", got)
		}
		_, cl := callerSpans(cur, "/call-h2c")
		checkAttrs(t, cl.Attributes, clientAttrs(h2c.url(path), h2c.port))
		sv := recv.WaitSpans(t, 10*time.Second, spanWithPath(h2c, path), 1)[0].Span
		if !bytes.Equal(sv.ParentSpanId, cl.SpanId) || !bytes.Equal(sv.TraceId, cl.TraceId) {
			t.Errorf("%s: server span parent %x in %x, want the client span %x in %x", path, sv.ParentSpanId, sv.TraceId, cl.SpanId, cl.TraceId)
		}
		checkAttrs(t, sv.Attributes, serverAttrs(h2c, path, "/users/{id}", "http", 200))
		recv.Reset()
	}
	// ... and an HTTP/2 server nobody traces sees it once.
	if got := get(t, cur.url("/call-h2c?url="+url.QueryEscape("http://"+rawH2.ln.Addr().String()+"/raw"))); got != 200 {
		t.Fatalf("/call-h2c to the raw server: %d", got)
	}
	_, cl := callerSpans(cur, "/call-h2c")
	rawH2.mu.Lock()
	if len(rawH2.streams) != 1 {
		t.Errorf("raw HTTP/2 server: %d streams", len(rawH2.streams))
	} else {
		var tps []string
		for _, f := range rawH2.streams[0].fields {
			if f.Name == "traceparent" {
				tps = append(tps, f.Value)
			}
		}
		if len(tps) != 1 || tps[0] != traceparentOf(cl) {
			t.Errorf("raw HTTP/2 server: traceparent %q, want exactly [%s]", tps, traceparentOf(cl))
		}
	}
	rawH2.mu.Unlock()
	recv.Reset()

	// h2c with prior knowledge, 16 requests at once on one connection.
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	h2client := &http.Client{Transport: &http.Transport{Protocols: &p}, Timeout: 10 * time.Second}
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			resp, err := h2client.Get(h2c.url("/call?url=" + url.QueryEscape(raw.url(fmt.Sprintf("/h2c-%d", i)))))
			if err != nil {
				t.Errorf("h2c call %d: %v", i, err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
				t.Errorf("h2c call %d: %d over HTTP/%d", i, resp.StatusCode, resp.ProtoMajor)
			}
		})
	}
	wg.Wait()
	servers := recv.WaitSpans(t, 10*time.Second, func(g otlptest.Got) bool {
		return spanWithPath(h2c, "/call")(g) && g.Span.Kind == tracepb.Span_SPAN_KIND_SERVER
	}, 16)
	isChild := func(g otlptest.Got) bool {
		return g.Resource["process.pid"] == int64(h2c.cmd.Process.Pid) && g.Span.Kind == tracepb.Span_SPAN_KIND_CLIENT
	}
	children := recv.WaitSpans(t, 10*time.Second, isChild, 16)
	byID := map[string]*tracepb.Span{}
	for _, g := range servers {
		checkAttrs(t, g.Span.Attributes, serverAttrs(h2c, "/call", "/call", "http", 200))
		byID[string(g.Span.SpanId)] = g.Span
	}
	sent := map[string]string{} // url path -> the traceparent it carried
	for _, r := range raw.requests() {
		sent[strings.Fields(string(r.raw))[1]] = r.header.Get("Traceparent")
	}
	for _, g := range children {
		c := g.Span
		parent := byID[string(c.ParentSpanId)]
		if parent == nil || !bytes.Equal(parent.TraceId, c.TraceId) {
			t.Errorf("client span %v: parent %x is none of the 16 h2c server spans", otlptest.Attrs(c.Attributes)["url.full"], c.ParentSpanId)
			continue
		}
		delete(byID, string(c.ParentSpanId))
		full, _ := otlptest.Attrs(c.Attributes)["url.full"].(string)
		u, _ := url.Parse(full)
		if tp := sent[u.Path]; tp != traceparentOf(c) {
			t.Errorf("%s carried traceparent %q, want %s", u.Path, tp, traceparentOf(c))
		}
	}
	if len(byID) != 0 {
		t.Errorf("%d h2c server spans without their call", len(byID))
	}

	// A stream reset while its handler still writes.
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h2c.url("/stream?ms=400"), nil)
	resp, err := h2client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	cancel() // after the headers: RST_STREAM
	resp.Body.Close()
	sv := recv.WaitSpans(t, 10*time.Second, spanWithPath(h2c, "/stream"), 1)[0].Span
	if sv.Status.GetCode() != tracepb.Status_STATUS_CODE_ERROR || sv.Status.GetMessage() != "stream closed before the response ended" {
		t.Errorf("reset stream: status %v", sv.Status)
	}
	want := serverAttrs(h2c, "/stream", "/stream", "http", 202)
	want["error.type"] = "stream_reset"
	checkAttrs(t, sv.Attributes, want)

	time.Sleep(time.Second) // a stray span would have arrived by now
	if n := count(recv, spanWithPath(h2c, "/call")); n != 16 {
		t.Errorf("%d h2c /call spans, want 16", n)
	}
	if n := count(recv, func(otlptest.Got) bool { return true }); n != 16+16+1 {
		t.Errorf("%d spans since the h2c calls, want 33 (16 requests, their 16 calls, the reset stream)", n)
	}
}

// TestHTTP2XNet: a server on golang.org/x/net/http2 (h2c.NewHandler, not
// net/http's bundled http2) gives the same server spans, with its handlers'
// calls as children; its calls with x/net's http2.Transport over h2c are
// client spans whose traceparent makes the callee's span their child.
func TestHTTP2XNet(t *testing.T) {
	requireEBPF(t)
	recv := otlptest.Start(t)
	raw := startRawServer(t)
	srv := startApp(t, "xh2c")
	callee := startApp(t, "hello-go125")
	startAgent(t, recv, []string{"xh2c", "hello-go125"})
	waitTraced(t, recv, srv)
	waitTraced(t, recv, callee)
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	h2client := &http.Client{Transport: &http.Transport{Protocols: &p}, Timeout: 10 * time.Second}
	getH2 := func(u string) {
		resp, err := h2client.Get(u)
		if err != nil {
			t.Errorf("GET %s: %v", u, err)
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
			t.Errorf("GET %s: %d over HTTP/%d", u, resp.StatusCode, resp.ProtoMajor)
		}
	}
	for i := range 3 {
		path := fmt.Sprintf("/users/x%d", i)
		getH2(srv.url(path))
		sv := recv.WaitSpans(t, 10*time.Second, spanWithPath(srv, path), 1)[0].Span
		if sv.Kind != tracepb.Span_SPAN_KIND_SERVER || sv.Name != "GET /users/{id}" || len(sv.ParentSpanId) != 0 {
			t.Errorf("%s: span %q %v parent %x", path, sv.Name, sv.Kind, sv.ParentSpanId)
		}
		checkAttrs(t, sv.Attributes, map[string]any{
			"http.request.method": "GET", "url.path": path, "url.scheme": "http", "http.response.status_code": int64(200),
			"network.protocol.version": "2", "server.address": "127.0.0.1", "server.port": int64(srv.port),
			"client.address": "127.0.0.1", "http.route": "/users/{id}",
		})
	}
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() { getH2(srv.url("/call?url=" + url.QueryEscape(raw.url(fmt.Sprintf("/x-%d", i))))) })
	}
	wg.Wait()
	for i := range 4 {
		path := fmt.Sprintf("/x-%d", i)
		cl := recv.WaitSpans(t, 10*time.Second, func(g otlptest.Got) bool {
			return g.Span.Kind == tracepb.Span_SPAN_KIND_CLIENT && otlptest.Attrs(g.Span.Attributes)["url.full"] == raw.url(path)
		}, 1)[0].Span
		sv := recv.WaitSpans(t, 10*time.Second, func(g otlptest.Got) bool { return bytes.Equal(g.Span.SpanId, cl.ParentSpanId) }, 1)[0].Span
		if otlptest.Attrs(sv.Attributes)["url.path"] != "/call" || sv.Kind != tracepb.Span_SPAN_KIND_SERVER || !bytes.Equal(sv.TraceId, cl.TraceId) {
			t.Errorf("%s: parent %q %v %v", path, sv.Name, sv.Kind, otlptest.Attrs(sv.Attributes)["url.path"])
		}
	}
	if n := count(recv, spanWithPath(srv, "/call")); n != 4 {
		t.Errorf("%d /call spans, want 4", n)
	}

	for i := range 3 {
		path := fmt.Sprintf("/users/xn-%d", i)
		getH2(srv.url("/call-h2c?url=" + url.QueryEscape(callee.url(path))))
		cl := recv.WaitSpans(t, 10*time.Second, func(g otlptest.Got) bool {
			return g.Span.Kind == tracepb.Span_SPAN_KIND_CLIENT && otlptest.Attrs(g.Span.Attributes)["url.full"] == callee.url(path)
		}, 1)[0].Span
		checkAttrs(t, cl.Attributes, map[string]any{
			"http.request.method": "GET", "url.full": callee.url(path), "server.address": "127.0.0.1", "server.port": int64(callee.port),
			"http.response.status_code": int64(200), "network.protocol.version": "2",
		})
		caller := recv.WaitSpans(t, 10*time.Second, func(g otlptest.Got) bool { return bytes.Equal(g.Span.SpanId, cl.ParentSpanId) }, 1)[0].Span
		if otlptest.Attrs(caller.Attributes)["url.path"] != "/call-h2c" {
			t.Errorf("%s: the client span's parent is %q", path, caller.Name)
		}
		sv := recv.WaitSpans(t, 10*time.Second, spanWithPath(callee, path), 1)[0].Span
		if !bytes.Equal(sv.ParentSpanId, cl.SpanId) || !bytes.Equal(sv.TraceId, cl.TraceId) {
			t.Errorf("%s: server span parent %x in %x, want %x in %x", path, sv.ParentSpanId, sv.TraceId, cl.SpanId, cl.TraceId)
		}
	}
	if n := count(recv, func(g otlptest.Got) bool {
		return g.Resource["process.pid"] == int64(srv.cmd.Process.Pid) && g.Span.Kind == tracepb.Span_SPAN_KIND_CLIENT
	}); n != 4+3 {
		t.Errorf("%d client spans of xh2c, want 7", n)
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

// TestConsoleWaterfall: --exporter console prints each cross-process trace
// as one waterfall: the A server, its client call indented under it, and
// B's server span under that; over HTTP/1, and over h2c (marked http=2).
func TestConsoleWaterfall(t *testing.T) {
	requireEBPF(t)
	recv := otlptest.Start(t) // unused by the console exporter
	a := startApp(t, "hello-go122")
	b := startApp(t, "hello-go126")
	c := startApp(t, "hello-go125")
	ag := startAgentArgs(t, recv, []string{"hello-go122", "hello-go126", "hello-go125"}, []string{"--exporter", "console"}, "OTEL_BSP_SCHEDULE_DELAY=60000")
	waitAttached(t, ag, 3) // no exported span can prove it with this exporter
	if got := get(t, a.url("/call?url="+url.QueryEscape(b.url("/users/console")))); got != 200 {
		t.Fatalf("A /call: %d", got)
	}
	if got := get(t, b.url("/call-h2c?url="+url.QueryEscape(c.url("/users/console-h2")))); got != 200 {
		t.Fatalf("B /call-h2c: %d", got)
	}
	time.Sleep(300 * time.Millisecond)
	if code := ag.terminate(t); code != 0 {
		t.Fatalf("agent exit %d", code)
	}
	lines := strings.Split(ag.stdout.String(), "\n")
	for _, w := range []struct {
		heads, names, marks []string
	}{
		{[]string{"  hello-go122 ", "    hello-go122 ", "      hello-go126 "}, []string{"GET /call", "GET ", "GET /users/{id}"}, []string{"", "", ""}},
		{[]string{"  hello-go126 ", "    hello-go126 ", "      hello-go125 "}, []string{"GET /call-h2c", "GET ", "GET /users/{id}"}, []string{"", " http=2", " http=2"}},
	} {
		found := false
		for i, l := range lines {
			if !strings.HasPrefix(l, "trace ") || !strings.Contains(l, "spans=3") || i+3 >= len(lines) || !strings.HasPrefix(lines[i+1], w.heads[0]) {
				continue
			}
			found = true
			for j, h := range w.heads {
				l := lines[i+1+j]
				if !strings.HasPrefix(l, h) || !strings.Contains(l, w.names[j]) || strings.Contains(l, "http=2") != (w.marks[j] != "") {
					t.Errorf("waterfall line %d = %q, want prefix %q, %q and %q", j, l, h, w.names[j], w.marks[j])
				}
			}
		}
		if !found {
			t.Errorf("no 3-span trace from %s in the console output:\n%s", w.heads[0], ag.stdout.String())
		}
	}
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
