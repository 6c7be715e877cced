package main

import (
	"maps"
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
	if a.runStats {
		s.ProbeRuns = map[metrics.ProgramKey]metrics.ProgramRuns{}
		for _, p := range a.probes {
			runs, err := p.Runs()
			if err != nil {
				a.log.Debug("cannot read run statistics", "probe", p.Name(), "err", err)
				continue
			}
			for prog, st := range runs {
				s.ProbeRuns[metrics.ProgramKey{Probe: p.Name(), Program: prog}] = metrics.ProgramRuns{Runs: st.RunCount, Time: st.Runtime}
			}
		}
	}
	a.mu.Lock()
	s.Targets = len(a.procs)
	s.AttachFailures = maps.Clone(a.attachFailures)
	a.mu.Unlock()
	return s
}
