package e2e

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/tracewire/tracewire/internal/otlptest"
)

// The kernel's string limits (README, "Strings are cut in the kernel at").
const (
	maxMethod     = 16
	maxPath       = 128
	maxHost       = 64
	maxTracestate = 128
)

// hostileCase is one request a well-behaved client would not send.
type hostileCase struct {
	name string
	req  []byte
	// span: the handler runs and its span has url.path path, status code
	// status, and parent parent ("" for none: a new trace). Otherwise the
	// server refuses the request and no span may have path.
	span   bool
	path   string
	status int
	parent string // "trace-span" in hex
	// junk is a trace id sent in an invalid traceparent: no span may have it.
	junk string
	// attrs are further attributes the span must have.
	attrs map[string]any
	// tracestate the span must have.
	tracestate string
}

// hostileRequest writes a GET of path with headers (each "Name: value").
func hostileRequest(method, path, version string, headers ...string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s %s\r\nHost: 127.0.0.1\r\n", method, path, version)
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

// hostileSend writes raw on a new connection, closes its sending side (a
// lying Content-Length then meets the end of the stream) and returns the
// response's status line, "" if the server closed without one.
func hostileSend(t *testing.T, a *app, raw []byte) string {
	t.Helper()
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", a.port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	// A server refusing a huge request may close before reading it all.
	_, _ = c.Write(raw)
	_ = c.(*net.TCPConn).CloseWrite()
	line, _ := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line)
}

// TestHostile sends a traced Go HTTP server, over raw TCP, what no
// well-behaved client sends: huge request lines and headers, NUL bytes,
// bad versions, lying lengths, a slowloris client, oversized and malformed
// trace context. The agent must keep running, give no span a parent it was
// not sent, cut strings where the README says, trace a normal request
// correctly afterwards, and exit 0 on SIGTERM.
func TestHostile(t *testing.T) {
	requireEBPF(t)
	recv := otlptest.Start(t)
	a := startApp(t, "hello-go126")
	ag := startAgent(t, recv, []string{a.name})
	waitTraced(t, recv, a)

	// Headers trickled a byte every 20 ms for 4 s, next to everything else.
	slow := make(chan time.Time, 1)
	go func() {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", a.port))
		if err != nil {
			slow <- time.Time{}
			return
		}
		defer c.Close()
		req := hostileRequest("GET", "/users/h-slowloris", "HTTP/1.1", "X-Slow: "+strings.Repeat("s", 180))
		for _, b := range req[:len(req)-1] {
			c.Write([]byte{b})
			time.Sleep(20 * time.Millisecond)
		}
		done := time.Now()
		c.Write(req[len(req)-1:])
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		bufio.NewReader(c).ReadString('\n')
		slow <- done
	}()

	var cases []hostileCase
	add := func(c ...hostileCase) { cases = append(cases, c...) }

	longPath := "/users/h-longline-" + strings.Repeat("a", 1<<20)
	add(hostileCase{name: "1 MiB request line", req: hostileRequest("GET", longPath, "HTTP/1.1"), span: true, path: longPath[:maxPath], status: 200})
	add(hostileCase{name: "900 KiB header", req: hostileRequest("GET", "/users/h-bigheader", "HTTP/1.1", "X-Big: "+strings.Repeat("b", 900<<10)),
		span: true, path: "/users/h-bigheader", status: 200})
	bigHost := strings.Repeat("h", 100<<10)
	add(hostileCase{name: "100 KiB Host", req: []byte("GET /users/h-bighost HTTP/1.1\r\nHost: " + bigHost + "\r\n\r\n"),
		span: true, path: "/users/h-bighost", status: 200, attrs: map[string]any{"server.address": bigHost[:maxHost], "server.port": int64(80)}})
	many := make([]string, 10000)
	for i := range many {
		many[i] = fmt.Sprintf("X-H-%d: %d", i, i)
	}
	add(hostileCase{name: "10000 headers", req: hostileRequest("GET", "/users/h-manyheaders", "HTTP/1.1", many...), span: true, path: "/users/h-manyheaders", status: 200})
	method := "VERYLONGMETHOD-" + strings.Repeat("M", 100)
	add(hostileCase{name: "long method", req: hostileRequest(method, "/status?code=203", "HTTP/1.1"), span: true, path: "/status", status: 203,
		attrs: map[string]any{"http.request.method": "_OTHER", "http.request.method_original": method[:maxMethod]}})
	// Cut at 128 bytes inside a two-byte character: exported as valid UTF-8.
	utf8Path := "/users/h-utf8x-" + strings.Repeat("é", 100)
	add(hostileCase{name: "UTF-8 cut", req: hostileRequest("GET", utf8Path, "HTTP/1.1"), span: true, path: strings.ToValidUTF8(utf8Path[:maxPath], "\uFFFD"), status: 200})
	add(
		hostileCase{name: "NUL in path", req: hostileRequest("GET", "/users/h-nulpath\x00x", "HTTP/1.1"), path: "/users/h-nulpath"},
		hostileCase{name: "NUL in header", req: hostileRequest("GET", "/users/h-nulheader", "HTTP/1.1", "X-Nul: a\x00b"), path: "/users/h-nulheader"},
		hostileCase{name: "HTTP/9.9", req: hostileRequest("GET", "/users/h-http99", "HTTP/9.9"), path: "/users/h-http99"},
		hostileCase{name: "HTTP/1.1000", req: hostileRequest("GET", "/users/h-http11000", "HTTP/1.1000"), path: "/users/h-http11000"},
		hostileCase{name: "HTTX/1.1", req: hostileRequest("GET", "/users/h-httx", "HTTX/1.1"), path: "/users/h-httx"},
		hostileCase{name: "HTTP/2 preface then junk", req: []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x10\x01\x04\x00\x00\x00\x01junkjunk"), path: "*"},
	)
	// The handler does not read the body; the server then does, and meets
	// the end of the stream (longer) or a second request of junk (shorter).
	add(
		hostileCase{name: "Content-Length longer than the body", req: []byte("POST /status?code=201 HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nshort"),
			span: true, path: "/status", status: 201, attrs: map[string]any{"http.request.method": "POST"}},
		hostileCase{name: "Content-Length shorter than the body", req: []byte("POST /status?code=202 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nlonger than that\x01\r\n\r\n"),
			span: true, path: "/status", status: 202, attrs: map[string]any{"http.request.method": "POST"}},
	)

	// Trace context: each malformed one names a trace id of its own.
	const parent = "00f067aa0ba902b7"
	tid := func(i int) string { return fmt.Sprintf("4bf92f3577b34da6a3ce9%011x", i) }
	malformed := map[string]func(id string) string{
		"version ff":       func(id string) string { return "ff-" + id + "-" + parent + "-01" },
		"zero trace id":    func(string) string { return "00-" + strings.Repeat("0", 32) + "-" + parent + "-01" },
		"zero parent id":   func(id string) string { return "00-" + id + "-0000000000000000-01" },
		"upper case":       func(id string) string { return "00-" + strings.ToUpper(id) + "-" + parent + "-01" },
		"54 bytes":         func(id string) string { return "00-" + id[1:] + "-" + parent + "-01" },
		"56 bytes":         func(id string) string { return "00-" + id + "-" + parent + "-011" },
		"dashes moved":     func(id string) string { return "00-" + id[:31] + "-" + id[31:] + parent + "-01" },
		"not hex":          func(id string) string { return "00-" + id[:30] + "zz-" + parent + "-01" },
		"flags not hex":    func(id string) string { return "00-" + id + "-" + parent + "-0g" },
		"underscores":      func(id string) string { return "00_" + id + "_" + parent + "_01" },
		"10 KB, version 0": func(id string) string { return "00-" + id + "-" + parent + "-01-" + strings.Repeat("x", 10<<10) },
	}
	i := 0
	for name, tp := range malformed {
		i++
		id := tid(i)
		path := fmt.Sprintf("/users/h-tp-%d", i)
		add(hostileCase{name: "traceparent " + name, req: hostileRequest("GET", path, "HTTP/1.1", "traceparent: "+tp(id), "tracestate: k=v"),
			span: true, path: path, status: 200, junk: id})
	}
	add(hostileCase{name: "two traceparents, the first junk",
		req:  hostileRequest("GET", "/users/h-tp-two", "HTTP/1.1", "traceparent: junk", "traceparent: 00-"+tid(100)+"-"+parent+"-01"),
		span: true, path: "/users/h-tp-two", status: 200, junk: tid(100)})
	// Valid ones, oversized: a future version may append fields.
	add(hostileCase{name: "traceparent of a future version, 10 KB",
		req:  hostileRequest("GET", "/users/h-tp-future", "HTTP/1.1", "traceparent: cc-"+tid(101)+"-"+parent+"-01-"+strings.Repeat("x", 10<<10)),
		span: true, path: "/users/h-tp-future", status: 200, parent: tid(101) + "-" + parent})
	ts := "vendor=" + strings.Repeat("v", 100<<10)
	add(hostileCase{name: "tracestate 100 KB",
		req:  hostileRequest("GET", "/users/h-ts-big", "HTTP/1.1", "traceparent: 00-"+tid(102)+"-"+parent+"-01", "tracestate: "+ts),
		span: true, path: "/users/h-ts-big", status: 200, parent: tid(102) + "-" + parent, tracestate: ts[:maxTracestate]})

	junk := map[string]bool{}
	for _, c := range cases {
		status := hostileSend(t, a, c.req)
		if c.span && status != fmt.Sprintf("HTTP/1.1 %d", c.status) && !strings.HasPrefix(status, fmt.Sprintf("HTTP/1.1 %d ", c.status)) {
			t.Errorf("%s: response %q, want status %d", c.name, status, c.status)
		}
		if !c.span && strings.HasPrefix(status, "HTTP/1.1 2") {
			t.Errorf("%s: response %q, want a refusal", c.name, status)
		}
		if c.junk != "" {
			junk[c.junk] = true
		}
	}
	started := <-slow
	if started.IsZero() {
		t.Fatal("slowloris client could not connect")
	}
	select {
	case <-ag.done:
		t.Fatalf("the agent exited during the hostile requests:\n%s", ag.stderr.String())
	default:
	}

	mine := func(g otlptest.Got) bool { return g.Resource["process.pid"] == int64(a.cmd.Process.Pid) }
	for _, c := range cases {
		if !c.span {
			continue
		}
		match := func(g otlptest.Got) bool {
			return spanWithPath(a, c.path)(g) && otlptest.Attrs(g.Span.Attributes)["http.response.status_code"] == int64(c.status)
		}
		got := waitQuietSpans(recv, match, 10*time.Second)
		if len(got) != 1 {
			t.Errorf("%s: %d spans with url.path %.40q and status %d, want 1", c.name, len(got), c.path, c.status)
			continue
		}
		s := got[0].Span
		checkIDs(t, s)
		at := otlptest.Attrs(s.Attributes)
		for k, v := range c.attrs {
			if at[k] != v {
				t.Errorf("%s: %s = %.80v, want %.80v", c.name, k, at[k], v)
			}
		}
		switch {
		case c.parent == "" && len(s.ParentSpanId) != 0:
			t.Errorf("%s: trace-parent %s, want a new trace", c.name, hexIDs(s))
		case c.parent != "" && hexIDs(s) != c.parent:
			t.Errorf("%s: trace-parent %s, want %s", c.name, hexIDs(s), c.parent)
		}
		if s.TraceState != c.tracestate {
			t.Errorf("%s: tracestate %.40q (%d bytes), want %.40q (%d bytes)", c.name, s.TraceState, len(s.TraceState), c.tracestate, len(c.tracestate))
		}
	}

	sl := waitQuietSpans(recv, spanWithPath(a, "/users/h-slowloris"), 10*time.Second)
	if len(sl) != 1 {
		t.Errorf("slowloris: %d spans, want 1", len(sl))
	} else if start := time.Unix(0, int64(sl[0].Span.StartTimeUnixNano)); start.Before(started.Add(-50 * time.Millisecond)) {
		t.Errorf("slowloris: span starts at %v, before its headers were all sent at %v", start, started)
	}

	// Afterwards a normal request is traced as ever, field by field.
	get(t, a.url("/users/h-after"))
	after := recv.WaitSpans(t, 10*time.Second, spanWithPath(a, "/users/h-after"), 1)[0].Span
	checkAttrs(t, after.Attributes, map[string]any{
		"http.request.method":       "GET",
		"url.path":                  "/users/h-after",
		"url.scheme":                "http",
		"http.route":                "/users/{id}",
		"http.response.status_code": int64(200),
		"server.address":            "127.0.0.1",
		"server.port":               int64(a.port),
		"client.address":            "127.0.0.1",
		"network.protocol.version":  "1.1",
	})
	checkIDs(t, after)
	if after.Name != "GET /users/{id}" || after.Kind != tracepb.Span_SPAN_KIND_SERVER || len(after.ParentSpanId) != 0 || after.Status.GetCode() != tracepb.Status_STATUS_CODE_UNSET {
		t.Errorf("normal request after: name %q kind %v parent %x status %v", after.Name, after.Kind, after.ParentSpanId, after.Status.GetCode())
	}
	valid := tid(200) + "-" + parent
	if st := hostileSend(t, a, hostileRequest("GET", "/users/h-after-tp", "HTTP/1.1", "traceparent: 00-"+valid+"-01")); st != "HTTP/1.1 200 OK" {
		t.Errorf("normal request with traceparent: %q", st)
	}
	withTP := recv.WaitSpans(t, 10*time.Second, spanWithPath(a, "/users/h-after-tp"), 1)[0].Span
	if hexIDs(withTP) != valid || withTP.Flags&1 != 1 {
		t.Errorf("normal request with traceparent: trace-parent %s flags %#x, want %s sampled", hexIDs(withTP), withTP.Flags, valid)
	}

	// No span of the target has a parent it was not sent, or a junk trace id.
	time.Sleep(500 * time.Millisecond)
	sent := map[string]bool{valid: true}
	for _, c := range cases {
		sent[c.parent] = true
	}
	for _, g := range recv.Spans() {
		if !mine(g) {
			continue
		}
		if len(g.Span.ParentSpanId) != 0 && !sent[hexIDs(g.Span)] {
			t.Errorf("span %q has trace-parent %s, which no request sent", g.Span.Name, hexIDs(g.Span))
		}
		if junk[hex.EncodeToString(g.Span.TraceId)] {
			t.Errorf("span %q is in trace %x, named by an invalid traceparent", g.Span.Name, g.Span.TraceId)
		}
		for _, c := range cases {
			if !c.span && otlptest.Attrs(g.Span.Attributes)["url.path"] == c.path {
				t.Errorf("%s: refused by the server, yet a span: %v", c.name, g.Span)
			}
		}
	}

	if strings.Contains(ag.stderr.String(), "panic") {
		t.Errorf("the agent panicked:\n%s", ag.stderr.String())
	}
	if code := ag.terminate(t); code != 0 {
		t.Errorf("agent exit code %d after SIGTERM, want 0", code)
	}
}

// hexIDs is a span's "trace-parent" in hex.
func hexIDs(s *tracepb.Span) string {
	return hex.EncodeToString(s.TraceId) + "-" + hex.EncodeToString(s.ParentSpanId)
}

// waitQuietSpans waits up to d for a matching span, then a little longer
// for a second one that must not come, and returns what matched.
func waitQuietSpans(recv *otlptest.Receiver, match func(otlptest.Got) bool, d time.Duration) []otlptest.Got {
	if waitQuiet(recv, match, d) {
		time.Sleep(200 * time.Millisecond)
	}
	var out []otlptest.Got
	for _, g := range recv.Spans() {
		if match(g) {
			out = append(out, g)
		}
	}
	return out
}
