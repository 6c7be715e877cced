package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"time"
)

// settings are the durations of one bench run.
type settings struct {
	Quick         bool    `json:"quick"`
	Warmup        secs    `json:"warmup_s"`
	Window        secs    `json:"window_s"`
	Rounds        int     `json:"rounds"`
	Sustain       secs    `json:"sustained_s"`
	SustainRate   float64 `json:"sustained_target_rps"`
	SustainConc   int     `json:"sustained_concurrency"`
	LowRate       float64 `json:"low_rate_rps"`
	LowRateWindow secs    `json:"low_rate_window_s"`
	UprobeTrapNs  float64 `json:"uprobe_trap_ns_assumed"`
}

// secs is a duration that JSON shows in seconds.
type secs time.Duration

func (s secs) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(s).Seconds()) }

// round is one measured window, with or without the agent.
type round struct {
	Round int         `json:"round"`
	Agent bool        `json:"agent"`
	Load  loadResult  `json:"load"`
	Stats *agentStats `json:"agent_stats,omitempty"`
}

// scenarioResult compares the same load without and with the agent.
type scenarioResult struct {
	Name        string  `json:"name"`
	Downstream  bool    `json:"downstream"`
	Concurrency int     `json:"concurrency"`
	Rounds      []round `json:"rounds"`
	Ratio       float64 `json:"rps_ratio_on_off"` // mean over rounds of on/off
	AddedP50us  float64 `json:"added_p50_us"`
	AddedP99us  float64 `json:"added_p99_us"`
}

// agentRun is a load run with the agent only (sustained, low rate).
type agentRun struct {
	Name  string     `json:"name"`
	Load  loadResult `json:"load"`
	Stats agentStats `json:"agent_stats"`
}

// runScenarios measures {plain, downstream} x {c1, c16}, alternating rounds
// without and with the agent so that drift affects both alike.
func runScenarios(ctx context.Context, e *env, set settings) ([]scenarioResult, error) {
	var out []scenarioResult
	for _, down := range []bool{false, true} {
		for _, conc := range []int{1, 16} {
			p := plan{downstream: down, workers: conc, warmup: time.Duration(set.Warmup), window: time.Duration(set.Window)}
			sr := scenarioResult{Name: fmt.Sprintf("%s c%d", kindName(down), conc), Downstream: down, Concurrency: conc}
			for r := 1; r <= set.Rounds; r++ {
				tag := fmt.Sprintf("%s-c%d-r%d", kindName(down), conc, r)
				off, err := runLoad(ctx, e.spec(p, tag+"-off"), func() {}, func() {})
				if err != nil {
					return nil, err
				}
				slog.Info("measured", "scenario", sr.Name, "round", r, "agent", "off", "rps", int(off.RPS), "p50_us", off.P50us)
				on, st, err := withAgent(ctx, e, p, tag+"-on")
				if err != nil {
					return nil, fmt.Errorf("%s round %d: %w", sr.Name, r, err)
				}
				slog.Info("measured", "scenario", sr.Name, "round", r, "agent", "on", "rps", int(on.RPS), "p50_us", on.P50us, "lost", st.SpansLost)
				sr.Rounds = append(sr.Rounds, round{Round: r, Load: off}, round{Round: r, Agent: true, Load: on, Stats: &st})
			}
			sr.summarise()
			out = append(out, sr)
		}
	}
	return out, nil
}

func kindName(downstream bool) string {
	if downstream {
		return "downstream"
	}
	return "plain"
}

// summarise averages the rounds: rounds come in (off, on) pairs.
func (s *scenarioResult) summarise() {
	n := float64(len(s.Rounds) / 2)
	for i := 0; i+1 < len(s.Rounds); i += 2 {
		off, on := s.Rounds[i].Load, s.Rounds[i+1].Load
		if off.RPS > 0 {
			s.Ratio += on.RPS / off.RPS / n
		}
		s.AddedP50us += (on.P50us - off.P50us) / n
		s.AddedP99us += (on.P99us - off.P99us) / n
	}
}

// runSustained holds ~SustainRate plain requests/s (one span each).
func runSustained(ctx context.Context, e *env, set settings) (agentRun, error) {
	p := plan{workers: set.SustainConc, rate: set.SustainRate, warmup: time.Duration(set.Warmup), window: time.Duration(set.Sustain)}
	res, st, err := withAgent(ctx, e, p, "sustained")
	if err != nil {
		return agentRun{}, fmt.Errorf("sustained: %w", err)
	}
	slog.Info("measured", "scenario", "sustained", "rps", int(res.RPS), "lost", st.SpansLost)
	return agentRun{Name: "sustained", Load: res, Stats: st}, nil
}

// runLowRate measures the agent's CPU at a steady, modest request rate.
func runLowRate(ctx context.Context, e *env, set settings) (agentRun, error) {
	p := plan{workers: 2, rate: set.LowRate, warmup: time.Duration(set.Warmup), window: time.Duration(set.LowRateWindow)}
	res, st, err := withAgent(ctx, e, p, "lowrate")
	if err != nil {
		return agentRun{}, fmt.Errorf("low rate: %w", err)
	}
	slog.Info("measured", "scenario", "low rate", "rps", int(res.RPS), "agent_cpu_percent", st.CPUPercent)
	return agentRun{Name: fmt.Sprintf("%.0f req/s", set.LowRate), Load: res, Stats: st}, nil
}

// startService runs a copy of the hello service and returns its base URL.
func startService(cl *cleanups, path string, cpus []int) (string, error) {
	return startServiceArgs(cl, path, nil, cpus)
}

// startServiceArgs starts path with args before its -addr.
func startServiceArgs(cl *cleanups, path string, args []string, cpus []int) (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("free port: %w", err)
	}
	addr := l.Addr().String()
	l.Close()
	c, err := startChild(cl, cpus, path, append(args, "-addr", addr), []string{"GODEBUG=httpmuxgo121=0"})
	if err != nil {
		return "", err
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		if conn, err := net.Dial("tcp", addr); err == nil {
			conn.Close()
			return "http://" + addr, nil
		}
		select {
		case <-c.done:
			return "", fmt.Errorf("%s exited at start:\n%s", path, c.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return "", fmt.Errorf("%s does not listen on %s", path, addr)
}
