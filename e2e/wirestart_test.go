package e2e

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/tracewire/tracewire/internal/otlptest"
)

// TestServerStartsFromTheWire: a plaintext Go server's request starts at the
// read that brings its head, with no uprobe. Requests that reach the server
// in ways the read cannot tell alone still give exactly one exact span each:
// two requests pipelined in one write (the second starts where the first
// ended, and its traceparent is honoured), a head split across writes (the
// span starts when the head is complete, as a span started by the handler
// would; the traceparent in the second part is honoured, and a call the
// handler makes before the context is known gets no parent rather than a
// wrong one). A server that may serve TLS (its heads are encrypted
// when read) starts its spans at the ServeHTTP uprobe, as before.
func TestServerStartsFromTheWire(t *testing.T) {
	requireEBPF(t)
	recv := otlptest.Start(t)
	a, down := startApp(t, "hello-go126"), startApp(t, "serveronly")
	tlsApp := startApp(t, "tlsserver")
	startAgent(t, recv, []string{a.name, down.name, tlsApp.name})
	waitTraced(t, recv, a)

	const (
		trace1, parent1 = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
		trace2, parent2 = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
		trace3, parent3 = "5bf92f3577b34da6a3ce929d0e0e4736", "10f067aa0ba902b7"
	)
	tp := func(trace, parent string) string { return "00-" + trace + "-" + parent + "-01" }
	dial := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", a.port))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		return c, bufio.NewReader(c)
	}
	readResponse := func(r *bufio.Reader, want int) {
		t.Helper()
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("status %d, want %d", resp.StatusCode, want)
		}
	}
	one := func(path string) *tracepb.Span {
		t.Helper()
		s, at := userSpan(t, recv, a, path)
		if at["http.route"] != "/users/{id}" {
			t.Errorf("%s: attributes %v", path, at)
		}
		return s
	}
	wantContext := func(s *tracepb.Span, trace, parent string) {
		t.Helper()
		if hex.EncodeToString(s.TraceId) != trace || hex.EncodeToString(s.ParentSpanId) != parent {
			t.Errorf("span %x in trace %x with parent %x, want trace %s, parent %s", s.SpanId, s.TraceId, s.ParentSpanId, trace, parent)
		}
	}

	// Two requests in one write: one read brings both heads.
	c, r := dial()
	if _, err := c.Write([]byte("GET /users/p1 HTTP/1.1\r\nHost: x\r\n\r\n" +
		"GET /users/p2 HTTP/1.1\r\nHost: x\r\ntraceparent: " + tp(trace1, parent1) + "\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	readResponse(r, 200)
	readResponse(r, 200)
	p1, p2 := one("/users/p1"), one("/users/p2")
	if len(p1.ParentSpanId) != 0 {
		t.Errorf("/users/p1 has parent %x, want none", p1.ParentSpanId)
	}
	wantContext(p2, trace1, parent1)
	if p2.StartTimeUnixNano < p1.EndTimeUnixNano || p2.EndTimeUnixNano < p2.StartTimeUnixNano {
		t.Errorf("pipelined spans [%d, %d] and [%d, %d]: the second must start after the first ends",
			p1.StartTimeUnixNano, p1.EndTimeUnixNano, p2.StartTimeUnixNano, p2.EndTimeUnixNano)
	}

	// A head in two writes 50 ms apart, traceparent in the second.
	c, r = dial()
	c.Write([]byte("GET /users/s1 HTTP/1.1\r\nHost: x\r\ntrace"))
	time.Sleep(50 * time.Millisecond)
	rest := time.Now()
	c.Write([]byte("parent: " + tp(trace2, parent2) + "\r\n\r\n"))
	readResponse(r, 200)
	s1 := one("/users/s1")
	wantContext(s1, trace2, parent2)
	if start := time.Unix(0, int64(s1.StartTimeUnixNano)); start.Before(rest) {
		t.Errorf("/users/s1 starts at %v, before the rest of its head was sent at %v", start, rest)
	}

	// The same with a call: the call is made before the context is known.
	c, r = dial()
	call := "/call?url=" + url.QueryEscape(down.url("/split"))
	c.Write([]byte("GET " + call + " HTTP/1.1\r\nHost: x\r\ntrace"))
	time.Sleep(20 * time.Millisecond)
	c.Write([]byte("parent: " + tp(trace3, parent3) + "\r\n\r\n"))
	readResponse(r, http.StatusAccepted)
	server := recv.WaitSpans(t, 10*time.Second, spanWithPath(a, "/call"), 1)[0].Span
	wantContext(server, trace3, parent3)
	isClient := func(g otlptest.Got) bool {
		return g.Resource["process.pid"] == int64(a.cmd.Process.Pid) && g.Span.Kind == tracepb.Span_SPAN_KIND_CLIENT
	}
	client := recv.WaitSpans(t, 10*time.Second, isClient, 1)[0].Span
	downstream := recv.WaitSpans(t, 10*time.Second, spanWithPath(down, "/split"), 1)[0].Span
	if len(client.ParentSpanId) != 0 || bytes.Equal(client.TraceId, server.TraceId) {
		t.Errorf("the call made before its request's context was known has parent %x in trace %x (request's trace %x): want none",
			client.ParentSpanId, client.TraceId, server.TraceId)
	}
	if !bytes.Equal(downstream.TraceId, client.TraceId) || !bytes.Equal(downstream.ParentSpanId, client.SpanId) {
		t.Errorf("downstream span %x/%x, want the child of the call %x/%x", downstream.TraceId, downstream.ParentSpanId, client.TraceId, client.SpanId)
	}

	// TLS: the ServeHTTP uprobe starts the spans, with the request's context.
	https := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	tlsURL := func(path string) string { return fmt.Sprintf("https://127.0.0.1:%d%s", tlsApp.port, path) }
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; ; i++ {
		path := fmt.Sprintf("/users/tls-warmup-%d", i)
		resp, err := https.Get(tlsURL(path))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if waitQuiet(recv, spanWithPath(tlsApp, path), 300*time.Millisecond) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("tlsserver: no span within 30 s")
		}
	}
	for i := range 3 {
		path := fmt.Sprintf("/users/tls-%d", i)
		req, _ := http.NewRequest(http.MethodGet, tlsURL(path), nil)
		req.Header.Set("traceparent", tp(trace1, parent2))
		resp, err := https.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		s, at := userSpan(t, recv, tlsApp, path)
		if at["url.scheme"] != "https" {
			t.Errorf("%s: attributes %v", path, at)
		}
		wantContext(s, trace1, parent2)
	}
	for _, g := range recv.Spans() {
		if p, _ := otlptest.Attrs(g.Span.Attributes)["url.path"].(string); strings.HasPrefix(p, "/users/") && g.Span.Status.GetCode() != tracepb.Status_STATUS_CODE_UNSET {
			t.Errorf("%s: status %v", p, g.Span.Status)
		}
	}
}

// userSpan waits for a's span of path, checks that it is the only one and
// a 200 of the users route, and returns it with its attributes.
func userSpan(t *testing.T, recv *otlptest.Receiver, a *app, path string) (*tracepb.Span, map[string]any) {
	t.Helper()
	got := recv.WaitSpans(t, 10*time.Second, spanWithPath(a, path), 1)
	time.Sleep(300 * time.Millisecond) // a doubled span would arrive by now
	if n := count(recv, spanWithPath(a, path)); n != 1 {
		t.Fatalf("%s: %d spans, want exactly 1", path, n)
	}
	s := got[0].Span
	at := otlptest.Attrs(s.Attributes)
	if s.Name != "GET /users/{id}" || at["http.response.status_code"] != int64(200) {
		t.Errorf("%s: name %q, attributes %v", path, s.Name, at)
	}
	return s, at
}

// TestClientCallEnds: a plaintext call ends at the read of its response's
// status line (no uprobe); a call over TLS cannot be read from the wire, so
// the first one asks for the ReadResponse uprobe, gives no span (never a
// failed one), and the calls after it are traced there, exactly.
func TestClientCallEnds(t *testing.T) {
	requireEBPF(t)
	recv := otlptest.Start(t)
	a, down := startApp(t, "hello-go126"), startApp(t, "serveronly")
	startAgent(t, recv, []string{a.name, down.name})
	waitTraced(t, recv, a)
	tlsDown := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated) // HTTP/1.1: no HTTP/2 offered
	}))
	defer tlsDown.Close()

	isClient := func(target string) func(otlptest.Got) bool {
		return func(g otlptest.Got) bool {
			at := otlptest.Attrs(g.Span.Attributes)
			return g.Resource["process.pid"] == int64(a.cmd.Process.Pid) && g.Span.Kind == tracepb.Span_SPAN_KIND_CLIENT &&
				strings.HasPrefix(fmt.Sprint(at["url.full"]), target)
		}
	}
	call := func(target string, want int) {
		t.Helper()
		u := a.url("/call?insecure=1&url=" + url.QueryEscape(target))
		if got := get(t, u); got != want {
			t.Fatalf("GET %s: %d, want %d", u, got, want)
		}
	}
	// check: exactly one client span to target, with status, the child of
	// a /call request of a, in its trace.
	check := func(target string, status int) {
		t.Helper()
		s := recv.WaitSpans(t, 10*time.Second, isClient(target), 1)[0].Span
		time.Sleep(300 * time.Millisecond)
		if c := count(recv, isClient(target)); c != 1 {
			t.Fatalf("%d client spans to %s, want 1", c, target)
		}
		parent := func(g otlptest.Got) bool {
			return spanWithPath(a, "/call")(g) && bytes.Equal(g.Span.SpanId, s.ParentSpanId) && bytes.Equal(g.Span.TraceId, s.TraceId)
		}
		if len(recv.WaitSpans(t, 10*time.Second, parent, 1)) != 1 {
			t.Errorf("client span to %s: parent %x is not its /call request", target, s.ParentSpanId)
		}
		at := otlptest.Attrs(s.Attributes)
		if at["http.response.status_code"] != int64(status) || s.Status.GetCode() != tracepb.Status_STATUS_CODE_UNSET {
			t.Errorf("client span to %s: attributes %v, status %v", target, at, s.Status)
		}
	}

	// Plaintext, from the wire: each call exactly one span, child of its request.
	for i := range 3 {
		target := down.url(fmt.Sprintf("/plain-%d", i))
		call(target, http.StatusAccepted)
		check(target, http.StatusAccepted)
	}

	// TLS: the first call asks for the uprobe and gives no client span.
	first := tlsDown.URL + "/tls-first"
	call(first, http.StatusCreated)
	time.Sleep(2500 * time.Millisecond) // the agent attaches within a second or two
	for _, g := range recv.Spans() {
		if isClient(first)(g) {
			t.Errorf("the call that asked for ReadResponse has a span: status %v", g.Span.Status)
		}
	}
	for i := range 3 {
		target := fmt.Sprintf("%s/tls-%d", tlsDown.URL, i)
		call(target, http.StatusCreated)
		check(target, http.StatusCreated)
	}
	// Plaintext calls are still exact with the uprobe on.
	target := down.url("/plain-after")
	call(target, http.StatusAccepted)
	check(target, http.StatusAccepted)
}
