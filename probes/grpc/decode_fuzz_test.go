package grpc

import (
	"bytes"
	"sync"
	"testing"
	"unsafe"

	"github.com/tracewire/tracewire/internal/pipeline"
	"github.com/tracewire/tracewire/internal/ringtest"
	"github.com/tracewire/tracewire/spans"
)

// grpcEvent is a record of one side of a call between 127.0.0.1:50000
// (client) and 127.0.0.1:9000 (server) on HTTP/2 stream 3.
func grpcEvent(kind bpfGrpcKind, trace byte, flags uint8, code int64) *bpfGrpcEvent {
	e := &bpfGrpcEvent{Kind: uint32(kind), Pid: 1, Code: code, StreamId: 3}
	e.Sc.TraceId, e.Sc.SpanId, e.Sc.Flags = [16]byte{trace}, [8]byte{trace, 1}, flags
	e.MethodLen = ringtest.Fill(e.Method[:], "/pkg.Users/Get")
	e.MessageLen = ringtest.Fill(e.Message[:], "user not found")
	local, remote := &e.Local, &e.Remote
	if kind == bpfGrpcKindGRPC_CLIENT {
		local, remote = remote, local
	}
	*local = bpfEndpoint{Ip: [16]byte{127, 0, 0, 1}, IpLen: 4, Port: 9000}
	*remote = bpfEndpoint{Ip: [16]byte{127, 0, 0, 1}, IpLen: 4, Port: 50000}
	return e
}

// FuzzDecode: any ring-buffer record, however corrupt, decodes to a span or
// to nil (counted by the caller), never a crash.
func FuzzDecode(f *testing.F) {
	srv := grpcEvent(bpfGrpcKindGRPC_SERVER, 1, 1|uint8(bpfTwFlagFLAG_LINK_PENDING), 5)
	srv.TracestateLen = ringtest.Fill(srv.Tracestate[:], "vendor=x")
	cl := grpcEvent(bpfGrpcKindGRPC_CLIENT, 2, 1, -1)
	cl.Remote.IpLen = 16
	seeds := [][]byte{ringtest.Bytes(srv), ringtest.Bytes(cl), {3, 0, 0, 0}}
	d := &decoder{}
	ringtest.Fuzz(f, seeds, d.decode, nil)
}

// FuzzLink: a sequence of records, decoded and given to the pipeline's
// Joiner, comes out exactly once each, however their trace ids, flags and
// calls are made up, and the Joiner never spins (testdata holds two calls that each join the
// other's trace, which once did).
func FuzzLink(f *testing.F) {
	const pending = 1 | uint8(bpfTwFlagFLAG_LINK_PENDING)
	f.Add(bytes.Join([][]byte{
		ringtest.Bytes(grpcEvent(bpfGrpcKindGRPC_SERVER, 1, pending, 0)),
		ringtest.Bytes(grpcEvent(bpfGrpcKindGRPC_CLIENT, 2, 1, 0)),
	}, nil))
	proc := &spans.Process{PID: 1}
	process := func(int) *spans.Process { return proc }
	f.Fuzz(func(t *testing.T, raw []byte) {
		var mu sync.Mutex
		out := map[*spans.Span]int{}
		l := pipeline.NewJoiner(func(s *spans.Span) { mu.Lock(); out[s]++; mu.Unlock() })
		d := &decoder{}
		in := 0
		for rec := range ringtest.Split(raw, int(unsafe.Sizeof(bpfGrpcEvent{}))) {
			if s := d.decode(rec, process); s != nil {
				in++
				l.Add(s)
			}
		}
		l.Flush()
		if len(out) != in {
			t.Fatalf("%d spans in, %d out", in, len(out))
		}
		for s, n := range out {
			if n != 1 || s.LinkPending {
				t.Fatalf("span %x released %d times, flags %#x", s.SpanID, n, s.TraceFlags)
			}
			s.Release()
		}
	})
}
