// Package pipeline carries every span the probes decode to the exporter:
// join (a client and a server span of one call, both traced on this node)
// → metrics (every span, sampled or not) → sample (drop the spans of
// unsampled traces) → export (the batcher). cmd/agent builds it once; every
// probe's Run hands its spans to Add.
package pipeline

import (
	"sync/atomic"

	"github.com/tracewire/tracewire/internal/sampling"
	"github.com/tracewire/tracewire/spans"
)

// Counts are what the pipeline keeps from export. Unsampled spans are the
// sampler's choice, not a loss.
type Counts struct {
	// Unsampled spans belong to traces the sampler left out.
	Unsampled atomic.Uint64
	// HeldOverflow are unsampled spans dropped at once because KeepErrors
	// held as many as it may (also counted in Unsampled).
	HeldOverflow atomic.Uint64
}

// Config is what the pipeline is built of.
type Config struct {
	Sampler sampling.Config
	// Observe sees every span after the join, sampled or not (request
	// metrics count 100 % of requests); it must not keep the span. nil
	// observes nothing.
	Observe func(*spans.Span)
	// Export takes the spans of sampled traces and releases them.
	Export func(*spans.Span)
	// NoJoin passes spans on without the same-node join: a server span
	// then has a parent only when its call carried traceparent.
	NoJoin bool
}

// Pipeline is the chain of stages.
type Pipeline struct {
	add    func(*spans.Span)
	join   *Joiner     // nil with NoJoin
	keep   *KeepErrors // nil unless the sampler keeps errors
	counts Counts
}

// New builds the pipeline and starts the joiner's expiry.
func New(c Config) *Pipeline {
	p := &Pipeline{}
	sample := p.dropUnsampled(c.Export)
	if c.Sampler.KeepErrors {
		p.keep = NewKeepErrors(c.Export, &p.counts, keepErrorsHold, keepErrorsMax)
		sample = p.keep.Add
	}
	next := sample
	if c.Observe != nil {
		next = func(s *spans.Span) {
			c.Observe(s)
			sample(s)
		}
	}
	p.add = next
	if !c.NoJoin {
		p.join = NewJoiner(next)
		p.add = p.join.Add
	}
	return p
}

// Add takes a decoded span; safe for concurrent use by every probe.
func (p *Pipeline) Add(s *spans.Span) { p.add(s) }

// Flush passes on what the stages still hold, at shutdown once the probes
// stopped: joins waited for are given up, unsampled spans held for an
// error are dropped.
func (p *Pipeline) Flush() {
	if p.join != nil {
		p.join.Flush()
	}
	if p.keep != nil {
		p.keep.Flush()
	}
}

// Counts returns the pipeline's counters.
func (p *Pipeline) Counts() *Counts { return &p.counts }

// dropUnsampled passes the spans of sampled traces to next and counts and
// recycles the others. It comes after the join: a server span joined to its
// client's trace takes that trace's sampled flag instead of the one the
// kernel chose for its provisional trace.
func (p *Pipeline) dropUnsampled(next func(*spans.Span)) func(*spans.Span) {
	return func(s *spans.Span) {
		if s.TraceFlags&1 == 0 {
			p.counts.Unsampled.Add(1)
			s.Release()
			return
		}
		next(s)
	}
}
