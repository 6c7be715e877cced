// Package probetest checks a probe declaration against its BPF object,
// without root: what the declaration names must be in the object, with the
// layout the Go side assumes.
package probetest

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/tracewire/tracewire/probes"
)

// CheckDecl checks d against its object: the maps it names exist with the
// right kinds; the per-process value has the size of offsets (the value
// d.Offsets returns, a bpf2go struct) and is the C struct of that name; each
// stale map's value starts with a 64-bit time; every hook names a uprobe
// program; every counter is in enum tw_stat.
func CheckDecl(t *testing.T, d probes.Decl, cName string, offsets any) {
	t.Helper()
	spec, err := d.Objects()
	if err != nil {
		t.Fatal(err)
	}
	procs := spec.Maps[d.Procs]
	switch {
	case procs == nil:
		t.Errorf("no map %q", d.Procs)
	case procs.Type != ebpf.Hash || procs.KeySize != 4:
		t.Errorf("%s: %s with %d-byte keys, want a hash by pid", d.Procs, procs.Type, procs.KeySize)
	default:
		if size := binary.Size(offsets); uint32(size) != procs.ValueSize {
			t.Errorf("%s: values of %d bytes, the Go offsets %T are %d", d.Procs, procs.ValueSize, offsets, size)
		}
		if s, ok := btf.UnderlyingType(procs.Value).(*btf.Struct); !ok || s.Name != cName {
			t.Errorf("%s: value type %v, want struct %s", d.Procs, procs.Value, cName)
		}
	}
	if ev := spec.Maps[d.Events]; ev == nil || ev.Type != ebpf.RingBuf {
		t.Errorf("events map %q: %v, want a ring buffer", d.Events, ev)
	}
	for _, name := range d.Stale {
		m := spec.Maps[name]
		if m == nil {
			t.Errorf("no stale map %q", name)
			continue
		}
		if !startsWithU64(m.Value) {
			t.Errorf("stale map %s: value %v does not start with a 64-bit time", name, m.Value)
		}
	}
	for _, h := range d.Hooks {
		p := spec.Programs[h.Program]
		switch {
		case len(h.Symbols) == 0:
			t.Errorf("hook %s names no function", h.Program)
		case p == nil:
			t.Errorf("hook %v: no program %q", h.Symbols, h.Program)
		case !strings.HasPrefix(p.SectionName, "uprobe/"):
			t.Errorf("hook %v: program %s is in section %s, not a uprobe", h.Symbols, h.Program, p.SectionName)
		}
	}
	names, err := probes.CounterNames(spec)
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, n := range names {
		known[n] = true
	}
	for _, c := range d.Counters {
		if !known[c] {
			t.Errorf("counter %q is not in enum tw_stat", c)
		}
	}
	if d.Decoder == nil || d.Offsets == nil {
		t.Error("a declaration needs Offsets and Decoder")
	}
}

// startsWithU64 tells whether a map value type is, or starts with, 8 bytes
// of integer.
func startsWithU64(typ btf.Type) bool {
	for {
		switch v := btf.UnderlyingType(typ).(type) {
		case *btf.Int:
			return v.Size == 8
		case *btf.Struct:
			if len(v.Members) == 0 || v.Members[0].Offset != 0 {
				return false
			}
			typ = v.Members[0].Type
		default:
			return false
		}
	}
}
