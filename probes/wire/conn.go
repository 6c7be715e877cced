package wire

import (
	"math/rand/v2"
	"net/netip"
	"sync/atomic"

	"github.com/tracewire/tracewire/internal/sampling"
	"github.com/tracewire/tracewire/spans"
)

// Scope is the instrumentation scope of the spans this probe makes.
const Scope = "github.com/tracewire/tracewire/probes/wire"

// connsMax bounds the connections followed at once; past it, the longest
// idle goes (its spans in flight are lost, counted).
const connsMax = 1 << 16

// reqsMax bounds the requests in flight on one connection.
const reqsMax = 64

// Connections idle for idleMax are forgotten (their process may be gone,
// or their close was missed), checked every sweepEvery (kernel ns).
const (
	idleMax    = uint64(5 * 60e9)
	sweepEvery = uint64(30e9)
)

// role is what a connection is to the target.
type role uint8

const (
	roleUnknown role = iota
	roleServer       // it receives requests
	roleClient       // it sends them
)

// connKey names a connection by the target's descriptor: a descriptor
// reused for another connection is told apart by its addresses.
type connKey struct {
	pid uint32
	fd  int32
}

// proto is the protocol a connection speaks, once recognised.
type proto uint8

const (
	protoUnknown proto = iota
	protoHTTP
	protoPG
	protoMySQL
	protoNone // encrypted, or not one the agent reads
)

// conn is one TCP connection of a target, as its syscalls show it.
type conn struct {
	local, remote netip.AddrPort
	proto         proto
	pg            *pgConn
	my            *myConn
	role          role
	in, out       stream
	reqs          []*request // in flight, oldest first (pipelining)
	begun         kernelCtx  // the context the kernel gave the last syscall that had one
	lastOut       uint64     // when the target last sent on it
	seen          uint64
}

// request is one HTTP request in flight on a connection.
type request struct {
	msg    message
	start  uint64
	thread threadKey // the thread that read (server) or sent (client) it
	ids    spanIDs
	status int
}

// spanIDs are a span's context.
type spanIDs struct {
	trace        [16]byte
	span, parent [8]byte
	flags        byte
	state        string
}

// kernelCtx is the span context the kernel decided for the request a
// syscall starts (enum wire_ctx): a server request's, which sk_msg gives
// the thread's calls as their parent; or a client call's, which sk_msg sent
// in its traceparent. The spans must carry the same ids.
type kernelCtx struct {
	kind uint8
	ts   uint64 // the syscall's
	in   bool
	ids  spanIDs
}

// Kinds of kernelCtx, as enum wire_ctx.
const (
	ctxNone   = 0
	ctxBegun  = 1
	ctxSent   = 2
	ctxParent = 3
)

// Counters are what the decoder counts, read by the probe's Counters.
type Counters struct {
	NoResponse   atomic.Uint64 // a request whose connection closed without a response
	Unparsed     atomic.Uint64 // a message head that is not HTTP/1 where one was expected
	Cut          atomic.Uint64 // heads longer than the capture: some fields unknown
	NoParent     atomic.Uint64 // client calls made while several requests were served on their thread
	ConnsEvicted atomic.Uint64
	// ContextMismatch: the kernel read a request's traceparent otherwise
	// than user space (blanks, a field the capture cut); the span keeps
	// the header's context, and its calls carry no traceparent.
	ContextMismatch atomic.Uint64
	// UnknownStatements are executions of statements prepared before the
	// agent saw their connection: spans without a query text.
	UnknownStatements atomic.Uint64
}

// decoder follows every target's connections and turns their HTTP/1
// exchanges into spans. It belongs to the one goroutine of Run.
type decoder struct {
	conns   map[connKey]*conn
	serving map[threadKey][]*request // server requests in flight by thread
	sampler sampling.Config
	rand    *rand.ChaCha8
	count   *Counters
	out     []finished // spans completed by the event being decoded
	swept   uint64     // when idle connections were last forgotten
	// goCall is set while a Go target's event is decoded: calls it starts
	// take their parent from its goroutine (parent, when set), never from
	// its thread.
	goCall struct {
		on     bool
		parent *kernelCtx
	}
	// teach tells the kernel of an endpoint that speaks HTTP/1 (nil: no
	// kernel); learned are those told, up to learnedMax.
	teach   func(netip.AddrPort)
	learned map[netip.AddrPort]bool
}

// learnedMax bounds the endpoints remembered as told to the kernel; past
// it they are forgotten (and told again: the kernel's map is an LRU).
const learnedMax = 1 << 14

// learn records that ep speaks HTTP/1: the kernel then puts connections
// to it under sk_msg, for outgoing traceparent.
func (d *decoder) learn(ep netip.AddrPort) {
	if d.teach == nil || d.learned[ep] {
		return
	}
	if len(d.learned) >= learnedMax {
		clear(d.learned)
	}
	d.learned[ep] = true
	d.teach(ep)
}

type threadKey struct{ pid, tid uint32 }

// finished is a request or a database call whose span is complete.
type finished struct {
	req  *request // an HTTP request, or
	op   *dbOp    // a database call
	conn *conn
	end  uint64
}

func newDecoder(sampler sampling.Config, count *Counters) *decoder {
	var seed [32]byte
	for i := range seed {
		seed[i] = byte(rand.Uint32())
	}
	return &decoder{
		conns: map[connKey]*conn{}, serving: map[threadKey][]*request{}, learned: map[netip.AddrPort]bool{},
		sampler: sampler, rand: rand.NewChaCha8(seed), count: count,
	}
}

// event is one syscall's bytes on a connection, as decode gets them.
type event struct {
	ts            uint64
	pid, tid      uint32
	fd            int32
	dir           uint16
	local, remote netip.AddrPort
	data          []byte // the captured first bytes
	n             int64  // bytes moved
	ctx           kernelCtx
	goTarget      bool // a Go program's (WIRE_GO): database connections only
}

// Directions, as enum wire_dir.
const (
	dirIn    = 1
	dirOut   = 2
	dirClose = 3
)

// feed follows one event and returns the requests it completed.
func (d *decoder) feed(e event) []finished {
	d.out = d.out[:0]
	if e.ts > d.swept+sweepEvery {
		d.sweep(e.ts)
	}
	k := connKey{e.pid, e.fd}
	c := d.conns[k]
	if e.dir == dirClose {
		if c != nil {
			d.close(k, c)
		}
		return d.out
	}
	if c == nil || c.local != e.local || c.remote != e.remote {
		if c != nil {
			d.close(k, c) // the descriptor now names another connection
		}
		if len(d.conns) >= connsMax {
			d.evictIdle()
		}
		c = &conn{local: e.local, remote: e.remote}
		d.conns[k] = c
	}
	c.seen = e.ts
	if e.ctx.kind != ctxNone {
		c.begun = e.ctx
	}
	d.goCall.on, d.goCall.parent = e.goTarget, nil
	if e.ctx.kind == ctxParent {
		d.goCall.parent = &e.ctx
	}
	if c.proto == protoUnknown {
		d.recognise(c, &e)
	}
	if e.goTarget && c.proto == protoUnknown {
		return d.out // HTTP is the Go probes'
	}
	switch c.proto {
	case protoPG:
		c.pg.feed(&e)
		return d.out
	case protoMySQL:
		c.my.feed(&e)
		return d.out
	case protoNone:
		return d.out
	}
	h := &side{d: d, c: c, e: &e}
	if e.dir == dirIn {
		h.in = true
		c.in.feed(h, e.ts, e.data, e.n)
	} else {
		c.lastOut = e.ts
		c.out.feed(h, e.ts, e.data, e.n)
	}
	return d.out
}

// recognise finds what protocol a connection speaks from its first bytes:
// a PostgreSQL startup or query, a MySQL greeting or command, else HTTP is
// looked for in every syscall's first bytes.
func (d *decoder) recognise(c *conn, e *event) {
	switch {
	case e.dir == dirOut && (isPGStartup(e.data, e.n) || isPGQuery(e.data, e.n)):
		c.proto, c.pg, c.role = protoPG, newPG(d, c), roleClient
	case e.dir == dirIn && isMySQLGreeting(e.data, e.n) || e.dir == dirOut && isMySQLCommand(e.data, e.n):
		c.proto, c.my, c.role = protoMySQL, newMySQL(d, c), roleClient
	}
}

// newOp starts a database call of the thread th (of a Go target: of the
// goroutine whose write is being decoded).
func (d *decoder) newOp(system string, ts uint64, th threadKey) *dbOp {
	op := &dbOp{system: system, start: ts}
	switch {
	case d.goCall.parent != nil:
		p := d.goCall.parent.ids
		d.rand.Read(op.ids.span[:])
		op.ids.trace, op.ids.parent, op.ids.flags = p.trace, p.span, p.flags
	case d.goCall.on:
		d.rand.Read(op.ids.span[:])
		d.rand.Read(op.ids.trace[:])
		op.ids.flags = b2f(d.sampler.Sampled(op.ids.trace))
	default:
		op.ids = d.clientIDs(th)
	}
	return op
}

// finishOp completes a database call at end; calls that are not worth a
// span (a Parse alone, a ping) end quietly.
func (d *decoder) finishOp(c *conn, op *dbOp, end uint64) {
	if op.span {
		d.out = append(d.out, finished{op: op, conn: c, end: end})
	}
}

// close ends a connection: a request whose response had begun ends with
// the response's last bytes (a body until the close, or one the peer did
// not wait for); requests without a response are dropped and counted.
func (d *decoder) close(k connKey, c *conn) {
	delete(d.conns, k)
	if m := c.my; m != nil && m.op != nil {
		if m.packets > 0 {
			d.finishOp(c, m.op, m.lastIn) // its end was not captured
		} else if m.op.span {
			d.count.NoResponse.Add(1)
		}
	}
	if c.pg != nil {
		for _, op := range c.pg.ops {
			if op.span {
				d.count.NoResponse.Add(1)
			}
		}
	}
	for _, r := range c.reqs {
		switch {
		case r.status != 0 && c.role == roleServer:
			d.finish(c, r, c.lastOut)
		case r.status != 0:
			d.finish(c, r, c.seen)
		default:
			d.count.NoResponse.Add(1)
			d.unserve(r)
		}
	}
	c.reqs = nil
}

// sweep forgets the connections idle since before now-idleMax.
func (d *decoder) sweep(now uint64) {
	d.swept = now
	for k, c := range d.conns {
		if now > c.seen+idleMax {
			d.close(k, c)
		}
	}
}

func (d *decoder) evictIdle() {
	var oldest connKey
	var at uint64
	for k, c := range d.conns {
		if at == 0 || c.seen < at {
			oldest, at = k, c.seen
		}
	}
	d.count.ConnsEvicted.Add(1)
	d.close(oldest, d.conns[oldest])
}

// finish completes r's span at end.
func (d *decoder) finish(c *conn, r *request, end uint64) {
	d.out = append(d.out, finished{req: r, conn: c, end: end})
	if c.role == roleServer {
		d.unserve(r)
	}
}

// unserve forgets a server request on its thread.
func (d *decoder) unserve(r *request) {
	rs := d.serving[r.thread]
	for i, x := range rs {
		if x == r {
			rs = append(rs[:i], rs[i+1:]...)
			break
		}
	}
	if len(rs) == 0 {
		delete(d.serving, r.thread)
	} else {
		d.serving[r.thread] = rs
	}
}

// side is the handler of one event's direction.
type side struct {
	d  *decoder
	c  *conn
	e  *event
	in bool // the target received the bytes
}

func (h *side) starts(data []byte) bool { return startsHTTP(data) }

func (h *side) head(raw []byte, start, ts uint64, fresh, cut bool) (framing, int64) {
	d, c := h.d, h.c
	m, ok := parseHead(raw, cut)
	if !ok {
		d.count.Unparsed.Add(1)
		return frameLost, 0
	}
	if cut {
		d.count.Cut.Add(1)
	}
	if m.request {
		switch {
		case h.in && c.role != roleClient:
			c.role = roleServer
		case !h.in && c.role != roleServer:
			c.role = roleClient
		default:
			return frameLost, 0 // a request the wrong way: not HTTP as we know it
		}
		r := &request{msg: m, start: start, thread: threadKey{h.e.pid, h.e.tid}}
		var k *kernelCtx
		if b := &c.begun; fresh && b.kind != ctxNone && b.ts == start && b.in == h.in {
			k = b
		}
		h.context(r, k)
		c.begun = kernelCtx{}
		if h.in { // an endpoint that speaks HTTP/1
			d.learn(c.local)
		} else {
			d.learn(c.remote)
		}
		if len(c.reqs) >= reqsMax { // pipelined requests nobody answers
			d.count.NoResponse.Add(1)
			d.unserve(c.reqs[0])
			c.reqs = c.reqs[1:]
		}
		c.reqs = append(c.reqs, r)
		return m.requestFraming()
	}
	// A response: to the oldest request that has none yet, the way it came.
	if c.role == roleServer && h.in || c.role == roleClient && !h.in || c.role == roleUnknown {
		return frameLost, 0 // e.g. a connection opened before the agent: wait for a request
	}
	var r *request
	for _, x := range c.reqs {
		if x.status == 0 {
			r = x
			break
		}
	}
	if r == nil {
		return frameLost, 0
	}
	if m.status >= 200 || m.status == 101 || cut {
		r.status = m.status // else an interim response (100 Continue): the final one follows
	}
	return m.responseFraming(r.msg.method)
}

func (h *side) done(ts uint64) {
	c := h.c
	// The end of a response: its request's span is complete.
	if c.role == roleServer && !h.in || c.role == roleClient && h.in {
		for i, r := range c.reqs {
			if r.status != 0 {
				c.reqs = append(c.reqs[:i], c.reqs[i+1:]...)
				h.d.finish(c, r, ts)
				return
			}
		}
	}
}

// context chooses r's span context: a server request continues an incoming
// traceparent; a client call made by a thread serving exactly one request
// is that request's child; anything else starts a trace. The kernel's
// choice k, when it made one for this request, is the one its calls or
// the next hop got: it wins.
func (h *side) context(r *request, k *kernelCtx) {
	d := h.d
	if k != nil && k.kind == ctxSent {
		// The next hop continues these ids whatever happens here; the
		// parent is kept only when it is a request this thread serves.
		r.ids = k.ids
		for _, x := range d.serving[r.thread] {
			if x.ids.trace == r.ids.trace && x.ids.span == r.ids.parent {
				r.ids.state = x.ids.state
				return
			}
		}
		r.ids.parent = [8]byte{}
		d.count.NoParent.Add(1)
		return
	}
	d.rand.Read(r.ids.span[:])
	if h.in {
		d.serving[r.thread] = append(d.serving[r.thread], r)
		t, p, f, ok := spans.ParseTraceparent(r.msg.traceparent)
		if k != nil && k.kind == ctxBegun {
			if !ok && k.ids.parent == ([8]byte{}) || ok && t == k.ids.trace && p == k.ids.parent {
				r.ids = k.ids
				r.ids.state = r.msg.tracestate
				return
			}
			d.count.ContextMismatch.Add(1)
		}
		if ok {
			r.ids.trace, r.ids.parent, r.ids.state = t, p, r.msg.tracestate
			r.ids.flags = f & 1
			if !d.sampler.ParentBased {
				r.ids.flags = b2f(d.sampler.Sampled(t))
			}
			return
		}
		d.rand.Read(r.ids.trace[:])
		r.ids.flags = b2f(d.sampler.Sampled(r.ids.trace))
		return
	}
	r.ids = d.clientIDs(r.thread)
}

// clientIDs chooses the context of a call made by thread th: the child of
// the one request the thread serves, else the root of a new trace.
func (d *decoder) clientIDs(th threadKey) spanIDs {
	var ids spanIDs
	d.rand.Read(ids.span[:])
	switch rs := d.serving[th]; len(rs) {
	case 1:
		p := rs[0].ids
		ids.trace, ids.parent, ids.flags, ids.state = p.trace, p.span, p.flags, p.state
		return ids
	case 0:
	default:
		d.count.NoParent.Add(1)
	}
	d.rand.Read(ids.trace[:])
	ids.flags = b2f(d.sampler.Sampled(ids.trace))
	return ids
}

func b2f(b bool) byte {
	if b {
		return 1
	}
	return 0
}
