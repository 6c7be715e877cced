package export

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/tracewire/tracewire/spans"
)

// otlpSink converts batches to OTLP protobuf directly (no SDK pipeline) and
// uploads them over OTLP/HTTP.
type otlpSink struct {
	client  otlptrace.Client
	version string

	mu        sync.Mutex // guards the caches below
	resources *resourceCache
	scopes    map[string]*commonpb.InstrumentationScope
}

// NewOTLPSink returns a Sink that uploads over OTLP/HTTP. The endpoint,
// headers, TLS, timeout and compression come from the standard
// OTEL_EXPORTER_OTLP_* variables.
func NewOTLPSink(ctx context.Context, res ResourceConfig) (Sink, error) {
	// The Batcher owns retries: the client's own would hold a failing batch
	// for a minute and then drop it.
	client := otlptracehttp.NewClient(otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: false}))
	if err := client.Start(ctx); err != nil {
		return nil, fmt.Errorf("start OTLP client: %w", err)
	}
	return newOTLPSink(client, res), nil
}

func newOTLPSink(client otlptrace.Client, res ResourceConfig) *otlpSink {
	return &otlpSink{
		client:    client,
		version:   res.AgentVersion,
		resources: newResourceCache(res),
		scopes:    make(map[string]*commonpb.InstrumentationScope),
	}
}

// Upload implements Sink.
func (s *otlpSink) Upload(ctx context.Context, batch []*spans.Span) error {
	if len(batch) == 0 {
		return nil
	}
	err := s.client.UploadTraces(ctx, s.request(batch, time.Now()))
	switch {
	case err == nil:
		return nil
	case isPartialSuccess(err):
		return fmt.Errorf("%w: %w", errPartialSuccess, err)
	default:
		return fmt.Errorf("otlp upload: %w", err)
	}
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

// isPartialSuccess reports whether err holds otlptracehttp's partial-success
// error, which means the collector answered 2xx. Its type is internal to
// otlptracehttp, so it is recognised by name;
// TestOTLPSinkPartialSuccessIsNotRetried catches an upstream rename.
func isPartialSuccess(err error) bool {
	switch e := err.(type) {
	case nil:
		return false
	case interface{ Unwrap() []error }:
		for _, c := range e.Unwrap() {
			if isPartialSuccess(c) {
				return true
			}
		}
		return false
	case interface{ Unwrap() error }:
		return isPartialSuccess(e.Unwrap())
	}
	t := reflect.TypeOf(err)
	return t.Name() == "PartialSuccess" && strings.HasPrefix(t.PkgPath(), "go.opentelemetry.io/otel/exporters/otlp/otlptrace/")
}
