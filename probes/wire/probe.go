// Package wire traces any target, whatever its language, from the bytes it
// sends and receives on TCP sockets: syscall tracepoints (no kprobes, no
// uprobes) capture the first bytes of each read and write, and user space
// follows each connection's HTTP/1, PostgreSQL or MySQL messages and makes
// SERVER and CLIENT spans of them. Go targets are left to the Go probes.
package wire

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/tracewire/tracewire/internal/gobin"
	"github.com/tracewire/tracewire/internal/kernel"
	"github.com/tracewire/tracewire/probes"
	"github.com/tracewire/tracewire/spans"
)

// tracepoints are the wire path's: the exit of each read/write-family call
// (its arguments are read from the saved registers), and the entry of close.
var tracepoints = func() []probes.Tracepoint {
	ts := []probes.Tracepoint{{Name: "sys_enter_close", Program: "wire_enter_close"}}
	for _, sc := range []string{"read", "recvfrom", "readv", "recvmsg", "write", "sendto", "writev", "sendmsg", "sendfile64"} {
		ts = append(ts, probes.Tracepoint{Name: "sys_exit_" + sc, Program: "wire_exit_" + sc})
	}
	return ts
}()

// Decl declares the wire probe.
var Decl = probes.Decl{
	Name:     "wire",
	Objects:  loadBpf,
	Procs:    "wire_procs",
	Events:   "wire_events",
	Counters: []string{"ringbuf_full", "read_failed", "map_full"},
	Offsets:  goOffsets,
	Extend: func(coll *ebpf.Collection, log *slog.Logger) (probes.Extension, error) {
		x := &extension{log: log, peers: coll.Maps["wire_http_peers"]}
		if x.peers == nil {
			return nil, errors.New("no map wire_http_peers in the object")
		}
		var err error
		if x.tps, err = probes.NewTracepoints(coll, tracepoints); err != nil {
			return nil, err
		}
		changed, err := kernel.SockmapChangesFIONREAD()
		if err != nil {
			changed = true // unknown: assume the worst
			log.Warn("cannot tell whether sockets under sk_msg keep FIONREAD; assuming they do not", "err", err)
		}
		x.fionreadChanged = changed
		return x, nil
	},
	Decoder: func(env probes.Env) probes.DecodeFunc {
		x := env.Ext.(*extension)
		w := newWireDecoder(env, &x.counts)
		w.teach = x.teach
		return w.decode
	},
}

// goDBClients are Go packages that speak a database protocol the wire path
// reads without database/sql (whose probe, dbsql, traces them otherwise).
var goDBClients = []string{
	"github.com/jackc/pgx/v5/pgconn.", "github.com/jackc/pgconn.", "github.com/go-pg/pg/",
	"github.com/go-mysql-org/go-mysql/client.",
}

// goOffsets is what a target needs from the wire path: a program that is
// not Go, everything; a Go program, only the database connections of a
// client no Go probe traces (not through database/sql), whose calls find
// their parent by goroutine. Other Go programs are the Go probes' alone.
func goOffsets(bin *gobin.Binary) (any, error) {
	if bin == nil {
		return &bpfWireProc{}, nil
	}
	if bin.HasFunc("database/sql.(*DB).conn") {
		return nil, fmt.Errorf("a Go program using database/sql, for the Go probes: %w", probes.ErrNotUsed)
	}
	client := len(bin.Funcs(func(name string) bool {
		for _, p := range goDBClients {
			if strings.HasPrefix(name, p) {
				return true
			}
		}
		return false
	})) > 0
	if !client {
		return nil, fmt.Errorf("a Go program, for the Go probes: %w", probes.ErrNotUsed)
	}
	o := &bpfWireProc{Flags: uint64(bpfWireProcFlagWIRE_GO)}
	if err := probes.ResolveFields(bin, probes.GoroutineFields(&o.G.Goid, &o.G.ParentGoid)); err != nil {
		return nil, err
	}
	return o, nil
}

// extension is the tracepoints (with the first target, see
// probes.Tracepoints), the endpoints the decoder learns, and the decoder's
// counters.
type extension struct {
	tps    *probes.Tracepoints
	log    *slog.Logger
	counts Counters
	peers  *ebpf.Map // wire_http_peers
	// fionreadChanged: this kernel answers FIONREAD wrongly for sockets
	// under sk_msg (see nethttp), so targets that may ask stay out.
	fionreadChanged bool
}

func (x *extension) Add(pid int, bin *gobin.Binary, off any) error {
	if x.fionreadChanged && bin == nil {
		if asks, file := runtimeAsksFIONREAD(pid); asks {
			off.(*bpfWireProc).Flags |= uint64(bpfWireProcFlagWIRE_LEAVE_ALONE)
			x.log.Info("outgoing traceparent is off for this target: its runtime asks FIONREAD, which this kernel answers wrongly for sockets under sk_msg", "pid", pid, "file", file)
		}
	}
	return x.tps.Acquire(pid)
}

// teach puts ep in wire_http_peers: the kernel then puts targets'
// connections to it under sk_msg. IPv4 goes in both forms a socket may
// show it in (AF_INET, and v4-mapped on an AF_INET6 socket).
func (x *extension) teach(ep netip.AddrPort) {
	now := uint64(time.Now().UnixNano())
	put := func(family uint16, addr [16]byte) {
		k := bpfWirePeer{Addr: addr, Port: ep.Port(), Family: family}
		if err := x.peers.Put(&k, now); err != nil {
			x.log.Debug("remember an HTTP endpoint", "endpoint", ep, "err", err)
		}
	}
	a := ep.Addr()
	if a.Is4() {
		var v4 [16]byte
		copy(v4[:], a.AsSlice())
		put(unix.AF_INET, v4)
	}
	put(unix.AF_INET6, a.As16())
}

// Counters are the decoder's.
func (x *extension) Counters() map[string]uint64 {
	c := &x.counts
	return map[string]uint64{
		"no_response": c.NoResponse.Load(), "unparsed": c.Unparsed.Load(), "cut": c.Cut.Load(),
		"no_parent": c.NoParent.Load(), "conns_evicted": c.ConnsEvicted.Load(), "unknown_statements": c.UnknownStatements.Load(),
		"context_mismatch": c.ContextMismatch.Load(),
	}
}

// Remove detaches the tracepoints with the last target; the decoder forgets
// idle connections by itself.
func (x *extension) Remove(pid int) { x.tps.Release(pid) }

func (x *extension) Detach() { x.tps.Detach() }

// wireDecoder turns records into events for the connection decoder and its
// finished requests into spans.
type wireDecoder struct {
	*decoder
	clock   kernel.Clock
	scratch []byte
	text    []byte       // a sanitized query
	rec     bpfWireEvent // the record being decoded
}

func newWireDecoder(env probes.Env, count *Counters) *wireDecoder {
	return &wireDecoder{decoder: newDecoder(env.Sampler, count), clock: env.Clock}
}

func (w *wireDecoder) decode(raw []byte, process func(pid int) *spans.Process, emit func(*spans.Span)) bool {
	// A record holds the event up to its captured bytes.
	e := &w.rec
	if !kernel.RecordInto(e, raw, unsafe.Offsetof(e.Data)) {
		return false
	}
	size := int(e.Size)
	if uintptr(len(raw)) < unsafe.Offsetof(e.Data)+uintptr(size) || size > len(e.Data) {
		return false
	}
	ev := event{
		ts: e.Ts, pid: e.Pid, tid: e.Tid, fd: e.Fd, dir: e.Dir, n: e.Len,
		local:    netip.AddrPortFrom(probes.RemoteAddr(e.Conn.Family, e.Conn.Local), e.Conn.Lport),
		remote:   netip.AddrPortFrom(probes.RemoteAddr(e.Conn.Family, e.Conn.Remote), e.Conn.Rport),
		data:     e.Data[:size],
		ctx:      kernelCtx{kind: e.CtxKind, ts: e.Ts, in: e.Dir == dirIn},
		goTarget: e.Go != 0,
	}
	if ev.ctx.kind != ctxNone {
		ev.ctx.ids = spanIDs{trace: e.Ctx.TraceId, span: e.Ctx.SpanId, parent: e.Ctx.ParentId, flags: e.Ctx.Flags}
	}
	if ev.dir < dirIn || ev.dir > dirClose || ev.n < int64(size) {
		return false
	}
	for _, f := range w.feed(ev) {
		proc := process(int(ev.pid))
		switch {
		case proc == nil:
		case f.op != nil:
			emit(w.dbSpan(f, proc))
		default:
			emit(w.span(f, proc))
		}
	}
	return true
}

// dbSpan builds the semconv database client span of a finished call, with
// the attributes the database/sql probe gives.
func (w *wireDecoder) dbSpan(f finished, proc *spans.Process) *spans.Span {
	op, c := f.op, f.conn
	s := spans.New()
	s.Process, s.Scope, s.Kind = proc, Scope, spans.KindClient
	s.TraceID, s.SpanID, s.ParentID, s.TraceFlags = op.ids.trace, op.ids.span, op.ids.parent, op.ids.flags
	s.StartNs, s.EndNs = w.clock.Wall(op.start), w.clock.Wall(f.end)
	s.Attrs = append(s.Attrs, spans.String("db.system.name", op.system))
	if op.unknown {
		s.Name = op.system // the statement was prepared before the agent saw it
	} else {
		w.text = probes.SQLQuery(s, op.system, op.query, op.cut, w.text)
	}
	w.scratch = c.remote.Addr().AppendTo(w.scratch[:0])
	s.Attrs = append(s.Attrs, spans.String("server.address", s.Str(w.scratch)), spans.Int("server.port", int64(c.remote.Port())))
	if op.errCode != "" || op.errMsg != "" {
		s.Attrs = append(s.Attrs, spans.String("error.type", s.Str([]byte(op.errCode))))
		w.scratch = probes.SQLError(s, op.errMsg, op.query, w.scratch)
	}
	return s
}

// span builds the semconv span of a finished request, with the attributes
// the Go probes give.
func (w *wireDecoder) span(f finished, proc *spans.Process) *spans.Span {
	r, c := f.req, f.conn
	s := spans.New()
	s.Process, s.Scope = proc, Scope
	s.TraceID, s.SpanID, s.ParentID, s.TraceFlags = r.ids.trace, r.ids.span, r.ids.parent, r.ids.flags
	s.StartNs, s.EndNs = w.clock.Wall(r.start), w.clock.Wall(f.end)
	m := &r.msg
	s.Name, s.Attrs = spans.HTTPMethod(s.Str([]byte(m.method)), s.Attrs)
	host, port := spans.HostPort(m.host, 80)
	if c.role == roleServer {
		s.Kind = spans.KindServer
		s.TraceState = s.Str([]byte(r.ids.state))
		s.Attrs = append(s.Attrs, spans.String("url.path", s.Str([]byte(m.path()))), spans.String("url.scheme", "http"))
		if r.status > 0 {
			s.Attrs = append(s.Attrs, spans.Int("http.response.status_code", int64(r.status)))
		}
		s.Attrs = append(s.Attrs, spans.String("network.protocol.version", protoVersion(m.minor)))
		s.Error = r.status >= 500
		if host != "" {
			s.Attrs = append(s.Attrs, spans.String("server.address", s.Str([]byte(host))), spans.Int("server.port", int64(port)))
		}
		w.scratch = c.remote.Addr().AppendTo(w.scratch[:0])
		s.Attrs = append(s.Attrs, spans.String("client.address", s.Str(w.scratch)))
	} else {
		s.Kind = spans.KindClient
		path, query, _ := strings.Cut(m.target, "?")
		w.scratch = spans.FullURL(w.scratch[:0], "http", m.host, path, query, false)
		s.Attrs = append(s.Attrs, spans.String("url.full", s.Str(w.scratch)))
		if host != "" {
			s.Attrs = append(s.Attrs, spans.String("server.address", s.Str([]byte(host))), spans.Int("server.port", int64(port)))
		}
		w.scratch = c.remote.Addr().AppendTo(w.scratch[:0])
		s.Attrs = append(s.Attrs, spans.String("network.peer.address", s.Str(w.scratch)), spans.Int("network.peer.port", int64(c.remote.Port())))
		s.Attrs = append(s.Attrs, spans.Int("http.response.status_code", int64(r.status)))
		s.Error = r.status >= 400
	}
	if m.cut {
		s.Attrs = append(s.Attrs, spans.String("tracewire.capture", "cut"))
	}
	return s
}

func protoVersion(minor byte) string {
	if minor == '0' {
		return "1.0"
	}
	return "1.1"
}
