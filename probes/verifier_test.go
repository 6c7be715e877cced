package probes_test

import (
	"io"
	"log/slog"
	"testing"

	"github.com/cilium/ebpf/rlimit"

	"github.com/tracewire/tracewire/internal/kernel"
	"github.com/tracewire/tracewire/internal/sampling"
	"github.com/tracewire/tracewire/internal/testenv"
	"github.com/tracewire/tracewire/probes"
	"github.com/tracewire/tracewire/probes/dbsql"
	"github.com/tracewire/tracewire/probes/grpc"
	"github.com/tracewire/tracewire/probes/nethttp"
	"github.com/tracewire/tracewire/procscan"
	"github.com/tracewire/tracewire/spans"
)

// TestVerifierAcceptsEveryProgram loads every BPF program of the agent into
// this kernel (the verifier runs at load time) and attaches the tracepoints.
func TestVerifierAcceptsEveryProgram(t *testing.T) {
	testenv.RequireEBPF(t)
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Fatal(err)
	}
	// As the agent does: tracepoints need tracefs.
	if err := kernel.MountTracefs(); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	shared := &probes.Shared{}
	defer shared.Close()
	h, err := nethttp.Load(log, shared)
	if err != nil {
		t.Fatalf("nethttp: %v", err)
	}
	if !h.Propagating() {
		t.Error("sock_ops/sk_msg propagation did not attach")
	}
	c, err := h.Counters()
	if err != nil || len(c) != 10 {
		t.Errorf("nethttp counters %v, %v: want 10 named counters", c, err)
	}
	h.Close()
	d, err := dbsql.Load(log, shared)
	if err != nil {
		t.Fatalf("dbsql: %v", err)
	}
	d.Close()
	g, err := grpc.Load(log, shared, grpc.NewLinker(func(*spans.Span) {}))
	if err != nil {
		t.Fatalf("grpc: %v", err)
	}
	g.Close()
	// The rate limit's code, dead without one, must pass the verifier too.
	limited := &probes.Shared{Sampler: &sampling.Config{Ratio: 1, RateLimit: 5}}
	defer limited.Close()
	for name, load := range map[string]func() (interface{ Close() }, error){
		"nethttp": func() (interface{ Close() }, error) { return nethttp.Load(log, limited) },
		"dbsql":   func() (interface{ Close() }, error) { return dbsql.Load(log, limited) },
		"grpc": func() (interface{ Close() }, error) {
			return grpc.Load(log, limited, grpc.NewLinker(func(*spans.Span) {}))
		},
	} {
		p, err := load()
		if err != nil {
			t.Fatalf("%s with a rate limit: %v", name, err)
		}
		p.Close()
	}
	s, err := procscan.New([]string{"x"}, log)
	if err != nil {
		t.Fatalf("procscan: %v", err)
	}
	s.Close()
}
