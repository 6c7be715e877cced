package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// pythonName is the Python service's name: a link to python3, so that the
// process's comm is the link's name.
const pythonName = "bench-py"

// runPython measures a target that is not Go, traced from the wire: the
// Python HTTP service of the e2e tests, requests/s without and with the
// agent at concurrency 1, and every request's span.
func runPython(ctx context.Context, e *env, set settings, svcCPUs []int) (scenarioResult, error) {
	sr := scenarioResult{Name: "python c1 (wire path)", Concurrency: 1}
	link := filepath.Join(filepath.Dir(e.bins.agent), pythonName)
	_ = os.Remove(link)
	if err := os.Symlink("/usr/bin/python3", link); err != nil {
		return sr, err
	}
	script, err := filepath.Abs("testdata/apps/pyhttp/server.py")
	if err != nil {
		return sr, err
	}
	url, err := startServiceArgs(e.cl, link, []string{script}, svcCPUs)
	if err != nil {
		return sr, err
	}
	for r := 1; r <= set.Rounds; r++ {
		tag := fmt.Sprintf("py-r%d", r)
		spec := closedLoop(url, tag, set)
		off, err := runLoad(ctx, spec("-off"), func() {}, func() {})
		if err != nil {
			return sr, err
		}
		e.recv.reset()
		ag, err := startChild(e.cl, e.agentCPUs, e.bins.agent, []string{"--target", pythonName},
			[]string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + e.recv.endpoint(), "OTEL_BSP_SCHEDULE_DELAY=200",
				"OTEL_BSP_MAX_QUEUE_SIZE=65536", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE=2048"})
		if err != nil {
			return sr, err
		}
		time.Sleep(bystanderSettle) // found and its tracepoints attached, start-up over
		on, err := runLoad(ctx, spec("-on"), func() {}, func() {})
		ag.stop(syscall.SIGTERM, 6*time.Second)
		if err != nil {
			return sr, err
		}
		n, err := e.recv.count("/users/" + tag + "-on")
		if err != nil {
			return sr, err
		}
		st := agentStats{SpansByKind: n, SpansExpected: on.Requests, SpansLost: on.Requests - n["server"]}
		slog.Info("measured", "scenario", sr.Name, "round", r, "rps_off", int(off.RPS), "rps_on", int(on.RPS), "lost", st.SpansLost)
		sr.Rounds = append(sr.Rounds, round{Round: r, Load: off}, round{Round: r, Agent: true, Load: on, Stats: &st})
	}
	sr.summarise()
	return sr, nil
}
