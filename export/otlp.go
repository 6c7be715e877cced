package export

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	collectortracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/tracewire/tracewire/spans"
)

// otlpSink encodes batches as OTLP protobuf directly (no SDK pipeline) and
// POSTs them over OTLP/HTTP itself: the Batcher's choice between retrying,
// waiting and dropping a batch rests on the status code and the Retry-After
// header, which otlptracehttp's client does not expose.
type otlpSink struct {
	cfg     otlpConfig
	http    *http.Client
	version string

	mu        sync.Mutex // guards the caches below
	resources *resourceCache
	scopes    map[string][]byte
	grouping  grouping
	lastSize  int // of the last request encoded
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
		scopes:    make(map[string][]byte),
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

// encode encodes batch as an ExportTraceServiceRequest, gzipped when the
// settings say so. The body is a new buffer each time (the HTTP client may
// still be sending it after an early answer), sized by the last one.
func (s *otlpSink) encode(batch []*spans.Span) ([]byte, error) {
	raw := s.encodeRequest(make([]byte, 0, s.lastSize+s.lastSize/8), batch, time.Now())
	s.lastSize = len(raw)
	if !s.cfg.gzip {
		return raw, nil
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
	first int // index of the group's first span in order
}

type groupKey struct {
	proc  *spans.Process
	scope string
}

// grouping is encodeRequest's scratch, kept between batches.
type grouping struct {
	groups []group
	index  map[groupKey]int
	gid    []int // each span's group
	order  []int // span indexes, grouped
	procs  []*spans.Process
}

// encodeRequest appends batch to b as an ExportTraceServiceRequest: one
// ResourceSpans per process and in it one ScopeSpans per scope, in order of
// first appearance, spans in batch order within each.
func (s *otlpSink) encodeRequest(b []byte, batch []*spans.Span, now time.Time) []byte {
	g := &s.grouping
	if g.index == nil {
		g.index = make(map[groupKey]int)
	}
	clear(g.index)
	g.groups, g.gid, g.procs = g.groups[:0], g.gid[:0], g.procs[:0]
	last, i := groupKey{}, -1
	for _, sp := range batch {
		k := groupKey{sp.Process, sp.Scope}
		if k == last && i >= 0 { // spans of one probe and process come in runs
			g.groups[i].n++
			g.gid = append(g.gid, i)
			continue
		}
		last = k
		var ok bool
		i, ok = g.index[k]
		if !ok {
			i = len(g.groups)
			g.index[k] = i
			g.groups = append(g.groups, group{proc: sp.Process, scope: sp.Scope})
			if !slices.Contains(g.procs, sp.Process) {
				g.procs = append(g.procs, sp.Process)
			}
		}
		g.groups[i].n++
		g.gid = append(g.gid, i)
	}
	// Counting sort of the spans by group.
	off := 0
	for i := range g.groups {
		g.groups[i].first = off
		off += g.groups[i].n
	}
	g.order = slices.Grow(g.order[:0], len(batch))[:len(batch)]
	next := make([]int, len(g.groups))
	for i := range g.groups {
		next[i] = g.groups[i].first
	}
	for i, gi := range g.gid {
		g.order[next[gi]] = i
		next[gi]++
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.resources.sweep(now)
	for _, p := range g.procs {
		var rs, ss int
		b, rs = openLen(b, fRequestResourceSpans)
		b = appendBytes(b, fResourceSpansResource, s.resources.get(p, now))
		for _, grp := range g.groups {
			if grp.proc != p {
				continue
			}
			b, ss = openLen(b, fResourceSpansScopeSpans)
			b = appendBytes(b, fScopeSpansScope, s.scope(grp.scope))
			for _, i := range g.order[grp.first : grp.first+grp.n] {
				var sp int
				b, sp = openLen(b, fScopeSpansSpans)
				b = appendSpan(b, batch[i])
				b = closeLen(b, sp)
			}
			b = closeLen(b, ss)
		}
		b = closeLen(b, rs)
	}
	return b
}

// scope returns the InstrumentationScope message named name, encoded once;
// probes use a handful of constant names, so the cache stays small.
func (s *otlpSink) scope(name string) []byte {
	sc, ok := s.scopes[name]
	if !ok {
		sc = appendString(nil, fScopeName, name)
		sc = appendString(sc, fScopeVersion, s.version)
		s.scopes[name] = sc
	}
	return sc
}
