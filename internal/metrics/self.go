package metrics

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/tracewire/tracewire/spans"
)

// DropReasons are the values of tracewire.spans.dropped's reason, every
// one reported (0 included) so that a rate can be taken from the start.
var DropReasons = []string{"queue_full", "rejected", "shutdown", "ring_full", "map_full", "evicted", "undecodable"}

// SelfStats are the agent's own counters, read at each collection.
type SelfStats struct {
	Exported  uint64
	Unsampled uint64            // spans of unsampled traces: not exported, not a drop
	Dropped   map[string]uint64 // by reason (see DropReasons)
	Queued    uint64            // spans waiting in the export queue
	Targets   int               // processes traced now
	// AttachFailures are the targets a probe could not instrument, by
	// probe ("" when no probe could: not Go, nothing traceable).
	AttachFailures map[string]uint64
	// ProbeRuns are the runs of each BPF program and the time they took,
	// when the kernel counts them (TRACEWIRE_PROBE_STATS); nil otherwise.
	ProbeRuns map[ProgramKey]ProgramRuns
	// Events are every other counter, by source (a probe, procscan, the
	// sampler) and event (injected, left_alone, rate_limited, ...): the
	// numbers --log-level debug logs.
	Events map[EventKey]uint64
}

// EventKey names one counter of SelfStats.Events.
type EventKey struct{ Source, Event string }

// ProgramKey names one BPF program of a probe.
type ProgramKey struct{ Probe, Program string }

// ProgramRuns are a program's runs and the kernel time they took.
type ProgramRuns struct {
	Runs uint64
	Time time.Duration
}

// Uploaded records one upload attempt of spans: tracewire.export.duration,
// by outcome.
func (r *Recorder) Uploaded(d time.Duration, err error) {
	h := r.uploads.Load()
	if h == nil {
		return
	}
	opt := uploadOK
	if err != nil {
		opt = uploadFailed
	}
	(*h).Record(context.Background(), d.Seconds(), opt)
}

var (
	uploadOK     = metric.WithAttributes(attribute.String("outcome", "ok"))
	uploadFailed = metric.WithAttributes(attribute.String("outcome", "failed"))
)

// RegisterSelf exports the agent's own counters, read with read at each
// collection, under the agent's own resource.
func (r *Recorder) RegisterSelf(read func() SelfStats) error {
	t, err := r.selfTarget()
	if err != nil {
		return err
	}
	m := t.provider.Meter(scopeName)
	exported, err1 := m.Int64ObservableCounter("tracewire.spans.exported", metric.WithUnit("{span}"),
		metric.WithDescription("Spans the collector accepted."))
	dropped, err2 := m.Int64ObservableCounter("tracewire.spans.dropped", metric.WithUnit("{span}"),
		metric.WithDescription("Spans (or kernel events) lost, by reason."))
	unsampled, err3 := m.Int64ObservableCounter("tracewire.spans.unsampled", metric.WithUnit("{span}"),
		metric.WithDescription("Spans of unsampled traces, not exported (counted in the request metrics)."))
	targets, err4 := m.Int64ObservableGauge("tracewire.targets.traced", metric.WithUnit("{process}"),
		metric.WithDescription("Processes traced now."))
	queued, err5 := m.Int64ObservableGauge("tracewire.export.queue.size", metric.WithUnit("{span}"),
		metric.WithDescription("Spans waiting in the export queue."))
	events, err6 := m.Int64ObservableCounter("tracewire.events", metric.WithUnit("{event}"),
		metric.WithDescription("Everything else the agent counts, by source and event."))
	failures, err7 := m.Int64ObservableCounter("tracewire.attach.failures", metric.WithUnit("{process}"),
		metric.WithDescription("Target processes a probe could not instrument, by probe (empty: none could)."))
	hits, err8 := m.Int64ObservableCounter("tracewire.probe.hits", metric.WithUnit("{run}"),
		metric.WithDescription("Runs of each BPF program, when the kernel counts them (TRACEWIRE_PROBE_STATS=true)."))
	hitTime, err9 := m.Float64ObservableCounter("tracewire.probe.time", metric.WithUnit("s"),
		metric.WithDescription("Kernel time spent in each BPF program, when the kernel counts it (TRACEWIRE_PROBE_STATS=true)."))
	uploads, err10 := m.Float64Histogram("tracewire.export.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of each OTLP upload attempt of spans, by outcome."),
		metric.WithExplicitBucketBoundaries(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
	// On error the provider stays: Shutdown closes it.
	for _, err := range []error{err1, err2, err3, err4, err5, err6, err7, err8, err9, err10} {
		if err != nil {
			return fmt.Errorf("self metrics: %w", err)
		}
	}
	reasons := make([]metric.ObserveOption, len(DropReasons))
	for i, rsn := range DropReasons {
		reasons[i] = metric.WithAttributes(attribute.String("reason", rsn))
	}
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st := read()
		o.ObserveInt64(exported, int64(st.Exported))
		o.ObserveInt64(unsampled, int64(st.Unsampled))
		o.ObserveInt64(queued, int64(st.Queued))
		o.ObserveInt64(targets, int64(st.Targets))
		for i, rsn := range DropReasons {
			o.ObserveInt64(dropped, int64(st.Dropped[rsn]), reasons[i])
		}
		for k, v := range st.Events {
			o.ObserveInt64(events, int64(v), metric.WithAttributes(attribute.String("source", k.Source), attribute.String("event", k.Event)))
		}
		for probe, v := range st.AttachFailures {
			o.ObserveInt64(failures, int64(v), metric.WithAttributes(attribute.String("probe", probe)))
		}
		for k, v := range st.ProbeRuns {
			at := metric.WithAttributes(attribute.String("probe", k.Probe), attribute.String("program", k.Program))
			o.ObserveInt64(hits, int64(v.Runs), at)
			o.ObserveFloat64(hitTime, v.Time.Seconds(), at)
		}
		return nil
	}, exported, dropped, unsampled, targets, queued, events, failures, hits, hitTime)
	if err != nil {
		return fmt.Errorf("self metrics: %w", err)
	}
	r.uploads.Store(&uploads)
	return nil
}

// selfTarget returns the provider with the agent's own resource, making it
// on first use. There is one: two with the same resource would give the
// Prometheus endpoint the same target_info twice.
func (r *Recorder) selfTarget() (*target, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.self != nil {
		return r.self, nil
	}
	cfg := r.res
	cfg.ServiceNameOverride = "" // that names the targets, not the agent
	me := &spans.Process{PID: os.Getpid(), ExeName: "tracewire", ServiceName: "tracewire", RuntimeName: "go", RuntimeVersion: runtime.Version()}
	t, err := r.newProvider(cfg, me)
	if err != nil {
		return nil, err
	}
	r.self = t
	return t, nil
}
