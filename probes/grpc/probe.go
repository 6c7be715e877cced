// Package grpc traces google.golang.org/grpc: one SERVER span per stream
// served and one CLIENT span per call attempt, unary and streaming, as
// children of the span their goroutine serves. A server span whose call
// carried no traceparent is joined with its client span by the pipeline
// (internal/pipeline) when this agent traces both processes.
package grpc

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/tracewire/tracewire/internal/gobin"
	"github.com/tracewire/tracewire/probes"
)

// Scope is the instrumentation scope of the spans this probe makes.
const Scope = "github.com/tracewire/tracewire/probes/grpc"

const module = "google.golang.org/grpc"

// Decl declares the gRPC probe.
var Decl = probes.Decl{
	Name:     "grpc",
	Objects:  loadBpf,
	Procs:    "grpc_procs",
	Events:   "grpc_events",
	Stale:    []string{"grpc_server_calls", "grpc_client_calls", "grpc_call_ctxs"},
	Counters: []string{"ringbuf_full", "read_failed", "map_full", "rate_limited"},
	Hooks: []probes.Hook{
		{Symbols: []string{"google.golang.org/grpc.(*Server).handleStream"}, Program: "uprobe_Server_handleStream"},
		// WriteStatus until v1.68, writeStatus since.
		{Symbols: []string{transport + "(*http2Server).writeStatus", transport + "(*http2Server).WriteStatus"}, Program: "uprobe_http2Server_writeStatus"},
		{Symbols: []string{"google.golang.org/grpc.(*clientStream).newAttemptLocked"}, Program: "uprobe_clientStream_newAttemptLocked"},
		{Symbols: []string{"google.golang.org/grpc.(*csAttempt).finish"}, Program: "uprobe_csAttempt_finish"},
		// Propagation: one per call, on the writer goroutine, before the
		// stream's HEADERS frame is written (sk_msg adds traceparent).
		{Symbols: []string{transport + "(*loopyWriter).clientHeaderHandler"}, Program: "uprobe_loopyWriter_clientHeaderHandler"},
		{Symbols: []string{transport + "(*loopyWriter).originateStream"}, Program: "uprobe_loopyWriter_originateStream"},
	},
	Offsets: func(bin *gobin.Binary) (any, error) {
		version, ok := bin.Modules[module]
		if !ok {
			return nil, fmt.Errorf("%s: %w", module, probes.ErrNotUsed)
		}
		o, err := offsets(bin)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", module, version, err)
		}
		return o, nil
	},
	Decoder: func(env probes.Env) probes.DecodeFunc {
		return probes.OneSpan((&decoder{clock: env.Clock}).decode)
	},
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
		{Dst: &o.AttemptTransport, Typ: grpcPkg + "csAttempt", Name: "transport", Or: "t"},
		{Dst: &o.AttemptStream, Typ: grpcPkg + "csAttempt", Name: "transportStream", Or: "s"},
	}...)
	if err := probes.ResolveFields(bin, fs); err != nil {
		return nil, err
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
	if err := propagationOffsets(bin, o); err != nil {
		// Spans do not need these: the calls go without traceparent.
		o.HdrOnOrphaned = probes.OffNone
		slog.Debug("gRPC calls of this executable carry no traceparent", "err", err)
	}
	return o, nil
}

// propagationOffsets fills what the loopy writer's hook reads to find the
// call whose stream it opens (bpf/grpc.c, stream_opening). The frame it
// takes is a headerFrame, split into clientHeaders and serverHeaders in
// v1.83; the stream's transport moved from Stream (an interface)
// to ClientStream (a pointer) in v1.69.
func propagationOffsets(bin *gobin.Binary, o *bpfGrpcOffsets) error {
	frame := transport + "clientHeaders"
	if _, err := bin.FieldOffset(frame, "onOrphaned"); err != nil {
		frame = transport + "headerFrame"
	}
	fs := []probes.Field{
		{Dst: &o.CsCtx, Typ: grpcPkg + "clientStream", Name: "ctx"},
		{Dst: &o.HdrStreamId, Typ: frame, Name: "streamID"},
		{Dst: &o.HdrHf, Typ: frame, Name: "hf"},
		{Dst: &o.HdrOnOrphaned, Typ: frame, Name: "onOrphaned"},
	}
	if err := probes.ResolveFields(bin, fs); err != nil {
		return err
	}
	ct, err := bin.FieldOffset(transport+"ClientStream", "ct")
	if err != nil {
		if ct, err = bin.FieldOffset(transport+"Stream", "ct"); err != nil {
			return err
		}
		o.StreamCtIface = 1
	}
	o.StreamCt = ct
	return nil
}
