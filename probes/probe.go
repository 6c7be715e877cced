package probes

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/tracewire/tracewire/internal/gobin"
	"github.com/tracewire/tracewire/internal/kernel"
	"github.com/tracewire/tracewire/internal/sampling"
	"github.com/tracewire/tracewire/spans"
)

// ErrNotUsed is returned by a probe's Add when the executable does not use
// the probe's library: nothing to report, unlike a library it cannot trace.
var ErrNotUsed = errors.New("library not used by the executable")

// StaleAfter is how long per-call state may live in a probe's maps before it
// is evicted: far longer than any call the agent is meant to trace.
const StaleAfter = 2 * time.Minute

// Decl declares one library's instrumentation: what its object holds and
// what the base must do with it. Load turns it into a running Probe; adding
// a library is a Decl, its C and its decoder.
type Decl struct {
	// Name labels the probe's counters and logs ("nethttp").
	Name string
	// Objects reads the probe's BPF object (the bpf2go loader).
	Objects func() (*ebpf.CollectionSpec, error)
	// Procs is the map from pid to the struct offsets the programs read,
	// which is also their filter: a process not in it is not traced.
	Procs string
	// Events is the ring buffer the programs submit records to.
	Events string
	// Stale are the per-call maps (values start with a ktime) to sweep.
	Stale []string
	// Counters are the tw_stat counters (lower case, without STAT_) the
	// programs count; the others stay 0 and are not reported.
	Counters []string
	// Hooks are the uprobes: a hook whose function the executable lacks is
	// skipped (the linker drops what a program does not use).
	Hooks []Hook
	// Offsets returns what Procs holds for a process of bin, or an error
	// wrapping ErrNotUsed when bin does not use the library. bin is nil for
	// a program that is not Go (only for a probe without Hooks).
	Offsets func(bin *gobin.Binary) (any, error)
	// Extend, if set, adds what the probe does besides uprobes and its
	// ring: other program types, per-process state. An Extension with a
	// Counters() map[string]uint64 method adds them to the probe's.
	Extend func(coll *ebpf.Collection, log *slog.Logger) (Extension, error)
	// Decoder returns the function that turns the probe's records into
	// spans, for the one goroutine that reads its ring.
	Decoder func(env Env) DecodeFunc
}

// Env is what a decoder is made with.
type Env struct {
	Clock   kernel.Clock
	Ext     Extension // what Extend returned, nil without it
	Sampler sampling.Config
}

// Hook is one uprobe: the program to run at the first of Symbols the
// executable has (a function renamed between versions has several names).
// With When, only in executables for which it is true; and then, with Late,
// also in those of the processes the programs put in the map named Late
// (keyed by tgid): attached when asked, it stays with the executable's other
// uprobes, and the extension is told (LateAttacher).
type Hook struct {
	Symbols []string
	Program string
	When    func(*gobin.Binary) bool
	Late    string
}

// LateAttacher is an Extension told that a Late hook now runs for process
// pid (attached for its executable, now or before).
type LateAttacher interface {
	LateAttached(pid int, program string)
}

// DecodeFunc turns one ring-buffer record into the spans it completes (none
// or more), handed to emit; it returns false for a record it cannot use.
// process gives a pid's description (nil if unknown).
type DecodeFunc func(raw []byte, process func(pid int) *spans.Process, emit func(*spans.Span)) bool

// OneSpan makes a DecodeFunc of a decoder whose every record is one span
// (nil when it cannot use the record).
func OneSpan(decode func(raw []byte, process func(pid int) *spans.Process) *spans.Span) DecodeFunc {
	return func(raw []byte, process func(pid int) *spans.Process, emit func(*spans.Span)) bool {
		s := decode(raw, process)
		if s != nil {
			emit(s)
		}
		return s != nil
	}
}

// Extension is a probe's own work around the base's.
type Extension interface {
	// Add prepares process pid before its offsets are stored; it may
	// change offsets (the value Decl.Offsets returned).
	Add(pid int, bin *gobin.Binary, offsets any) error
	// Remove forgets pid (also after a failed Add).
	Remove(pid int)
	// Detach stops what Extend attached; no new events after it.
	Detach()
}

// Probe is a loaded Decl serving every target: its programs and maps, the
// uprobes of each executable, the ring buffer read, kernel counters, and
// eviction of stale per-call state.
type Probe struct {
	decl     Decl
	sampler  sampling.Config
	coll     *ebpf.Collection
	ext      Extension
	att      Attachments
	hooks    []attachHook
	procs    *ebpf.Map
	counters []string // every tw_stat name, by index
	// rd is opened with the first target (ready closed then): a mapped ring
	// is resident memory, and most nodes use only some of the probes.
	rdMu        sync.Mutex
	rd          *ringbuf.Reader
	ready       chan struct{}
	evicted     sync.Map // map name -> *atomic.Uint64
	lateMu      sync.Mutex
	lateTargets map[int]lateTarget // the processes a Late hook may be asked for
	undecodable atomic.Uint64
	log         *slog.Logger
	stop        chan struct{}
	once        sync.Once
}

// lateTarget is where a process's Late hooks would go.
type lateTarget struct {
	file kernel.FileID
	exe  string   // /proc/PID/exe
	syms []string // per hook: the symbol, "" when not late or absent
	offs []uint64
}

// attachHook is a Hook with its loaded program.
type attachHook struct {
	symbols []string
	prog    *ebpf.Program
	when    func(*gobin.Binary) bool
	name    string
	late    *ebpf.Map // Hook.Late's map
}

// Load loads d's object with the maps and settings shared (see Shared) and
// starts sweeping stale state; the ring is opened with the first target.
func Load(d Decl, shared *Shared, log *slog.Logger) (*Probe, error) {
	spec, err := d.Objects()
	if err != nil {
		return nil, fmt.Errorf("read %s BPF objects: %w", d.Name, err)
	}
	coll, err := shared.Load(spec)
	if err != nil {
		return nil, fmt.Errorf("load %s BPF objects: %w", d.Name, err)
	}
	p := &Probe{decl: d, coll: coll, sampler: shared.sampler(), log: log.With("probe", d.Name), stop: make(chan struct{}), ready: make(chan struct{})}
	if err := p.init(spec); err != nil {
		coll.Close()
		return nil, fmt.Errorf("%s: %w", d.Name, err)
	}
	go p.evictLoop()
	for _, h := range p.hooks {
		if h.late != nil {
			go p.lateLoop()
			break
		}
	}
	return p, nil
}

// init finds what the declaration names in the loaded collection.
func (p *Probe) init(spec *ebpf.CollectionSpec) error {
	d := p.decl
	names, err := CounterNames(spec)
	if err != nil {
		return err
	}
	p.counters = names
	for _, n := range d.Counters {
		if !slices.Contains(names, n) {
			return fmt.Errorf("no kernel counter %q", n)
		}
	}
	for _, name := range append([]string{d.Procs, d.Events, "stats"}, d.Stale...) {
		if p.coll.Maps[name] == nil {
			return fmt.Errorf("no map %q in the object", name)
		}
	}
	p.procs = p.coll.Maps[d.Procs]
	for _, h := range d.Hooks {
		prog := p.coll.Programs[h.Program]
		if prog == nil {
			return fmt.Errorf("no program %q in the object", h.Program)
		}
		ah := attachHook{symbols: h.Symbols, prog: prog, when: h.When, name: h.Program}
		if h.Late != "" {
			if ah.late = p.coll.Maps[h.Late]; ah.late == nil {
				return fmt.Errorf("no map %q in the object", h.Late)
			}
		}
		p.hooks = append(p.hooks, ah)
	}
	if d.Extend != nil {
		if p.ext, err = d.Extend(p.coll, p.log); err != nil {
			return err
		}
	}
	return nil
}

// openRing opens the ring buffer's reader once, for Run.
func (p *Probe) openRing() error {
	p.rdMu.Lock()
	defer p.rdMu.Unlock()
	if p.rd != nil {
		return nil
	}
	select {
	case <-p.stop:
		return errors.New("probe closed")
	default:
	}
	rd, err := ringbuf.NewReader(p.coll.Maps[p.decl.Events])
	if err != nil {
		return fmt.Errorf("open ring buffer %s: %w", p.decl.Events, err)
	}
	p.rd = rd
	close(p.ready)
	return nil
}

// Name is the declaration's name.
func (p *Probe) Name() string { return p.decl.Name }

// Extension is what the declaration's Extend returned, nil without it.
func (p *Probe) Extension() Extension { return p.ext }

// Add starts tracing process pid running executable exe (file id file):
// stores its offsets and attaches the hooks to the file (once per file).
func (p *Probe) Add(pid int, file kernel.FileID, exe string, bin *gobin.Binary) error {
	if bin == nil && len(p.hooks) > 0 {
		return fmt.Errorf("not a Go program: %w", ErrNotUsed) // uprobes hook Go functions
	}
	off, err := p.decl.Offsets(bin)
	if err != nil {
		return err
	}
	if err := p.openRing(); err != nil {
		return err
	}
	if p.ext != nil {
		if err := p.ext.Add(pid, bin, off); err != nil {
			p.ext.Remove(pid)
			return err
		}
	}
	if err = p.procs.Put(uint32(pid), off); err != nil {
		err = fmt.Errorf("store offsets of pid %d: %w", pid, err)
	} else if len(p.hooks) > 0 {
		if err = p.att.Acquire(file, exe, bin, p.hooks); err != nil {
			_ = p.procs.Delete(uint32(pid))
		}
	}
	if err != nil {
		if p.ext != nil {
			p.ext.Remove(pid)
		}
		return err
	}
	p.addLate(pid, file, bin)
	return nil
}

// addLate notes where pid's Late hooks would go, and tells the extension of
// those its executable already has.
func (p *Probe) addLate(pid int, file kernel.FileID, bin *gobin.Binary) {
	// exe may name a descriptor open only while the process is added.
	t := lateTarget{file: file, exe: fmt.Sprintf("/proc/%d/exe", pid), syms: make([]string, len(p.hooks)), offs: make([]uint64, len(p.hooks))}
	late := false
	for i, h := range p.hooks {
		if h.late == nil {
			continue
		}
		if sym, off, err := hookOffset(bin, h.symbols); err == nil {
			t.syms[i], t.offs[i], late = sym, off, true
		}
	}
	if !late {
		return
	}
	p.lateMu.Lock()
	if p.lateTargets == nil {
		p.lateTargets = map[int]lateTarget{}
	}
	p.lateTargets[pid] = t
	p.lateMu.Unlock()
	for i, h := range p.hooks {
		if t.syms[i] != "" && p.att.Has(file, h.prog) {
			p.tellLate(pid, h.name)
		}
	}
}

func (p *Probe) tellLate(pid int, program string) {
	if la, ok := p.ext.(LateAttacher); ok {
		la.LateAttached(pid, program)
	}
}

// lateLoop attaches the Late hooks the programs ask for, every second.
func (p *Probe) lateLoop() {
	p.every(time.Second, func() {
		for i, h := range p.hooks {
			if h.late == nil {
				continue
			}
			var pid uint32
			var v uint64
			var asked []uint32
			for it := h.late.Iterate(); it.Next(&pid, &v); {
				asked = append(asked, pid)
			}
			for _, pid := range asked {
				_ = h.late.Delete(pid)
				p.attachLate(int(pid), i)
			}
		}
	})
}

// attachLate attaches hook i for pid's executable and tells the extension
// for every process running it.
func (p *Probe) attachLate(pid, i int) {
	p.lateMu.Lock()
	t, ok := p.lateTargets[pid]
	p.lateMu.Unlock()
	if !ok || t.syms[i] == "" {
		return
	}
	h := p.hooks[i]
	if err := p.att.AttachLate(t.file, t.exe, t.syms[i], t.offs[i], h.prog); err != nil {
		p.log.Warn("attach a hook on demand", "pid", pid, "hook", h.name, "err", err)
		return
	}
	p.log.Debug("hook attached on demand", "pid", pid, "hook", h.name)
	p.lateMu.Lock()
	var pids []int
	for q, tq := range p.lateTargets {
		if tq.file == t.file {
			pids = append(pids, q)
		}
	}
	p.lateMu.Unlock()
	for _, q := range pids {
		p.tellLate(q, h.name)
	}
}

// Remove stops tracing pid; the uprobes go with the file's last process.
func (p *Probe) Remove(pid int, file kernel.FileID) {
	p.lateMu.Lock()
	delete(p.lateTargets, pid)
	p.lateMu.Unlock()
	if err := p.procs.Delete(uint32(pid)); err == nil {
		p.att.Release(file)
	}
	if p.ext != nil {
		p.ext.Remove(pid)
	}
}

// Run turns ring-buffer records into spans and hands them to emit until done
// is closed and every record already submitted is read. A record that
// cannot be decoded is counted (undecodable).
func (p *Probe) Run(done <-chan struct{}, process func(pid int) *spans.Process, emit func(*spans.Span)) {
	select {
	case <-p.ready:
	case <-done:
		return // no target ever: nothing was submitted
	}
	decode := p.decl.Decoder(Env{Clock: kernel.NewClock(), Ext: p.ext, Sampler: p.sampler})
	kernel.ReadRing(p.rd, 100*time.Millisecond, done, func(raw []byte) {
		if !decode(raw, process, emit) {
			p.undecodable.Add(1)
		}
	})
}

// Counters returns the kernel-side drop and error counters, the evictions
// of stale per-call state and the undecodable records.
func (p *Probe) Counters() (map[string]uint64, error) {
	all, err := KernelCounters(p.coll.Maps["stats"], p.counters)
	if err != nil {
		return nil, err
	}
	out := make(map[string]uint64, len(p.decl.Counters)+len(p.decl.Stale)+1)
	for _, n := range p.decl.Counters {
		out[n] = all[n]
	}
	p.evicted.Range(func(k, v any) bool {
		out["evicted_"+k.(string)] = v.(*atomic.Uint64).Load()
		return true
	})
	out["undecodable"] = p.undecodable.Load()
	if c, ok := p.ext.(interface{ Counters() map[string]uint64 }); ok {
		maps.Copy(out, c.Counters())
	}
	return out, nil
}

// Detach stops new events at once: every program returns when it finds no
// process of its own; then the uprobes are removed (see detachElsewhere)
// and the extension's programs detached.
func (p *Probe) Detach() {
	var pid uint32
	var offsets []byte
	var pids []uint32
	it := p.procs.Iterate()
	for it.Next(&pid, &offsets) {
		pids = append(pids, pid)
	}
	for _, pid := range pids {
		_ = p.procs.Delete(pid)
	}
	p.att.Close()
	if p.ext != nil {
		p.ext.Detach()
	}
}

// Close detaches, stops the sweeping, ends Run and frees the programs.
func (p *Probe) Close() {
	p.Detach()
	p.once.Do(func() { close(p.stop) })
	p.rdMu.Lock()
	if p.rd != nil {
		p.rd.Close()
	}
	p.rdMu.Unlock()
	p.coll.Close()
}

// every runs f every d until the probe is closed.
func (p *Probe) every(d time.Duration, f func()) {
	tick := time.NewTicker(d)
	defer tick.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-tick.C:
			f()
		}
	}
}

func (p *Probe) evictLoop() {
	p.every(StaleAfter/4, func() {
		for _, name := range p.decl.Stale {
			n, err := EvictStale(p.coll.Maps[name], StaleAfter)
			if err != nil {
				p.log.Warn("evicting stale state failed", "map", name, "err", err)
			}
			v, _ := p.evicted.LoadOrStore(name, new(atomic.Uint64))
			v.(*atomic.Uint64).Add(uint64(n))
		}
	})
}

// Runs returns the runs of each of the probe's programs and the time they
// took, as the kernel counts them while BPF run statistics are on
// (EnableRunStats).
func (p *Probe) Runs() (map[string]*ebpf.ProgramStats, error) {
	out := make(map[string]*ebpf.ProgramStats, len(p.coll.Programs))
	for name, prog := range p.coll.Programs {
		st, err := prog.Stats()
		if err != nil {
			return nil, fmt.Errorf("run statistics of %s: %w", name, err)
		}
		out[name] = st
	}
	return out, nil
}

// EnableRunStats makes the kernel count the runs and run time of every BPF
// program until the returned closer is closed. It is the node's switch, and
// it adds two clock reads to every program run, so the agent turns it on
// only when asked (TRACEWIRE_PROBE_STATS=true).
func EnableRunStats() (io.Closer, error) {
	c, err := ebpf.EnableStats(unix.BPF_STATS_RUN_TIME)
	if err != nil {
		return nil, fmt.Errorf("enable BPF run statistics: %w", err)
	}
	return c, nil
}
