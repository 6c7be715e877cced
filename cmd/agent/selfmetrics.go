package main

import (
	"strings"

	"github.com/tracewire/tracewire/export"
	"github.com/tracewire/tracewire/internal/metrics"
)

// selfStats gathers the counters logCounters logs, for the agent's own
// metrics: drops by reason, summed over the probes.
func (a *agent) selfStats(b *export.Batcher) metrics.SelfStats {
	st := b.Stats()
	s := metrics.SelfStats{
		Exported:  st.Exported,
		Unsampled: a.pipe.Counts().Unsampled.Load(),
		Queued:    st.Queued,
		Dropped: map[string]uint64{
			"queue_full": st.DroppedQueueFull,
			"rejected":   st.DroppedRejected,
			"shutdown":   st.DroppedShutdown,
		},
		Events: map[metrics.EventKey]uint64{
			{Source: "sampler", Event: "unsampled_overflow"}: a.pipe.Counts().HeldOverflow.Load(),
		},
	}
	if a.scan != nil {
		for k, v := range a.scan.Counters() {
			s.Events[metrics.EventKey{Source: "procscan", Event: k}] = v
		}
	}
	for _, p := range a.probes {
		kc, err := p.Counters()
		if err != nil {
			a.log.Debug("cannot read kernel counters", "probe", p.Name(), "err", err)
			continue
		}
		for k, v := range kc {
			s.Events[metrics.EventKey{Source: p.Name(), Event: k}] = v
			switch {
			case k == "undecodable":
				s.Dropped["undecodable"] += v
			case k == "ringbuf_full":
				s.Dropped["ring_full"] += v
			case k == "map_full":
				s.Dropped["map_full"] += v
			case strings.HasPrefix(k, "evicted_"):
				s.Dropped["evicted"] += v
			}
		}
	}
	a.mu.Lock()
	s.Targets = len(a.procs)
	a.mu.Unlock()
	return s
}
