package e2e

import (
	"errors"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/tracewire/tracewire/internal/otlptest"
)

// TestAgentKilled: after SIGKILL nothing of the agent stays attached, so
// the targets' requests flow byte-exact on the connections it had under
// sk_msg; the next agent traces the same process again, including a
// connection opened while no agent ran.
func TestAgentKilled(t *testing.T) {
	requireEBPF(t)
	raw, raw2 := startRawServer(t), startRawServer(t)
	a := startApp(t, "hello-go124")
	call := func(u string) {
		t.Helper()
		if got := get(t, a.url("/call?url="+url.QueryEscape(u))); got != 200 {
			t.Fatalf("A /call %s: %d", u, got)
		}
	}

	recv := otlptest.Start(t)
	ag := startAgent(t, recv, []string{"hello-go124"})
	waitTraced(t, recv, a)
	call(raw.url("/under-agent")) // a connection under sk_msg
	traceOf(t, recv, a, "/call", 2)
	ag.kill()
	waitNoAgentPrograms(t)

	call(raw.url("/after-kill")) // the same keep-alive connection
	call(raw2.url("/no-agent"))  // a connection opened while no agent runs
	reqs := raw.requests()
	if len(reqs) != 2 || reqs[0].conn != reqs[1].conn {
		t.Fatalf("want 2 requests on one connection, got %d", len(reqs))
	}
	if tp := reqs[0].header.Values("Traceparent"); len(tp) != 1 {
		t.Errorf("request under the agent: traceparent %q, want one", tp)
	}
	want := "GET /after-kill HTTP/1.1\r\nHost: " + raw.ln.Addr().String() + "\r\nUser-Agent: Go-http-client/1.1\r\nAccept-Encoding: gzip\r\n\r\n"
	if string(reqs[1].raw) != want {
		t.Errorf("request after SIGKILL is not what the program wrote:\n%q\nwant\n%q", reqs[1].raw, want)
	}

	recv2 := otlptest.Start(t)
	startAgent(t, recv2, []string{"hello-go124"})
	waitTraced(t, recv2, a)
	call(raw2.url("/next-agent"))
	spans := traceOf(t, recv2, a, "/call", 2)
	client := one(t, pick(spans, a, tracepb.Span_SPAN_KIND_CLIENT), "A client")
	reqs = raw2.requests()
	if len(reqs) != 2 || reqs[0].conn != reqs[1].conn {
		t.Fatalf("want 2 requests on one connection, got %d", len(reqs))
	}
	if tp := reqs[1].header.Values("Traceparent"); len(tp) != 1 || tp[0] != traceparentOf(client) {
		t.Errorf("request on the connection opened with no agent: traceparent %q, want [%s]", tp, traceparentOf(client))
	}
}

// agentPrograms are the names (cut at 15 bytes by the kernel) of programs
// that would change a socket's bytes or behaviour if they outlived the agent.
var agentPrograms = []string{"sk_msg_tracepar", "sockops_track_c"}

// waitNoAgentPrograms waits until the kernel has freed those programs.
func waitNoAgentPrograms(t *testing.T) {
	t.Helper()
	waitNoPrograms(t, agentPrograms, 10*time.Second)
}

// waitNoPrograms waits until no program with one of names is loaded.
func waitNoPrograms(t *testing.T, names []string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		left := loadedPrograms(t, names)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("programs still loaded after the agent died: %v", left)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// loadedPrograms lists the loaded BPF programs with one of names.
func loadedPrograms(t *testing.T, names []string) []string {
	t.Helper()
	var out []string
	for id := ebpf.ProgramID(0); ; {
		next, err := ebpf.ProgramGetNextID(id)
		if errors.Is(err, os.ErrNotExist) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		id = next
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			continue // freed meanwhile
		}
		info, err := p.Info()
		p.Close()
		if err != nil {
			continue
		}
		for _, n := range names {
			if strings.HasPrefix(n, info.Name) && info.Name != "" {
				out = append(out, info.Name)
			}
		}
	}
}
