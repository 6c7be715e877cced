package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"

	"github.com/tracewire/tracewire/internal/dbtest"
	"github.com/tracewire/tracewire/internal/otlptest"
)

// nobody is the unprivileged user the agent runs as: every target is owned
// by root, so the agent sees other users' processes, as on a node.
const nobody = 65534

// daemonSetCaps returns the capabilities deploy/daemonset.yaml adds, as
// Kubernetes spells them (BPF, SYS_PTRACE): the tests grant exactly these,
// so the manifest and what is proven here cannot diverge.
func daemonSetCaps(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile("../deploy/daemonset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var ds appsv1.DaemonSet
	if err := yaml.UnmarshalStrict(raw, &ds); err != nil {
		t.Fatalf("daemonset.yaml: %v", err)
	}
	cs := ds.Spec.Template.Spec.Containers
	if len(cs) != 1 || cs[0].SecurityContext == nil || cs[0].SecurityContext.Capabilities == nil {
		t.Fatal("daemonset.yaml: no capabilities in the one container's securityContext")
	}
	var caps []string
	for _, c := range cs[0].SecurityContext.Capabilities.Add {
		caps = append(caps, string(c))
	}
	if len(caps) == 0 {
		t.Fatal("daemonset.yaml adds no capability")
	}
	return caps
}

// agentAsNobody is the agent command run by setpriv as nobody, without
// groups, holding exactly caps in every set (effective, permitted,
// inheritable, ambient, bounding: what drop ALL + add gives a container),
// with no_new_privs (allowPrivilegeEscalation: false).
// The daemonset runs the agent as uid 0, which can read more than nobody
// (root-owned files such as tracefs), so caps enough here are enough there.
func agentAsNobody(ctx context.Context, t *testing.T, caps []string, args ...string) *exec.Cmd {
	t.Helper()
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Fatalf("setpriv (util-linux) is needed to drop privileges: %v", err)
	}
	set := "-all"
	for _, c := range caps {
		set += ",+" + strings.ToLower(c)
	}
	id := strconv.Itoa(nobody)
	return exec.CommandContext(ctx, setpriv, append([]string{
		"--reuid=" + id, "--regid=" + id, "--clear-groups", "--no-new-privs",
		"--inh-caps=" + set, "--ambient-caps=" + set, "--bounding-set=" + set,
		"--", filepath.Join(buildAll(t), "agent"),
	}, args...)...)
}

// startAgentAsNobody is startAgent for an agent run by agentAsNobody. It
// checks that the agent really runs with nothing but caps.
func startAgentAsNobody(t *testing.T, recv *otlptest.Receiver, targets, caps []string) *agentProc {
	t.Helper()
	ag := runAgent(t, agentAsNobody(context.Background(), t, caps, agentArgs(targets, nil)...), recv)
	t.Cleanup(func() {
		ag.terminate(t)
		// A permission problem that costs no span the test checks (an
		// adoption, a target of another user) is still logged as a warning.
		for _, l := range strings.Split(ag.stderr.String(), "\n") {
			if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
				t.Errorf("agent: %s", l)
			}
		}
	})
	checkCredentials(t, ag.cmd.Process.Pid, caps)
	return ag
}

// capBits are the capability numbers of the names daemonset.yaml may use.
var capBits = map[string]uint{
	"DAC_READ_SEARCH": 2, "NET_ADMIN": 12, "SYS_PTRACE": 19, "SYS_ADMIN": 21,
	"SYS_RESOURCE": 24, "PERFMON": 38, "BPF": 39,
}

// checkCredentials: pid (setpriv until it executes the agent) ends up as
// nobody with exactly caps.
func checkCredentials(t *testing.T, pid int, caps []string) {
	t.Helper()
	var want uint64
	for _, c := range caps {
		bit, ok := capBits[c]
		if !ok {
			t.Fatalf("capability %s: number unknown to this test", c)
		}
		want |= 1 << bit
	}
	wantStatus := []string{
		fmt.Sprintf("Uid:\t%d\t%d\t%d\t%d", nobody, nobody, nobody, nobody),
		fmt.Sprintf("CapEff:\t%016x", want), fmt.Sprintf("CapPrm:\t%016x", want), fmt.Sprintf("CapBnd:\t%016x", want),
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		lines := strings.Split(string(status), "\n")
		if filepath.Base(exe) == "agent" {
			for _, w := range wantStatus {
				if !slices.Contains(lines, w) {
					t.Fatalf("agent credentials: no %q in\n%s", w, status)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("setpriv did not execute the agent within 5 s (exe %q)", exe)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// privCopy copies the build name to a name of this test's own (at most 15
// bytes, the comm), so that agents of other tests running on the machine do
// not trace its targets, nor its agent theirs, and returns that name.
func privCopy(t *testing.T, name, dst string) string {
	t.Helper()
	dir := buildAll(t)
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, dst), b, 0o755); err != nil {
		t.Fatal(err)
	}
	return dst
}

// TestPrivilegeDaemonSetCaps: the agent, run as nobody with exactly the
// capabilities of deploy/daemonset.yaml, traces root-owned targets found by
// the /proc scan and by the exec tracepoint, with every probe: HTTP server
// and client spans with traceparent across two processes (sock_ops on a new
// connection, pidfd_getfd on one opened before the agent), database/sql and
// gRPC, resources read from /proc/PID/environ.
func TestPrivilegeDaemonSetCaps(t *testing.T) {
	requireEBPF(t)
	caps := daemonSetCaps(t)
	t.Logf("capabilities: %v", caps)
	db := dbtest.RequirePostgres(t)
	recv := otlptest.Start(t)
	raw := startRawServer(t)

	// Before the agent: found by the /proc scan; A's keep-alive connection
	// to raw can only be adopted with pidfd_getfd.
	a := startApp(t, privCopy(t, "hello-go126", "priv-hello126"))
	if got := get(t, a.url("/call?url="+url.QueryEscape(raw.url("/before")))); got != 200 {
		t.Fatalf("A /call before the agent: %d", got)
	}
	const table = "users_priv"
	grpcPort := freePort(t)
	grpcAddr := fmt.Sprintf("127.0.0.1:%d", grpcPort)
	grpcName := privCopy(t, "grpcapp", "priv-grpcapp")
	gb := startAppArgs(t, grpcName, []string{"-grpc", grpcAddr, "-dsn", db.DSN, "-table", table})
	ga := startAppArgs(t, grpcName, []string{"-upstream", grpcAddr})

	bName := privCopy(t, "hello-go122", "priv-hello122")
	startAgentAsNobody(t, recv, []string{a.name, bName, grpcName}, caps)
	// After the agent: found by the exec tracepoint; its service name is in
	// its environment.
	b := startApp(t, bName, "OTEL_SERVICE_NAME=priv-downstream")
	for _, x := range []*app{a, b, ga, gb} {
		waitTraced(t, recv, x)
	}
	seen := map[string]bool{} // server spans already returned by next
	next := func(x *app, path string, n int) []otlptest.Got {
		t.Helper()
		isPath := spanWithPath(x, path)
		root := recv.WaitSpans(t, 10*time.Second, func(g otlptest.Got) bool {
			return isPath(g) && !seen[string(g.Span.SpanId)]
		}, 1)[0]
		seen[string(root.Span.SpanId)] = true
		return traceOfRoot(t, recv, root, n)
	}

	t.Run("adopted connection", func(t *testing.T) {
		if got := get(t, a.url("/call?url="+url.QueryEscape(raw.url("/after")))); got != 200 {
			t.Fatalf("A /call: %d", got)
		}
		cl := one(t, pick(next(a, "/call", 2), a, tracepb.Span_SPAN_KIND_CLIENT), "A client")
		reqs := raw.requests()
		if len(reqs) != 2 || reqs[0].conn != reqs[1].conn {
			t.Fatalf("want 2 requests on one connection, got %+v", reqs)
		}
		if tp := reqs[1].header.Values("Traceparent"); len(tp) != 1 || tp[0] != traceparentOf(cl) {
			t.Errorf("traceparent %q, want exactly [%s]", tp, traceparentOf(cl))
		}
	})

	t.Run("http across processes", func(t *testing.T) {
		if got := get(t, a.url("/call?url="+url.QueryEscape(b.url("/users/priv?token=secret")))); got != 200 {
			t.Fatalf("A /call: %d", got)
		}
		spans := next(a, "/call", 3)
		aServer := one(t, pick(spans, a, tracepb.Span_SPAN_KIND_SERVER), "A server")
		aClient := one(t, pick(spans, a, tracepb.Span_SPAN_KIND_CLIENT), "A client")
		bServer := one(t, pick(spans, b, tracepb.Span_SPAN_KIND_SERVER), "B server")
		checkChain(t, aServer, aClient, bServer)
		if aServer.Name != "GET /call" || aClient.Name != "GET" || bServer.Name != "GET /users/{id}" {
			t.Errorf("names %q, %q, %q", aServer.Name, aClient.Name, bServer.Name)
		}
		checkAttrs(t, aServer.Attributes, map[string]any{
			"http.request.method": "GET", "url.path": "/call", "url.scheme": "http", "http.route": "/call",
			"http.response.status_code": int64(200), "server.address": "127.0.0.1", "server.port": int64(a.port),
			"client.address": "127.0.0.1", "network.protocol.version": "1.1",
		})
		checkAttrs(t, aClient.Attributes, map[string]any{
			"http.request.method":       "GET",
			"url.full":                  fmt.Sprintf("http://127.0.0.1:%d/users/priv?token=REDACTED", b.port),
			"server.address":            "127.0.0.1",
			"server.port":               int64(b.port),
			"http.response.status_code": int64(200),
			"network.peer.address":      "127.0.0.1",
			"network.peer.port":         int64(b.port),
		})
		checkAttrs(t, bServer.Attributes, map[string]any{
			"http.request.method": "GET", "url.path": "/users/priv", "url.scheme": "http", "http.route": "/users/{id}",
			"http.response.status_code": int64(200), "server.address": "127.0.0.1", "server.port": int64(b.port),
			"client.address": "127.0.0.1", "network.protocol.version": "1.1",
		})
		res := recv.WaitSpans(t, time.Second, func(g otlptest.Got) bool { return bytes.Equal(g.Span.SpanId, bServer.SpanId) }, 1)[0].Resource
		for k, w := range map[string]any{
			"service.name": "priv-downstream", "process.pid": int64(b.cmd.Process.Pid),
			"process.executable.name": bName, "process.runtime.version": "go1.22.12",
		} {
			if res[k] != w {
				t.Errorf("B resource %s = %v, want %v", k, res[k], w)
			}
		}
	})

	t.Run("grpc and database/sql", func(t *testing.T) {
		if got := get(t, ga.url("/check?service=db")); got != 200 {
			t.Fatalf("GET /check: %d", got)
		}
		spans := next(ga, "/check", 4)
		httpSpan := one(t, pick(spans, ga, tracepb.Span_SPAN_KIND_SERVER), "A's HTTP server span")
		cl := one(t, pick(spans, ga, tracepb.Span_SPAN_KIND_CLIENT), "A's gRPC client span")
		sv := one(t, pick(spans, gb, tracepb.Span_SPAN_KIND_SERVER), "B's gRPC server span")
		sql := one(t, pick(spans, gb, tracepb.Span_SPAN_KIND_CLIENT), "B's SQL span")
		if httpSpan.Name != "GET /check" {
			t.Errorf("HTTP span %q", httpSpan.Name)
		}
		checkGRPC(t, cl, tracepb.Span_SPAN_KIND_CLIENT, "Check", 0, grpcPort, httpSpan, "")
		checkGRPC(t, sv, tracepb.Span_SPAN_KIND_SERVER, "Check", 0, grpcPort, cl, "")
		checkDBSpan(t, "/check", sql, sv, dbSpan{name: "SELECT " + table, attrs: map[string]any{
			"db.query.text": "SELECT name FROM " + table + " WHERE id = ?", "db.operation.name": "SELECT", "db.collection.name": table,
		}}, "postgresql", db.Port)
	})
}

// TestPrivilegeMissingCapability: without any one of the daemonset's
// capabilities the agent exits 1 at once with one sentence naming it.
func TestPrivilegeMissingCapability(t *testing.T) {
	requireEBPF(t)
	caps := daemonSetCaps(t)
	for _, drop := range caps {
		t.Run(drop, func(t *testing.T) {
			rest := slices.DeleteFunc(slices.Clone(caps), func(c string) bool { return c == drop })
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := agentAsNobody(ctx, t, rest, "--target", "x")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			if code := cmd.ProcessState.ExitCode(); code != 1 {
				t.Fatalf("exit %d (%v), want 1; stderr:\n%s", code, err, stderr.String())
			}
			msg := stderr.String()
			if !strings.HasPrefix(msg, "agent: missing capability CAP_"+drop+" (needed ") || strings.Count(msg, "\n") != 1 || !strings.HasSuffix(msg, "; run as root or grant it\n") {
				t.Errorf("stderr %q, want one line naming CAP_%s", msg, drop)
			}
		})
	}
}
