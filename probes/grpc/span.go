package grpc

import (
	"net/netip"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/tracewire/tracewire/internal/kernel"
	"github.com/tracewire/tracewire/probes"
	"github.com/tracewire/tracewire/spans"
)

// decoder turns events into spans; it belongs to the one goroutine of Run.
type decoder struct {
	clock   kernel.Clock
	scratch []byte
}

// Status codes that make a server span an error (semantic conventions).
var serverErrors = map[int64]bool{2: true, 4: true, 12: true, 13: true, 14: true, 15: true}

// decode turns one ring-buffer record into a span, or nil when the record
// is not one it knows or its process is unknown.
func (d *decoder) decode(raw []byte, process func(pid int) *spans.Process) *spans.Span {
	e := kernel.Record[bpfGrpcEvent](raw)
	if e == nil {
		return nil
	}
	kind := bpfGrpcKind(e.Kind)
	if kind != bpfGrpcKindGRPC_SERVER && kind != bpfGrpcKindGRPC_CLIENT {
		return nil
	}
	proc := process(int(e.Pid))
	if proc == nil {
		return nil
	}
	s := spans.New()
	s.Process, s.Scope = proc, Scope
	probes.SetContext(s, e.Sc.TraceId, e.Sc.SpanId, e.Sc.ParentId, e.Sc.Flags, uint8(bpfTwFlagFLAG_LINK_PENDING))
	s.StartNs, s.EndNs = d.clock.Wall(e.StartNs), d.clock.Wall(e.EndNs)

	method := kernel.Text(e.Method[:], e.MethodLen)
	full := strings.TrimPrefix(unsafe.String(unsafe.SliceData(method), len(method)), "/")
	s.Name = s.Str([]byte(full))
	service, name, _ := strings.Cut(s.Name, "/")
	s.Attrs = append(s.Attrs, spans.String("rpc.system", "grpc"), spans.String("rpc.service", service), spans.String("rpc.method", name))

	local, remote := endpoint(&e.Local), endpoint(&e.Remote)
	code := e.Code
	if code < 0 || code > 16 {
		code = 2 // Unknown: the call failed with an error that carries no status
	}
	s.Attrs = append(s.Attrs, spans.Int("rpc.grpc.status_code", code))
	server := remote // of a client span
	if kind == bpfGrpcKindGRPC_SERVER {
		s.Kind = spans.KindServer
		s.TraceState = s.Str(kernel.Text(e.Tracestate[:], e.TracestateLen))
		s.Error = serverErrors[code]
		server = local
		if remote.IsValid() {
			d.scratch = remote.Addr().AppendTo(d.scratch[:0])
			s.Attrs = append(s.Attrs, spans.String("client.address", s.Str(d.scratch)), spans.Int("client.port", int64(remote.Port())))
		}
		// The call, for the pipeline to join this span with its client's.
		s.Call = spans.Call{Client: remote, Server: local, Stream: e.StreamId}
	} else {
		s.Kind = spans.KindClient
		s.Error = code != 0
		if e.StreamId != 0 {
			s.Call = spans.Call{Client: local, Server: remote, Stream: e.StreamId}
		}
	}
	if s.Error {
		// The status message, else the code's name.
		if s.StatusMsg = s.Str(kernel.Text(e.Message[:], e.MessageLen)); s.StatusMsg == "" {
			s.StatusMsg = codeNames[code]
		}
	}
	if server.IsValid() {
		d.scratch = server.Addr().AppendTo(d.scratch[:0])
		s.Attrs = append(s.Attrs, spans.String("server.address", s.Str(d.scratch)), spans.Int("server.port", int64(server.Port())))
	}
	return s
}

// endpoint is the address of a struct endpoint; invalid when unknown.
func endpoint(ep *bpfEndpoint) netip.AddrPort {
	switch ep.IpLen {
	case 4:
		return netip.AddrPortFrom(probes.RemoteAddr(unix.AF_INET, ep.Ip), ep.Port)
	case 16:
		return netip.AddrPortFrom(probes.RemoteAddr(unix.AF_INET6, ep.Ip), ep.Port)
	}
	return netip.AddrPort{}
}

var codeNames = [...]string{
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
	"PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
	"UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
}
