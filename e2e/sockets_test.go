package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tracewire/tracewire/internal/otlptest"
)

// sockResult is what testdata/apps/sockcheck (Go or Python) saw on its own
// outgoing TCP socket.
type sockResult struct {
	FIONREAD      int  `json:"fionread"`
	Peek          int  `json:"peek"`
	PollIn        bool `json:"poll_in"`
	EpollIn       bool `json:"epoll_in"`
	LowatNotReady bool `json:"lowat_not_ready"`
	LowatReady    bool `json:"lowat_ready"`
	Read          int  `json:"read"`
	Sent          int  `json:"sent"`
}

// sockPeer accepts the targets' connections: it sends 128 bytes, then keeps
// what it receives until EOF.
type sockPeer struct {
	ln   net.Listener
	mu   sync.Mutex
	got  [][]byte
	done chan struct{}
}

func startSockPeer(t *testing.T) *sockPeer {
	t.Helper()
	p := &sockPeer{done: make(chan struct{}, 16)}
	p.ln = listenEach(t, func(_ int, c net.Conn) {
		defer c.Close()
		c.Write(bytes.Repeat([]byte{'w'}, 128))
		b, _ := io.ReadAll(c)
		p.mu.Lock()
		p.got = append(p.got, b)
		p.mu.Unlock()
		p.done <- struct{}{}
	})
	return p
}

// check runs one /check of the target at base and returns what it saw and
// the bytes its sendfile delivered.
func (p *sockPeer) check(t *testing.T, base, file string) (sockResult, []byte) {
	t.Helper()
	u := base + "/check?peer=" + url.QueryEscape(p.ln.Addr().String()) + "&file=" + url.QueryEscape(file)
	resp, err := client.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", u, resp.StatusCode, body)
	}
	var r sockResult
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the peer got no EOF")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return r, p.got[len(p.got)-1]
}

// TestSocketSemantics: a traced Go target and traced Python, Java and
// Node.js processes (the last three from the wire) see the same FIONREAD,
// MSG_PEEK, poll/epoll readiness and SO_RCVLOWAT on their outgoing TCP
// sockets (Java: what its API asks, available() and the read; Node: the
// read), and deliver the same sendfile (Node: piped) bytes, with and
// without the agent, while their HTTP calls carry the traceparent the agent
// adds. (On this kernel a socket under sk_msg answers FIONREAD wrongly: a
// target whose runtime asks FIONREAD (Java) is left out of the socket map,
// and only connections to endpoints seen speaking HTTP/1 go in.)
func TestSocketSemantics(t *testing.T) {
	requireEBPF(t)
	file := filepath.Join(t.TempDir(), "body")
	body := make([]byte, 300<<10)
	rand.Read(body)
	if err := os.WriteFile(file, body, 0o644); err != nil {
		t.Fatal(err)
	}
	peer := startSockPeer(t)
	goApp := startApp(t, "sockcheck")
	py := &app{name: "python3", port: freePort(t)}
	py.cmd = exec.Command("/usr/bin/python3", "../testdata/apps/sockcheck/sockcheck.py", "-addr", fmt.Sprintf("127.0.0.1:%d", py.port))
	if err := py.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(py.stop)
	waitListening(t, py.port)

	java := startJava(t, "javasock")
	if err := npmOnce(); err != nil {
		t.Fatal(err)
	}
	node := startInterpreted(t, "nodesock", "node", "nodeshop/server.js")

	want := sockResult{FIONREAD: 128, Peek: 128, PollIn: true, EpollIn: true, LowatNotReady: true, LowatReady: true, Read: 128, Sent: len(body)}
	// Java asks what its API lets it: available() (FIONREAD), the read, transferTo (sendfile).
	wantJava := sockResult{FIONREAD: 128, Read: 128, Sent: len(body)}
	wantNode := sockResult{Read: 128, Sent: len(body)}
	checkAll := func(when string) {
		for _, a := range []*app{goApp, py, java, node} {
			got, sent := peer.check(t, a.url(""), file)
			want := want
			switch a {
			case java:
				want = wantJava
			case node:
				want = wantNode
			}
			if got != want {
				t.Errorf("%s, %s saw %+v, want %+v", when, a.name, got, want)
			}
			if !bytes.Equal(sent, body) {
				t.Errorf("%s, %s's sendfile delivered %d bytes, not the file's %d", when, a.name, len(sent), len(body))
			}
		}
	}
	checkAll("without the agent")

	recv := otlptest.Start(t)
	startAgent(t, recv, []string{"sockcheck", "python3", "javasock", "nodesock"})
	waitTraced(t, recv, goApp)
	// HTTP calls of the Python and Node targets to the Go one: the first
	// (once the agent has read it) teaches the agent the endpoint, the next
	// ones carry a traceparent.
	isCall := func(a *app) func(otlptest.Got) bool {
		return func(g otlptest.Got) bool {
			return g.Resource["process.pid"] == int64(a.cmd.Process.Pid) && g.Span.GetKind() == 3
		}
	}
	for i, a := range []*app{py, node, py, node} {
		if code := get(t, a.url(fmt.Sprintf("/call?port=%d&path=/from/%s", goApp.port, a.name))); code != 200 {
			t.Fatalf("%s /call: %d", a.name, code)
		}
		recv.WaitSpans(t, 10*time.Second, isCall(a), i/2+1)
	}
	checkAll("with the agent")
	for _, a := range []*app{py, node} {
		calls := recv.WaitSpans(t, 10*time.Second, isCall(a), 2)
		last := calls[len(calls)-1].Span
		isChild := func(g otlptest.Got) bool {
			return spanWithPath(goApp, "/from/"+a.name)(g) && bytes.Equal(g.Span.GetParentSpanId(), last.GetSpanId()) &&
				bytes.Equal(g.Span.GetTraceId(), last.GetTraceId())
		}
		if !waitQuiet(recv, isChild, 5*time.Second) {
			t.Errorf("%s: its last call %x carried no traceparent to the Go target", a.name, last.GetSpanId())
		}
	}
	// The Go target is traced all the same.
	recv.WaitSpans(t, 10*time.Second, spanWithPath(goApp, "/check"), 1)
}

// waitListening waits until something accepts on 127.0.0.1:port.
func waitListening(t *testing.T, port int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %d: %v", port, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
