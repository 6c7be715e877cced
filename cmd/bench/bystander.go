package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"syscall"
	"time"
)

// The bystander is a service the agent does not trace, on a node where the
// wire path's syscall tracepoints are attached (a target that is not Go is
// traced). What it loses with the agent on is the tax those tracepoints put
// on every process.
const (
	bystanderName  = "bench-bystander"
	wireTargetName = "bench-wire-target"
)

// bystanderSettle is how long the agent runs before the load starts.
const bystanderSettle = 8 * time.Second

type bystanderResult struct {
	Rounds []round `json:"rounds"`
	Ratio  float64 `json:"rps_ratio_on_off"` // mean over rounds of on/off
}

// closedLoop returns the spec of a concurrency-1 run on base's /users/ path
// for tag and a suffix (off, on).
func closedLoop(base, tag string, set settings) func(string) loadSpec {
	return func(s string) loadSpec {
		return loadSpec{warmURL: base + "/users/" + tag + s + "-warm", measureURL: base + "/users/" + tag + s,
			workers: 1, warmup: time.Duration(set.Warmup), window: time.Duration(set.Window)}
	}
}

func runBystander(ctx context.Context, e *env, set settings, svcCPUs []int) (bystanderResult, error) {
	var res bystanderResult
	dir := filepath.Dir(e.bins.agent)
	svc, wire := filepath.Join(dir, bystanderName), filepath.Join(dir, wireTargetName)
	if err := copyFile(e.bins.svcA, svc); err != nil {
		return res, err
	}
	if err := copyFile("/bin/sleep", wire); err != nil {
		return res, err
	}
	url, err := startService(e.cl, svc, svcCPUs)
	if err != nil {
		return res, err
	}
	if _, err := startChild(e.cl, nil, wire, []string{"3600"}, nil); err != nil {
		return res, err
	}
	for r := 1; r <= set.Rounds; r++ {
		tag := fmt.Sprintf("bystander-r%d", r)
		spec := closedLoop(url, tag, set)
		off, err := runLoad(ctx, spec("-off"), func() {}, func() {})
		if err != nil {
			return res, err
		}
		ag, err := startChild(e.cl, e.agentCPUs, e.bins.agent,
			[]string{"--target", svcAName, "--target", svcBName, "--target", wireTargetName},
			[]string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + e.recv.endpoint()})
		if err != nil {
			return res, err
		}
		// The agent finds the wire target and attaches the tracepoints
		// within a second of its start; its start-up work (loading the
		// probes, reading the services' executables) is over well before
		// the measured window.
		time.Sleep(bystanderSettle)
		on, err := runLoad(ctx, spec("-on"), func() {}, func() {})
		ag.stop(syscall.SIGTERM, 6*time.Second)
		if err != nil {
			return res, err
		}
		slog.Info("measured", "scenario", "bystander", "round", r, "rps_off", int(off.RPS), "rps_on", int(on.RPS))
		res.Rounds = append(res.Rounds, round{Round: r, Load: off}, round{Round: r, Agent: true, Load: on})
		res.Ratio += on.RPS / off.RPS / float64(set.Rounds)
	}
	return res, nil
}
