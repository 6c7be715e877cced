package e2e

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tracewire/tracewire/internal/dbtest"
	"github.com/tracewire/tracewire/internal/otlptest"
)

// TestNoSecretsAnywhere drives every probe with secrets in the places an
// application puts them (credential headers, cookies, query strings, URL
// userinfo, SQL literals) and searches everything the agent exported and
// logged, at debug level: none may appear.
func TestNoSecretsAnywhere(t *testing.T) {
	requireEBPF(t)
	pg := dbtest.RequirePostgres(t)
	recv := otlptest.Start(t)
	grpcAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	a, b := startApp(t, "hello-go126"), startApp(t, "hello-go125")
	sqlApp := startAppArgs(t, "sqlapp", []string{"-driver", "pgx", "-dsn", pg.DSN, "-table", "users_secrets"})
	gb := startAppArgs(t, "grpcapp", []string{"-grpc", grpcAddr, "-dsn", pg.DSN, "-table", "users_secrets"})
	ga := startAppArgs(t, "grpcapp-v172", []string{"-upstream", grpcAddr})
	ag := startAgent(t, recv, []string{"hello-go126", "hello-go125", "sqlapp", "grpcapp", "grpcapp-v172"})
	for _, x := range []*app{a, b, sqlApp, gb, ga} {
		waitTraced(t, recv, x)
	}

	secrets := []string{"PASSWORD-1", "TOKEN-2", "QUERYSECRET-3", "BEARER-4", "COOKIE-5", "APIKEY-6", "GRPCSECRET-7", "hunter2", "4111111111111111"}
	// Go's client turns URL userinfo into a Basic Authorization header.
	secrets = append(secrets, base64.StdEncoding.EncodeToString([]byte("user:PASSWORD-1")))

	down := strings.Replace(b.url("/users/downstream?token=TOKEN-2"), "http://", "http://user:PASSWORD-1@", 1)
	getWithSecrets(t, a.url("/call?pw=QUERYSECRET-3&url="+url.QueryEscape(down)))
	traceOf(t, recv, a, "/call", 3)

	if got := get(t, sqlApp.url("/secret")); got != 200 {
		t.Fatalf("sqlapp /secret: %d", got)
	}
	recv.WaitSpans(t, 10*time.Second, spanWithPath(sqlApp, "/secret"), 1)
	get(t, ga.url("/check?service=GRPCSECRET-7&token=TOKEN-2"))
	recv.WaitSpans(t, 10*time.Second, spanWithPath(ga, "/check"), 1)
	time.Sleep(time.Second) // every child span has arrived

	stop := time.Now()
	if code := ag.terminate(t); code != 0 {
		t.Errorf("agent exit code %d", code)
	}
	t.Logf("agent exited %v after SIGTERM", time.Since(stop).Round(time.Millisecond))
	// Its uprobes go with the detacher it handed them to.
	waitNoPrograms(t, []string{"uprobe_serverHandler_ServeHTTP", "uprobe_DB_queryDC", "uprobe_Server_handleStream"}, 30*time.Second)
	t.Logf("every uprobe removed %v after SIGTERM", time.Since(stop).Round(time.Millisecond))
	checkNoSecrets(t, recv, ag, secrets)
	// The test is only worth something if the spans carrying those places
	// were exported: url.full of the client call, with its query redacted.
	found := false
	for _, g := range recv.Spans() {
		if u, _ := otlptest.Attrs(g.Span.Attributes)["url.full"].(string); strings.Contains(u, "/users/downstream") {
			found = true
			if want := "http://REDACTED:REDACTED@" + strings.TrimPrefix(b.url("/users/downstream?token=REDACTED"), "http://"); u != want {
				t.Errorf("url.full %q, want %q", u, want)
			}
		}
	}
	if !found {
		t.Error("no client span with url.full")
	}
}

// getWithSecrets sends GET url with credentials in its headers: BEARER-4,
// COOKIE-5, APIKEY-6.
func getWithSecrets(t *testing.T, url string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer BEARER-4")
	req.Header.Set("Cookie", "session=COOKIE-5")
	req.Header.Set("X-Api-Key", "APIKEY-6")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

// checkNoSecrets searches every exported span and resource and the agent's
// output for each secret.
func checkNoSecrets(t *testing.T, recv *otlptest.Receiver, ag *agentProc, secrets []string) {
	t.Helper()
	var out strings.Builder
	for _, g := range recv.Spans() {
		b, err := proto.Marshal(g.Span)
		if err != nil {
			t.Fatal(err)
		}
		out.Write(b)
		fmt.Fprint(&out, g.Resource)
	}
	out.WriteString(ag.stdout.String())
	out.WriteString(ag.stderr.String())
	for _, s := range secrets {
		if strings.Contains(out.String(), s) {
			t.Errorf("%q reached the exported spans or the agent's output", s)
		}
	}
}

// TestNoSecretsFromTheWire: the same for targets traced from the wire: a
// Python service given credential headers, cookies and query strings, whose
// handler calls with a token in its URL, and psql sending a literal that the
// server's error message repeats.
func TestNoSecretsFromTheWire(t *testing.T) {
	requireEBPF(t)
	pg := dbtest.RequirePostgres(t)
	pgUsers(t, pg)
	recv := otlptest.Start(t)
	goApp := startApp(t, "hello-go126")
	py := startPython(t, "pysecrets")
	ag := startAgent(t, recv, []string{"pysecrets", "psql"})
	waitTraced(t, recv, py)
	secrets := []string{"TOKEN-2", "QUERYSECRET-3", "BEARER-4", "COOKIE-5", "APIKEY-6", "hunter2"}

	getWithSecrets(t, py.url(fmt.Sprintf("/call?pw=QUERYSECRET-3&port=%d&path=/users/x%%3Ftoken%%3DTOKEN-2", goApp.port)))
	c := startCLI(t, "psql", []string{"-h", dbtest.Host, "-p", fmt.Sprint(pg.Port), "-U", dbtest.Name, "-d", dbtest.Name, "-q"},
		"PGPASSWORD="+dbtest.Name, "PGSSLMODE=disable")
	c.traced(t, recv)
	fmt.Fprintln(c.stdin, "SELECT name FROM wire_users WHERE id = 'hunter2';")
	pid := c.cmd.Process.Pid
	failed := func(g otlptest.Got) bool {
		return g.Resource["process.pid"] == int64(pid) && g.Span.GetStatus().GetCode() == 2
	}
	bad := recv.WaitSpans(t, 10*time.Second, failed, 1)[0]
	isClient := func(g otlptest.Got) bool {
		return g.Resource["process.pid"] == int64(py.cmd.Process.Pid) && g.Span.GetKind() == 3
	}
	cl := recv.WaitSpans(t, 10*time.Second, isClient, 1)[0]
	time.Sleep(500 * time.Millisecond)
	if code := ag.terminate(t); code != 0 {
		t.Errorf("agent exit code %d", code)
	}
	checkNoSecrets(t, recv, ag, secrets)
	// The spans that carry those places were exported, masked.
	if u := otlptest.Attrs(cl.Span.GetAttributes())["url.full"]; u != fmt.Sprintf("http://127.0.0.1:%d/users/x?token=REDACTED", goApp.port) {
		t.Errorf("url.full %v", u)
	}
	if q := otlptest.Attrs(bad.Span.GetAttributes())["db.query.text"]; q != "SELECT name FROM wire_users WHERE id = ?;" {
		t.Errorf("db.query.text %v", q)
	}
	if !strings.Contains(bad.Span.GetStatus().GetMessage(), "invalid input syntax") {
		t.Errorf("status %v, want the server's message with the literal masked", bad.Span.GetStatus())
	}
}
