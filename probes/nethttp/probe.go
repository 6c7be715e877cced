// Package nethttp traces Go net/http: one SERVER span per request served, one
// CLIENT span per request sent, their parent/child links inside a process,
// and W3C traceparent in (read from the request's headers) and out (inserted
// into the outgoing byte stream by sk_msg). Every uprobe sits on an emulated
// prologue instruction.
package nethttp

import (
	"errors"
	"fmt"
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

// Probe is the loaded set of net/http programs serving every target.
type Probe struct {
	*probes.Core
	objs  bpfObjects
	prop  *propagation
	clock kernel.Clock
	log   *slog.Logger
}

// Load loads the programs and maps (the server spans map from shared) into
// the kernel and attaches the propagation programs (sock_ops on the
// cgroup-v2 root, sk_msg on the socket map). Without cgroup v2 the spans
// still work; only outgoing propagation is off, as the log says.
func Load(log *slog.Logger, shared *probes.Shared) (*Probe, error) {
	p := &Probe{clock: kernel.NewClock(), log: log}
	spec, err := loadBpf()
	if err != nil {
		return nil, fmt.Errorf("read nethttp BPF objects: %w", err)
	}
	if err := shared.Load(spec, &p.objs); err != nil {
		return nil, fmt.Errorf("load nethttp BPF objects: %w", err)
	}
	m := &p.objs.bpfMaps
	p.Core, err = probes.NewCore(spec, probes.CoreMaps{
		Procs: m.NethttpProcs, Stats: m.Stats, Events: m.NethttpEvents,
		Counters: []string{"ringbuf_full", "read_failed", "map_full", "no_start", "socket_busy", "injected", "not_injected", "http2_skipped", "left_alone", "rate_limited"},
		Stale: map[string]*ebpf.Map{
			"server_spans": m.GoServerSpans, "client_inflight": m.NethttpClientInflight,
			"client_requests": m.NethttpClientRequests, "pending": m.NethttpPending, "connecting": m.NethttpConnecting,
		},
	}, log)
	if err != nil {
		p.objs.Close()
		return nil, err
	}
	if p.prop, err = attachPropagation(&p.objs); err != nil {
		log.Warn("outgoing traceparent propagation is off", "reason", err)
	} else if p.prop.fionreadChanged {
		log.Info("this kernel answers FIONREAD from the socket map for sockets under sk_msg: targets whose code asks FIONREAD get no outgoing traceparent")
	}
	return p, nil
}

// Add starts tracing process pid running executable exe (file id file).
func (p *Probe) Add(pid int, file kernel.FileID, exe string, bin *gobin.Binary) error {
	off, err := offsets(bin)
	if err != nil {
		return err
	}
	off.LeftAlone = p.leaveAlone(pid, bin)
	err = p.Core.Add(pid, file, exe, bin, off, []probes.Uprobe{
		{Symbol: "net/http.serverHandler.ServeHTTP", Prog: p.objs.UprobeServerHandlerServeHTTP},
		{Symbol: "net/http.(*response).finishRequest", Prog: p.objs.UprobeResponseFinishRequest},
		{Symbol: "net/http.(*Transport).roundTrip", Prog: p.objs.UprobeTransportRoundTrip},
		{Symbol: "net/http.(*persistConn).roundTrip", Prog: p.objs.UprobePersistConnRoundTrip},
		{Symbol: "net/http.ReadResponse", Prog: p.objs.UprobeReadResponse},
		{Symbol: http2RoundTrip(bin), Prog: p.objs.UprobeHttp2ClientConnRoundTrip},
	})
	if err != nil {
		return err
	}
	if p.prop != nil && off.LeftAlone == 0 {
		// Connections the target opened before it was traced.
		// A process that already exited has no connections to adopt.
		if err := p.prop.adoptConnections(pid); err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, unix.ESRCH) {
			p.log.Warn("existing connections of the target carry no traceparent", "pid", pid, "err", err)
		}
	}
	return nil
}

// leaveAlone returns 1 when the target's connections must stay out of the
// socket map: this kernel changes FIONREAD for sockets in it, and the
// target's code may ask FIONREAD. Its spans are traced; only the outgoing
// traceparent is given up, rather than change what the program sees.
func (p *Probe) leaveAlone(pid int, bin *gobin.Binary) uint64 {
	if p.prop == nil || !p.prop.fionreadChanged {
		return 0
	}
	asks, err := bin.AsksFIONREAD()
	if err != nil {
		p.log.Warn("cannot read the target's code; its connections get no traceparent", "pid", pid, "err", err)
	}
	if !asks {
		return 0
	}
	p.log.Info("outgoing traceparent is off for this target: its code asks FIONREAD, which this kernel answers wrongly for sockets under sk_msg", "pid", pid)
	return 1
}

// http2RoundTrip is the function every HTTP/2 client call runs: roundTrip
// since Go 1.23, whose RoundTrip wrapper is inlined into its callers.
func http2RoundTrip(bin *gobin.Binary) string {
	if sym := "net/http.(*http2ClientConn).roundTrip"; bin.HasFunc(sym) {
		return sym
	}
	return "net/http.(*http2ClientConn).RoundTrip"
}

// Run turns ring-buffer events into spans until done is closed and every
// event already submitted is read. process returns the target's description
// (nil if unknown: the event is counted and dropped).
func (p *Probe) Run(done <-chan struct{}, process func(pid int) *spans.Process, emit func(*spans.Span)) {
	d := &decoder{clock: p.clock}
	p.Core.Run(done, func(raw []byte) *spans.Span { return d.decode(raw, process) }, emit)
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

// Propagating reports whether outgoing requests get a traceparent.
func (p *Probe) Propagating() bool { return p.prop != nil }

// Detach removes every uprobe and the propagation programs: no new events
// after it returns, and traffic flows unmodified.
func (p *Probe) Detach() {
	p.Core.Detach()
	if p.prop != nil {
		p.prop.close()
	}
}

// Close detaches, ends Run and frees the programs.
func (p *Probe) Close() {
	p.Detach()
	p.Core.Close()
	p.objs.Close()
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
	s.TraceID, s.SpanID, s.ParentID, s.TraceFlags = sc.TraceId, sc.SpanId, sc.ParentId, sc.Flags
	s.StartNs, s.EndNs = d.clock.Wall(start), d.clock.Wall(end)
	return s
}

// text is the string of a C char array whose Go string had length n (the
// array may hold less: it was cut), stored in s.
func text(s *spans.Span, b []int8, n int64) string {
	return s.Str(kernel.Text(b, n))
}
