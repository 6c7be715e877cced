package metrics

import (
	"context"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// agg holds cumulative histograms and counters that the recorder fills
// itself and the SDK's readers collect as a Producer. A measurement through
// an SDK instrument normalizes its attributes every time (over a
// microsecond a span on the machines we measure); here it is a map lookup
// by a comparable key and a few adds.
type agg struct {
	start time.Time
	mu    sync.Mutex
	ms    []collector
}

// collector is one metric of an agg; mu is held while it runs. A metric
// with no point yet is left out.
type collector interface {
	collect(start, now time.Time) (metricdata.Metrics, bool)
}

func newAgg(now time.Time) *agg { return &agg{start: now} }

// Produce returns every metric's cumulative points (sdkmetric.Producer).
func (a *agg) Produce(context.Context) ([]metricdata.ScopeMetrics, error) {
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	sm := metricdata.ScopeMetrics{Scope: instrumentation.Scope{Name: scopeName}, Metrics: make([]metricdata.Metrics, 0, len(a.ms))}
	for _, m := range a.ms {
		if got, ok := m.collect(a.start, now); ok {
			sm.Metrics = append(sm.Metrics, got)
		}
	}
	return []metricdata.ScopeMetrics{sm}, nil
}

// desc names a metric.
type desc struct{ name, unit, text string }

// overflowSet is where the points past CardinalityLimit go, as in the SDK.
var overflowSet = attribute.NewSet(attribute.Bool("otel.metric.overflow", true))

// pointSet keeps one value per distinct key K, up to CardinalityLimit sets
// (the last one the overflow set).
type pointSet[K comparable, V any] struct {
	by       map[K]*point[K, V]
	overflow *point[K, V]
	// last is the point found last: under load most spans repeat the key
	// of the one before, and comparing it costs less than hashing it.
	last *point[K, V]
}

type point[K comparable, V any] struct {
	key   K // as kept (never pointing into a span)
	attrs attribute.Set
	v     V
}

// fresh gives, for a key seen the first time, the key to keep and its
// attributes: both kept, so neither may point into the span.
type fresh[K comparable] func() (K, attribute.Set)

// get returns k's point, made the first time; a.mu is held.
func (p *pointSet[K, V]) get(k K, f fresh[K], init func(*V)) *point[K, V] {
	if p.last != nil && p.last.key == k {
		return p.last
	}
	if pt, ok := p.by[k]; ok {
		p.last = pt
		return pt
	}
	if len(p.by) >= CardinalityLimit-1 {
		if p.overflow == nil {
			p.overflow = &point[K, V]{attrs: overflowSet}
			init(&p.overflow.v)
		}
		return p.overflow
	}
	kept, attrs := f()
	pt := &point[K, V]{key: kept, attrs: attrs}
	init(&pt.v)
	p.by[kept] = pt
	p.last = pt
	return pt
}

// all lists the points, the overflow last.
func (p *pointSet[K, V]) all() []*point[K, V] {
	out := make([]*point[K, V], 0, len(p.by)+1)
	for _, pt := range p.by {
		out = append(out, pt)
	}
	if p.overflow != nil {
		out = append(out, p.overflow)
	}
	return out
}

// hist is a cumulative explicit-bucket histogram keyed by K.
type hist[K comparable] struct {
	a      *agg
	d      desc
	bounds []float64
	pts    pointSet[K, histValue]
}

type histValue struct {
	count    uint64
	sum      float64
	min, max float64
	buckets  []uint64
}

func newHist[K comparable](a *agg, d desc, bounds []float64) *hist[K] {
	h := &hist[K]{a: a, d: d, bounds: bounds, pts: pointSet[K, histValue]{by: map[K]*point[K, histValue]{}}}
	a.ms = append(a.ms, h)
	return h
}

// record adds v to k's point.
func (h *hist[K]) record(k K, f fresh[K], v float64) {
	h.a.mu.Lock()
	pt := h.pts.get(k, f, func(hv *histValue) { hv.buckets = make([]uint64, len(h.bounds)+1) })
	hv := &pt.v
	// The bucket whose upper bound is the first >= v, as the SDK counts.
	i, _ := slices.BinarySearch(h.bounds, v)
	hv.buckets[i]++
	if hv.count == 0 || v < hv.min {
		hv.min = v
	}
	if hv.count == 0 || v > hv.max {
		hv.max = v
	}
	hv.count++
	hv.sum += v
	h.a.mu.Unlock()
}

func (h *hist[K]) collect(start, now time.Time) (metricdata.Metrics, bool) {
	data := metricdata.Histogram[float64]{Temporality: metricdata.CumulativeTemporality}
	for _, pt := range h.pts.all() {
		hv := pt.v
		data.DataPoints = append(data.DataPoints, metricdata.HistogramDataPoint[float64]{
			Attributes: pt.attrs, StartTime: start, Time: now,
			Count: hv.count, Sum: hv.sum, Bounds: h.bounds, BucketCounts: slices.Clone(hv.buckets),
			Min: metricdata.NewExtrema(hv.min), Max: metricdata.NewExtrema(hv.max),
		})
	}
	return metricdata.Metrics{Name: h.d.name, Description: h.d.text, Unit: h.d.unit, Data: data}, len(data.DataPoints) > 0
}

// counter is a cumulative monotonic int64 sum keyed by K.
type counter[K comparable] struct {
	a   *agg
	d   desc
	pts pointSet[K, int64]
}

func newCounter[K comparable](a *agg, d desc) *counter[K] {
	c := &counter[K]{a: a, d: d, pts: pointSet[K, int64]{by: map[K]*point[K, int64]{}}}
	a.ms = append(a.ms, c)
	return c
}

func (c *counter[K]) add(k K, f fresh[K], n int64) {
	c.a.mu.Lock()
	c.pts.get(k, f, func(*int64) {}).v += n
	c.a.mu.Unlock()
}

func (c *counter[K]) collect(start, now time.Time) (metricdata.Metrics, bool) {
	data := metricdata.Sum[int64]{Temporality: metricdata.CumulativeTemporality, IsMonotonic: true}
	for _, pt := range c.pts.all() {
		data.DataPoints = append(data.DataPoints, metricdata.DataPoint[int64]{Attributes: pt.attrs, StartTime: start, Time: now, Value: pt.v})
	}
	return metricdata.Metrics{Name: c.d.name, Description: c.d.text, Unit: c.d.unit, Data: data}, len(data.DataPoints) > 0
}
