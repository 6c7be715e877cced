package e2e

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tracewire/tracewire/internal/otlptest"
)

// startInterpreted runs script (under testdata/apps) with interpreter
// (a path, or looked up in PATH) under the name name: a symlink to the interpreter, so
// the process's comm is the link's name. It waits up to a minute for the
// service to listen (Java compiles its source at start).
func startInterpreted(t *testing.T, name, interpreter, script string, env ...string) *app {
	t.Helper()
	path, err := exec.LookPath(interpreter)
	if err != nil {
		t.Fatalf("no %s: %v", interpreter, err)
	}
	link := filepath.Join(t.TempDir(), name)
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	src, err := filepath.Abs(filepath.Join("../testdata/apps", script))
	if err != nil {
		t.Fatal(err)
	}
	a := &app{name: name, port: freePort(t)}
	a.cmd = exec.Command(link, src, "-addr", fmt.Sprintf("127.0.0.1:%d", a.port))
	a.cmd.Env = append(os.Environ(), env...)
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.stop)
	deadline := time.Now().Add(time.Minute)
	for !listening(a.port) {
		if time.Now().After(deadline) {
			t.Fatalf("%s does not listen after a minute", name)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return a
}

// startPython runs testdata/apps/pyhttp under the name name.
func startPython(t *testing.T, name string, env ...string) *app {
	return startInterpreted(t, name, "/usr/bin/python3", "pyhttp/server.py", env...)
}

// TestWirePython: a Python ThreadingHTTPServer, not Go, traced from its
// syscalls alone: one SERVER span per request with the Go probes' attribute
// set, over keep-alive, pipelined and split requests, chunked and
// Content-Length bodies, HEAD and 100-continue; an incoming traceparent is
// honoured; a call made by the handler's thread is its child CLIENT span.
func TestWirePython(t *testing.T) {
	requireEBPF(t)
	recv := otlptest.Start(t)
	goApp := startApp(t, "hello-go126")
	py := startPython(t, "pyshop", "OTEL_SERVICE_NAME=pyshop")
	ag := startAgent(t, recv, []string{"pyshop"})
	waitTraced(t, recv, py)
	pid := int64(py.cmd.Process.Pid)

	// Keep-alive: one connection, several requests.
	for i := range 5 {
		if code := get(t, py.url(fmt.Sprintf("/users/%d?secret=x", i))); code != 200 {
			t.Fatalf("GET answered %d", code)
		}
	}
	if code := get(t, py.url("/status?code=503")); code != 503 {
		t.Fatalf("/status answered %d", code)
	}
	if code := get(t, py.url("/chunked")); code != 200 {
		t.Fatalf("/chunked answered %d", code)
	}
	req, _ := http.NewRequest(http.MethodHead, py.url("/head"), nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// An incoming traceparent.
	const traceID, parentID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	req, _ = http.NewRequest(http.MethodGet, py.url("/traced"), nil)
	req.Header.Set("traceparent", "00-"+traceID+"-"+parentID+"-01")
	if resp, err = client.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// Pipelined requests in one write, a body split across writes with a
	// 100-continue, from a raw socket.
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", py.port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /pipe/1 HTTP/1.1\r\nHost: shop\r\n\r\nGET /pipe/2 HTTP/1.1\r\nHost: shop\r\n\r\n")
	br := bufio.NewReader(c)
	for range 2 {
		readResponse(t, br)
	}
	fmt.Fprintf(c, "POST /upload HTTP/1.1\r\nHost: shop\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n")
	if line, _ := br.ReadString('\n'); !strings.HasPrefix(line, "HTTP/1.1 100") {
		t.Fatalf("no 100 Continue: %q", line)
	}
	br.ReadString('\n')
	fmt.Fprint(c, "01234")
	time.Sleep(20 * time.Millisecond)
	fmt.Fprint(c, "56789")
	readResponse(t, br)
	// A call made by the handler's thread to a Go service.
	if code := get(t, py.url(fmt.Sprintf("/call?port=%d&path=/users/from-py", goApp.port))); code != 200 {
		t.Fatalf("/call answered %d", code)
	}

	want := map[string]struct {
		method string
		status int64
	}{
		"/users/0": {"GET", 200}, "/users/1": {"GET", 200}, "/users/2": {"GET", 200}, "/users/3": {"GET", 200},
		"/users/4": {"GET", 200}, "/status": {"GET", 503}, "/chunked": {"GET", 200}, "/head": {"HEAD", 200},
		"/traced": {"GET", 200}, "/pipe/1": {"GET", 200}, "/pipe/2": {"GET", 200}, "/upload": {"POST", 201},
		"/call": {"GET", 200},
	}
	isPy := func(g otlptest.Got) bool { return g.Resource["process.pid"] == pid }
	server := func(g otlptest.Got) bool {
		path, _ := otlptest.Attrs(g.Span.GetAttributes())["url.path"].(string)
		_, ok := want[path]
		return isPy(g) && g.Span.GetKind() == 2 && ok
	}
	got := recv.WaitSpans(t, 10*time.Second, server, len(want))
	waitQuiet(recv, server, time.Second)
	if n := count(recv, server); n != len(want) {
		t.Fatalf("%d server spans, want %d", n, len(want))
	}
	byPath := map[string]otlptest.Got{}
	for _, g := range got {
		a := otlptest.Attrs(g.Span.GetAttributes())
		path := a["url.path"].(string)
		w := want[path]
		byPath[path] = g
		if g.Resource["service.name"] != "pyshop" || g.Scope != "github.com/tracewire/tracewire/probes/wire" {
			t.Errorf("%s: service %v scope %q", path, g.Resource["service.name"], g.Scope)
		}
		if _, ok := g.Resource["process.runtime.name"]; ok {
			t.Errorf("%s: process.runtime.name %v: the agent cannot know it", path, g.Resource["process.runtime.name"])
		}
		wantAttrs := map[string]any{
			"http.request.method": w.method, "url.path": path, "url.scheme": "http",
			"http.response.status_code": w.status, "network.protocol.version": "1.1",
			"server.address": "127.0.0.1", "server.port": int64(py.port), "client.address": "127.0.0.1",
		}
		if strings.HasPrefix(path, "/pipe") || path == "/upload" {
			wantAttrs["server.address"], wantAttrs["server.port"] = "shop", int64(80)
		}
		if len(a) != len(wantAttrs) {
			t.Errorf("%s: attributes %v, want %v", path, a, wantAttrs)
		}
		for k, v := range wantAttrs {
			if a[k] != v {
				t.Errorf("%s: %s = %v, want %v", path, k, a[k], v)
			}
		}
		if g.Span.GetName() != w.method {
			t.Errorf("%s: name %q, want %q (no route is known)", path, g.Span.GetName(), w.method)
		}
		if isErr := g.Span.GetStatus().GetCode() == 2; isErr != (w.status >= 500) {
			t.Errorf("%s: status %v", path, g.Span.GetStatus())
		}
		if len(g.Span.GetTraceId()) != 16 || len(g.Span.GetSpanId()) != 8 || g.Span.GetEndTimeUnixNano() < g.Span.GetStartTimeUnixNano() {
			t.Errorf("%s: ids %x %x, times %d..%d", path, g.Span.GetTraceId(), g.Span.GetSpanId(), g.Span.GetStartTimeUnixNano(), g.Span.GetEndTimeUnixNano())
		}
		if path != "/traced" && len(g.Span.GetParentSpanId()) != 0 {
			t.Errorf("%s: parent %x, want a root", path, g.Span.GetParentSpanId())
		}
	}
	tr := byPath["/traced"].Span
	if hex.EncodeToString(tr.GetTraceId()) != traceID || hex.EncodeToString(tr.GetParentSpanId()) != parentID {
		t.Errorf("/traced: trace %x parent %x, want the incoming traceparent's", tr.GetTraceId(), tr.GetParentSpanId())
	}

	// The handler's call: a CLIENT span, child of /call's server span.
	callSpan := byPath["/call"].Span
	isClient := func(g otlptest.Got) bool { return isPy(g) && g.Span.GetKind() == 3 }
	cl := recv.WaitSpans(t, 10*time.Second, isClient, 1)[0]
	waitQuiet(recv, isClient, 500*time.Millisecond)
	if n := count(recv, isClient); n != 1 {
		t.Errorf("%d client spans, want 1", n)
	}
	a := otlptest.Attrs(cl.Span.GetAttributes())
	wantClient := map[string]any{
		"http.request.method": "GET", "url.full": fmt.Sprintf("http://127.0.0.1:%d/users/from-py", goApp.port),
		"server.address": "127.0.0.1", "server.port": int64(goApp.port), "network.peer.address": "127.0.0.1",
		"network.peer.port": int64(goApp.port), "http.response.status_code": int64(200),
	}
	if len(a) != len(wantClient) {
		t.Errorf("client attributes %v, want %v", a, wantClient)
	}
	for k, v := range wantClient {
		if a[k] != v {
			t.Errorf("client %s = %v, want %v", k, a[k], v)
		}
	}
	if string(cl.Span.GetTraceId()) != string(callSpan.GetTraceId()) || string(cl.Span.GetParentSpanId()) != string(callSpan.GetSpanId()) {
		t.Errorf("client span trace %x parent %x, want /call's trace %x span %x",
			cl.Span.GetTraceId(), cl.Span.GetParentSpanId(), callSpan.GetTraceId(), callSpan.GetSpanId())
	}
	if cl.Span.GetStartTimeUnixNano() < callSpan.GetStartTimeUnixNano() || cl.Span.GetEndTimeUnixNano() > callSpan.GetEndTimeUnixNano() {
		t.Errorf("client span %d..%d outside its parent %d..%d", cl.Span.GetStartTimeUnixNano(), cl.Span.GetEndTimeUnixNano(),
			callSpan.GetStartTimeUnixNano(), callSpan.GetEndTimeUnixNano())
	}
	// The tracepoints go with the last target traced from the wire: nine
	// syscall exits and close.
	with := hookFDs(t, ag)
	py.stop()
	waitHookFDs(t, ag, with-10)
	if code := ag.terminate(t); code != 0 {
		t.Fatalf("agent exited with %d", code)
	}
}

// readResponse reads one response with a Content-Length body.
func readResponse(t *testing.T, br *bufio.Reader) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}
