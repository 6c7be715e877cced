// Package probes loads the probes' declarations (Decl) and does for all of
// them what they share: uprobes attached once per executable file and
// released with its last process, the per-process offsets, the ring read,
// counters and eviction of stale state. Reading rings, C strings and the
// kernel clock are in internal/kernel.
package probes

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/tracewire/tracewire/internal/gobin"
	"github.com/tracewire/tracewire/internal/kernel"
	"github.com/tracewire/tracewire/spans"
)

// Attachments keeps the uprobe links of each executable file with a count of
// the target processes that use them.
type Attachments struct {
	mu    sync.Mutex
	files map[kernel.FileID]*attached
}

type attached struct {
	links []link.Link
	progs map[*ebpf.Program]bool // attached there
	refs  int
}

// Acquire attaches hooks to the executable at path (identified by id) unless
// they are attached already, and counts one more user. A hook whose function
// the executable lacks is skipped (the linker drops what a program does not
// use: a pure server has no HTTP client), and so is one whose When says no;
// it fails when none can be attached and none was left out by choice.
func (a *Attachments) Acquire(id kernel.FileID, path string, bin *gobin.Binary, hooks []attachHook) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if at, ok := a.files[id]; ok {
		at.refs++
		return nil
	}
	ex, err := link.OpenExecutable(path)
	if err != nil {
		return fmt.Errorf("open executable %s: %w", path, err)
	}
	at := &attached{refs: 1, progs: map[*ebpf.Program]bool{}}
	var skipped []error
	missing, chosen := 0, 0
	for _, h := range hooks {
		sym, off, err := hookOffset(bin, h.symbols)
		if err != nil {
			if errors.Is(err, gobin.ErrNoFunc) {
				missing++
			}
			skipped = append(skipped, err)
			continue
		}
		if h.when != nil && !h.when(bin) {
			chosen++
			continue
		}
		l, err := attachUprobe(ex, sym, h.prog, off)
		if err != nil {
			closeLinks(at.links)
			return fmt.Errorf("attach uprobe %s at file offset %#x: %w", sym, off, err)
		}
		at.links = append(at.links, l)
		at.progs[h.prog] = true
	}
	if len(at.links) == 0 && chosen == 0 {
		if missing == len(hooks) {
			return ErrNotUsed // the library is not linked in
		}
		return fmt.Errorf("none of the hooked functions can be attached: %w", errors.Join(skipped...))
	}
	if len(skipped) > 0 {
		slog.Debug("some hooks do not apply to this executable", "exe", path, "skipped", errors.Join(skipped...))
	}
	if a.files == nil {
		a.files = map[kernel.FileID]*attached{}
	}
	a.files[id] = at
	return nil
}

// hookOffset returns the first of symbols bin has, with the file offset of
// its hook.
func hookOffset(bin *gobin.Binary, symbols []string) (string, uint64, error) {
	var errs []error
	for _, sym := range symbols {
		off, err := bin.HookOffset(sym)
		if err == nil {
			return sym, off, nil
		}
		if !errors.Is(err, gobin.ErrNoFunc) {
			return "", 0, err
		}
		errs = append(errs, err)
	}
	return "", 0, errors.Join(errs...)
}

// Has tells whether prog is attached to the executable id.
func (a *Attachments) Has(id kernel.FileID, prog *ebpf.Program) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	at, ok := a.files[id]
	return ok && at.progs[prog]
}

// AttachLate attaches prog at file offset off (symbol sym) of the
// executable id at path, already acquired, unless it is there already; it
// is detached with the file's other uprobes.
func (a *Attachments) AttachLate(id kernel.FileID, path, sym string, off uint64, prog *ebpf.Program) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	at, ok := a.files[id]
	if !ok {
		return fmt.Errorf("%s: no longer traced", path)
	}
	if at.progs[prog] {
		return nil
	}
	ex, err := link.OpenExecutable(path)
	if err != nil {
		return fmt.Errorf("open executable %s: %w", path, err)
	}
	l, err := attachUprobe(ex, sym, prog, off)
	if err != nil {
		return fmt.Errorf("attach uprobe %s at file offset %#x: %w", sym, off, err)
	}
	at.links = append(at.links, l)
	at.progs[prog] = true
	return nil
}

// Release drops one user of id and detaches its uprobes with the last one.
func (a *Attachments) Release(id kernel.FileID) {
	a.mu.Lock()
	defer a.mu.Unlock()
	at, ok := a.files[id]
	if !ok {
		return
	}
	if at.refs--; at.refs == 0 {
		closeLinks(at.links)
		delete(a.files, id)
	}
}

// Close detaches everything.
func (a *Attachments) Close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	var all []link.Link
	for id, at := range a.files {
		all = append(all, at.links...)
		delete(a.files, id)
	}
	detachElsewhere(all)
}

func closeLinks(ls []link.Link) {
	for _, l := range ls {
		l.Close()
	}
}

// CounterNames reads the names of the kernel counters (enum tw_stat in
// bpf/common.h) from the object's BTF, so Go never repeats the C list.
func CounterNames(spec *ebpf.CollectionSpec) ([]string, error) {
	var e *btf.Enum
	if err := spec.Types.TypeByName("tw_stat", &e); err != nil {
		return nil, fmt.Errorf("find enum tw_stat in BTF: %w", err)
	}
	names := make([]string, 0, len(e.Values))
	for _, v := range e.Values {
		if n, ok := strings.CutPrefix(v.Name, "STAT_"); ok && n != "MAX" {
			names = append(names, strings.ToLower(n))
		}
	}
	return names, nil
}

// KernelCounters sums each counter of a per-CPU `stats` map over all CPUs.
func KernelCounters(m *ebpf.Map, names []string) (map[string]uint64, error) {
	out := make(map[string]uint64, len(names))
	var perCPU []uint64
	for i, n := range names {
		if err := m.Lookup(uint32(i), &perCPU); err != nil {
			return nil, fmt.Errorf("read counter %s: %w", n, err)
		}
		for _, v := range perCPU {
			out[n] += v
		}
	}
	return out, nil
}

// EvictStale deletes the entries of m whose value starts with a kernel
// monotonic timestamp older than maxAge, and returns how many it deleted.
// Per-request maps are bounded hashes swept this way, so state that never
// meets its end (a hijacked connection, a call whose goroutine died) is
// evicted and counted rather than filling the map.
func EvictStale(m *ebpf.Map, maxAge time.Duration) (int, error) {
	var now unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &now); err != nil {
		return 0, err
	}
	if now.Nano() <= maxAge.Nanoseconds() {
		return 0, nil // booted too recently for anything to be stale
	}
	cutoff := uint64(now.Nano() - maxAge.Nanoseconds())
	var k, v []byte
	var stale [][]byte
	it := m.Iterate()
	for it.Next(&k, &v) {
		if len(v) >= 8 && binary.NativeEndian.Uint64(v) < cutoff {
			stale = append(stale, bytes.Clone(k))
		}
	}
	if err := it.Err(); err != nil {
		return 0, fmt.Errorf("iterate %s: %w", m, err)
	}
	n := 0
	for _, k := range stale {
		if m.Delete(k) == nil {
			n++
		}
	}
	return n, nil
}

// RemoteAddr is the peer address of a sock_tuple (sock.h): IPv4 in the
// first 4 bytes of remote when family is AF_INET.
func RemoteAddr(family uint16, remote [16]byte) netip.Addr {
	if family == unix.AF_INET {
		return netip.AddrFrom4([4]byte(remote[:4]))
	}
	return netip.AddrFrom16(remote).Unmap()
}

// SetContext fills s's ids and trace flags from a span_ctx (common.h). Its
// flags byte also carries the agent's own pending bit (FLAG_LINK_PENDING,
// given by the probe from its generated code), which becomes
// s.LinkPending and is never exported.
func SetContext(s *spans.Span, trace [16]byte, span, parent [8]byte, flags, pending uint8) {
	s.TraceID, s.SpanID, s.ParentID = trace, span, parent
	s.TraceFlags, s.LinkPending = flags&^pending, flags&pending != 0
}
