package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	collectortracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// receiver is an OTLP/HTTP trace endpoint that counts spans. It shares CPU 0
// with the load generator, so during a window it only keeps the raw bodies;
// decoding waits until someone asks for a count, after the window.
type receiver struct {
	srv *http.Server
	ln  net.Listener

	mu    sync.Mutex
	raw   [][]byte
	spans []spanRec
}

// spanRec is what counting needs of a span. key is the request path: url.path
// of a server span, the path of url.full of a client span.
type spanRec struct {
	trace [16]byte
	kind  tracepb.Span_SpanKind
	key   string
}

func startReceiver() (*receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("OTLP receiver: listen: %w", err)
	}
	r := &receiver{ln: ln}
	r.srv = &http.Server{Handler: http.HandlerFunc(r.handle), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = r.srv.Serve(ln) }() // ErrServerClosed after close
	return r, nil
}

func (r *receiver) endpoint() string { return "http://" + r.ln.Addr().String() }

func (r *receiver) close() { _ = r.srv.Close() }

func (r *receiver) handle(w http.ResponseWriter, req *http.Request) {
	// The agent compresses only when OTEL_EXPORTER_OTLP_COMPRESSION says so,
	// and the bench does not set it.
	if req.Method != http.MethodPost || req.URL.Path != "/v1/traces" || req.Header.Get("Content-Encoding") != "" {
		http.Error(w, "only uncompressed POST /v1/traces", http.StatusNotFound)
		return
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	r.raw = append(r.raw, body)
	r.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-protobuf")
	// An empty ExportTraceServiceResponse encodes to zero bytes.
	w.WriteHeader(http.StatusOK)
}

// decode turns the bodies received so far into span records.
func (r *receiver) decode() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	for _, body := range r.raw {
		var msg collectortracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &msg); err != nil {
			errs = append(errs, fmt.Errorf("decode OTLP body: %w", err))
			continue
		}
		for _, rs := range msg.GetResourceSpans() {
			for _, ss := range rs.GetScopeSpans() {
				for _, s := range ss.GetSpans() {
					r.spans = append(r.spans, record(s))
				}
			}
		}
	}
	r.raw = nil
	return errors.Join(errs...)
}

func record(s *tracepb.Span) spanRec {
	rec := spanRec{kind: s.GetKind()}
	copy(rec.trace[:], s.GetTraceId())
	for _, a := range s.GetAttributes() {
		v := a.GetValue().GetStringValue()
		switch a.GetKey() {
		case "url.path":
			rec.key = v
		case "url.full":
			if u, err := url.Parse(v); err == nil {
				rec.key = u.Path
			}
		}
	}
	return rec
}

// count returns, by kind, the spans of every trace that has a span for path:
// for the downstream request that includes the /call server span, whose own
// path is shared by all rounds. It does not rely on propagation: without it
// the downstream span's own trace still has path as its key.
func (r *receiver) count(path string) (map[string]int, error) {
	if err := r.decode(); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	traces := map[[16]byte]bool{}
	for _, s := range r.spans {
		if s.key == path {
			traces[s.trace] = true
		}
	}
	n := map[string]int{}
	for _, s := range r.spans {
		if traces[s.trace] {
			n[strings.ToLower(strings.TrimPrefix(s.kind.String(), "SPAN_KIND_"))]++
		}
	}
	return n, nil
}

// unlinked counts the server spans keyed path in traces without a client
// span keyed path: downstream spans that did not join their caller's trace
// (no traceparent, or another request's).
func (r *receiver) unlinked(path string) (int, error) {
	if err := r.decode(); err != nil {
		return 0, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	called := map[[16]byte]bool{}
	for _, s := range r.spans {
		if s.key == path && s.kind == tracepb.Span_SPAN_KIND_CLIENT {
			called[s.trace] = true
		}
	}
	n := 0
	for _, s := range r.spans {
		if s.key == path && s.kind == tracepb.Span_SPAN_KIND_SERVER && !called[s.trace] {
			n++
		}
	}
	return n, nil
}

// reset forgets every span (between agent runs, to bound memory).
func (r *receiver) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.raw, r.spans = nil, nil
}

func total(byKind map[string]int) int {
	n := 0
	for _, v := range byKind {
		n += v
	}
	return n
}
