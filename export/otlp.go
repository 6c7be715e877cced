package export

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	collectortracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/tracewire/tracewire/spans"
)

// otlpSink converts batches to OTLP protobuf directly (no SDK pipeline) and
// POSTs them over OTLP/HTTP itself: the Batcher's choice between retrying,
// waiting and dropping a batch rests on the status code and the Retry-After
// header, which otlptracehttp's client does not expose.
type otlpSink struct {
	cfg     otlpConfig
	http    *http.Client
	version string

	mu        sync.Mutex // guards the caches below
	resources *resourceCache
	scopes    map[string]*commonpb.InstrumentationScope
}

// NewOTLPSink returns a Sink that uploads over OTLP/HTTP. The endpoint,
// headers, TLS, timeout and compression come from the standard
// OTEL_EXPORTER_OTLP_* variables; a bad one is an error. ctx is unused: the
// sink opens connections when it first uploads.
func NewOTLPSink(_ context.Context, res ResourceConfig) (Sink, error) {
	cfg, err := otlpConfigFromEnv(os.Getenv, os.ReadFile)
	if err != nil {
		return nil, fmt.Errorf("OTLP settings: %w", err)
	}
	return newOTLPSink(cfg, res), nil
}

func newOTLPSink(cfg otlpConfig, res ResourceConfig) *otlpSink {
	return &otlpSink{
		cfg:       cfg,
		http:      newHTTPClient(cfg),
		version:   res.AgentVersion,
		resources: newResourceCache(res),
		scopes:    make(map[string]*commonpb.InstrumentationScope),
	}
}

// maxResponseBody bounds what is read of a collector's answer (as
// otlptracehttp did); longer error bodies are cut in messages anyway.
const maxResponseBody = 4 << 20

var gzipWriters = sync.Pool{New: func() any { return gzip.NewWriter(io.Discard) }}

// Upload implements Sink. Its errors tell the Batcher what to do: wrapping
// errRejected, drop the batch; a *throttled, retry after the collector's
// Retry-After; anything else, retry with backoff.
func (s *otlpSink) Upload(ctx context.Context, batch []*spans.Span) error {
	if len(batch) == 0 {
		return nil
	}
	body, err := s.encode(batch)
	if err != nil {
		// The same spans would fail the same way: retrying cannot help.
		return fmt.Errorf("%w: encode: %w", errRejected, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%w: %w", errRejected, err)
	}
	req.Header.Set("User-Agent", "tracewire/"+s.version)
	for k, v := range s.cfg.headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	if s.cfg.gzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return fmt.Errorf("otlp upload: %w", err) // refused, reset, timed out: retry
	}
	defer resp.Body.Close()
	// Read to the end (bounded) so the connection can be reused. A read
	// error only shortens the body: the status line decides, and a 2xx means
	// the collector has the spans whatever follows.
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	return uploadResult(resp, msg, time.Now())
}

// uploadResult turns the collector's answer into what Upload returns,
// following the OTLP/HTTP specification: 429, 502, 503 and 504 are worth
// retrying (after Retry-After when given); any other failure never is.
func uploadResult(resp *http.Response, body []byte, now time.Time) error {
	if resp.StatusCode/100 == 2 {
		return partialSuccess(resp, body)
	}
	err := fmt.Errorf("otlp upload: %s answered %s: %s", resp.Request.URL, resp.Status, bodyText(body))
	switch resp.StatusCode {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		if wait, ok := parseRetryAfter(resp.Header.Get("Retry-After"), now); ok {
			return &throttled{wait: wait, err: err}
		}
		return err
	default:
		return fmt.Errorf("%w: %w", errRejected, err)
	}
}

// partialSuccess reads a 2xx answer's partial_success field: the collector
// kept the batch but refused some of its spans.
func partialSuccess(resp *http.Response, body []byte) error {
	if len(body) == 0 || resp.Header.Get("Content-Type") != "application/x-protobuf" {
		return nil
	}
	var msg collectortracepb.ExportTraceServiceResponse
	if err := proto.Unmarshal(body, &msg); err != nil {
		// The collector answered 2xx: it has the spans; do not send them twice.
		return fmt.Errorf("%w: undecodable response: %w", errPartialSuccess, err)
	}
	ps := msg.GetPartialSuccess()
	if ps.GetRejectedSpans() == 0 && ps.GetErrorMessage() == "" {
		return nil
	}
	return fmt.Errorf("%w: %d spans rejected: %s", errPartialSuccess, ps.GetRejectedSpans(), ps.GetErrorMessage())
}

// bodyText is a collector's error body, short enough for a log line.
func bodyText(b []byte) string {
	const maxLen = 256
	t := strings.TrimSpace(strings.ToValidUTF8(string(b[:min(len(b), maxLen)]), "?"))
	if t == "" {
		return "(empty body)"
	}
	return t
}

// encode marshals batch as an ExportTraceServiceRequest, gzipped when the
// settings say so.
func (s *otlpSink) encode(batch []*spans.Span) ([]byte, error) {
	raw, err := proto.Marshal(&collectortracepb.ExportTraceServiceRequest{ResourceSpans: s.request(batch, time.Now())})
	if err != nil || !s.cfg.gzip {
		return raw, err
	}
	var buf bytes.Buffer
	zw := gzipWriters.Get().(*gzip.Writer)
	defer func() {
		zw.Reset(io.Discard) // do not pin the body in the pool
		gzipWriters.Put(zw)
	}()
	zw.Reset(&buf)
	if _, err := zw.Write(raw); err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	return buf.Bytes(), nil
}

// group is the spans of one (process, scope) pair.
type group struct {
	proc  *spans.Process
	scope string
	n     int
}

type groupKey struct {
	proc  *spans.Process
	scope string
}

// request groups batch into one ResourceSpans per process and one
// ScopeSpans per scope, in order of first appearance.
func (s *otlpSink) request(batch []*spans.Span, now time.Time) []*tracepb.ResourceSpans {
	// First pass: assign groups and count them, so that every ScopeSpans
	// gets an exactly sized window of one shared pointer slice.
	var groups []group
	index := make(map[groupKey]int)
	gid := make([]int, len(batch))
	for i, sp := range batch {
		k := groupKey{sp.Process, sp.Scope}
		g, ok := index[k]
		if !ok {
			g = len(groups)
			index[k] = g
			groups = append(groups, group{proc: sp.Process, scope: sp.Scope})
		}
		groups[g].n++
		gid[i] = g
	}

	s.mu.Lock()
	s.resources.sweep(now)

	ptrs := make([]*tracepb.Span, len(batch))
	scopeSpans := make([]*tracepb.ScopeSpans, len(groups))
	byProc := make(map[*spans.Process]*tracepb.ResourceSpans)
	var out []*tracepb.ResourceSpans
	off := 0
	for g, grp := range groups {
		ss := &tracepb.ScopeSpans{Scope: s.scope(grp.scope), Spans: ptrs[off : off : off+grp.n]}
		off += grp.n
		scopeSpans[g] = ss
		rs := byProc[grp.proc]
		if rs == nil {
			rs = &tracepb.ResourceSpans{Resource: s.resources.get(grp.proc, now)}
			byProc[grp.proc] = rs
			out = append(out, rs)
		}
		rs.ScopeSpans = append(rs.ScopeSpans, ss)
	}
	s.mu.Unlock()

	sl := newSlab(batch)
	for i, sp := range batch {
		ss := scopeSpans[gid[i]]
		ss.Spans = append(ss.Spans, sl.span(sp))
	}
	return out
}

// scope returns the cached scope named name; probes use a handful of
// constant names, so the cache stays small.
func (s *otlpSink) scope(name string) *commonpb.InstrumentationScope {
	sc := s.scopes[name]
	if sc == nil {
		sc = &commonpb.InstrumentationScope{Name: validUTF8(name), Version: validUTF8(s.version)}
		s.scopes[name] = sc
	}
	return sc
}
