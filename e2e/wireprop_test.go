package e2e

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/tracewire/tracewire/internal/dbtest"
	"github.com/tracewire/tracewire/internal/otlptest"
)

// TestWirePropagation: a Python service's calls carry a traceparent that
// the kernel adds (sk_msg) for the request its thread serves, so a
// Python → Go → PostgreSQL chain and a Python → Python chain come out as
// one trace each, every span with its exact parent. The first call to an
// endpoint only teaches the agent that it speaks HTTP/1: its connection
// was opened before, so it carries no header.
func TestWirePropagation(t *testing.T) {
	requireEBPF(t)
	pg := dbtest.RequirePostgres(t)
	recv := otlptest.Start(t)
	goApp := startAppArgs(t, "sqlapp", []string{"-driver", "pgx", "-dsn", pg.DSN, "-table", "users_wireprop"})
	front := startPython(t, "pyfront")
	back := startPython(t, "pyback")
	startAgent(t, recv, []string{"pyfront", "pyback", "sqlapp"})
	for _, a := range []*app{front, back, goApp} {
		waitTraced(t, recv, a)
	}
	pidOf := func(a *app) int64 { return int64(a.cmd.Process.Pid) }
	client := func(a *app, url string) func(otlptest.Got) bool {
		return func(g otlptest.Got) bool {
			return g.Resource["process.pid"] == pidOf(a) && g.Span.GetKind() == 3 && otlptest.Attrs(g.Span.GetAttributes())["url.full"] == url
		}
	}
	// Teach the agent both endpoints (pyback's it knows already: it serves
	// HTTP/1).
	for _, to := range []*app{goApp, back} {
		get(t, front.url(fmt.Sprintf("/call?port=%d&path=/health", to.port)))
		recv.WaitSpans(t, 10*time.Second, client(front, to.url("/health")), 1)
	}

	seen := map[string]bool{}
	for i, c := range []struct {
		to   *app
		path string
		db   bool
	}{{goApp, "/query", true}, {back, "/users/7", false}, {goApp, "/query", true}, {back, "/users/8", false}} {
		if code := get(t, front.url(fmt.Sprintf("/call?port=%d&path=%s", c.to.port, c.path))); code != 200 {
			t.Fatalf("call %d: /call answered %d", i, code)
		}
		// The callee's server span, then the whole trace it is in.
		isCallee := func(g otlptest.Got) bool {
			return spanWithPath(c.to, c.path)(g) && g.Span.GetKind() == 2 && !seen[string(g.Span.GetSpanId())]
		}
		callee := recv.WaitSpans(t, 10*time.Second, isCallee, 1)[0].Span
		seen[string(callee.GetSpanId())] = true
		want := 3
		if c.db {
			want = 4
		}
		inTrace := func(g otlptest.Got) bool { return bytes.Equal(g.Span.GetTraceId(), callee.GetTraceId()) }
		spans := recv.WaitSpans(t, 10*time.Second, inTrace, want)
		waitQuiet(recv, func(g otlptest.Got) bool { return inTrace(g) && count(recv, inTrace) > want }, 500*time.Millisecond)
		if n := count(recv, inTrace); n != want {
			t.Fatalf("call %d to %s: %d spans in the trace, want %d", i, c.path, n, want)
		}
		byKind := map[string]otlptest.Got{}
		for _, g := range spans {
			switch {
			case g.Resource["process.pid"] == pidOf(front) && g.Span.GetKind() == 2:
				byKind["front"] = g
			case g.Resource["process.pid"] == pidOf(front) && g.Span.GetKind() == 3:
				byKind["call"] = g
			case g.Resource["process.pid"] == pidOf(c.to) && g.Span.GetKind() == 2:
				byKind["callee"] = g
			case g.Resource["process.pid"] == pidOf(goApp) && g.Scope == dbsqlScope:
				byKind["db"] = g
			}
		}
		if len(byKind) != want {
			t.Fatalf("call %d: spans %v", i, byKind)
		}
		front, call, callee := byKind["front"].Span, byKind["call"].Span, byKind["callee"].Span
		if p := otlptest.Attrs(front.GetAttributes())["url.path"]; p != "/call" || len(front.GetParentSpanId()) != 0 {
			t.Errorf("call %d: the root is %v with parent %x, want /call as a root", i, p, front.GetParentSpanId())
		}
		if u := otlptest.Attrs(call.GetAttributes())["url.full"]; u != c.to.url(c.path) || !bytes.Equal(call.GetParentSpanId(), front.GetSpanId()) {
			t.Errorf("call %d: client span %v parent %x, want %s under /call %x", i, u, call.GetParentSpanId(), c.to.url(c.path), front.GetSpanId())
		}
		if !bytes.Equal(callee.GetParentSpanId(), call.GetSpanId()) {
			t.Errorf("call %d: %s's parent %x, want the client span %x", i, c.path, callee.GetParentSpanId(), call.GetSpanId())
		}
		if c.db {
			db := byKind["db"].Span
			if !bytes.Equal(db.GetParentSpanId(), callee.GetSpanId()) || db.GetName() != "SELECT users_wireprop" {
				t.Errorf("call %d: db span %q parent %x, want SELECT users_wireprop under %x", i, db.GetName(), db.GetParentSpanId(), callee.GetSpanId())
			}
		}
	}
}
