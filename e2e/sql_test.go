package e2e

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/tracewire/tracewire/internal/dbtest"
	"github.com/tracewire/tracewire/internal/otlptest"
)

const dbsqlScope = "github.com/tracewire/tracewire/probes/dbsql"

// dbSpan is what one database/sql span must be.
type dbSpan struct {
	name    string
	attrs   map[string]any // besides db.system.name and server.*
	errMsg  string         // status message when the call failed
	errType string
}

// TestSQLSpans runs the sqlapp target against a real PostgreSQL (pgx and
// lib/pq) and a real MariaDB (go-sql-driver/mysql) and checks every database/sql span of
// each kind of call, field by field, as children of the HTTP server span.
func TestSQLSpans(t *testing.T) {
	requireEBPF(t)
	for _, db := range []struct {
		name, driver, system, errType string
		server                        func(testing.TB) dbtest.Server
		ph                            func(int) string
		missing                       func(table string) string
	}{
		{
			name: "postgres", driver: "pgx", system: "postgresql", errType: "*pgconn.PrepareError",
			server: dbtest.RequirePostgres,
			ph:     func(n int) string { return fmt.Sprintf("$%d", n) },
			missing: func(table string) string {
				return fmt.Sprintf("relation %q does not exist", table)
			},
		},
		{
			name: "pq", driver: "postgres", system: "postgresql", errType: "*pq.Error",
			server: dbtest.RequirePostgres,
			ph:     func(n int) string { return fmt.Sprintf("$%d", n) },
			missing: func(table string) string {
				return fmt.Sprintf("relation %q does not exist", table)
			},
		},
		{
			name: "mariadb", driver: "mysql", system: "mysql", errType: "*mysql.MySQLError",
			server: dbtest.RequireMariaDB,
			ph:     func(int) string { return "?" },
			missing: func(table string) string {
				return fmt.Sprintf("Table '%s.%s' doesn't exist", dbtest.Name, table)
			},
		},
	} {
		t.Run(db.name, func(t *testing.T) {
			srv := db.server(t)
			tbl := "users_" + db.name
			audit := tbl + "_audit"
			recv := otlptest.Start(t)
			a := startAppArgs(t, "sqlapp", []string{"-driver", db.driver, "-dsn", srv.DSN, "-table", tbl})
			startAgent(t, recv, []string{"sqlapp"})
			waitTraced(t, recv, a)

			q := func(text, op, coll string) map[string]any {
				return map[string]any{"db.query.text": text, "db.operation.name": op, "db.collection.name": coll}
			}
			op := func(name string) dbSpan {
				return dbSpan{name: name, attrs: map[string]any{"db.operation.name": name}}
			}
			seen := map[string]bool{} // server spans already checked
			insert := dbSpan{name: "INSERT " + audit, attrs: q("INSERT INTO "+audit+" (id, msg) VALUES (?, ?)", "INSERT", audit)}
			for _, c := range []struct {
				path   string
				status int
				want   []dbSpan
			}{
				{"/query", 200, []dbSpan{{name: "SELECT " + tbl, attrs: q("SELECT id, name FROM "+tbl+" WHERE id = "+db.ph(1), "SELECT", tbl)}}},
				{"/queryrow", 200, []dbSpan{{name: "SELECT " + tbl, attrs: q("SELECT name FROM "+tbl+" WHERE id = ?", "SELECT", tbl)}}},
				{"/exec", 200, []dbSpan{{name: "UPDATE " + tbl, attrs: q("UPDATE "+tbl+" SET name = ? WHERE id = ?", "UPDATE", tbl)}}},
				{"/prepare", 200, []dbSpan{{name: "INSERT " + audit, attrs: q("INSERT INTO "+audit+" (id, msg) VALUES ("+db.ph(1)+", "+db.ph(2)+")", "INSERT", audit)}}},
				{"/tx?end=commit", 200, []dbSpan{op("BEGIN"), insert, op("COMMIT")}},
				{"/tx?end=rollback", 200, []dbSpan{op("BEGIN"), insert, op("ROLLBACK")}},
				{"/fail", 500, []dbSpan{{
					name: "SELECT " + tbl + "_missing", attrs: q("SELECT name FROM "+tbl+"_missing WHERE id = ?", "SELECT", tbl+"_missing"),
					errMsg: db.missing(tbl + "_missing"), errType: db.errType,
				}}},
				{"/secret", 200, []dbSpan{{name: "SELECT " + tbl, attrs: q("SELECT id FROM "+tbl+" WHERE name = ? AND id <> ?", "SELECT", tbl)}}},
			} {
				if got := get(t, a.url(c.path)); got != c.status {
					t.Fatalf("GET %s: status %d, want %d", c.path, got, c.status)
				}
				path, _, _ := strings.Cut(c.path, "?")
				isPath := spanWithPath(a, path)
				server := recv.WaitSpans(t, 10*time.Second, func(g otlptest.Got) bool {
					return isPath(g) && !seen[string(g.Span.SpanId)]
				}, 1)[0].Span
				seen[string(server.SpanId)] = true
				calls := dbSpansOf(t, recv, server, len(c.want))
				for i, w := range c.want {
					checkDBSpan(t, c.path, calls[i], server, w, db.system, srv.Port)
				}
			}
			// The literals of /secret appear nowhere in what was exported.
			for _, g := range recv.Spans() {
				b, err := proto.Marshal(g.Span)
				if err != nil {
					t.Fatal(err)
				}
				for _, secret := range []string{"hunter2", "4111111111111111"} {
					if bytes.Contains(b, []byte(secret)) || strings.Contains(fmt.Sprint(g.Resource), secret) {
						t.Errorf("exported span %q contains the literal %q", g.Span.Name, secret)
					}
				}
			}
		})
	}
}

// dbSpansOf waits for the n database spans in server's trace, checks that
// no more arrive, and returns them in start order.
func dbSpansOf(t *testing.T, recv *otlptest.Receiver, server *tracepb.Span, n int) []*tracepb.Span {
	t.Helper()
	match := func(g otlptest.Got) bool {
		return g.Scope == dbsqlScope && bytes.Equal(g.Span.TraceId, server.TraceId)
	}
	got := recv.WaitSpans(t, 10*time.Second, match, n)
	if waitQuiet(recv, func(g otlptest.Got) bool { return match(g) && count(recv, match) > n }, 300*time.Millisecond) {
		t.Fatalf("more than %d database spans in the trace of %s", n, server.Name)
	}
	var out []*tracepb.Span
	for _, g := range got {
		out = append(out, g.Span)
	}
	slices.SortFunc(out, func(a, b *tracepb.Span) int { return int(a.StartTimeUnixNano) - int(b.StartTimeUnixNano) })
	return out
}

func checkDBSpan(t *testing.T, call string, s, server *tracepb.Span, w dbSpan, system string, port int) {
	t.Helper()
	if s.Name != w.name || s.Kind != tracepb.Span_SPAN_KIND_CLIENT {
		t.Errorf("%s: span %q kind %v, want %q CLIENT", call, s.Name, s.Kind, w.name)
	}
	if !bytes.Equal(s.ParentSpanId, server.SpanId) {
		t.Errorf("%s: %s is not the child of the server span", call, s.Name)
	}
	checkIDs(t, s)
	if s.StartTimeUnixNano < server.StartTimeUnixNano || s.EndTimeUnixNano > server.EndTimeUnixNano || s.StartTimeUnixNano > s.EndTimeUnixNano {
		t.Errorf("%s: %s [%d, %d] is not within its server span [%d, %d]", call, s.Name,
			s.StartTimeUnixNano, s.EndTimeUnixNano, server.StartTimeUnixNano, server.EndTimeUnixNano)
	}
	want := map[string]any{"db.system.name": system, "server.address": dbtest.Host, "server.port": int64(port)}
	for k, v := range w.attrs {
		want[k] = v
	}
	if w.errType != "" {
		want["error.type"] = w.errType
	}
	checkAttrs(t, s.Attributes, want)
	switch {
	case w.errMsg == "" && s.Status.GetCode() != tracepb.Status_STATUS_CODE_UNSET:
		t.Errorf("%s: %s status %v, want unset", call, s.Name, s.Status)
	case w.errMsg != "" && (s.Status.GetCode() != tracepb.Status_STATUS_CODE_ERROR || s.Status.GetMessage() != w.errMsg):
		t.Errorf("%s: %s status %v, want Error %q", call, s.Name, s.Status, w.errMsg)
	}
}
