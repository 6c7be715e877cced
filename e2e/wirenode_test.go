package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tracewire/tracewire/internal/dbtest"
	"github.com/tracewire/tracewire/internal/otlptest"
)

var npmOnce = sync.OnceValue(func() error {
	cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund")
	cmd.Dir = "../testdata/apps/nodeshop"
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("npm ci: %v\n%s", err, out)
	}
	return nil
})

// pgUsers makes the wire_users table the wire tests query.
func pgUsers(t *testing.T, pg dbtest.Server) {
	t.Helper()
	cmd := exec.Command("psql", "-h", dbtest.Host, "-p", fmt.Sprint(pg.Port), "-U", dbtest.Name, "-d", dbtest.Name, "-q", "-c",
		"CREATE TABLE IF NOT EXISTS wire_users (id int, name text); DELETE FROM wire_users; INSERT INTO wire_users VALUES (7, 'ann')")
	cmd.Env = append(os.Environ(), "PGPASSWORD="+dbtest.Name, "PGSSLMODE=disable")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("psql: %v\n%s", err, out)
	}
}

// TestWireNode: a Node.js service (one event loop) traced from the wire:
// its server spans, an http.get made while its request is the only one in
// flight as that request's child, and a pg query (extended protocol, on a
// connection opened before the agent traced the process) as a child too.
func TestWireNode(t *testing.T) {
	requireEBPF(t)
	pg := dbtest.RequirePostgres(t)
	pgUsers(t, pg)
	if err := npmOnce(); err != nil {
		t.Fatal(err)
	}
	recv := otlptest.Start(t)
	goApp := startApp(t, "hello-go126")
	a := startInterpreted(t, "nodeshop", "node", "nodeshop/server.js", "OTEL_SERVICE_NAME=nodeshop", "PGHOST="+dbtest.Host,
		fmt.Sprintf("PGPORT=%d", pg.Port), "PGUSER="+dbtest.Name, "PGPASSWORD="+dbtest.Name, "PGDATABASE="+dbtest.Name, "PGSSLMODE=disable")
	startAgent(t, recv, []string{"nodeshop"})
	waitTraced(t, recv, a)
	pid := int64(a.cmd.Process.Pid)

	get(t, a.url("/users/1"))
	get(t, a.url(fmt.Sprintf("/call?port=%d&path=/users/from-node", goApp.port)))
	if code := get(t, a.url("/db?id=7")); code != 200 {
		t.Fatalf("/db answered %d", code)
	}

	want := map[string]bool{"/users/1": true, "/call": true, "/db": true}
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
	var httpClient, dbClient otlptest.Got
	for _, g := range recv.Spans() {
		a := otlptest.Attrs(g.Span.GetAttributes())
		switch {
		case server(g):
			byPath[a["url.path"].(string)] = g
			if g.Resource["service.name"] != "nodeshop" || a["http.response.status_code"] != int64(200) || g.Span.GetName() != "GET" {
				t.Errorf("server span %s: service %v attrs %v name %q", a["url.path"], g.Resource["service.name"], a, g.Span.GetName())
			}
		case client(g) && a["db.system.name"] != nil:
			dbClient = g
		case client(g):
			httpClient = g
		}
	}
	checkAttrs(t, httpClient.Span.GetAttributes(), map[string]any{
		"http.request.method": "GET", "url.full": fmt.Sprintf("http://127.0.0.1:%d/users/from-node", goApp.port),
		"server.address": "127.0.0.1", "server.port": int64(goApp.port), "network.peer.address": "127.0.0.1",
		"network.peer.port": int64(goApp.port), "http.response.status_code": int64(200),
	})
	checkAttrs(t, dbClient.Span.GetAttributes(), map[string]any{
		"db.system.name": "postgresql", "db.query.text": "SELECT name FROM wire_users WHERE id = $1", "db.operation.name": "SELECT",
		"db.collection.name": "wire_users", "server.address": dbtest.Host, "server.port": int64(pg.Port),
	})
	for _, c := range []struct {
		child  otlptest.Got
		parent string
	}{{httpClient, "/call"}, {dbClient, "/db"}} {
		p := byPath[c.parent].Span
		if string(c.child.Span.GetTraceId()) != string(p.GetTraceId()) || string(c.child.Span.GetParentSpanId()) != string(p.GetSpanId()) {
			t.Errorf("%s: client span %q is not the child of its server span", c.parent, c.child.Span.GetName())
		}
	}

	// A call made while another request is in flight on the one event loop
	// (/wait answers after 1 s): which request it belongs to cannot be told,
	// so it has no parent.
	var wg sync.WaitGroup
	wg.Go(func() { get(t, a.url("/wait?ms=1000")) })
	time.Sleep(100 * time.Millisecond)
	get(t, a.url(fmt.Sprintf("/call?port=%d&path=/users/overlap", goApp.port)))
	wg.Wait()
	overlap := func(g otlptest.Got) bool {
		u, _ := otlptest.Attrs(g.Span.GetAttributes())["url.full"].(string)
		return client(g) && strings.HasSuffix(u, "/users/overlap")
	}
	if g := recv.WaitSpans(t, 10*time.Second, overlap, 1)[0]; len(g.Span.GetParentSpanId()) != 0 {
		t.Errorf("a call made while two requests were in flight has parent %x", g.Span.GetParentSpanId())
	}
}
