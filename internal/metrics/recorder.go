package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/tracewire/tracewire/export"
	"github.com/tracewire/tracewire/spans"
)

const (
	// CardinalityLimit caps the distinct attribute sets of each metric of a
	// target; the SDK folds the rest into one otel.metric.overflow=true set.
	CardinalityLimit = 2000
	// A target that made no span for idleTTL (it exited) has its provider
	// flushed and dropped; a late span simply makes a new one.
	idleTTL   = 10 * time.Minute
	idleSweep = time.Minute
	scopeName = "github.com/tracewire/tracewire/internal/metrics"
)

// durationBuckets are the semantic conventions' advice for durations in s.
var durationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}

// Recorder records the request-duration histograms of every target, each
// with its own MeterProvider, since the resource (the process) differs.
type Recorder struct {
	res     export.ResourceConfig
	readers func(sdkmetric.Producer) ([]sdkmetric.Reader, func(), error)
	sink    *sink // nil in tests
	log     *slog.Logger
	now     func() time.Time

	mu        sync.RWMutex
	targets   map[*spans.Process]*target
	self      *target                                 // the agent's own provider: its counters, the service graph
	graph     atomic.Pointer[graph]                   // nil in tests of the other metrics
	uploads   atomic.Pointer[metric.Float64Histogram] // set by RegisterSelf
	lastSweep time.Time
	failWarn  time.Time
}

// target is one process's provider and its histograms, which the recorder
// aggregates itself (agg) for the provider's readers.
type target struct {
	provider *sdkmetric.MeterProvider
	release  func()
	agg      *agg
	hists    [numInstruments]*hist[key]
	used     atomic.Int64 // unix ns of the last span
	service  string       // service.name, the target's node in the service graph
}

// New starts the exporters cfg names. Observe is not to be called when
// cfg exports nothing.
func New(ctx context.Context, cfg Config, res export.ResourceConfig, log *slog.Logger) (*Recorder, error) {
	s, err := newSink(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	r := newRecorder(res, s.readers, log)
	r.sink = s
	if err := r.startGraph(); err != nil {
		_ = r.Shutdown(ctx)
		return nil, err
	}
	return r, nil
}

// startGraph records the service graph on the agent's own provider: its
// edges are the node's, not one target's.
func (r *Recorder) startGraph() error {
	t, err := r.selfTarget()
	if err != nil {
		return fmt.Errorf("service graph: %w", err)
	}
	g := newGraph(t.agg)
	g.run(r.now)
	r.graph.Store(g)
	return nil
}

// newRecorder is New with the readers of each provider made by readers.
func newRecorder(res export.ResourceConfig, readers func(sdkmetric.Producer) ([]sdkmetric.Reader, func(), error), log *slog.Logger) *Recorder {
	return &Recorder{res: res, readers: readers, log: log, now: time.Now, targets: map[*spans.Process]*target{}}
}

// Observe records s in its target's histogram. Safe for concurrent use; it
// allocates nothing once the target and the span's attributes were seen.
func (r *Recorder) Observe(s *spans.Span) {
	k := keyOf(s)
	if k.inst == none {
		return
	}
	t := r.target(s.Process)
	if t == nil {
		return
	}
	now := r.now()
	t.used.Store(now.UnixNano())
	secs := max(0, float64(s.EndNs-s.StartNs)/1e9)
	t.hists[k.inst].record(k, k.fresh, secs)
	if g := r.graph.Load(); g != nil {
		g.observe(s, t.service, k.inst, now)
	}
	r.sweep(now)
}

// target returns p's target, making it on first use.
func (r *Recorder) target(p *spans.Process) *target {
	r.mu.RLock()
	t := r.targets[p]
	r.mu.RUnlock()
	if t != nil {
		return t
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if t = r.targets[p]; t != nil {
		return t
	}
	t, err := r.newTarget(p)
	if err != nil {
		if now := r.now(); now.Sub(r.failWarn) > time.Minute {
			r.failWarn = now
			r.log.Warn("cannot record metrics of a target", "pid", pidOf(p), "err", err)
		}
		return nil
	}
	r.targets[p] = t
	return t
}

func pidOf(p *spans.Process) int {
	if p == nil {
		return 0
	}
	return p.PID
}

// newProvider returns a target whose provider has p's resource (under cfg)
// and its own readers, without instruments.
func (r *Recorder) newProvider(cfg export.ResourceConfig, p *spans.Process) (*target, error) {
	a := newAgg(r.now())
	rs, release, err := r.readers(a)
	if err != nil {
		return nil, err
	}
	res := resourceOf(cfg, p)
	opts := []sdkmetric.Option{
		sdkmetric.WithResource(res),
		sdkmetric.WithCardinalityLimit(CardinalityLimit),
	}
	for _, rd := range rs {
		opts = append(opts, sdkmetric.WithReader(rd))
	}
	t := &target{provider: sdkmetric.NewMeterProvider(opts...), release: release, agg: a}
	t.used.Store(r.now().UnixNano())
	if v, ok := res.Set().Value("service.name"); ok {
		t.service = v.AsString()
	}
	return t, nil
}

// newTarget returns p's provider and histograms.
func (r *Recorder) newTarget(p *spans.Process) (*target, error) {
	t, err := r.newProvider(r.res, p)
	if err != nil {
		return nil, err
	}
	for i, sh := range shapes {
		t.hists[i] = newHist[key](t.agg, desc{name: sh.name, unit: "s", text: sh.desc}, durationBuckets)
	}
	return t, nil
}

// resourceOf is p's resource, the same attributes as its spans'.
func resourceOf(cfg export.ResourceConfig, p *spans.Process) *resource.Resource {
	attrs := export.ResourceAttrs(cfg, p)
	kvs := make([]attribute.KeyValue, len(attrs))
	for i, a := range attrs {
		if a.IsInt {
			kvs[i] = attribute.Int64(a.Key, a.Int)
		} else {
			kvs[i] = attribute.String(a.Key, a.Str)
		}
	}
	return resource.NewSchemaless(kvs...)
}

func (t *target) close(ctx context.Context) error {
	err := t.provider.Shutdown(ctx)
	t.release()
	return err
}

// sweep flushes and drops the providers of targets idle for idleTTL.
func (r *Recorder) sweep(now time.Time) {
	r.mu.RLock()
	due := now.Sub(r.lastSweep) >= idleSweep
	r.mu.RUnlock()
	if !due {
		return
	}
	var idle []*target
	r.mu.Lock()
	if now.Sub(r.lastSweep) < idleSweep {
		r.mu.Unlock()
		return
	}
	r.lastSweep = now
	for p, t := range r.targets {
		if now.UnixNano()-t.used.Load() > int64(idleTTL) {
			delete(r.targets, p)
			idle = append(idle, t)
		}
	}
	r.mu.Unlock()
	if len(idle) > 0 {
		// Off the probes' goroutine: the last export may take a while.
		go func() {
			for _, t := range idle {
				if err := t.close(context.Background()); err != nil {
					r.log.Warn("flushing the metrics of an exited target", "err", err)
				}
			}
		}()
	}
}

// Shutdown flushes every provider and stops the exporters.
func (r *Recorder) Shutdown(ctx context.Context) error {
	if g := r.graph.Swap(nil); g != nil {
		g.close()
	}
	r.mu.Lock()
	all := make([]*target, 0, len(r.targets)+1)
	for _, t := range r.targets {
		all = append(all, t)
	}
	if r.self != nil {
		all = append(all, r.self)
	}
	r.targets = map[*spans.Process]*target{}
	r.self = nil
	r.mu.Unlock()
	var wg sync.WaitGroup
	errs := make([]error, len(all))
	for i, t := range all {
		wg.Go(func() { errs[i] = t.close(ctx) })
	}
	wg.Wait()
	if r.sink != nil {
		errs = append(errs, r.sink.shutdown(ctx))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("metrics shutdown: %w", err)
	}
	return nil
}
