package probes

import (
	"fmt"
	"sync"

	"github.com/cilium/ebpf"

	"github.com/tracewire/tracewire/internal/sampling"
)

// sharedMaps are the maps each probe's object declares that must be one for
// them all: go_server_spans (goctx.h), the server spans in flight by
// goroutine, so a SQL or gRPC call finds the HTTP request its goroutine
// serves; sampling_window (sampling.h), the rate limit's budget, which is
// the node's; and the wire path's maps that sk_msg and sock_ops read too
// (wirectx.h); and the HTTP/2 streams' contexts a gRPC hook leaves for
// sk_msg (h2ctx.h).
var sharedMaps = []string{"go_server_spans", "sampling_window", "wire_procs", "wire_threads", "wire_sent", "wire_http_peers", "h2_streams"}

// Shared holds what the probes' programs use together: the shared maps,
// which loading every object with Load gives one instance; and the sampler
// (sampling.h), which Load sets in each.
type Shared struct {
	// Sampler decides which traces are sampled; nil means sampling.Default.
	Sampler *sampling.Config

	mu   sync.Mutex
	maps map[string]*ebpf.Map
}

// replacements returns the shared maps for loading spec, creating those
// not made yet from spec's definitions.
func (s *Shared) replacements(spec *ebpf.CollectionSpec) (map[string]*ebpf.Map, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	repl := map[string]*ebpf.Map{}
	for _, name := range sharedMaps {
		ms, ok := spec.Maps[name]
		if !ok {
			continue
		}
		if s.maps[name] == nil {
			m, err := ebpf.NewMap(ms)
			if err != nil {
				return nil, fmt.Errorf("create shared map %s: %w", name, err)
			}
			if s.maps == nil {
				s.maps = map[string]*ebpf.Map{}
			}
			s.maps[name] = m
		}
		repl[name] = s.maps[name]
	}
	return repl, nil
}

// Load loads spec into the kernel with the shared maps and the uprobe
// programs prepared for the kind of attachment this kernel gets
// (UprobeMulti).
func (s *Shared) Load(spec *ebpf.CollectionSpec) (*ebpf.Collection, error) {
	repl, err := s.replacements(spec)
	if err != nil {
		return nil, err
	}
	if err := s.setSampler(spec); err != nil {
		return nil, err
	}
	setUprobeAttachType(spec)
	return ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{MapReplacements: repl})
}

// sampler is the sampler in force.
func (s *Shared) sampler() sampling.Config {
	if s.Sampler != nil {
		return *s.Sampler
	}
	return sampling.Default
}

// setSampler writes the sampler into spec's read-only globals (sampling.h),
// in an object that decides on sampling (includes sampling.h).
func (s *Shared) setSampler(spec *ebpf.CollectionSpec) error {
	c := s.sampler()
	vars := map[string]any{
		"sampling_bound": c.Bound(), "sampling_parent_based": c.ParentBased, "sampling_rate_limit": c.RateLimit,
	}
	found := 0
	for name := range vars {
		if _, ok := spec.Variables[name]; ok {
			found++
		}
	}
	if found == 0 {
		return nil
	}
	for name, v := range vars {
		vs, ok := spec.Variables[name]
		if !ok {
			return fmt.Errorf("no variable %s in the BPF object", name)
		}
		if err := vs.Set(v); err != nil {
			return fmt.Errorf("set %s: %w", name, err)
		}
	}
	return nil
}

// Close frees the shared maps; the probes hold their own references.
func (s *Shared) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.maps {
		m.Close()
	}
	s.maps = nil
}
