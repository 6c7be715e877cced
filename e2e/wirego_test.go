package e2e

import (
	"bytes"
	"testing"
	"time"

	"github.com/tracewire/tracewire/internal/dbtest"
	"github.com/tracewire/tracewire/internal/otlptest"
)

// TestWireGoNativeDriver: a Go service querying PostgreSQL through pgx's
// own API (no database/sql, so no Go probe knows the call) gets its query
// spans from the wire, each the child of the HTTP request whose goroutine
// made it (the goroutine read in the tracepoint), and its HTTP requests
// stay the Go probe's: one span per request and per query, never two.
func TestWireGoNativeDriver(t *testing.T) {
	requireEBPF(t)
	pg := dbtest.RequirePostgres(t)
	pgUsers(t, pg)
	recv := otlptest.Start(t)
	a := startAppArgs(t, "pgxnative", []string{"-dsn", pg.DSN})
	startAgent(t, recv, []string{"pgxnative"})
	waitTraced(t, recv, a)
	pid := int64(a.cmd.Process.Pid)

	const n = 3
	for range n {
		if code := get(t, a.url("/user")); code != 200 {
			t.Fatalf("/user answered %d", code)
		}
	}
	isServer := func(g otlptest.Got) bool { return spanWithPath(a, "/user")(g) && g.Span.GetKind() == 2 }
	isDB := func(g otlptest.Got) bool { return g.Resource["process.pid"] == pid && g.Span.GetKind() == 3 }
	servers := recv.WaitSpans(t, 10*time.Second, isServer, n)
	dbs := recv.WaitSpans(t, 10*time.Second, isDB, n)
	waitQuiet(recv, func(g otlptest.Got) bool { return count(recv, isDB) > n || count(recv, isServer) > n }, time.Second)
	if s, d := count(recv, isServer), count(recv, isDB); s != n || d != n {
		t.Fatalf("%d server spans and %d query spans, want %d each", s, d, n)
	}
	for i, s := range servers {
		if s.Scope != "github.com/tracewire/tracewire/probes/nethttp" {
			t.Errorf("server span %d from %s, want the Go probe", i, s.Scope)
		}
		var child *otlptest.Got
		for j := range dbs {
			if bytes.Equal(dbs[j].Span.GetParentSpanId(), s.Span.GetSpanId()) && bytes.Equal(dbs[j].Span.GetTraceId(), s.Span.GetTraceId()) {
				child = &dbs[j]
			}
		}
		if child == nil {
			t.Errorf("request %d (span %x): no query span is its child", i, s.Span.GetSpanId())
			continue
		}
		checkWireDBFields(t, *child, "SELECT wire_users", map[string]any{"db.system.name": "postgresql", "server.address": dbtest.Host,
			"server.port": int64(pg.Port), "db.operation.name": "SELECT", "db.collection.name": "wire_users",
			"db.query.text": "SELECT name FROM wire_users WHERE id = $1"}, "")
		if child.Span.GetStartTimeUnixNano() < s.Span.GetStartTimeUnixNano() || child.Span.GetEndTimeUnixNano() > s.Span.GetEndTimeUnixNano() {
			t.Errorf("request %d: query span outside its request", i)
		}
	}
}
