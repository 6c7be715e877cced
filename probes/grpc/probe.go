// Package grpc traces google.golang.org/grpc: one SERVER span per stream
// served and one CLIENT span per call attempt, unary and streaming, as
// children of the span their goroutine serves. A server span whose call
// carried no traceparent is joined with its client span by the Linker when
// this agent traces both processes.
package grpc

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/cilium/ebpf"

	"github.com/tracewire/tracewire/internal/gobin"
	"github.com/tracewire/tracewire/internal/kernel"
	"github.com/tracewire/tracewire/probes"
	"github.com/tracewire/tracewire/spans"
)

// Scope is the instrumentation scope of the spans this probe makes.
const Scope = "github.com/tracewire/tracewire/probes/grpc"

const module = "google.golang.org/grpc"

// Probe is the loaded set of gRPC programs serving every target.
type Probe struct {
	*probes.Core
	objs  bpfObjects
	clock kernel.Clock
	link  *Linker
}

// Load loads the programs and maps (the server spans map from shared);
// link receives the spans.
func Load(log *slog.Logger, shared *probes.Shared, link *Linker) (*Probe, error) {
	p := &Probe{clock: kernel.NewClock(), link: link}
	spec, err := loadBpf()
	if err != nil {
		return nil, fmt.Errorf("read grpc BPF objects: %w", err)
	}
	if err := shared.Load(spec, &p.objs); err != nil {
		return nil, fmt.Errorf("load grpc BPF objects: %w", err)
	}
	m := &p.objs.bpfMaps
	p.Core, err = probes.NewCore(spec, probes.CoreMaps{
		Procs: m.GrpcProcs, Stats: m.Stats, Events: m.GrpcEvents,
		Counters: []string{"ringbuf_full", "read_failed", "map_full", "rate_limited"},
		Stale:    map[string]*ebpf.Map{"server_calls": m.GrpcServerCalls, "client_calls": m.GrpcClientCalls},
	}, log)
	if err != nil {
		p.objs.Close()
		return nil, err
	}
	return p, nil
}

// Add starts tracing the gRPC calls of process pid. It fails when the
// executable does not use google.golang.org/grpc.
func (p *Probe) Add(pid int, file kernel.FileID, exe string, bin *gobin.Binary) error {
	version, ok := bin.Modules[module]
	if !ok {
		return fmt.Errorf("%s: %w", module, probes.ErrNotUsed)
	}
	off, err := offsets(bin)
	if err != nil {
		return fmt.Errorf("%s %s: %w", module, version, err)
	}
	o := &p.objs
	return p.Core.Add(pid, file, exe, bin, off, []probes.Uprobe{
		{Symbol: "google.golang.org/grpc.(*Server).handleStream", Prog: o.UprobeServerHandleStream},
		// WriteStatus until v1.68, writeStatus since: one of the two exists.
		{Symbol: "google.golang.org/grpc/internal/transport.(*http2Server).writeStatus", Prog: o.UprobeHttp2ServerWriteStatus},
		{Symbol: "google.golang.org/grpc/internal/transport.(*http2Server).WriteStatus", Prog: o.UprobeHttp2ServerWriteStatus},
		{Symbol: "google.golang.org/grpc.(*clientStream).newAttemptLocked", Prog: o.UprobeClientStreamNewAttemptLocked},
		{Symbol: "google.golang.org/grpc.(*csAttempt).finish", Prog: o.UprobeCsAttemptFinish},
	})
}

// Run turns ring-buffer events into spans and hands them to the Linker
// until done is closed and every event already submitted is read.
func (p *Probe) Run(done <-chan struct{}, process func(pid int) *spans.Process, _ func(*spans.Span)) {
	d := &decoder{clock: p.clock}
	// emit runs right after decode, for the span decode returned.
	p.Core.Run(done, func(raw []byte) *spans.Span { return d.decode(raw, process) },
		func(s *spans.Span) { p.link.call(s, d.call) })
}

// Close detaches, ends Run and frees the programs.
func (p *Probe) Close() {
	p.Core.Close()
	p.objs.Close()
}

const (
	transport = "google.golang.org/grpc/internal/transport."
	grpcPkg   = "google.golang.org/grpc."
)

// offsets collects the struct field offsets the programs read for bin.
func offsets(bin *gobin.Binary) (*bpfGrpcOffsets, error) {
	o := &bpfGrpcOffsets{}
	m, err := probes.MapOffsets(bin)
	if err != nil {
		return nil, err
	}
	o.Maps.Swiss, o.Maps.HmapB, o.Maps.HmapBuckets = m.Swiss, m.HmapB, m.HmapBuckets
	o.Maps.SwissDirPtr, o.Maps.SwissDirLen, o.Maps.TableGroups, o.Maps.TableMask = m.SwissDirPtr, m.SwissDirLen, m.TableGroups, m.TableMask
	var t, transportOff, s, transportStream uint64
	fs := append(probes.GoroutineFields(&o.G.Goid, &o.G.ParentGoid), []probes.Field{
		{Dst: &o.StreamCtx, Typ: transport + "Stream", Name: "ctx"},
		{Dst: &o.StreamMethod, Typ: transport + "Stream", Name: "method"},
		{Dst: &o.StreamId, Typ: transport + "Stream", Name: "id"},
		{Dst: &o.ValuectxVal, Typ: "context.valueCtx", Name: "val"},
		{Dst: &o.H2sPeer, Typ: transport + "http2Server", Name: "peer"},
		{Dst: &o.PeerAddr, Typ: "google.golang.org/grpc/peer.Peer", Name: "Addr"},
		{Dst: &o.PeerLocalAddr, Typ: "google.golang.org/grpc/peer.Peer", Name: "LocalAddr"},
		{Dst: &o.H2cRemoteAddr, Typ: transport + "http2Client", Name: "remoteAddr"},
		{Dst: &o.H2cLocalAddr, Typ: transport + "http2Client", Name: "localAddr"},
		{Dst: &o.TcpaddrIp, Typ: "net.TCPAddr", Name: "IP"},
		{Dst: &o.TcpaddrPort, Typ: "net.TCPAddr", Name: "Port"},
		{Dst: &o.StatusS, Typ: "google.golang.org/grpc/internal/status.Status", Name: "s"},
		{Dst: &o.SpbCode, Typ: "google.golang.org/genproto/googleapis/rpc/status.Status", Name: "Code"},
		{Dst: &o.SpbMessage, Typ: "google.golang.org/genproto/googleapis/rpc/status.Status", Name: "Message"},
		{Dst: &o.ErrorS, Typ: "google.golang.org/grpc/internal/status.Error", Name: "s"},
		{Dst: &o.CsCallhdr, Typ: grpcPkg + "clientStream", Name: "callHdr"},
		{Dst: &o.CallhdrMethod, Typ: transport + "CallHdr", Name: "Method"},
		{Dst: &o.AttemptCs, Typ: grpcPkg + "csAttempt", Name: "cs"},
		{Dst: &o.AttemptFinished, Typ: grpcPkg + "csAttempt", Name: "finished"},
		// Renamed in v1.71.
		{Dst: &t, Typ: grpcPkg + "csAttempt", Name: "t", Optional: true},
		{Dst: &transportOff, Typ: grpcPkg + "csAttempt", Name: "transport", Optional: true},
		{Dst: &s, Typ: grpcPkg + "csAttempt", Name: "s", Optional: true},
		{Dst: &transportStream, Typ: grpcPkg + "csAttempt", Name: "transportStream", Optional: true},
	}...)
	if err := probes.ResolveFields(bin, fs); err != nil {
		return nil, err
	}
	if o.AttemptTransport = min(t, transportOff); o.AttemptTransport == probes.OffNone {
		return nil, errors.New("csAttempt has neither t nor transport")
	}
	if o.AttemptStream = min(s, transportStream); o.AttemptStream == probes.OffNone {
		return nil, errors.New("csAttempt has neither s nor transportStream")
	}
	// ServerStream and ClientStream (v1.69+) embed the Stream at offset 0:
	// by pointer until v1.76, by value since v1.77; before, the hooks get
	// the *Stream itself.
	ptr, err := bin.FieldIsPointer(transport+"ServerStream", "Stream")
	switch {
	case err == nil && ptr:
		o.StreamIndirect = 1
	case err != nil && !errors.Is(err, gobin.ErrNoField):
		return nil, fmt.Errorf("how ServerStream embeds Stream: %w", err)
	}
	return o, nil
}
