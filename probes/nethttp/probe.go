// Package nethttp traces Go net/http: one SERVER span per request served, one
// CLIENT span per request sent, their parent/child links inside a process,
// and W3C traceparent in (read from the request's headers) and out (inserted
// into the outgoing byte stream by sk_msg). Every uprobe sits on an emulated
// prologue instruction.
package nethttp

import (
	"errors"
	"io/fs"
	"log/slog"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/tracewire/tracewire/internal/gobin"
	"github.com/tracewire/tracewire/internal/kernel"
	"github.com/tracewire/tracewire/probes"
	"github.com/tracewire/tracewire/spans"
)

// Scope is the instrumentation scope of the spans this probe makes.
const Scope = "github.com/tracewire/tracewire/probes/nethttp"

// Decl declares the net/http probe.
var Decl = probes.Decl{
	Name:    "nethttp",
	Objects: loadBpf,
	Procs:   "nethttp_procs",
	Events:  "nethttp_events",
	Stale: []string{
		"go_server_spans", "nethttp_client_inflight", "nethttp_client_requests", "nethttp_pending", "nethttp_connecting",
		"nethttp_client_socks",
	},
	Counters: []string{"ringbuf_full", "read_failed", "map_full", "no_start", "socket_busy", "injected", "not_injected", "http2_skipped", "left_alone", "rate_limited", "no_end", "ctx_late"},
	Hooks: []probes.Hook{
		// A request starts at the read that brings its head, unless the
		// program may read heads net/http does not serve in plaintext.
		{Symbols: []string{"net/http.serverHandler.ServeHTTP"}, Program: "uprobe_serverHandler_ServeHTTP", When: readsHeadsElsewhere},
		{Symbols: []string{"net/http.(*Transport).roundTrip"}, Program: "uprobe_Transport_roundTrip"},
		{Symbols: []string{"net/http.(*persistConn).roundTrip"}, Program: "uprobe_persistConn_roundTrip"},
		// A plaintext call ends at the read of its response's status line.
		// A program that serves no HTTP has no syscall programs: there,
		// and in one that made a call the wire cannot end (over TLS, or
		// not over TCP), the call ends here.
		{Symbols: []string{"net/http.ReadResponse"}, Program: "uprobe_ReadResponse",
			When: func(bin *gobin.Binary) bool { return !servesHTTP(bin) }, Late: "nethttp_need_read_response"},
		// The function every HTTP/2 client call runs: roundTrip since Go
		// 1.23, whose RoundTrip wrapper is inlined into its callers.
		// Only where the HTTP/2 client's offsets are unknown, to give its
		// calls no span rather than a failed one.
		{Symbols: []string{"net/http.(*http2ClientConn).roundTrip", "net/http.(*http2ClientConn).RoundTrip"}, Program: "uprobe_http2ClientConn_roundTrip",
			When: func(bin *gobin.Binary) bool {
				var o bpfNethttpOffsets
				return probes.ResolveAllOrNone(bin, h2ClientFields("net/http.http2", &o.H2ccTconn, &o.H2ccTlsState, &o.H2csCc, &o.H2csId, &o.H2mhfFields)) != nil
			}},
		// A call over HTTP/2: its stream, when its headers are written
		// (traceparent for sk_msg), and its end, when its response's
		// head is read on the connection's read goroutine.
		{Symbols: []string{"net/http.(*http2ClientConn).writeHeaders"}, Program: "uprobe_http2ClientConn_writeHeaders"},
		{Symbols: []string{"net/http.(*http2clientConnReadLoop).handleResponse"}, Program: "uprobe_http2clientConnReadLoop_handleResponse"},
		// golang.org/x/net/http2's client, the same code: used on its own
		// (http2.Transport), its calls start at its roundTrip.
		{Symbols: []string{"golang.org/x/net/http2.(*ClientConn).internalRoundTrip", "golang.org/x/net/http2.(*ClientConn).roundTrip", "golang.org/x/net/http2.(*ClientConn).RoundTrip"}, Program: "uprobe_xhttp2_ClientConn_roundTrip"},
		{Symbols: []string{"golang.org/x/net/http2.(*ClientConn).writeHeaders"}, Program: "uprobe_xhttp2_ClientConn_writeHeaders"},
		{Symbols: []string{"golang.org/x/net/http2.(*clientConnReadLoop).handleResponse"}, Program: "uprobe_xhttp2_clientConnReadLoop_handleResponse"},
		// A request served over HTTP/2 runs on a goroutine of its own,
		// started for it: it starts there, and ends when its handler
		// returns (the connection's goroutine writes the frames).
		{Symbols: []string{"net/http.(*http2serverConn).runHandler"}, Program: "uprobe_http2serverConn_runHandler"},
		{Symbols: []string{"net/http.(*http2responseWriter).handlerDone"}, Program: "uprobe_http2responseWriter_handlerDone"},
		{Symbols: []string{"golang.org/x/net/http2.(*serverConn).runHandler"}, Program: "uprobe_xhttp2_serverConn_runHandler"},
		{Symbols: []string{"golang.org/x/net/http2.(*responseWriter).handlerDone"}, Program: "uprobe_xhttp2_responseWriter_handlerDone"},
	},
	Offsets: func(bin *gobin.Binary) (any, error) { return offsets(bin) },
	Extend: func(coll *ebpf.Collection, log *slog.Logger) (probes.Extension, error) {
		objs, err := propObjectsOf(coll)
		if err != nil {
			return nil, err
		}
		x := &extension{log: log, procs: coll.Maps["nethttp_procs"]}
		if x.ends, err = probes.NewTracepoints(coll, endTracepoints); err != nil {
			return nil, err
		}
		if x.prop, err = attachPropagation(objs); err != nil {
			log.Warn("outgoing traceparent propagation is off", "reason", err)
		} else if x.prop.fionreadChanged {
			log.Info("this kernel answers FIONREAD from the socket map for sockets under sk_msg: targets whose code asks FIONREAD get no outgoing traceparent")
		}
		return x, nil
	},
	Decoder: func(env probes.Env) probes.DecodeFunc {
		return probes.OneSpan((&decoder{clock: env.Clock}).decode)
	},
}

// extension is the outgoing traceparent: sock_ops on the cgroup-v2 root
// and sk_msg on the socket map. Without cgroup v2 the spans still work;
// only outgoing propagation is off, as the log says.
type extension struct {
	prop  *propagation // nil when off
	log   *slog.Logger
	procs *ebpf.Map // nethttp_procs

	ends *probes.Tracepoints // endTracepoints, while a server is traced
}

// endTracepoints are the syscalls that end a server request (serving_io in
// nethttp.c): the serving goroutine's writes, and its reads and closes back
// in the connection's loop.
var endTracepoints = []probes.Tracepoint{
	{Name: "sys_exit_write", Program: "nethttp_exit_write"},
	{Name: "sys_exit_writev", Program: "nethttp_exit_writev"},
	{Name: "sys_exit_sendfile64", Program: "nethttp_exit_sendfile64"},
	{Name: "sys_exit_read", Program: "nethttp_exit_read"},
	{Name: "sys_enter_close", Program: "nethttp_enter_close"},
}

// Add keeps the target's sockets out of the socket map when they must be
// left alone (see leaveAlone), else adopts the connections it opened
// before it was traced.
func (x *extension) Add(pid int, bin *gobin.Binary, offsets any) error {
	off := offsets.(*bpfNethttpOffsets)
	server, err := codeRanges(off, pid, bin)
	if err != nil {
		return err
	}
	if server {
		if err := x.ends.Acquire(pid); err != nil {
			return err
		}
	}
	if !readsHeadsElsewhere(bin) {
		off.WireStart = 1
	}
	if !server {
		off.ReadResponse = 1 // the uprobe is attached (Decl.Hooks)
	}
	off.LeftAlone = x.leaveAlone(pid, bin)
	if x.prop != nil && off.LeftAlone == 0 {
		// A process that already exited has no connections to adopt.
		if err := x.prop.adoptConnections(pid); err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, unix.ESRCH) {
			x.log.Warn("existing connections of the target carry no traceparent", "pid", pid, "err", err)
		}
	}
	return nil
}

// LateAttached notes that ReadResponse now runs for pid: its calls end
// there, not at the read of their response. Rewriting the offsets resets
// the programs' kept_ends count, which only delays a kept end to the
// goroutine's next read with bytes or its close.
func (x *extension) LateAttached(pid int, _ string) {
	var off bpfNethttpOffsets
	if err := x.procs.Lookup(uint32(pid), &off); err != nil {
		return // gone
	}
	off.ReadResponse = 1
	if err := x.procs.Update(uint32(pid), &off, ebpf.UpdateExist); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		x.log.Warn("ReadResponse attached, but the process's offsets cannot say so", "pid", pid, "err", err)
	}
}

// servesHTTP tells whether the program serves HTTP with net/http: only
// then are the syscall programs attached for it.
func servesHTTP(bin *gobin.Binary) bool {
	for _, fn := range serverFuncs {
		if _, _, ok := bin.FuncRange(fn); !ok {
			return false
		}
	}
	return true
}

// serverFuncs tell where a serving goroutine's syscall is (see where()).
var serverFuncs = []string{"net/http.serverHandler.ServeHTTP", "net/http.(*response).finishRequest", "net/http.(*conn).serve"}

// readsHeadsElsewhere tells whether a request head read by the program may
// not be net/http's plaintext one: then a request starts at the ServeHTTP
// uprobe rather than at the read of its head. A program that can serve TLS
// reads its heads encrypted (every server-side tls.Conn runs
// serverHandshake; the linker drops it from programs that make none); one
// with fasthttp's server reads heads that net/http never serves, and a call
// made while it serves one would get a parent never exported.
func readsHeadsElsewhere(bin *gobin.Binary) bool {
	for _, fn := range []string{"crypto/tls.(*Conn).serverHandshake", "github.com/valyala/fasthttp.(*Server).serveConn"} {
		if _, _, ok := bin.FuncRange(fn); ok {
			return true
		}
	}
	return false
}

// codeRanges puts in off the code addresses, in process pid, of the
// functions that tell where a serving goroutine's syscall is; false (and
// none) when the program serves no HTTP (a client only).
func codeRanges(off *bpfNethttpOffsets, pid int, bin *gobin.Binary) (bool, error) {
	bias, err := bin.LoadBias(pid)
	if err != nil {
		return false, err
	}
	if !servesHTTP(bin) {
		return false, nil
	}
	for i, r := range [][2]*uint64{{&off.ServeHttpLo, &off.ServeHttpHi}, {&off.FinishLo, &off.FinishHi}, {&off.ConnServeLo, &off.ConnServeHi}} {
		start, end, _ := bin.FuncRange(serverFuncs[i])
		*r[0], *r[1] = start+bias, end+bias
	}
	// A program that never flushes or sends files may lack some.
	for i, fn := range outputFuncs {
		if start, end, ok := bin.FuncRange(fn); ok {
			off.Output[i] = [2]uint64{start + bias, end + bias}
		}
	}
	return true, nil
}

// outputFuncs are the functions a handler's response output goes through
// (nethttp_offsets.output).
var outputFuncs = [bpfNethttpConstOUTPUT_FUNCS]string{
	"net/http.(*chunkWriter).Write", "net/http.(*chunkWriter).flush",
	"net/http.(*response).FlushError", "net/http.(*response).ReadFrom",
}

// Remove detaches endTracepoints with the last target; a process's sockets
// leave the socket map as they close.
func (x *extension) Remove(pid int) { x.ends.Release(pid) }

// Detach removes the propagation and end programs: traffic flows
// unmodified.
func (x *extension) Detach() {
	x.ends.Detach()
	if x.prop != nil {
		x.prop.close()
	}
}

// leaveAlone returns 1 when the target's connections must stay out of the
// socket map: this kernel changes FIONREAD for sockets in it, and the
// target's code may ask FIONREAD. Its spans are traced; only the outgoing
// traceparent is given up, rather than change what the program sees.
func (x *extension) leaveAlone(pid int, bin *gobin.Binary) uint64 {
	if x.prop == nil || !x.prop.fionreadChanged {
		return 0
	}
	asks, err := bin.AsksFIONREAD()
	if err != nil {
		x.log.Warn("cannot read the target's code; its connections get no traceparent", "pid", pid, "err", err)
	}
	if !asks {
		return 0
	}
	x.log.Info("outgoing traceparent is off for this target: its code asks FIONREAD, which this kernel answers wrongly for sockets under sk_msg", "pid", pid)
	return 1
}

// decode turns one ring-buffer record into a span, or nil when the record is
// not one it knows or its process is unknown.
func (d *decoder) decode(raw []byte, process func(pid int) *spans.Process) *spans.Span {
	kind := kernel.Record[bpfEventKind](raw)
	if kind == nil {
		return nil
	}
	switch *kind {
	case bpfEventKindEVENT_SERVER:
		if e := kernel.Record[bpfNethttpServerEvent](raw); e != nil {
			if proc := process(int(e.Pid)); proc != nil {
				return d.server(e, proc)
			}
		}
	case bpfEventKindEVENT_CLIENT:
		if e := kernel.Record[bpfNethttpClientEvent](raw); e != nil {
			if proc := process(int(e.Pid)); proc != nil {
				return d.client(e, proc)
			}
		}
	}
	return nil
}

// decoder turns events into spans; it belongs to the one goroutine of Run.
type decoder struct {
	clock   kernel.Clock
	scratch []byte
}

// span takes a pooled span and fills what every span of this probe has.
func (d *decoder) span(proc *spans.Process, kind spans.Kind, sc *bpfSpanCtx, start, end uint64) *spans.Span {
	s := spans.New()
	s.Process, s.Scope, s.Kind = proc, Scope, kind
	probes.SetContext(s, sc.TraceId, sc.SpanId, sc.ParentId, sc.Flags, uint8(bpfTwFlagFLAG_LINK_PENDING))
	s.StartNs, s.EndNs = d.clock.Wall(start), d.clock.Wall(end)
	return s
}

// text is the string of a C char array whose Go string had length n (the
// array may hold less: it was cut), stored in s.
func text(s *spans.Span, b []int8, n int64) string {
	return s.Str(kernel.Text(b, n))
}

// Propagating reports whether the loaded probe p (of Decl) inserts
// traceparent into outgoing requests.
func Propagating(p *probes.Probe) bool {
	x, ok := p.Extension().(*extension)
	return ok && x.prop != nil
}
