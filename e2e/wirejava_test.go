package e2e

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/tracewire/tracewire/internal/otlptest"
)

// TestWireJava: a Java service (com.sun.net.httpserver, a thread pool)
// traced from the wire: its server spans; a call made with
// HttpURLConnection on the handler's thread is that request's child; one
// made by java.net.http.HttpClient (its own I/O thread) is a span without a
// parent rather than a wrong one.
func TestWireJava(t *testing.T) {
	requireEBPF(t)
	recv := otlptest.Start(t)
	goApp := startApp(t, "hello-go126")
	a := startJava(t, "javashop", "OTEL_SERVICE_NAME=javashop")
	startAgent(t, recv, []string{"javashop"})
	waitTraced(t, recv, a)
	pid := int64(a.cmd.Process.Pid)

	get(t, a.url("/users/1"))
	get(t, a.url(fmt.Sprintf("/call?port=%d&path=/users/from-java", goApp.port)))
	get(t, a.url(fmt.Sprintf("/hclient?port=%d&path=/users/from-java-hc", goApp.port)))

	want := map[string]bool{"/users/1": true, "/call": true, "/hclient": true}
	server := func(g otlptest.Got) bool {
		p, _ := otlptest.Attrs(g.Span.GetAttributes())["url.path"].(string)
		return g.Resource["process.pid"] == pid && g.Span.GetKind() == 2 && want[p]
	}
	client := func(g otlptest.Got) bool { return g.Resource["process.pid"] == pid && g.Span.GetKind() == 3 }
	recv.WaitSpans(t, 10*time.Second, server, 3)
	recv.WaitSpans(t, 10*time.Second, client, 2)
	waitQuiet(recv, func(g otlptest.Got) bool { return server(g) || client(g) }, time.Second)
	if n, m := count(recv, server), count(recv, client); n != 3 || m != 2 {
		t.Fatalf("%d server and %d client spans, want 3 and 2", n, m)
	}
	byPath := map[string]otlptest.Got{}
	clients := map[string]otlptest.Got{}
	for _, g := range recv.Spans() {
		a := otlptest.Attrs(g.Span.GetAttributes())
		switch {
		case server(g):
			byPath[a["url.path"].(string)] = g
			if g.Resource["service.name"] != "javashop" || a["http.response.status_code"] != int64(200) || g.Span.GetName() != "GET" {
				t.Errorf("server span %s: service %v attrs %v name %q", a["url.path"], g.Resource["service.name"], a, g.Span.GetName())
			}
		case client(g):
			clients[a["url.full"].(string)] = g
		}
	}
	viaURL := clients[fmt.Sprintf("http://127.0.0.1:%d/users/from-java", goApp.port)]
	viaHC := clients[fmt.Sprintf("http://127.0.0.1:%d/users/from-java-hc", goApp.port)]
	if viaURL.Span == nil || viaHC.Span == nil {
		t.Fatalf("client spans %v", clients)
	}
	for _, c := range []otlptest.Got{viaURL, viaHC} {
		a := otlptest.Attrs(c.Span.GetAttributes())
		if a["http.response.status_code"] != int64(200) || a["server.port"] != int64(goApp.port) || a["network.peer.port"] != int64(goApp.port) {
			t.Errorf("client span %v", a)
		}
	}
	call := byPath["/call"].Span
	if string(viaURL.Span.GetTraceId()) != string(call.GetTraceId()) || string(viaURL.Span.GetParentSpanId()) != string(call.GetSpanId()) {
		t.Errorf("HttpURLConnection's span is not the child of /call")
	}
	if len(viaHC.Span.GetParentSpanId()) != 0 {
		t.Errorf("HttpClient's span has parent %x: its I/O thread serves no request", viaHC.Span.GetParentSpanId())
	}
}

// listening tells whether something accepts on 127.0.0.1:port.
func listening(port int) bool {
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err == nil {
		c.Close()
	}
	return err == nil
}

// startJava runs testdata/apps/javashop under the name name.
func startJava(t *testing.T, name string, env ...string) *app {
	return startInterpreted(t, name, "java", "javashop/Server.java", env...)
}
