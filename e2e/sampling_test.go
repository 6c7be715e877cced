package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"golang.org/x/sys/unix"

	"github.com/tracewire/tracewire/internal/otlptest"
	"github.com/tracewire/tracewire/internal/sampling"
)

// callerID is the parent span id of every incoming traceparent sent here.
const callerID = "00f067aa0ba902b7"

// samplingRig is a private copy of hello (no other test's agent traces it)
// whose /call requests go to an untraced raw server, which shows the
// traceparent the agent inserted: its trace id and its sampled flag.
type samplingRig struct {
	cfg  sampling.Config // what the agent was given, read as the agent reads it
	recv *otlptest.Receiver
	raw  *rawServer
	a    *app
	ag   *agentProc
	n    int
	warm map[[16]byte]bool // trace ids of the warm-up requests
	nw   int               // warm-up requests sent
}

// sent is a /call request and what the traceparent sent downstream says.
type sent struct {
	incoming string   // the traceparent sent to the app, "" for none
	trace    [16]byte // the downstream traceparent's trace id
	client   [8]byte  // its parent id: the app's client span
	flag     bool     // its sampled flag
	sampled  bool     // the sampler's decision (send checks that flag says it)
}

func startSampling(t *testing.T, name string, env ...string) *samplingRig {
	t.Helper()
	requireEBPF(t)
	all := append(os.Environ(), env...)
	cfg, err := sampling.FromEnv(func(k string) string {
		v := ""
		for _, e := range all {
			if s, ok := strings.CutPrefix(e, k+"="); ok {
				v = s // the last one wins, as for the agent
			}
		}
		return v
	})
	if err != nil {
		t.Fatal(err)
	}
	r := &samplingRig{cfg: cfg, recv: otlptest.Start(t), raw: startRawServer(t), warm: map[[16]byte]bool{}}
	r.a = startExe(t, copyExe(t, "hello-go126", name))
	r.ag = startAgent(t, r.recv, []string{name}, env...)
	r.warmUp(t)
	return r
}

// decides is the sampler's decision for a trace with an incoming
// traceparent whose flags are parent ("" without one).
func (r *samplingRig) decides(trace [16]byte, parent string) bool {
	if parent != "" && r.cfg.ParentBased {
		return parent == "01"
	}
	return r.cfg.Sampled(trace)
}

// warmUp repeats a request with a sampled incoming traceparent until the
// traceparent sent downstream continues it (the server and client hooks are
// attached) and, when the sampler keeps it, its spans are exported (the
// hooks that end spans are attached too). Spans are no sign with every
// sampler: always_off exports none.
func (r *samplingRig) warmUp(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !time.Now().After(deadline) {
		id := randomTraceID(t)
		for r.cfg.Ratio > 0 && !r.cfg.Sampled(id) { // one kept also by a sampler that is not parent based
			id = randomTraceID(t)
		}
		r.warm[id] = true
		r.nw++
		tp := fmt.Sprintf("00-%x-%s-01", id, callerID)
		path := fmt.Sprintf("/warm-%d", r.nw)
		r.get(t, path, tp)
		if got, ok := r.downstream(t, path); !ok || got.trace != id {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if !r.decides(id, "01") || waitQuiet(r.recv, func(g otlptest.Got) bool {
			return r.ofApp(g) && [16]byte(g.Span.TraceId) == id && g.Span.Kind == tracepb.Span_SPAN_KIND_CLIENT
		}, time.Second) {
			return
		}
	}
	t.Fatalf("%s: the agent did not trace it within 30 s", r.a.name)
}

// send makes the app call the raw server, with an incoming traceparent
// when tp is set, and checks that the traceparent sent downstream carries
// the sampler's decision.
func (r *samplingRig) send(t *testing.T, tp string) sent {
	t.Helper()
	r.n++
	path := fmt.Sprintf("/s-%d", r.n)
	r.get(t, path, tp)
	s, ok := r.downstream(t, path)
	if !ok {
		t.Fatalf("%s: no traceparent sent downstream", path)
	}
	s.incoming = tp
	flags := ""
	if tp != "" {
		flags = tp[53:]
		if in, _ := hex.DecodeString(tp[3:35]); !bytes.Equal(in, s.trace[:]) {
			t.Errorf("%s: downstream trace %x, want the incoming %s", path, s.trace, tp)
		}
	}
	s.sampled = r.decides(s.trace, flags)
	if s.flag != s.sampled {
		t.Errorf("%s (incoming %q): downstream sampled flag %v, the sampler decides %v", path, tp, s.flag, s.sampled)
	}
	return s
}

func (r *samplingRig) get(t *testing.T, path, tp string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, r.a.url("/call?url="+url.QueryEscape(r.raw.url(path))), nil)
	if err != nil {
		t.Fatal(err)
	}
	if tp != "" {
		req.Header.Set("traceparent", tp)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", req.URL, err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d", req.URL, resp.StatusCode)
	}
}

// downstream parses the one traceparent the raw server got with path;
// false when it got none.
func (r *samplingRig) downstream(t *testing.T, path string) (sent, bool) {
	t.Helper()
	for _, req := range r.raw.requests() {
		if !bytes.HasPrefix(req.raw, []byte("GET "+path+" ")) {
			continue
		}
		tps := req.header.Values("Traceparent")
		if len(tps) == 0 {
			return sent{}, false
		}
		var s sent
		f := strings.Split(tps[0], "-")
		if len(tps) != 1 || len(f) != 4 || f[0] != "00" || !unhex(s.trace[:], f[1]) || !unhex(s.client[:], f[2]) || f[3] != "00" && f[3] != "01" {
			t.Fatalf("%s: traceparent %q", path, tps)
		}
		s.flag = f[3] == "01"
		return s, true
	}
	t.Fatalf("raw server got no request %s", path)
	return sent{}, false
}

// unhex decodes s into dst, which it must fill exactly.
func unhex(dst []byte, s string) bool {
	if len(s) != 2*len(dst) {
		return false
	}
	_, err := hex.Decode(dst, []byte(s))
	return err == nil
}

func (r *samplingRig) ofApp(g otlptest.Got) bool {
	return g.Resource["process.pid"] == int64(r.a.cmd.Process.Pid)
}

// check stops the agent (every span is flushed) and checks that what it
// exported of the requests sent is exactly the server and client span of
// each the sampler kept, and that the others were counted as unsampled.
func (r *samplingRig) check(t *testing.T, reqs []sent) {
	t.Helper()
	byTrace := map[[16]byte]sent{}
	kept := 0
	for _, s := range reqs {
		byTrace[s.trace] = s
		if s.sampled {
			kept++
		}
	}
	r.recv.WaitSpans(t, 20*time.Second, func(g otlptest.Got) bool {
		return r.ofApp(g) && byTrace[[16]byte(g.Span.TraceId)].sampled
	}, 2*kept)
	if code := r.ag.terminate(t); code != 0 {
		t.Fatalf("agent exited with %d", code)
	}
	servers, clients := map[[16]byte]int{}, map[[16]byte]int{}
	for _, g := range r.recv.Spans() {
		if !r.ofApp(g) {
			continue
		}
		id := [16]byte(g.Span.TraceId)
		at := otlptest.Attrs(g.Span.Attributes)
		s, ours := byTrace[id]
		switch {
		case r.warm[id] || !ours && strings.Contains(fmt.Sprint(at["url.full"]), "/warm-"):
			continue // warm-up, perhaps before every hook was attached
		case !ours:
			t.Errorf("span %s %v of no request sent: trace %x", g.Span.Name, g.Span.Kind, id)
		case !s.sampled:
			t.Errorf("span %s %v of a trace the sampler dropped: %x (incoming %q)", g.Span.Name, g.Span.Kind, id, s.incoming)
		case g.Span.Flags&1 == 0:
			t.Errorf("exported span %s without the sampled flag: %#x", g.Span.Name, g.Span.Flags)
		case g.Span.Kind == tracepb.Span_SPAN_KIND_SERVER:
			servers[id]++
			parent := ""
			if s.incoming != "" {
				parent = callerID
			}
			if at["url.path"] != "/call" || hex.EncodeToString(g.Span.ParentSpanId) != parent {
				t.Errorf("server span of %x: url.path %v, parent %x, want /call and %q", id, at["url.path"], g.Span.ParentSpanId, parent)
			}
		case g.Span.Kind == tracepb.Span_SPAN_KIND_CLIENT:
			clients[id]++
			if !bytes.Equal(g.Span.SpanId, s.client[:]) {
				t.Errorf("client span %x of %x, but the downstream traceparent names %x", g.Span.SpanId, id, s.client)
			}
		}
	}
	for id, s := range byTrace {
		if s.sampled && (servers[id] != 1 || clients[id] != 1) {
			t.Errorf("trace %x (incoming %q): %d server and %d client spans exported, want 1 and 1", id, s.incoming, servers[id], clients[id])
		}
	}
	// Every dropped request's two spans reached user space and were counted
	// there; warm-up requests may add theirs.
	dropped := int64(2 * (len(reqs) - kept))
	if got := agentCounters(t, r.ag)["unsampled_spans"]; got < dropped || got > dropped+int64(2*r.nw) {
		t.Errorf("unsampled_spans = %d, want %d (+ at most %d of the warm-up)", got, dropped, 2*r.nw)
	}
}

func randomTraceID(t *testing.T) [16]byte {
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		t.Fatal(err)
	}
	return id
}

// incoming is a traceparent with a new trace id and the given flags.
func incoming(t *testing.T, flags string) string {
	return fmt.Sprintf("00-%x-%s-%s", randomTraceID(t), callerID, flags)
}

// TestSamplingTraceIDRatio: parentbased_traceidratio 0.25 on requests that
// start their trace: the exported ones are exactly those whose trace id the
// rule selects (recomputed from the traceparent sent downstream, which
// carries the same decision), about a quarter.
func TestSamplingTraceIDRatio(t *testing.T) {
	r := startSampling(t, "samp-ratio", "OTEL_TRACES_SAMPLER=parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG=0.25")
	const n = 300
	var reqs []sent
	kept := 0
	for range n {
		s := r.send(t, "")
		if s.sampled {
			kept++
		}
		reqs = append(reqs, s)
	}
	t.Logf("%d of %d traces sampled", kept, n)
	if kept < n*15/100 || kept > n*35/100 { // 25 % +- 4 standard deviations
		t.Errorf("%d of %d traces sampled, want about a quarter", kept, n)
	}
	r.check(t, reqs)
}

// TestSamplingParentFlag: with the default sampler (parentbased_always_on)
// an incoming traceparent's flag decides, and is sent on; a request
// without one is sampled.
func TestSamplingParentFlag(t *testing.T) {
	r := startSampling(t, "samp-parent")
	if r.cfg != sampling.Default {
		t.Fatalf("sampler %+v: the test's environment sets one", r.cfg)
	}
	reqs := []sent{r.send(t, incoming(t, "00")), r.send(t, incoming(t, "01")), r.send(t, "")}
	if reqs[0].flag || !reqs[1].flag || !reqs[2].flag {
		t.Errorf("sampled flags sent downstream: %v %v %v, want false true true", reqs[0].flag, reqs[1].flag, reqs[2].flag)
	}
	r.check(t, reqs)
}

// TestSamplingAlwaysOff: nothing is exported, whatever the parent says.
func TestSamplingAlwaysOff(t *testing.T) {
	r := startSampling(t, "samp-off", "OTEL_TRACES_SAMPLER=always_off")
	r.check(t, []sent{r.send(t, ""), r.send(t, incoming(t, "01")), r.send(t, incoming(t, "00"))})
	if n := count(r.recv, r.ofApp); n != 0 {
		t.Errorf("%d spans exported", n)
	}
}

// TestSamplingIgnoresParent: traceidratio is not parent based: the rule
// decides on the incoming trace id whatever its flag says.
func TestSamplingIgnoresParent(t *testing.T) {
	t.Run("ratio 1", func(t *testing.T) {
		r := startSampling(t, "samp-all", "OTEL_TRACES_SAMPLER=traceidratio", "OTEL_TRACES_SAMPLER_ARG=1.0")
		r.check(t, []sent{r.send(t, incoming(t, "00"))})
	})
	t.Run("ratio 0.5", func(t *testing.T) {
		r := startSampling(t, "samp-half", "OTEL_TRACES_SAMPLER=traceidratio", "OTEL_TRACES_SAMPLER_ARG=0.5")
		// The rule keeps trace ids whose 9th byte is below 0x80.
		kept := fmt.Sprintf("00-%s00%s-%s-00", strings.Repeat("ab", 8), strings.Repeat("cd", 7), callerID)
		dropped := fmt.Sprintf("00-%s80%s-%s-01", strings.Repeat("ab", 8), strings.Repeat("cd", 7), callerID)
		reqs := []sent{r.send(t, kept), r.send(t, dropped)}
		if !reqs[0].flag || reqs[1].flag {
			t.Errorf("sampled flags sent downstream: %v %v, want true false", reqs[0].flag, reqs[1].flag)
		}
		r.check(t, reqs)
	})
}

// TestSamplingBadSettings: a sampler the agent does not know, or a bad
// ratio, rate limit or keep-errors value, stops it at start (exit 1) with
// the variable named.
func TestSamplingBadSettings(t *testing.T) {
	requireEBPF(t)
	agent := filepath.Join(buildAll(t), "agent")
	for _, env := range [][]string{
		{"OTEL_TRACES_SAMPLER=sometimes"},
		{"OTEL_TRACES_SAMPLER=parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG=quarter"},
		{"OTEL_TRACES_SAMPLER=traceidratio", "OTEL_TRACES_SAMPLER_ARG=1.5"},
		{"TRACEWIRE_SAMPLER_RATE_LIMIT=-5"},
		{"TRACEWIRE_SAMPLER_KEEP_ERRORS=sometimes"},
	} {
		cmd := exec.Command(agent, "--target", "x")
		cmd.Env = append(os.Environ(), env...)
		out, _ := cmd.CombinedOutput()
		name, _, _ := strings.Cut(env[len(env)-1], "=")
		if cmd.ProcessState.ExitCode() != 1 || !strings.Contains(string(out), name+"=") {
			t.Errorf("%v: exit %d, output %q; want 1 and a message naming %s", env, cmd.ProcessState.ExitCode(), out, name)
		}
	}
}

// startCopy runs a private copy of the build from, named name, with args,
// and waits until port listens.
func startCopy(t *testing.T, from, name string, port int, args ...string) *app {
	t.Helper()
	a := &app{name: name, port: port}
	a.cmd = exec.Command(copyExe(t, from, name), args...)
	if err := a.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(a.stop)
	waitListening(t, port)
	return a
}

// TestSamplingGRPCJoin: a gRPC call carries no traceparent, so the kernel
// starts the server span in a provisional trace with a decision of its own;
// joined to its client's trace (both processes traced here), it takes the
// client's decision: a sampled trace has its server part, an unsampled one
// exports nothing, and no server part is exported alone.
func TestSamplingGRPCJoin(t *testing.T) {
	requireEBPF(t)
	cfg := sampling.Config{Ratio: 0.5}
	recv := otlptest.Start(t)
	grpcPort, httpPort := freePort(t), freePort(t)
	grpcAddr := fmt.Sprintf("127.0.0.1:%d", grpcPort)
	b := startCopy(t, "grpcapp", "samp-grpc-b", grpcPort, "-grpc", grpcAddr)
	a := startCopy(t, "grpcapp", "samp-grpc-a", httpPort, "-addr", fmt.Sprintf("127.0.0.1:%d", httpPort), "-upstream", grpcAddr)
	// Not parent based: the test picks each trace id, so it knows the
	// decision; the incoming flag plays no part.
	ag := startAgent(t, recv, []string{a.name, b.name}, "OTEL_TRACES_SAMPLER=traceidratio", "OTEL_TRACES_SAMPLER_ARG=0.5")
	pids := map[any]bool{int64(a.cmd.Process.Pid): true, int64(b.cmd.Process.Pid): true}
	send := func(id [16]byte) {
		req, _ := http.NewRequest(http.MethodGet, a.url("/check?service=x"), nil)
		req.Header.Set("traceparent", fmt.Sprintf("00-%x-%s-01", id, callerID))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET /check: %d", resp.StatusCode)
		}
	}

	// Warm up until the server span of a sampled trace is joined into it.
	deadline := time.Now().Add(30 * time.Second)
	warmups := 0
	for {
		id := randomTraceID(t)
		for !cfg.Sampled(id) {
			id = randomTraceID(t)
		}
		send(id)
		warmups++
		if waitQuiet(recv, func(g otlptest.Got) bool {
			return [16]byte(g.Span.TraceId) == id && g.Resource["process.pid"] == int64(b.cmd.Process.Pid)
		}, time.Second) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no joined gRPC trace within 30 s")
		}
	}

	start := uint64(time.Now().UnixNano())
	const n = 40
	sent := map[[16]byte]bool{} // trace id -> sampled
	kept := 0
	for range n {
		id := randomTraceID(t)
		sent[id] = cfg.Sampled(id)
		if sent[id] {
			kept++
		}
		send(id)
	}
	recv.WaitSpans(t, 20*time.Second, func(g otlptest.Got) bool { return pids[g.Resource["process.pid"]] && sent[[16]byte(g.Span.TraceId)] }, 3*kept)
	if code := ag.terminate(t); code != 0 { // releases whatever the Linker still holds
		t.Fatalf("agent exited with %d", code)
	}
	byTrace := map[[16]byte][]otlptest.Got{}
	for _, g := range recv.Spans() {
		if pids[g.Resource["process.pid"]] && g.Span.StartTimeUnixNano >= start {
			byTrace[[16]byte(g.Span.TraceId)] = append(byTrace[[16]byte(g.Span.TraceId)], g)
		}
	}
	for id, sampled := range sent {
		got := byTrace[id]
		delete(byTrace, id)
		if !sampled {
			if len(got) != 0 {
				t.Errorf("trace %x not sampled: %d spans exported", id, len(got))
			}
			continue
		}
		if len(got) != 3 {
			t.Errorf("trace %x: %d spans exported, want A's server and client spans and B's server span", id, len(got))
			continue
		}
		one(t, pick(got, a, tracepb.Span_SPAN_KIND_SERVER), "A server")
		cl := one(t, pick(got, a, tracepb.Span_SPAN_KIND_CLIENT), "A client")
		sv := one(t, pick(got, b, tracepb.Span_SPAN_KIND_SERVER), "B server")
		if !bytes.Equal(sv.ParentSpanId, cl.SpanId) {
			t.Errorf("trace %x: B's server span has parent %x, want A's client span %x", id, sv.ParentSpanId, cl.SpanId)
		}
	}
	for id, got := range byTrace {
		t.Errorf("trace %x of no request sent: %d spans, the first %s of pid %v", id, len(got), got[0].Span.Name, got[0].Resource["process.pid"])
	}
	// Each unsampled trace's 3 spans reached user space and were counted
	// there; warm-up requests may add theirs (a server side not yet joined).
	if got, want := agentCounters(t, ag)["unsampled_spans"], int64(3*(n-kept)); got < want || got > want+int64(3*warmups) {
		t.Errorf("unsampled_spans = %d, want %d (+ at most %d of the warm-up)", got, want, 3*warmups)
	}
}

// monoSecond is the second of CLOCK_MONOTONIC, the kernel's ktime: the
// rate limit's window.
func monoSecond(t *testing.T) int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return ts.Sec
}

// TestSamplingRateLimit: always_on with TRACEWIRE_SAMPLER_RATE_LIMIT=5 and
// 40 requests starting their trace within 2 s: in each second of the
// kernel's clock the first 5 roots are sampled and the others refused
// (counted), so the requests sent in the 2 or 3 seconds touched get at most
// 5 each; what is exported is exactly what the downstream flags say.
func TestSamplingRateLimit(t *testing.T) {
	const limit, n = 5, 40
	r := startSampling(t, "samp-rate", "OTEL_TRACES_SAMPLER=always_on", fmt.Sprintf("TRACEWIRE_SAMPLER_RATE_LIMIT=%d", limit))
	var reqs []sent
	sure := map[int64][2]int{} // by second: requests sent within it, sampled of them
	seconds := map[int64]bool{}
	first := monoSecond(t)
	tick := time.NewTicker(2 * time.Second / n)
	defer tick.Stop()
	for i := range n {
		<-tick.C
		r.n++
		path := fmt.Sprintf("/s-%d", r.n)
		before := monoSecond(t)
		r.get(t, path, "")
		after := monoSecond(t)
		s, ok := r.downstream(t, path)
		if !ok {
			t.Fatalf("%s: no traceparent sent downstream", path)
		}
		s.sampled = s.flag // check compares the export with it
		reqs = append(reqs, s)
		seconds[before], seconds[after] = true, true
		if before == after {
			c := sure[before]
			c[0]++
			if s.flag {
				c[1]++
			}
			sure[before] = c
		}
		if i < limit && !s.flag {
			t.Errorf("request %d of %d not sampled: the first %d of a fresh budget are", i, n, limit)
		}
	}
	kept := 0
	for _, s := range reqs {
		if s.sampled {
			kept++
		}
	}
	t.Logf("%d of %d sampled over %d seconds, per second (sent, sampled): %v", kept, n, len(seconds), sure)
	if kept > limit*len(seconds) {
		t.Errorf("%d sampled in %d seconds, want at most %d", kept, len(seconds), limit*len(seconds))
	}
	for sec, c := range sure {
		// Within a second after the first, the budget is all for the
		// requests sent in it (and perhaps one sent across its start).
		if c[1] > limit || sec > first && c[0] > limit && c[1] < limit-1 {
			t.Errorf("second %d: %d of %d requests sampled, want %d", sec, c[1], c[0], min(c[0], limit))
		}
	}
	r.check(t, reqs)
	if got, want := agentCounters(t, r.ag)["nethttp_rate_limited"], int64(n-kept); got != want {
		t.Errorf("nethttp_rate_limited = %d, want %d", got, want)
	}
}

// TestSamplingKeepErrors: always_off with TRACEWIRE_SAMPLER_KEEP_ERRORS:
// a request answered 503 (its server span in error) is exported, marked;
// a request answered 200 is not.
func TestSamplingKeepErrors(t *testing.T) {
	r := startSampling(t, "samp-keep", "OTEL_TRACES_SAMPLER=always_off", "TRACEWIRE_SAMPLER_KEEP_ERRORS=true")
	const n = 3
	for range n {
		for _, path := range []string{"/status?code=503", "/users/1"} {
			resp, err := client.Get(r.a.url(path))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
	}
	path := func(g otlptest.Got) any { return otlptest.Attrs(g.Span.Attributes)["url.path"] }
	r.recv.WaitSpans(t, 20*time.Second, func(g otlptest.Got) bool { return r.ofApp(g) && path(g) == "/status" }, n)
	if code := r.ag.terminate(t); code != 0 {
		t.Fatalf("agent exited with %d", code)
	}
	statuses := 0
	for _, g := range r.recv.Spans() {
		if !r.ofApp(g) || r.warm[[16]byte(g.Span.TraceId)] {
			continue
		}
		at := otlptest.Attrs(g.Span.Attributes)
		switch {
		case path(g) != "/status":
			t.Errorf("span %s %v exported: only the failed requests' are", g.Span.Name, at["url.path"])
		case at["tracewire.sampling.kept_for_error"] != "true":
			t.Errorf("span %s of a failed request without the marker: %v", g.Span.Name, at)
		default:
			statuses++
		}
	}
	if statuses != n {
		t.Errorf("%d spans of /status exported, want %d", statuses, n)
	}
	if got := agentCounters(t, r.ag)["unsampled_spans"]; got < n {
		t.Errorf("unsampled_spans = %d, want at least the %d of /users/1", got, n)
	}
}
