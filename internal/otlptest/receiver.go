// Package otlptest is an in-process OTLP/HTTP trace receiver for tests: it
// records every span it is sent and can go down and come back on the same
// port, like a restarted collector, or answer like a collector in trouble
// (an error status, Retry-After, slowly).
package otlptest

import (
	"compress/gzip"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	collectortracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// Got is one received span with its resource and scope.
type Got struct {
	Resource map[string]any // attribute values as string, int64, bool or float64
	Scope    string
	Span     *tracepb.Span
}

// Fault makes the receiver answer like a collector in trouble; the zero
// Fault is a healthy collector.
type Fault struct {
	// Status, when not 0, is answered instead of accepting the spans, which
	// are not recorded.
	Status int
	// RetryAfter is sent as the Retry-After header with Status, verbatim.
	RetryAfter string
	// Delay is waited before answering: a slow collector. A request whose
	// client gives up meanwhile is neither recorded nor answered, as if the
	// collector had not got to it.
	Delay time.Duration
}

// Attempt is one decoded export request and what the receiver did with it.
type Attempt struct {
	At     time.Time // when it arrived
	Status int       // the status answered; 0 when the client gave up during Fault.Delay
	Spans  int       // spans in the request
}

// Receiver accepts POST /v1/traces (and /v1/metrics) in OTLP protobuf,
// gzipped or not.
type Receiver struct {
	addr string // fixed at Start so that Restart can reuse the port

	mu       sync.Mutex
	server   *http.Server // nil while stopped
	ln       net.Listener
	got      []Got
	fault    Fault
	attempts []Attempt
	metrics  []GotMetric
}

// SetFault changes how requests arriving from now on are answered.
func (r *Receiver) SetFault(f Fault) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fault = f
}

// Attempts returns every decoded export request so far, in the order they
// were answered.
func (r *Receiver) Attempts() []Attempt {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Attempt(nil), r.attempts...)
}

// WaitAttempts waits up to 10 s until n export requests were handled and
// returns them all.
func (r *Receiver) WaitAttempts(t testing.TB, n int) []Attempt {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		a := r.Attempts()
		if len(a) >= n {
			return a
		}
		if time.Now().After(deadline) {
			t.Fatalf("otlptest: %d export requests after 10 s, want %d: %+v", len(a), n, a)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Start listens on a free loopback port; the test's cleanup stops it.
func Start(t testing.TB) *Receiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("otlptest: listen: %v", err)
	}
	r := &Receiver{addr: ln.Addr().String()}
	r.serve(ln)
	t.Cleanup(r.Stop)
	return r
}

// Endpoint is the base URL for OTEL_EXPORTER_OTLP_ENDPOINT.
func (r *Receiver) Endpoint() string { return "http://" + r.addr }

// Stop closes the listener and every open connection: the collector is down.
func (r *Receiver) Stop() {
	r.mu.Lock()
	srv, ln := r.server, r.ln
	r.server, r.ln = nil, nil
	r.mu.Unlock()
	if srv != nil {
		// Close the listener ourselves too: if Serve has not started yet,
		// the server does not know it, and Restart could not reuse the port.
		_ = ln.Close()
		_ = srv.Close() // errors only repeat the listener's close
	}
}

// Restart listens again on the same port after Stop.
func (r *Receiver) Restart(t testing.TB) {
	t.Helper()
	ln, err := net.Listen("tcp", r.addr)
	if err != nil {
		t.Fatalf("otlptest: listen again on %s: %v", r.addr, err)
	}
	r.serve(ln)
}

func (r *Receiver) serve(ln net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(r.handle), ReadHeaderTimeout: 5 * time.Second}
	r.mu.Lock()
	r.server, r.ln = srv, ln
	r.mu.Unlock()
	go func() { _ = srv.Serve(ln) }() // returns ErrServerClosed after Stop
}

func (r *Receiver) handle(w http.ResponseWriter, req *http.Request) {
	if req.Method == http.MethodPost && req.URL.Path == "/v1/metrics" {
		r.handleMetrics(w, req)
		return
	}
	if req.Method != http.MethodPost || req.URL.Path != "/v1/traces" {
		http.Error(w, "only POST /v1/traces", http.StatusNotFound)
		return
	}
	if ct := req.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		http.Error(w, "unsupported content type "+ct, http.StatusUnsupportedMediaType)
		return
	}
	raw, err := readBody(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var msg collectortracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(raw, &msg); err != nil {
		http.Error(w, "decode: "+err.Error(), http.StatusBadRequest)
		return
	}
	at := time.Now()
	r.mu.Lock()
	fault := r.fault
	r.mu.Unlock()
	if fault.Delay > 0 {
		select {
		case <-time.After(fault.Delay):
		case <-req.Context().Done():
			r.attempt(Attempt{At: at, Spans: count(&msg)})
			return
		}
	}
	if fault.Status != 0 {
		r.attempt(Attempt{At: at, Status: fault.Status, Spans: count(&msg)})
		if fault.RetryAfter != "" {
			w.Header().Set("Retry-After", fault.RetryAfter)
		}
		http.Error(w, "otlptest: injected fault", fault.Status)
		return
	}
	r.attempt(Attempt{At: at, Status: http.StatusOK, Spans: count(&msg)})
	r.record(&msg)
	resp, err := proto.Marshal(&collectortracepb.ExportTraceServiceResponse{})
	if err != nil {
		http.Error(w, "encode response: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(resp) // a client gone away is the client's problem
}

// readBody returns the request's body, gunzipped when it says so.
func readBody(req *http.Request) ([]byte, error) {
	body := io.Reader(req.Body)
	if strings.EqualFold(req.Header.Get("Content-Encoding"), "gzip") {
		zr, err := gzip.NewReader(req.Body)
		if err != nil {
			return nil, fmt.Errorf("bad gzip: %w", err)
		}
		defer zr.Close()
		body = zr
	}
	raw, err := io.ReadAll(body)
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	return raw, nil
}

func (r *Receiver) attempt(a Attempt) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.attempts = append(r.attempts, a)
}

// count returns how many spans msg holds.
func count(msg *collectortracepb.ExportTraceServiceRequest) int {
	n := 0
	for _, rs := range msg.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			n += len(ss.GetSpans())
		}
	}
	return n
}

func (r *Receiver) record(msg *collectortracepb.ExportTraceServiceRequest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = AppendSpans(r.got, msg)
}

// AppendSpans appends every span of msg, with its resource and scope, to out.
func AppendSpans(out []Got, msg *collectortracepb.ExportTraceServiceRequest) []Got {
	for _, rs := range msg.GetResourceSpans() {
		res := Attrs(rs.GetResource().GetAttributes())
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				out = append(out, Got{Resource: res, Scope: ss.GetScope().GetName(), Span: s})
			}
		}
	}
	return out
}

// Spans returns every span received so far.
func (r *Receiver) Spans() []Got {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Got(nil), r.got...)
}

// Reset forgets the spans received so far: a test whose every earlier span
// arrived counts exactly what follows.
func (r *Receiver) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = nil
}

// WaitSpans waits until at least n received spans satisfy match (nil
// matches all) and returns the matching ones; on timeout it fails the test
// with a dump of what did arrive.
func (r *Receiver) WaitSpans(t testing.TB, timeout time.Duration, match func(Got) bool, n int) []Got {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var matched []Got
		all := r.Spans()
		for _, g := range all {
			if match == nil || match(g) {
				matched = append(matched, g)
			}
		}
		if len(matched) >= n {
			return matched
		}
		if time.Now().After(deadline) {
			t.Fatalf("otlptest: %d of %d wanted spans after %v; received %d spans:\n%s", len(matched), n, timeout, len(all), dump(all))
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dump formats spans one per line for failure messages.
func dump(spans []Got) string {
	var b strings.Builder
	for _, g := range spans {
		s := g.Span
		fmt.Fprintf(&b, "  service=%v scope=%s name=%q kind=%v trace=%x span=%x parent=%x status=%v attrs=%v\n",
			g.Resource["service.name"], g.Scope, s.GetName(), s.GetKind(), s.GetTraceId(), s.GetSpanId(),
			s.GetParentSpanId(), s.GetStatus().GetCode(), Attrs(s.GetAttributes()))
	}
	return b.String()
}

// Attrs turns OTLP attributes into a map; arrays become []any, key-value
// lists map[string]any and bytes []byte.
func Attrs(kv []*commonpb.KeyValue) map[string]any {
	m := make(map[string]any, len(kv))
	for _, a := range kv {
		m[a.GetKey()] = value(a.GetValue())
	}
	return m
}

func value(v *commonpb.AnyValue) any {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return x.IntValue
	case *commonpb.AnyValue_BoolValue:
		return x.BoolValue
	case *commonpb.AnyValue_DoubleValue:
		return x.DoubleValue
	case *commonpb.AnyValue_BytesValue:
		return x.BytesValue
	case *commonpb.AnyValue_ArrayValue:
		out := make([]any, len(x.ArrayValue.GetValues()))
		for i, e := range x.ArrayValue.GetValues() {
			out[i] = value(e)
		}
		return out
	case *commonpb.AnyValue_KvlistValue:
		return Attrs(x.KvlistValue.GetValues())
	default:
		return nil
	}
}
