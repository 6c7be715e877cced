package pipeline

import (
	"sync"
	"time"

	"github.com/tracewire/tracewire/spans"
)

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

// Joiner passes spans on, except those of provisional traces (LinkPending:
// set by the kernel on a server span whose call carried no traceparent, and
// inherited by its children): it holds those until the server span meets
// the client span of the same call (spans.Call: same connection and
// stream), then moves the held spans into the client's trace. Where the
// kernel cannot add a traceparent to a call (HTTP/2 headers cannot be
// rewritten under lockdown), this joins both ends when this agent traces
// both processes. Unjoined traces are released as they are.
type Joiner struct {
	next func(*spans.Span)

	mu      sync.Mutex
	held    map[[16]byte]*heldTrace // provisional trace id -> its spans
	nheld   int
	servers map[spans.Call][16]byte // server span's call -> its provisional trace
	clients map[spans.Call]client   // client spans seen lately
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
	key    spans.Call
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

// NewJoiner returns a Joiner handing spans to next.
func NewJoiner(next func(*spans.Span)) *Joiner {
	j := &Joiner{
		next: next, held: map[[16]byte]*heldTrace{}, servers: map[spans.Call][16]byte{}, clients: map[spans.Call]client{},
		joined: map[[16]byte]client{},
		stop:   make(chan struct{}), done: make(chan struct{}),
	}
	go j.expire()
	return j
}

// Add takes a span of any probe. A server span of a provisional trace
// waits for its call's client span; a client span whose call is known is
// remembered for its server span.
func (j *Joiner) Add(s *spans.Span) {
	var out []*spans.Span
	j.mu.Lock()
	now := time.Now()
	switch {
	case s.Kind == spans.KindServer && s.LinkPending:
		t := j.hold(s, &out)
		if t == nil {
			break
		}
		t.server, t.key, t.wait = s, s.Call, now.Add(linkWait)
		j.servers[s.Call] = s.TraceID
		if cl, ok := j.clients[s.Call]; ok {
			j.join(s.Call, cl, &out)
		}
	case s.Kind == spans.KindClient && s.Call != (spans.Call{}):
		cl := client{trace: s.TraceID, span: s.SpanID, flags: s.TraceFlags, pending: s.LinkPending, seen: now}
		j.clients[s.Call] = cl
		if cl.pending {
			j.hold(s, &out)
		} else {
			out = append(out, s)
		}
		if _, ok := j.servers[s.Call]; ok {
			j.join(s.Call, cl, &out)
		}
	case s.LinkPending:
		j.hold(s, &out)
	default:
		out = append(out, s)
	}
	j.mu.Unlock()
	j.release(out)
}

// hold keeps s with its trace; a full Joiner first lets the oldest trace go.
// A span of a trace joined already moves to the client's trace at once.
func (j *Joiner) hold(s *spans.Span, out *[]*spans.Span) *heldTrace {
	// Follow joins: the client's trace may have been joined in turn (a
	// gRPC handler calling gRPC). The chain is as deep as the calls; one
	// longer than every join is a cycle, which only calls that each claim
	// to be the other's caller make (corrupt or forged records): the span
	// goes out as it is rather than the Joiner spinning with its lock held.
	hops := 0
	for c, ok := j.joined[s.TraceID]; ok; c, ok = j.joined[s.TraceID] {
		if !move(s, c) || hops > len(j.joined) {
			*out = append(*out, s)
			return nil
		}
		hops++
	}
	t := j.held[s.TraceID]
	if t == nil {
		if j.nheld >= heldMax {
			j.dropOldest(out)
		}
		t = &heldTrace{since: time.Now()}
		j.held[s.TraceID] = t
	}
	t.spans = append(t.spans, s)
	j.nheld++
	return t
}

// join moves the trace of the server span of call k into client c's trace:
// the server span becomes the client span's child.
func (j *Joiner) join(k spans.Call, c client, out *[]*spans.Span) {
	old := j.servers[k]
	delete(j.servers, k)
	delete(j.clients, k)
	t := j.held[old]
	if t == nil {
		return
	}
	delete(j.held, old)
	j.nheld -= len(t.spans)
	c.seen = time.Now()
	j.joined[old] = c
	t.server.ParentID = c.span
	for _, s := range t.spans {
		if move(s, c) {
			j.hold(s, out)
			continue
		}
		*out = append(*out, s)
	}
}

// move puts s into client c's trace and reports whether it must still be
// held: when the client's own trace waits for its link.
func move(s *spans.Span, c client) bool {
	s.TraceID = c.trace
	s.TraceFlags = s.TraceFlags&^1 | c.flags&1
	s.LinkPending = c.pending
	return c.pending
}

func (j *Joiner) dropOldest(out *[]*spans.Span) {
	var oldest [16]byte
	var first time.Time
	for id, t := range j.held {
		if first.IsZero() || t.since.Before(first) {
			oldest, first = id, t.since
		}
	}
	j.unhold(oldest, out)
}

// unhold releases a trace unjoined.
func (j *Joiner) unhold(id [16]byte, out *[]*spans.Span) {
	t := j.held[id]
	if t == nil {
		return
	}
	delete(j.held, id)
	j.nheld -= len(t.spans)
	if t.server != nil {
		delete(j.servers, t.key)
	}
	*out = append(*out, t.spans...)
}

func (j *Joiner) release(out []*spans.Span) {
	for _, s := range out {
		s.LinkPending = false
		j.next(s)
	}
}

// expire releases traces whose server span waited in vain, and forgets old
// client spans.
func (j *Joiner) expire() {
	defer close(j.done)
	tick := time.NewTicker(linkWait / 4)
	defer tick.Stop()
	for {
		select {
		case <-j.stop:
			return
		case <-tick.C:
		}
		now := time.Now()
		var out []*spans.Span
		j.mu.Lock()
		for id, t := range j.held {
			if t.server != nil && now.After(t.wait) || now.Sub(t.since) > holdMax {
				j.unhold(id, &out)
			}
		}
		for k, c := range j.clients {
			if now.Sub(c.seen) > clientMemory {
				delete(j.clients, k)
			}
		}
		for id, c := range j.joined {
			if now.Sub(c.seen) > clientMemory {
				delete(j.joined, id)
			}
		}
		j.mu.Unlock()
		j.release(out)
	}
}

// Flush stops waiting and releases every held span (at shutdown, after the
// probes stopped).
func (j *Joiner) Flush() {
	close(j.stop)
	<-j.done
	var out []*spans.Span
	j.mu.Lock()
	for id := range j.held {
		j.unhold(id, &out)
	}
	j.mu.Unlock()
	j.release(out)
}
