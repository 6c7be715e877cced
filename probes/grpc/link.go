package grpc

import (
	"sync"
	"time"

	"github.com/tracewire/tracewire/spans"
)

// flagLinkPending is FLAG_LINK_PENDING (bpf/common.h): the span's trace id
// is provisional until its gRPC server span is joined with its client span.
const flagLinkPending = 0x80

const (
	// linkWait is how long a server span waits for its client span, which
	// ends after it (the client gets the response last).
	linkWait = time.Second
	// holdMax bounds how long spans wait for their server span (a long
	// stream's children end long before it).
	holdMax = 2 * time.Minute
	// clientMemory is how long a client span can still be joined.
	clientMemory = 10 * time.Second
	// heldMax bounds the spans held at once: past it the oldest trace goes.
	heldMax = 1 << 16
)

// Linker passes spans on, except those of provisional traces (marked by the
// kernel on a gRPC server span whose call carried no traceparent, and
// inherited by its children): it holds those until the server span meets
// the client span of the same call (same connection and HTTP/2 stream id),
// then moves the held spans into the client's trace. HTTP/2 headers cannot
// be rewritten in the kernel under lockdown; this joins both ends when this
// agent traces both processes. Unjoined traces are released as they are.
type Linker struct {
	next func(*spans.Span)

	mu      sync.Mutex
	held    map[[16]byte]*heldTrace // provisional trace id -> its spans
	nheld   int
	servers map[callKey][16]byte // server span's call -> its provisional trace
	clients map[callKey]client   // client spans seen lately
	// joined maps provisional traces joined lately to their client: each
	// probe has its own ring buffer, so a child's span may come after the
	// join.
	joined map[[16]byte]client
	stop   chan struct{}
	done   chan struct{}
}

type heldTrace struct {
	spans  []*spans.Span
	server *spans.Span // the server span once it ended
	key    callKey
	since  time.Time // first span held
	wait   time.Time // when the server span gives up on its client
}

type client struct {
	trace   [16]byte
	span    [8]byte
	flags   byte
	pending bool      // the client span's own trace is provisional
	seen    time.Time // for joined: when it was joined
}

// NewLinker returns a Linker handing spans to next.
func NewLinker(next func(*spans.Span)) *Linker {
	l := &Linker{
		next: next, held: map[[16]byte]*heldTrace{}, servers: map[callKey][16]byte{}, clients: map[callKey]client{},
		joined: map[[16]byte]client{},
		stop:   make(chan struct{}), done: make(chan struct{}),
	}
	go l.expire()
	return l
}

// Add takes a span of any probe.
func (l *Linker) Add(s *spans.Span) {
	if s.TraceFlags&flagLinkPending == 0 {
		l.next(s)
		return
	}
	l.mu.Lock()
	var out []*spans.Span
	l.hold(s, &out)
	l.mu.Unlock()
	l.release(out)
}

// call takes a gRPC span with its call.
func (l *Linker) call(s *spans.Span, c call) {
	l.mu.Lock()
	var out []*spans.Span
	now := time.Now()
	switch {
	case c.server && s.TraceFlags&flagLinkPending != 0:
		t := l.hold(s, &out)
		if t == nil {
			break
		}
		t.server, t.key, t.wait = s, c.key, now.Add(linkWait)
		l.servers[c.key] = s.TraceID
		if cl, ok := l.clients[c.key]; ok {
			l.join(c.key, cl, &out)
		}
	case !c.server && c.key.stream != 0:
		cl := client{trace: s.TraceID, span: s.SpanID, flags: s.TraceFlags, pending: s.TraceFlags&flagLinkPending != 0, seen: now}
		l.clients[c.key] = cl
		if cl.pending {
			l.hold(s, &out)
		} else {
			out = append(out, s)
		}
		if _, ok := l.servers[c.key]; ok {
			l.join(c.key, cl, &out)
		}
	case s.TraceFlags&flagLinkPending != 0:
		l.hold(s, &out)
	default:
		out = append(out, s)
	}
	l.mu.Unlock()
	l.release(out)
}

// hold keeps s with its trace; a full Linker first lets the oldest trace go.
// A span of a trace joined already moves to the client's trace at once.
func (l *Linker) hold(s *spans.Span, out *[]*spans.Span) *heldTrace {
	// Follow joins: the client's trace may have been joined in turn (a
	// gRPC handler calling gRPC). The chain is as deep as the calls; one
	// longer than every join is a cycle, which only calls that each claim
	// to be the other's caller make (corrupt or forged records): the span
	// goes out as it is rather than the Linker spinning with its lock held.
	hops := 0
	for c, ok := l.joined[s.TraceID]; ok; c, ok = l.joined[s.TraceID] {
		if !move(s, c) || hops > len(l.joined) {
			*out = append(*out, s)
			return nil
		}
		hops++
	}
	t := l.held[s.TraceID]
	if t == nil {
		if l.nheld >= heldMax {
			l.dropOldest(out)
		}
		t = &heldTrace{since: time.Now()}
		l.held[s.TraceID] = t
	}
	t.spans = append(t.spans, s)
	l.nheld++
	return t
}

// join moves the trace of the server span of call k into client c's trace:
// the server span becomes the client span's child.
func (l *Linker) join(k callKey, c client, out *[]*spans.Span) {
	old := l.servers[k]
	delete(l.servers, k)
	delete(l.clients, k)
	t := l.held[old]
	if t == nil {
		return
	}
	delete(l.held, old)
	l.nheld -= len(t.spans)
	c.seen = time.Now()
	l.joined[old] = c
	t.server.ParentID = c.span
	for _, s := range t.spans {
		if move(s, c) {
			l.hold(s, out)
			continue
		}
		*out = append(*out, s)
	}
}

// move puts s into client c's trace and reports whether it must still be
// held: when the client's own trace waits for its link.
func move(s *spans.Span, c client) bool {
	s.TraceID = c.trace
	s.TraceFlags = s.TraceFlags&^(flagLinkPending|1) | c.flags&1
	if c.pending {
		s.TraceFlags |= flagLinkPending
	}
	return c.pending
}

func (l *Linker) dropOldest(out *[]*spans.Span) {
	var oldest [16]byte
	var first time.Time
	for id, t := range l.held {
		if first.IsZero() || t.since.Before(first) {
			oldest, first = id, t.since
		}
	}
	l.unhold(oldest, out)
}

// unhold releases a trace unjoined.
func (l *Linker) unhold(id [16]byte, out *[]*spans.Span) {
	t := l.held[id]
	if t == nil {
		return
	}
	delete(l.held, id)
	l.nheld -= len(t.spans)
	if t.server != nil {
		delete(l.servers, t.key)
	}
	*out = append(*out, t.spans...)
}

func (l *Linker) release(out []*spans.Span) {
	for _, s := range out {
		s.TraceFlags &^= flagLinkPending
		l.next(s)
	}
}

// expire releases traces whose server span waited in vain, and forgets old
// client spans.
func (l *Linker) expire() {
	defer close(l.done)
	tick := time.NewTicker(linkWait / 4)
	defer tick.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-tick.C:
		}
		now := time.Now()
		var out []*spans.Span
		l.mu.Lock()
		for id, t := range l.held {
			if t.server != nil && now.After(t.wait) || now.Sub(t.since) > holdMax {
				l.unhold(id, &out)
			}
		}
		for k, c := range l.clients {
			if now.Sub(c.seen) > clientMemory {
				delete(l.clients, k)
			}
		}
		for id, c := range l.joined {
			if now.Sub(c.seen) > clientMemory {
				delete(l.joined, id)
			}
		}
		l.mu.Unlock()
		l.release(out)
	}
}

// Flush stops waiting and releases every held span (at shutdown, after the
// probes stopped).
func (l *Linker) Flush() {
	close(l.stop)
	<-l.done
	var out []*spans.Span
	l.mu.Lock()
	for id := range l.held {
		l.unhold(id, &out)
	}
	l.mu.Unlock()
	l.release(out)
}
