package probes_test

import (
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"

	"github.com/tracewire/tracewire/internal/kernel"
	"github.com/tracewire/tracewire/internal/sampling"
	"github.com/tracewire/tracewire/internal/testenv"
	"github.com/tracewire/tracewire/probes"
	"github.com/tracewire/tracewire/probes/dbsql"
	"github.com/tracewire/tracewire/probes/grpc"
	"github.com/tracewire/tracewire/probes/nethttp"
	"github.com/tracewire/tracewire/probes/wire"
	"github.com/tracewire/tracewire/procscan"
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
	def := sampling.Default
	shared := &probes.Shared{Sampler: &def}
	defer shared.Close()
	// The rate limit's code, dead without one, must pass the verifier too.
	limited := &probes.Shared{Sampler: &sampling.Config{Ratio: 1, RateLimit: 5}}
	defer limited.Close()
	for _, sh := range []*probes.Shared{shared, limited} {
		for _, d := range []probes.Decl{nethttp.Decl, dbsql.Decl, grpc.Decl, wire.Decl} {
			p, err := probes.Load(d, sh, log)
			if err != nil {
				var ve *ebpf.VerifierError
				if errors.As(err, &ve) {
					t.Logf("%+v", ve)
				}
				t.Fatalf("%s (rate limit %d): %v", d.Name, sh.Sampler.RateLimit, err)
			}
			c, err := p.Counters()
			if err != nil || len(c) < len(d.Counters)+1 {
				t.Errorf("%s counters %v, %v: want %d named counters and undecodable", d.Name, c, err, len(d.Counters))
			}
			if d.Name == "nethttp" && !nethttp.Propagating(p) {
				t.Error("sock_ops/sk_msg propagation did not attach")
			}
			p.Close()
		}
	}
	s, err := procscan.New([]string{"x"}, log)
	if err != nil {
		t.Fatalf("procscan: %v", err)
	}
	s.Close()
}
