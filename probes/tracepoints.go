package probes

import (
	"fmt"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// Tracepoint names a syscalls/ tracepoint and the program for it.
type Tracepoint struct{ Name, Program string }

// Tracepoints are syscall tracepoint programs attached with the first
// target that needs them and detached with the last: they cost every
// process on the node a little on those syscalls, so only while needed.
type Tracepoints struct {
	progs   []*ebpf.Program
	names   []string
	mu      sync.Mutex
	links   []link.Link
	targets map[int]bool
}

// NewTracepoints finds each of ts's programs in coll.
func NewTracepoints(coll *ebpf.Collection, ts []Tracepoint) (*Tracepoints, error) {
	t := &Tracepoints{targets: map[int]bool{}}
	for _, tp := range ts {
		p := coll.Programs[tp.Program]
		if p == nil {
			return nil, fmt.Errorf("no program %s in the object", tp.Program)
		}
		t.progs, t.names = append(t.progs, p), append(t.names, tp.Name)
	}
	return t, nil
}

// Acquire attaches the tracepoints if pid is the first target.
func (t *Tracepoints) Acquire(pid int) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.links == nil {
		for i, p := range t.progs {
			l, err := link.Tracepoint("syscalls", t.names[i], p, nil)
			if err != nil {
				t.detach()
				return fmt.Errorf("attach tracepoint syscalls/%s: %w", t.names[i], err)
			}
			t.links = append(t.links, l)
		}
	}
	t.targets[pid] = true
	return nil
}

// Release detaches the tracepoints with the last target.
func (t *Tracepoints) Release(pid int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.targets, pid)
	if len(t.targets) == 0 {
		t.detach()
	}
}

// Detach detaches them whatever the targets.
func (t *Tracepoints) Detach() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.detach()
}

func (t *Tracepoints) detach() {
	for _, l := range t.links {
		l.Close()
	}
	t.links = nil
}
