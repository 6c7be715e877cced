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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &sockPeer{ln: ln, done: make(chan struct{}, 16)}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.Write(bytes.Repeat([]byte{'w'}, 128))
				b, _ := io.ReadAll(c)
				p.mu.Lock()
				p.got = append(p.got, b)
				p.mu.Unlock()
				p.done <- struct{}{}
			}()
		}
	}()
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

// TestSocketSemantics: a traced Go target and traced Python and Java
// processes (the last two from the wire) see the same FIONREAD, MSG_PEEK,
// poll/epoll readiness and SO_RCVLOWAT on their outgoing TCP sockets (Java:
// what its API asks, available() and the read), and deliver the same
// sendfile bytes, with and without the agent. (On this kernel a socket under sk_msg answers FIONREAD
// wrongly; a target whose code asks FIONREAD is left out of the socket map.)
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

	want := sockResult{FIONREAD: 128, Peek: 128, PollIn: true, EpollIn: true, LowatNotReady: true, LowatReady: true, Read: 128, Sent: len(body)}
	// Java asks what its API lets it: available() (FIONREAD), the read, transferTo (sendfile).
	wantJava := sockResult{FIONREAD: 128, Read: 128, Sent: len(body)}
	checkAll := func(when string) {
		for _, a := range []*app{goApp, py, java} {
			got, sent := peer.check(t, a.url(""), file)
			want := want
			if a == java {
				want = wantJava
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
	startAgent(t, recv, []string{"sockcheck", "python3", "javasock"})
	waitTraced(t, recv, goApp)
	checkAll("with the agent")
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
