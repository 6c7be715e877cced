package probes_test

import (
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/tracewire/tracewire/internal/testenv"
	"github.com/tracewire/tracewire/probes"
)

// TestEvictStale: entries older than the limit go, newer ones stay.
func TestEvictStale(t *testing.T) {
	testenv.RequireEBPF(t)
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 4, ValueSize: 16, MaxEntries: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var now unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &now)
	fresh, old := uint64(now.Nano()), uint64(1) // booted long before
	for k, ts := range map[uint32]uint64{1: fresh, 2: old, 3: old} {
		if err := m.Put(k, [2]uint64{ts, 42}); err != nil {
			t.Fatal(err)
		}
	}
	n, err := probes.EvictStale(m, time.Minute)
	if err != nil || n != 2 {
		t.Fatalf("evicted %d (%v), want 2", n, err)
	}
	var v [2]uint64
	if err := m.Lookup(uint32(1), &v); err != nil {
		t.Errorf("fresh entry gone: %v", err)
	}
}
