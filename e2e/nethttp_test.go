package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/tracewire/tracewire/internal/otlptest"
)

// TestServerSpans runs every Go version / stripped / PIE variant at once
// under one agent and checks each request's span and resource field by field.
func TestServerSpans(t *testing.T) {
	requireEBPF(t)
	recv := otlptest.Start(t)
	var names []string
	apps := map[string]*app{}
	for _, v := range variants {
		env := []string{}
		switch v.name {
		case "hello-go123":
			env = append(env, "OTEL_SERVICE_NAME=users-api", "OTEL_RESOURCE_ATTRIBUTES=team=blue,service.name=ignored")
		case "hello-go124":
			env = append(env, "OTEL_RESOURCE_ATTRIBUTES=service.name=from-attrs")
		}
		apps[v.name] = startApp(t, v.name, env...)
		names = append(names, v.name)
	}
	startAgent(t, recv, names, "OTEL_RESOURCE_ATTRIBUTES=deployment.environment.name=e2e")
	host, _ := os.Hostname()

	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			a := apps[v.name]
			waitTraced(t, recv, a)

			type req struct {
				path, query string
				status      int
				route       string
			}
			reqs := []req{
				{"/users/42", "", 200, "/users/{id}"},
				{"/status", "?code=503", 503, "/status"},
				{"/status", "?code=404", 404, "/status"},
				{"/silent", "", 200, "/silent"},
				// Responses that end inside the handler: sendfile, and
				// flushed parts (the span ends with the last of them).
				{"/file", "", 200, "/file"},
				{"/stream", "?ms=30", 202, "/stream"},
			}
			for _, r := range reqs {
				before := time.Now().UnixNano()
				resp, err := client.Get(a.url(r.path + r.query))
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body) // the whole response, then the span ends
				resp.Body.Close()
				if resp.StatusCode != r.status {
					t.Fatalf("GET %s: status %d, want %d", r.path+r.query, resp.StatusCode, r.status)
				}
				after := time.Now().UnixNano()
				match := func(g otlptest.Got) bool {
					at := otlptest.Attrs(g.Span.Attributes)
					return spanWithPath(a, r.path)(g) && at["http.response.status_code"] == int64(r.status)
				}
				got := recv.WaitSpans(t, 10*time.Second, match, 1)
				time.Sleep(300 * time.Millisecond) // a doubled span would arrive by now
				if n := count(recv, match); n != 1 {
					t.Fatalf("%s: %d spans, want exactly 1", r.path+r.query, n)
				}
				s := got[0].Span
				wantName := "GET"
				want := map[string]any{
					"http.request.method":       "GET",
					"url.path":                  r.path,
					"url.scheme":                "http",
					"http.response.status_code": int64(r.status),
					"server.address":            "127.0.0.1",
					"server.port":               int64(a.port),
					"client.address":            "127.0.0.1",
					"network.protocol.version":  "1.1",
				}
				if v.pattern {
					want["http.route"] = r.route
					wantName = "GET " + r.route
				}
				checkAttrs(t, s.Attributes, want)
				if s.Name != wantName {
					t.Errorf("name %q, want %q", s.Name, wantName)
				}
				if s.Kind != tracepb.Span_SPAN_KIND_SERVER {
					t.Errorf("kind %v, want SERVER", s.Kind)
				}
				wantStatus := tracepb.Status_STATUS_CODE_UNSET
				if r.status >= 500 {
					wantStatus = tracepb.Status_STATUS_CODE_ERROR
				}
				if s.Status.GetCode() != wantStatus {
					t.Errorf("%s: status %v, want %v", r.path+r.query, s.Status.GetCode(), wantStatus)
				}
				checkIDs(t, s)
				if len(s.ParentSpanId) != 0 {
					t.Errorf("parent %x, want none", s.ParentSpanId)
				}
				// The span lies inside the client's view of the request.
				if int64(s.StartTimeUnixNano) < before || int64(s.EndTimeUnixNano) > after || s.EndTimeUnixNano < s.StartTimeUnixNano {
					t.Errorf("span [%d, %d] outside request [%d, %d]", s.StartTimeUnixNano, s.EndTimeUnixNano, before, after)
				}
				if d := time.Duration(s.EndTimeUnixNano - s.StartTimeUnixNano); r.path == "/stream" && d < 60*time.Millisecond {
					t.Errorf("/stream: span of %v, want the two 30 ms parts in it", d)
				}
				if got[0].Scope != "github.com/tracewire/tracewire/probes/nethttp" {
					t.Errorf("scope %q", got[0].Scope)
				}
			}

			res := recv.WaitSpans(t, time.Second, spanWithPath(a, "/users/42"), 1)[0].Resource
			wantRes := map[string]any{
				"service.name":                v.name,
				"process.pid":                 int64(a.cmd.Process.Pid),
				"process.executable.name":     v.name,
				"process.runtime.name":        "go",
				"process.runtime.version":     v.goVersion,
				"host.name":                   host,
				"telemetry.sdk.name":          "tracewire",
				"telemetry.sdk.language":      "go",
				"telemetry.sdk.version":       "0.1.0",
				"deployment.environment.name": "e2e",
			}
			switch v.name {
			case "hello-go123":
				wantRes["service.name"] = "users-api"
				wantRes["team"] = "blue"
			case "hello-go124":
				wantRes["service.name"] = "from-attrs"
			}
			for k, w := range wantRes {
				if res[k] != w {
					t.Errorf("resource %s = %v, want %v", k, res[k], w)
				}
			}
		})
	}

	// Concurrent requests: exactly one span each, none missing, none doubled.
	t.Run("concurrent", func(t *testing.T) {
		a := apps["hello-go126"]
		const n, workers = 96, 16
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for i := w; i < n; i += workers {
					get(t, a.url(fmt.Sprintf("/users/c-%d", i)))
				}
			})
		}
		wg.Wait()
		got := recv.WaitSpans(t, 10*time.Second, hasPrefix("/users/c-"), n)
		time.Sleep(500 * time.Millisecond)
		if c := count(recv, hasPrefix("/users/c-")); c != n {
			t.Fatalf("%d spans for %d concurrent requests", c, n)
		}
		paths := map[any]bool{}
		ids := map[string]bool{}
		for _, g := range got {
			paths[otlptest.Attrs(g.Span.Attributes)["url.path"]] = true
			ids[string(g.Span.SpanId)] = true
			ids[string(g.Span.TraceId)] = true
		}
		if len(paths) != n || len(ids) != 2*n {
			t.Fatalf("%d distinct paths and %d distinct ids for %d requests", len(paths), len(ids), n)
		}
	})
}

func checkAttrs(t *testing.T, kv []*commonpb.KeyValue, want map[string]any) {
	t.Helper()
	got := otlptest.Attrs(kv)
	for k, w := range want {
		if got[k] != w {
			t.Errorf("attribute %s = %v (%T), want %v", k, got[k], got[k], w)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected attribute %s = %v", k, got[k])
		}
	}
}

func checkIDs(t *testing.T, s *tracepb.Span) {
	t.Helper()
	if len(s.TraceId) != 16 || bytes.Equal(s.TraceId, make([]byte, 16)) {
		t.Errorf("trace id %x", s.TraceId)
	}
	if len(s.SpanId) != 8 || bytes.Equal(s.SpanId, make([]byte, 8)) {
		t.Errorf("span id %x", s.SpanId)
	}
}

// TestServerOnlyProgram: a stripped server without any HTTP client code (the
// client hooks do not apply) is traced all the same.
func TestServerOnlyProgram(t *testing.T) {
	requireEBPF(t)
	recv := otlptest.Start(t)
	a := startApp(t, "serveronly")
	startAgent(t, recv, []string{"serveronly"})
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; ; i++ {
		path := fmt.Sprintf("/only-%d", i)
		if got := get(t, a.url(path)); got != http.StatusAccepted {
			t.Fatalf("GET %s: %d", path, got)
		}
		if waitQuiet(recv, spanWithPath(a, path), 300*time.Millisecond) {
			s := recv.WaitSpans(t, time.Second, spanWithPath(a, path), 1)[0].Span
			if s.Name != "GET" || otlptest.Attrs(s.Attributes)["http.response.status_code"] != int64(http.StatusAccepted) {
				t.Errorf("span %q attrs %v", s.Name, otlptest.Attrs(s.Attributes))
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no span within 30 s")
		}
	}
}

// TestTargetStartedLaterAndRestarted: a target that starts after the agent
// is found through the exec tracepoint; after it exits and starts again, the
// new process is traced with its own pid.
func TestTargetStartedLaterAndRestarted(t *testing.T) {
	requireEBPF(t)
	recv := otlptest.Start(t)
	ag := startAgent(t, recv, []string{"hello-go124"})
	// The agent is up (its exec/exit tracepoints attached) before the target.
	idle := idleHookFDs(t, ag)

	for round := range 2 {
		a := startApp(t, "hello-go124")
		waitTraced(t, recv, a)
		if n := hookFDs(t, ag); n <= idle {
			t.Fatalf("round %d: %d hook fds while tracing, %d idle: no uprobes attached?", round, n, idle)
		}
		path := fmt.Sprintf("/users/round-%d", round)
		get(t, a.url(path))
		recv.WaitSpans(t, 10*time.Second, spanWithPath(a, path), 1)
		a.stop()
		// The exit releases the executable's uprobes (one hook fd each).
		deadline := time.Now().Add(5 * time.Second)
		for hookFDs(t, ag) != idle {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: %d hook fds after the target exited, want %d", round, hookFDs(t, ag), idle)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// helloHooks is how many uprobes the agent puts on a hello executable, a
// plaintext server (the client's Transport.roundTrip and
// persistConn.roundTrip, the HTTP/2 client's writeHeaders and
// handleResponse, the HTTP/2 server's runHandler and handlerDone); each is
// a hook fd (see hookFDs), as are the agent's 2 exec/exit tracepoints and,
// with the first server, net/http's 5 syscall tracepoints.
const (
	helloHooks       = 6
	agentTracepoints = 2 + 5
)

// waitAttached waits until the agent has uprobes on that many hello
// executables.
func waitAttached(t *testing.T, ag *agentProc, executables int) {
	t.Helper()
	want := agentTracepoints + executables*helloHooks
	deadline := time.Now().Add(30 * time.Second)
	for n := hookFDs(t, ag); n < want; n = hookFDs(t, ag) {
		if time.Now().After(deadline) {
			t.Fatalf("agent has %d hook fds, want %d", n, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// hookFDs counts the agent's fds that each hold one attached hook: a perf
// event per tracepoint, and per uprobe either a uprobe_multi link (Linux
// 6.6+) or, without those, a perf event. Its other BPF links (sock_ops on
// the cgroup, and the perf links beside each perf event) are not counted.
func hookFDs(t *testing.T, ag *agentProc) int {
	t.Helper()
	pid := ag.cmd.Process.Pid
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		// An fd closed since ReadDir is not counted.
		switch target, _ := os.Readlink(filepath.Join(dir, e.Name())); target {
		case "anon_inode:[perf_event]":
			n++
		case "anon_inode:bpf_link":
			info, _ := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, e.Name()))
			if strings.Contains(string(info), "\nlink_type:\tuprobe_multi\n") {
				n++
			}
		}
	}
	return n
}

// TestCollectorDownThenBack: while the collector is down, spans wait in the
// queue; when it is back, every one of them arrives exactly once.
func TestCollectorDownThenBack(t *testing.T) {
	requireEBPF(t)
	recv := otlptest.Start(t)
	a := startApp(t, "hello-go126")
	startAgent(t, recv, []string{"hello-go126"})
	waitTraced(t, recv, a)

	recv.Stop()
	const n = 20
	for i := range n {
		get(t, a.url(fmt.Sprintf("/users/down-%d", i)))
	}
	time.Sleep(2 * time.Second) // several failed uploads
	recv.Restart(t)
	recv.WaitSpans(t, 15*time.Second, hasPrefix("/users/down-"), n)
	time.Sleep(500 * time.Millisecond)
	if c := count(recv, hasPrefix("/users/down-")); c != n {
		t.Fatalf("%d spans after the collector came back, want %d", c, n)
	}
}

// TestSIGTERMFlushes: spans seen before SIGTERM are exported before the agent
// exits 0, even with a long batch delay.
func TestSIGTERMFlushes(t *testing.T) {
	requireEBPF(t)
	recv := otlptest.Start(t)
	a := startApp(t, "hello-go126")
	ag := startAgent(t, recv, []string{"hello-go126"})
	waitTraced(t, recv, a)
	// Restart with a batch delay far longer than the test.
	if code := ag.terminate(t); code != 0 {
		t.Fatalf("agent exit %d", code)
	}
	ag = startAgent(t, recv, []string{"hello-go126"}, "OTEL_BSP_SCHEDULE_DELAY=600000")
	waitAttached(t, ag, 1) // no span can prove it: none is exported before exit
	const n = 10
	for i := range n {
		get(t, a.url(fmt.Sprintf("/users/term-%d", i)))
	}
	time.Sleep(300 * time.Millisecond) // the events are in the ring buffer
	start := time.Now()
	if code := ag.terminate(t); code != 0 {
		t.Fatalf("agent exit %d after SIGTERM", code)
	}
	t.Logf("agent exited %v after SIGTERM", time.Since(start))
	if c := count(recv, hasPrefix("/users/term-")); c != n {
		t.Fatalf("%d spans flushed on SIGTERM, want %d", c, n)
	}
}

// TestUsage: bad invocations exit 2, lack of privilege exits 1; none panics.
func TestUsage(t *testing.T) {
	requireEBPF(t)
	dir := buildAll(t)
	run := func(env []string, cred *syscall.Credential, args ...string) int {
		cmd := exec.Command(filepath.Join(dir, "agent"), args...)
		cmd.Env = append(os.Environ(), env...)
		if cred != nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		}
		err := cmd.Run()
		if cmd.ProcessState == nil {
			t.Fatalf("agent %v: %v", args, err)
		}
		return cmd.ProcessState.ExitCode()
	}
	for _, c := range []struct {
		args []string
		env  []string
		cred *syscall.Credential
		want int
	}{
		{args: []string{"--bogus"}, want: 2},
		{args: []string{}, want: 2},
		{args: []string{"--target", "x", "--exporter", "zipkin"}, want: 2},
		{args: []string{"--target", "x", "extra"}, want: 2},
		{args: []string{"--target", "x"}, cred: &syscall.Credential{Uid: 65534, Gid: 65534}, want: 1},
		{args: []string{}, env: []string{"TRACEWIRE_TARGETS=x", "OTEL_BSP_MAX_QUEUE_SIZE=lots"}, want: 1},
	} {
		if got := run(c.env, c.cred, c.args...); got != c.want {
			t.Errorf("agent %v (env %v, cred %v): exit %d, want %d", c.args, c.env, c.cred, got, c.want)
		}
	}
}

// TestUninstrumentableTarget: a matching process that is not a Go program
// is skipped; a Go target of the same agent keeps working.
func TestUninstrumentableTarget(t *testing.T) {
	requireEBPF(t)
	dir := buildAll(t)
	notGo := filepath.Join(dir, "not-go-target")
	b, err := os.ReadFile("/bin/sleep")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(notGo, b, 0o755); err != nil {
		t.Fatal(err)
	}
	sleeper := exec.Command(notGo, "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sleeper.Process.Kill(); sleeper.Wait() }()
	recv := otlptest.Start(t)
	a := startApp(t, "hello-go125")
	ag := startAgent(t, recv, []string{"not-go-target", "hello-go125"})
	waitTraced(t, recv, a)
	select {
	case <-ag.done:
		t.Fatal("agent exited")
	default:
	}
}
