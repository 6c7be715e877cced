package metrics

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/tracewire/tracewire/export"
	"github.com/tracewire/tracewire/spans"
)

// TestPrometheusProcesses: two processes of one service with the same
// requests are two series (process_pid tells them apart), gathered from
// one endpoint; a process's series go with its provider.
func TestPrometheusProcesses(t *testing.T) {
	cfg := Config{Prometheus: true, PromAddr: "127.0.0.1:0"}
	r, err := New(context.Background(), cfg, export.ResourceConfig{HostName: "node1"}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Shutdown(context.Background())
	a := &spans.Process{PID: 10, ServiceName: "shop"}
	b := &spans.Process{PID: 11, ServiceName: "shop"}
	for _, p := range []*spans.Process{a, b, b} {
		r.Observe(span(p, spans.KindServer, 2, false, spans.String("http.request.method", "GET"),
			spans.String("http.route", "/users/{id}"), spans.Int("http.response.status_code", 200)))
	}
	mfs, err := r.sink.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	counts := map[string]uint64{}
	for _, mf := range mfs {
		if mf.GetName() != "http_server_request_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			if l["service_name"] != "shop" || l["http_route"] != "/users/{id}" {
				t.Errorf("labels %v", l)
			}
			counts[l["process_pid"]] += m.GetHistogram().GetSampleCount()
		}
	}
	if counts["10"] != 1 || counts["11"] != 2 || len(counts) != 2 {
		t.Errorf("counts by process_pid %v, want 10:1 11:2", counts)
	}

	r.mu.Lock()
	ta := r.targets[a]
	delete(r.targets, a)
	r.mu.Unlock()
	if err := ta.close(context.Background()); err != nil {
		t.Fatal(err)
	}
	mfs, err = r.sink.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "process_pid" && lp.GetValue() == "10" {
					t.Errorf("%s of a dropped provider still served", mf.GetName())
				}
			}
		}
	}
}
