package probes

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/tracewire/tracewire/internal/gobin"
	"github.com/tracewire/tracewire/internal/kernel"
	"github.com/tracewire/tracewire/spans"
)

// ErrNotUsed is returned by a probe's Add when the executable does not use
// the probe's library: nothing to report, unlike a library it cannot trace.
var ErrNotUsed = errors.New("library not used by the executable")

// StaleAfter is how long per-call state may live in a probe's maps before it
// is evicted: far longer than any call the agent is meant to trace.
const StaleAfter = 2 * time.Minute

// Core is what every probe does the same way around its own programs: the
// per-process offsets map that is also the programs' filter, the uprobes of
// each executable, the ring buffer read, kernel counters, and eviction of
// stale per-call state.
type Core struct {
	Att      Attachments
	procs    *ebpf.Map
	stats    *ebpf.Map
	counters []string // every tw_stat name, by index
	report   []string // those this probe counts
	rd       *ringbuf.Reader
	stale    map[string]*ebpf.Map
	evicted  sync.Map // map name -> *atomic.Uint64
	log      *slog.Logger
	stop     chan struct{}
	once     sync.Once
}

// CoreMaps are the maps of a probe's object that Core works with.
type CoreMaps struct {
	Procs, Stats, Events *ebpf.Map
	// Stale are the per-call maps (values start with a ktime) to sweep.
	Stale map[string]*ebpf.Map
	// Counters are the tw_stat counters (lower case, without STAT_) the
	// probe's programs count; the others stay 0 and are not reported.
	Counters []string
}

// NewCore opens the ring buffer and starts sweeping stale state. spec is
// the probe's object, for its counter names.
func NewCore(spec *ebpf.CollectionSpec, m CoreMaps, log *slog.Logger) (*Core, error) {
	names, err := CounterNames(spec)
	if err != nil {
		return nil, err
	}
	rd, err := ringbuf.NewReader(m.Events)
	if err != nil {
		return nil, fmt.Errorf("open ring buffer %s: %w", m.Events, err)
	}
	for _, n := range m.Counters {
		if !slices.Contains(names, n) {
			return nil, fmt.Errorf("no kernel counter %q", n)
		}
	}
	c := &Core{procs: m.Procs, stats: m.Stats, counters: names, report: m.Counters, rd: rd, stale: m.Stale, log: log, stop: make(chan struct{})}
	go c.evictLoop()
	return c, nil
}

// Add stores pid's offsets and attaches hooks to its executable (once per
// file). Hooks whose function the executable lacks are skipped; it fails
// when none applies.
func (c *Core) Add(pid int, file kernel.FileID, exe string, bin *gobin.Binary, offsets any, hooks []Uprobe) error {
	if err := c.procs.Put(uint32(pid), offsets); err != nil {
		return fmt.Errorf("store offsets of pid %d: %w", pid, err)
	}
	if err := c.Att.Acquire(file, exe, bin, hooks); err != nil {
		_ = c.procs.Delete(uint32(pid))
		return err
	}
	return nil
}

// Remove stops tracing pid; the uprobes go with the file's last process.
func (c *Core) Remove(pid int, file kernel.FileID) {
	if err := c.procs.Delete(uint32(pid)); err == nil {
		c.Att.Release(file)
	}
}

// Run turns ring-buffer records into spans with decode until done is closed
// and every record already submitted is read. decode returns nil for a
// record it cannot use (counted). Every span is shown to the observer (see
// Observe), then passed to emit, sampled or not: see DropUnsampled.
func (c *Core) Run(done <-chan struct{}, decode func(raw []byte) *spans.Span, emit func(*spans.Span)) {
	kernel.ReadRing(c.rd, 100*time.Millisecond, done, func(raw []byte) {
		s := decode(raw)
		if s == nil {
			CountUndecodable()
			return
		}
		observe(s)
		emit(s)
	})
}

// DropUnsampled passes the spans of sampled traces to next and counts and
// recycles the others. It must come after the grpc.Linker: a gRPC server
// span joined to its client's trace takes that trace's sampled flag instead
// of the one the kernel chose for its provisional trace.
func DropUnsampled(next func(*spans.Span)) func(*spans.Span) {
	return func(s *spans.Span) {
		if s.TraceFlags&1 == 0 {
			CountUnsampled()
			s.Release()
			return
		}
		next(s)
	}
}

// Counters returns the kernel-side drop and error counters and the
// evictions of stale per-call state.
func (c *Core) Counters() (map[string]uint64, error) {
	all, err := KernelCounters(c.stats, c.counters)
	if err != nil {
		return nil, err
	}
	out := make(map[string]uint64, len(c.report))
	for _, n := range c.report {
		out[n] = all[n]
	}
	c.evicted.Range(func(k, v any) bool {
		out["evicted_"+k.(string)] = v.(*atomic.Uint64).Load()
		return true
	})
	return out, nil
}

// Detach stops new events at once, for every program returns when it finds
// no process of its own, and removes every uprobe (see detachElsewhere).
func (c *Core) Detach() {
	var pid uint32
	var offsets []byte
	var pids []uint32
	it := c.procs.Iterate()
	for it.Next(&pid, &offsets) {
		pids = append(pids, pid)
	}
	for _, p := range pids {
		_ = c.procs.Delete(p)
	}
	c.Att.Close()
}

// Close stops the sweeping, detaches the uprobes and ends Run.
func (c *Core) Close() {
	c.once.Do(func() { close(c.stop) })
	c.Att.Close()
	c.rd.Close()
}

func (c *Core) evictLoop() {
	tick := time.NewTicker(StaleAfter / 4)
	defer tick.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-tick.C:
		}
		for name, m := range c.stale {
			n, err := EvictStale(m, StaleAfter)
			if err != nil {
				c.log.Warn("evicting stale state failed", "map", name, "err", err)
			}
			v, _ := c.evicted.LoadOrStore(name, new(atomic.Uint64))
			v.(*atomic.Uint64).Add(uint64(n))
		}
	}
}
