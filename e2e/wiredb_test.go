package e2e

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tracewire/tracewire/internal/dbtest"
	"github.com/tracewire/tracewire/internal/otlptest"
)

// cli is a database command-line client reading statements on its stdin.
type cli struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	n     int
}

func startCLI(t *testing.T, name string, args []string, env ...string) *cli {
	t.Helper()
	c := &cli{cmd: exec.Command(name, args...)}
	c.cmd.Env = append(os.Environ(), env...)
	var err error
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.stdin.Close(); c.cmd.Process.Kill(); c.cmd.Wait() })
	return c
}

// traced sends a statement naming a fresh column until its span arrives:
// the client connected before the agent saw it, and is traced from then on.
func (c *cli) traced(t *testing.T, recv *otlptest.Receiver) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c.n++
		col := fmt.Sprintf("warmup%d", c.n)
		fmt.Fprintf(c.stdin, "SELECT 1 AS %s;\n", col)
		if waitQuiet(recv, queryContains(c.cmd.Process.Pid, col), 300*time.Millisecond) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no span within 30 s", c.cmd.Path)
		}
	}
}

func queryContains(pid int, s string) func(otlptest.Got) bool {
	return func(g otlptest.Got) bool {
		q, _ := otlptest.Attrs(g.Span.GetAttributes())["db.query.text"].(string)
		return g.Resource["process.pid"] == int64(pid) && strings.Contains(q, s)
	}
}

// checkWireDBSpan checks a root database span's every attribute, name, ids
// and status.
func checkWireDBSpan(t *testing.T, g otlptest.Got, name string, want map[string]any, errMsg string) {
	t.Helper()
	checkWireDBFields(t, g, name, want, errMsg)
	if len(g.Span.GetParentSpanId()) != 0 {
		t.Errorf("%s: parent %x, want a root", name, g.Span.GetParentSpanId())
	}
}

// checkWireDBFields is checkWireDBSpan but for the parent.
func checkWireDBFields(t *testing.T, g otlptest.Got, name string, want map[string]any, errMsg string) {
	t.Helper()
	checkAttrs(t, g.Span.GetAttributes(), want)
	checkIDs(t, g.Span)
	if g.Span.GetName() != name || g.Span.GetKind() != 3 || g.Scope != "github.com/tracewire/tracewire/probes/wire" {
		t.Errorf("span %q kind %v scope %q, want %q CLIENT", g.Span.GetName(), g.Span.GetKind(), g.Scope, name)
	}
	st := g.Span.GetStatus()
	if errMsg == "" && st.GetCode() != 0 || errMsg != "" && (st.GetCode() != 2 || st.GetMessage() != errMsg) {
		t.Errorf("%s: status %v, want error %q", name, st, errMsg)
	}
	if g.Span.GetEndTimeUnixNano() < g.Span.GetStartTimeUnixNano() {
		t.Errorf("%s: times %d..%d", name, g.Span.GetStartTimeUnixNano(), g.Span.GetEndTimeUnixNano())
	}
}

// TestWireDatabases: PostgreSQL and MariaDB clients that are not Go (psql,
// pgbench with named prepared statements, the mariadb client) traced from
// the wire: one CLIENT span per statement, literals masked, errors with the
// server's message.
func TestWireDatabases(t *testing.T) {
	requireEBPF(t)
	pg := dbtest.RequirePostgres(t)
	my := dbtest.RequireMariaDB(t)
	pgEnv := []string{"PGPASSWORD=" + dbtest.Name, "PGSSLMODE=disable"}
	pgArgs := []string{"-h", dbtest.Host, "-p", fmt.Sprint(pg.Port), "-U", dbtest.Name, "-d", dbtest.Name, "-v", "ON_ERROR_STOP=0", "-q"}
	setup := exec.Command("psql", append(pgArgs, "-c", "DROP TABLE IF EXISTS wire_users; CREATE TABLE wire_users (id int, name text); INSERT INTO wire_users VALUES (7, 'ann')")...)
	setup.Env = append(os.Environ(), pgEnv...)
	if out, err := setup.CombinedOutput(); err != nil {
		t.Fatalf("psql setup: %v\n%s", err, out)
	}
	pgbench, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pgbench")
	if len(pgbench) == 0 {
		t.Fatal("no pgbench in /usr/lib/postgresql/*/bin")
	}
	script := filepath.Join(t.TempDir(), "bench.sql")
	// The sleep lets the agent find pgbench before its first statement.
	if err := os.WriteFile(script, []byte("\\set uid 7\n\\sleep 1500 ms\nSELECT name FROM wire_users WHERE id = :uid;\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	recv := otlptest.Start(t)
	startAgent(t, recv, []string{"psql", "pgbench", "mariadb"})

	t.Run("psql", func(t *testing.T) {
		c := startCLI(t, "psql", pgArgs, pgEnv...)
		c.traced(t, recv)
		fmt.Fprintln(c.stdin, "SELECT id, name FROM wire_users WHERE name = 'ann';")
		fmt.Fprintln(c.stdin, "SELECT nope FROM wire_users WHERE id = 42;")
		pid := c.cmd.Process.Pid
		mine := func(g otlptest.Got) bool {
			q, _ := otlptest.Attrs(g.Span.GetAttributes())["db.query.text"].(string)
			return g.Resource["process.pid"] == int64(pid) && !strings.Contains(q, "warmup")
		}
		got := recv.WaitSpans(t, 10*time.Second, mine, 2)
		waitQuiet(recv, mine, 500*time.Millisecond)
		if n := count(recv, mine); n != 2 {
			t.Fatalf("%d spans, want 2", n)
		}
		base := map[string]any{"db.system.name": "postgresql", "server.address": dbtest.Host, "server.port": int64(pg.Port),
			"db.operation.name": "SELECT", "db.collection.name": "wire_users"}
		with := func(kv ...any) map[string]any {
			m := map[string]any{}
			for k, v := range base {
				m[k] = v
			}
			for i := 0; i < len(kv); i += 2 {
				m[kv[i].(string)] = kv[i+1]
			}
			return m
		}
		checkWireDBSpan(t, got[0], "SELECT wire_users", with("db.query.text", "SELECT id, name FROM wire_users WHERE name = ?;"), "")
		checkWireDBSpan(t, got[1], "SELECT wire_users", with("db.query.text", "SELECT nope FROM wire_users WHERE id = ?;", "error.type", "42703"),
			`column "nope" does not exist`)
	})

	t.Run("pgbench prepared", func(t *testing.T) {
		cmd := exec.Command(pgbench[0], "-h", dbtest.Host, "-p", fmt.Sprint(pg.Port), "-U", dbtest.Name,
			"-n", "-M", "prepared", "-t", "3", "-f", script, dbtest.Name)
		cmd.Env = append(os.Environ(), pgEnv...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("pgbench: %v\n%s", err, out)
		}
		pid := cmd.Process.Pid
		mine := func(g otlptest.Got) bool { return g.Resource["process.pid"] == int64(pid) }
		got := recv.WaitSpans(t, 10*time.Second, mine, 3)
		waitQuiet(recv, mine, 500*time.Millisecond)
		if n := count(recv, mine); n != 3 {
			t.Fatalf("%d spans, want 3 (one per execution of the prepared statement)", n)
		}
		for _, g := range got {
			checkWireDBSpan(t, g, "SELECT wire_users", map[string]any{"db.system.name": "postgresql", "server.address": dbtest.Host,
				"server.port": int64(pg.Port), "db.operation.name": "SELECT", "db.collection.name": "wire_users",
				"db.query.text": "SELECT name FROM wire_users WHERE id = $1;"}, "")
		}
	})

	t.Run("mariadb", func(t *testing.T) {
		c := startCLI(t, "mariadb", []string{"--protocol=TCP", "-h", dbtest.Host, "-P", fmt.Sprint(my.Port),
			"-u", dbtest.Name, "-p" + dbtest.Name, "--skip-ssl", "-B", dbtest.Name})
		c.traced(t, recv)
		fmt.Fprintln(c.stdin, "CREATE TABLE IF NOT EXISTS wire_items (id int);")
		fmt.Fprintln(c.stdin, "INSERT INTO wire_items VALUES (3);")
		fmt.Fprintln(c.stdin, "SELECT id FROM wire_items WHERE id = 3;")
		fmt.Fprintln(c.stdin, "SELECT nope FROM wire_items;")
		pid := c.cmd.Process.Pid
		mine := func(g otlptest.Got) bool {
			q, _ := otlptest.Attrs(g.Span.GetAttributes())["db.query.text"].(string)
			return g.Resource["process.pid"] == int64(pid) && strings.Contains(q, "wire_items")
		}
		got := recv.WaitSpans(t, 10*time.Second, mine, 4)
		waitQuiet(recv, mine, 500*time.Millisecond)
		if n := count(recv, mine); n != 4 {
			t.Fatalf("%d spans, want 4", n)
		}
		// The mariadb client sends statements without their ';' (psql keeps it).
		attrs := func(op, text string) map[string]any {
			return map[string]any{"db.system.name": "mysql", "server.address": dbtest.Host, "server.port": int64(my.Port),
				"db.operation.name": op, "db.collection.name": "wire_items", "db.query.text": text}
		}
		checkWireDBSpan(t, got[0], "CREATE wire_items", attrs("CREATE", "CREATE TABLE IF NOT EXISTS wire_items (id int)"), "")
		checkWireDBSpan(t, got[1], "INSERT wire_items", attrs("INSERT", "INSERT INTO wire_items VALUES (?)"), "")
		checkWireDBSpan(t, got[2], "SELECT wire_items", attrs("SELECT", "SELECT id FROM wire_items WHERE id = ?"), "")
		bad := attrs("SELECT", "SELECT nope FROM wire_items")
		bad["error.type"] = "1054"
		checkWireDBSpan(t, got[3], "SELECT wire_items", bad, "Unknown column 'nope' in 'SELECT'")
	})
}
