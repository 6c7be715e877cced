package e2e

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/tracewire/tracewire/internal/otlptest"
)

// TestGRPCTraceparentAcrossNodes: with the same-node join off, only the
// traceparent the kernel adds to each call's HEADERS frame (sk_msg, an HPACK
// literal) can make B's server span the child of A's client span: unary
// calls one after another, 16 at once on A's one connection, and a
// server-streaming call; with grpc-go v1.66 and v1.72 (headerFrame), the
// newest (clientHeaders), and stripped builds (offsets from the tables).
func TestGRPCTraceparentAcrossNodes(t *testing.T) {
	for _, c := range []struct{ a, b string }{
		{"grpcapp", "grpcapp"},
		{"grpcapp-v166", "grpcapp-v172"},
		{"grpcapp-v172-stripped", "grpcapp-stripped"},
	} {
		t.Run(c.a+"->"+c.b, func(t *testing.T) {
			p := startGRPCVariants(t, c.a, c.b, "TRACEWIRE_SAME_NODE_JOIN=false")
			testGRPCChain(t, p)

			// 16 calls at once share A's connection: each its own stream.
			var wg sync.WaitGroup
			codes := make([]int, 16)
			for i := range codes {
				wg.Go(func() { codes[i] = get(t, p.a.url(fmt.Sprintf("/check?service=db&c=%d", i))) })
			}
			wg.Wait()
			for i, code := range codes {
				if code != 200 {
					t.Fatalf("concurrent call %d: %d", i, code)
				}
			}
			for i := range codes {
				isPath := spanWithPath(p.a, "/check")
				path := fmt.Sprintf("/check?service=db&c=%d", i)
				root := p.recv.WaitSpans(t, 10*time.Second, func(g otlptest.Got) bool {
					return isPath(g) && !p.seen[string(g.Span.SpanId)]
				}, 1)[0]
				p.seen[string(root.Span.SpanId)] = true
				got := traceOfRoot(t, p.recv, root, 4)
				cl := one(t, pick(got, p.a, tracepb.Span_SPAN_KIND_CLIENT), "A's gRPC client span "+path)
				sv := one(t, pick(got, p.b, tracepb.Span_SPAN_KIND_SERVER), "B's gRPC server span "+path)
				checkGRPC(t, cl, tracepb.Span_SPAN_KIND_CLIENT, "Check", 0, p.grpcPort, root.Span, "")
				checkGRPC(t, sv, tracepb.Span_SPAN_KIND_SERVER, "Check", 0, p.grpcPort, cl, "")
			}

			checkWatch(t, p)
		})
	}
}

// h2Stream is what rawH2 received on one stream.
type h2Stream struct {
	fields []hpack.HeaderField
	data   []byte
}

// rawH2 is an HTTP/2 server nobody traces, written with x/net/http2's
// Framer: it records every stream's decoded header block and body, and
// answers each as a gRPC health service would (SERVING; to a plain HTTP/2
// client, a 200 with a 7-byte body and a trailer).
type rawH2 struct {
	ln      net.Listener
	mu      sync.Mutex
	streams []h2Stream
	errs    []error
}

func startRawH2(t *testing.T) *rawH2 {
	t.Helper()
	s := &rawH2{}
	s.ln = listenEach(t, func(_ int, c net.Conn) { s.serve(c) })
	return s
}

func (s *rawH2) fail(err error) {
	s.mu.Lock()
	s.errs = append(s.errs, err)
	s.mu.Unlock()
}

func (s *rawH2) serve(c net.Conn) {
	defer c.Close()
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(c, preface); err != nil || string(preface) != http2.ClientPreface {
		s.fail(fmt.Errorf("preface %q: %v", preface, err))
		return
	}
	fr := http2.NewFramer(c, c)
	// One decoder for the connection: a header block that changed the
	// dynamic table wrongly would break the ones after it.
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if err := fr.WriteSettings(); err != nil {
		return
	}
	var enc bytes.Buffer
	henc := hpack.NewEncoder(&enc)
	block := func(fields ...hpack.HeaderField) []byte {
		enc.Reset()
		for _, f := range fields {
			henc.WriteField(f)
		}
		return bytes.Clone(enc.Bytes())
	}
	open := map[uint32]*h2Stream{}
	// answer records the stream and answers it.
	answer := func(id uint32) {
		s.mu.Lock()
		s.streams = append(s.streams, *open[id])
		s.mu.Unlock()
		delete(open, id)
		// HealthCheckResponse{status: SERVING}, in gRPC's framing.
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, EndHeaders: true,
			BlockFragment: block(hpack.HeaderField{Name: ":status", Value: "200"}, hpack.HeaderField{Name: "content-type", Value: "application/grpc"})})
		fr.WriteData(id, false, []byte{0, 0, 0, 0, 2, 0x08, 0x01})
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, EndHeaders: true, EndStream: true,
			BlockFragment: block(hpack.HeaderField{Name: "grpc-status", Value: "0"})})
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			if err != io.EOF {
				s.fail(err)
			}
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				fr.WritePing(true, f.Data)
			}
		case *http2.MetaHeadersFrame:
			open[f.StreamID] = &h2Stream{fields: f.Fields}
			if f.StreamEnded() { // no body (a GET)
				answer(f.StreamID)
			}
		case *http2.DataFrame:
			st := open[f.StreamID]
			if st == nil {
				s.fail(fmt.Errorf("DATA on unknown stream %d", f.StreamID))
				return
			}
			st.data = append(st.data, f.Data()...)
			if n := uint32(len(f.Data())); n > 0 { // flow control: take more
				fr.WriteWindowUpdate(0, n)
				fr.WriteWindowUpdate(f.StreamID, n)
			}
			if f.StreamEnded() {
				answer(f.StreamID)
			}
		}
	}
}

// TestGRPCTraceparentOnTheWire: an HTTP/2 server nobody traces decodes
// exactly one traceparent in each call's header block, equal to the ids of
// the call's client span; the other fields and the body are exactly what
// grpc-go sent; a call whose metadata has its own traceparent keeps it
// alone; 16 calls at once each get their own span's ids.
func TestGRPCTraceparentOnTheWire(t *testing.T) {
	requireEBPF(t)
	raw := startRawH2(t)
	recv := otlptest.Start(t)
	a := startAppArgs(t, "grpcapp", []string{"-upstream", raw.ln.Addr().String()})
	startAgent(t, recv, []string{"grpcapp"})
	waitTraced(t, recv, a)

	const own = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	// /check-big: a 20 000-byte metadata value makes the header block go
	// on in CONTINUATION frames; traceparent goes at the end of the last.
	// /check-long: a 100 000-byte message, whose DATA frames (and frame
	// headers) the writes cut: the framing is followed across them.
	paths := []string{"/check?service=x", "/check-md?service=x&tp=" + own, "/check-big?service=x&n=20000", "/check-long?n=100000", "/watch?service=x"}
	for _, path := range paths {
		if code := get(t, a.url(path)); code != 200 {
			t.Fatalf("GET %s: %d", path, code)
		}
	}
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			if code := get(t, a.url("/check?service=x")); code != 200 {
				t.Errorf("concurrent call: %d", code)
			}
		})
	}
	wg.Wait()
	const calls = 5 + 16
	isClient := func(g otlptest.Got) bool { return g.Scope == grpcScope && g.Span.Kind == tracepb.Span_SPAN_KIND_CLIENT }
	clients := recv.WaitSpans(t, 10*time.Second, isClient, calls)
	if waitQuiet(recv, func(otlptest.Got) bool { return count(recv, isClient) > calls }, time.Second) {
		t.Fatalf("more than %d client spans", calls)
	}

	raw.mu.Lock()
	defer raw.mu.Unlock()
	if len(raw.errs) > 0 {
		t.Fatalf("the server could not read what it got: %v", raw.errs)
	}
	if len(raw.streams) != calls {
		t.Fatalf("%d streams, want %d", len(raw.streams), calls)
	}
	byTP := map[string]h2Stream{}
	for i, st := range raw.streams {
		var tps []string
		want := map[string]string{":method": "POST", ":scheme": "http", "content-type": "application/grpc", "te": "trailers"}
		for _, f := range st.fields {
			if f.Name == "traceparent" {
				tps = append(tps, f.Value)
			}
			if v, ok := want[f.Name]; ok && v == f.Value {
				delete(want, f.Name)
			}
		}
		if len(tps) != 1 || len(want) > 0 {
			t.Errorf("stream %d: traceparent %q (want exactly one), missing %v, fields %v", i, tps, want, st.fields)
			continue
		}
		// HealthCheckRequest{service: "x"}, or 100 000 s, in gRPC's framing.
		body := []byte{0, 0, 0, 0, 3, 0x0a, 0x01, 'x'}
		if len(st.data) > len(body) {
			body = append([]byte{0, 0, 0x01, 0x86, 0xa4, 0x0a, 0xa0, 0x8d, 0x06}, bytes.Repeat([]byte{'s'}, 100000)...)
		}
		if !bytes.Equal(st.data, body) {
			t.Errorf("stream %d: body of %d bytes, want %d (%x...)", i, len(st.data), len(body), body[:9])
		}
		byTP[tps[0]] = st
	}
	if _, ok := byTP[own]; !ok {
		t.Errorf("the call with its own traceparent lost it: got %v", keys(byTP))
	}
	// Every client span's ids went out in its stream, but the one whose
	// call carried the application's own traceparent.
	missed := 0
	for _, g := range clients {
		s := g.Span
		tp := "00-" + hex.EncodeToString(s.TraceId) + "-" + hex.EncodeToString(s.SpanId) + "-01"
		if _, ok := byTP[tp]; !ok {
			missed++
		}
		delete(byTP, tp)
	}
	if _, ok := byTP[own]; missed != 1 || len(byTP) != 1 || !ok {
		t.Errorf("%d client spans whose ids no stream carried (want 1), streams left %v (want only %s)", missed, keys(byTP), own)
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
