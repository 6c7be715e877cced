package pipeline

import (
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tracewire/tracewire/spans"
)

// collector records what a Linker releases.
type collector struct {
	mu  sync.Mutex
	got []*spans.Span
}

func (c *collector) add(s *spans.Span) { c.mu.Lock(); c.got = append(c.got, s); c.mu.Unlock() }
func (c *collector) n() int            { c.mu.Lock(); defer c.mu.Unlock(); return len(c.got) }

func span(trace, id, parent byte, flags byte) *spans.Span {
	return &spans.Span{TraceID: [16]byte{trace}, SpanID: [8]byte{id}, ParentID: [8]byte{parent}, TraceFlags: flags}
}

// pending is a span of a provisional trace.
func pending(trace, id, parent byte) *spans.Span {
	s := span(trace, id, parent, 1)
	s.LinkPending = true
	return s
}

// asServer and asClient make s the server or the client side of call k.
func asServer(s *spans.Span, k spans.Call) *spans.Span {
	s.Kind, s.Call = spans.KindServer, k
	return s
}

func asClient(s *spans.Span, k spans.Call) *spans.Span {
	s.Kind, s.Call = spans.KindClient, k
	return s
}

var key = spans.Call{
	Client: netip.MustParseAddrPort("127.0.0.1:50000"),
	Server: netip.MustParseAddrPort("127.0.0.1:9000"),
	Stream: 3,
}

// The server side's spans wait for the client span, then move into its
// trace, in whatever order the rings deliver them.
func TestJoinerJoins(t *testing.T) {
	for _, order := range []string{"child server client", "server client child", "client child server"} {
		t.Run(order, func(t *testing.T) {
			var c collector
			l := NewJoiner(c.add)
			defer l.Flush()
			child, server, client := pending(9, 2, 1), pending(9, 1, 0), span(7, 5, 4, 1)
			steps := map[string]func(){
				"child":  func() { l.Add(child) },
				"server": func() { l.Add(asServer(server, key)) },
				"client": func() { l.Add(asClient(client, key)) },
			}
			for _, name := range strings.Fields(order) {
				steps[name]()
			}
			if c.n() != 3 {
				t.Fatalf("released %d spans, want 3", c.n())
			}
			for _, s := range []*spans.Span{child, server} {
				if s.TraceID != client.TraceID || s.TraceFlags != 1 {
					t.Errorf("span %x: trace %x flags %x, want %x flags 1", s.SpanID, s.TraceID, s.TraceFlags, client.TraceID)
				}
			}
			if server.ParentID != client.SpanID || child.ParentID != server.SpanID {
				t.Errorf("parents: server %x child %x", server.ParentID, child.ParentID)
			}
		})
	}
}

// A server span whose client never shows up is released as it is.
func TestJoinerReleasesUnjoined(t *testing.T) {
	var c collector
	l := NewJoiner(c.add)
	defer l.Flush()
	server := pending(9, 1, 0)
	l.Add(asServer(server, key))
	if c.n() != 0 {
		t.Fatal("released before waiting for the client")
	}
	deadline := time.Now().Add(3 * linkWait)
	for c.n() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if c.n() != 1 || server.TraceID != [16]byte{9} || server.TraceFlags != 1 {
		t.Errorf("released %d, trace %x flags %x", c.n(), server.TraceID, server.TraceFlags)
	}
}

// A joined server side takes the client's sampled flag, whatever the kernel
// chose for its provisional trace.
func TestJoinerJoinTakesClientDecision(t *testing.T) {
	for _, flags := range []struct{ server, client byte }{{0, 1}, {1, 0}} {
		var c collector
		l := NewJoiner(c.add)
		server, child := pending(9, 1, 0), pending(9, 2, 1)
		server.TraceFlags, child.TraceFlags = flags.server, flags.server
		l.Add(child)
		l.Add(asServer(server, key))
		l.Add(asClient(span(7, 5, 4, flags.client), key))
		l.Flush()
		if c.n() != 3 || server.TraceFlags != flags.client || child.TraceFlags != flags.client {
			t.Errorf("provisional flags %#x, client's %#x: released %d, server flags %#x, child %#x",
				flags.server, flags.client, c.n(), server.TraceFlags, child.TraceFlags)
		}
	}
}

// A handler of a provisional trace calls gRPC in turn: A -> B -> C. Each
// join moves its spans into the client's trace, which joins A's in the end,
// whatever arrives late.
func TestJoinerChains(t *testing.T) {
	var c collector
	l := NewJoiner(c.add)
	defer l.Flush()
	keyBC := key
	keyBC.Stream = 5
	aClient := span(1, 10, 9, 1)  // A's client span, trace 1
	bServer := pending(2, 20, 0)  // B's server span, provisional trace 2
	bClient := pending(2, 21, 20) // B's call to C
	cServer := pending(3, 30, 0)  // C's server span, provisional trace 3
	cChild, cLate := pending(3, 31, 30), pending(3, 32, 30)
	l.Add(cChild)
	l.Add(asServer(cServer, keyBC))
	l.Add(asClient(bClient, keyBC)) // C joins B's still provisional trace
	l.Add(asServer(bServer, key))
	l.Add(asClient(aClient, key)) // B joins A
	l.Add(cLate)                  // after both joins
	if c.n() != 6 {
		t.Fatalf("released %d spans, want 6", c.n())
	}
	for _, s := range []*spans.Span{bServer, bClient, cServer, cChild, cLate} {
		if s.TraceID != aClient.TraceID || s.TraceFlags != 1 {
			t.Errorf("span %x: trace %x flags %x, want trace %x", s.SpanID, s.TraceID, s.TraceFlags, aClient.TraceID)
		}
	}
	if bServer.ParentID != aClient.SpanID || cServer.ParentID != bClient.SpanID {
		t.Errorf("parents: B server %x, C server %x", bServer.ParentID, cServer.ParentID)
	}
}
