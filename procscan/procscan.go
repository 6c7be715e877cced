// Package procscan finds target processes by name: a /proc scan at start,
// then the sched_process_exec / sched_process_exit tracepoints for processes
// that start or stop later.
package procscan

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/tracewire/tracewire/internal/k8sresource"
	"github.com/tracewire/tracewire/internal/kernel"
)

// commLen is the kernel's TASK_COMM_LEN minus the NUL: longer names are cut.
const commLen = 15

// Target is a process whose comm or executable basename matched a target name.
type Target struct {
	PID int
	// Exe opens the process's executable through the agent's own fd of it
	// (/proc/self/fd/N), valid during Appeared even if the process has
	// exited or the file was replaced on disk meanwhile.
	Exe     string
	ExeName string // basename of the executable
	File    kernel.FileID
	// Env holds the target's variables of envKeys that are set.
	Env map[string]string
}

// Handler receives lifecycle events; calls never overlap.
type Handler interface {
	Appeared(t Target)
	Exited(pid int)
}

// Scanner watches processes for the configured names.
type Scanner struct {
	names []string
	objs  bpfObjects
	links []link.Link
	rd    *ringbuf.Reader
	log   *slog.Logger

	// mu serializes the handler calls of the ring reader and of the sweep,
	// and guards seen.
	mu sync.Mutex
	// seen holds the tracked pids with their start time (clock ticks since
	// boot), which tells a pid reused by another process apart.
	seen map[int]uint64
	// gone counts matching processes that exited before they could be
	// traced (a crash loop): nothing to trace, not an error.
	gone atomic.Uint64
	// lostExits counts tracked processes found gone by the sweep: their
	// exit event never arrived.
	lostExits atomic.Uint64
}

// sweepEvery is how often tracked processes are checked for an exit whose
// event was lost (a full ring buffer): their uprobes and state are released.
const sweepEvery = 5 * time.Second

// New loads and attaches the exec/exit tracepoints.
func New(names []string, log *slog.Logger) (*Scanner, error) {
	s := &Scanner{names: names, log: log, seen: map[int]uint64{}}
	if err := loadBpfObjects(&s.objs, nil); err != nil {
		return nil, fmt.Errorf("load procscan BPF objects: %w", err)
	}
	for _, tp := range []struct {
		name string
		prog *ebpf.Program
	}{
		{"sched_process_exec", s.objs.TpSchedProcessExec},
		{"sched_process_exit", s.objs.TpSchedProcessExit},
	} {
		l, err := link.Tracepoint("sched", tp.name, tp.prog, nil)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("attach tracepoint sched/%s: %w", tp.name, err)
		}
		s.links = append(s.links, l)
	}
	rd, err := ringbuf.NewReader(s.objs.ProcscanEvents)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("open procscan ring buffer: %w", err)
	}
	s.rd = rd
	return s, nil
}

// Close detaches the tracepoints and ends Run.
func (s *Scanner) Close() {
	for _, l := range s.links {
		l.Close()
	}
	if s.rd != nil {
		s.rd.Close()
	}
	s.objs.Close()
}

// Run reports the matching processes already running, then those that start
// or exit later, until ctx ends or Close.
func (s *Scanner) Run(ctx context.Context, h Handler) {
	// Tracepoints are attached before the scan, so a process started during
	// the scan is seen at least once; consider de-duplicates by pid.
	ents, err := os.ReadDir("/proc")
	if err != nil {
		s.log.Error("scan /proc", "err", err)
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		s.mu.Lock()
		s.consider(ctx, pid, "", "", h)
		s.mu.Unlock()
	}
	go s.sweepLoop(ctx, h)
	kernel.ReadRing(s.rd, 200*time.Millisecond, ctx.Done(), func(raw []byte) {
		ev, ok := decodeEvent(raw)
		if !ok {
			s.log.Warn("procscan: short ring buffer record", "len", len(raw))
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		switch ev.kind {
		case eventExec:
			// A pid that execs again is a new program: forget the old one.
			s.forget(ev.pid, h)
			s.consider(ctx, ev.pid, ev.comm, ev.base, h)
		case eventExit:
			s.forget(ev.pid, h)
		}
	})
}

// Kinds of struct procscan_event (bpf/procscan.c).
const (
	eventExec = 1 // PROCSCAN_EXEC
	eventExit = 2 // PROCSCAN_EXIT
)

// event is a decoded ring-buffer record.
type event struct {
	kind uint32
	pid  int
	comm string // exec only
	base string // exec only: basename of the path passed to execve, "" if none
}

// decodeEvent reads one ring-buffer record; ok is false when it is too
// short (or misaligned) to be one.
func decodeEvent(raw []byte) (ev event, ok bool) {
	e := kernel.Record[bpfProcscanEvent](raw)
	if e == nil {
		return event{}, false
	}
	ev = event{kind: e.Kind, pid: int(e.Pid)}
	if ev.kind == eventExec {
		ev.comm = kernel.CString(e.Comm[:])
		if name := kernel.CString(e.Filename[:]); name != "" {
			ev.base = filepath.Base(name)
		}
	}
	return ev, true
}

// Counters returns how many matching processes exited before they could be
// traced, and how many exits were noticed by the sweep instead of an event.
func (s *Scanner) Counters() map[string]uint64 {
	return map[string]uint64{"targets_gone_early": s.gone.Load(), "targets_lost_exits": s.lostExits.Load()}
}

// forget reports a tracked pid as exited. Callers hold s.mu.
func (s *Scanner) forget(pid int, h Handler) {
	if _, ok := s.seen[pid]; ok {
		delete(s.seen, pid)
		s.untrack(pid)
		h.Exited(pid)
	}
}

// sweepLoop releases tracked processes that are gone, or whose pid now
// belongs to another process, though no exit event said so.
func (s *Scanner) sweepLoop(ctx context.Context, h Handler) {
	tick := time.NewTicker(sweepEvery)
	defer tick.Stop()
	suspects := map[int]bool{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		s.mu.Lock()
		next := map[int]bool{}
		for pid, start := range s.seen {
			if now, err := startTime(pid); err == nil && now == start {
				continue
			}
			// Gone at two sweeps in a row: its exit event, if any, was
			// not just waiting in the ring.
			if suspects[pid] {
				s.lostExits.Add(1)
				s.forget(pid, h)
			} else {
				next[pid] = true
			}
		}
		suspects = next
		s.mu.Unlock()
	}
}

// consider reports pid if it matches. comm and base are what the exec event
// carried (empty during the /proc scan). Callers hold s.mu.
func (s *Scanner) consider(ctx context.Context, pid int, comm, base string, h Handler) {
	if _, ok := s.seen[pid]; ok {
		return
	}
	if comm == "" {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil {
			return // gone already
		}
		comm = strings.TrimSuffix(string(b), "\n")
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		if base != "" && Matches(s.names, comm, base) {
			s.goneEarly(pid, comm, err)
		}
		return // kernel thread, or gone
	}
	exeName := filepath.Base(strings.TrimSuffix(exe, " (deleted)"))
	if !Matches(s.names, comm, exeName) && !Matches(s.names, comm, base) {
		return
	}
	// Hold the executable open while the handler instruments it: a process
	// that dies meanwhile (a crash loop) must not make its file look
	// unreadable, and a replaced file is still the one the process runs.
	f, err := os.Open(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		s.goneEarly(pid, comm, err)
		return
	}
	defer f.Close()
	start, err := startTime(pid)
	if err != nil {
		s.goneEarly(pid, comm, err)
		return
	}
	t := Target{PID: pid, Exe: fmt.Sprintf("/proc/self/fd/%d", f.Fd()), ExeName: exeName}
	if t.File, err = kernel.StatFile(t.Exe); err != nil {
		s.log.Warn("cannot stat target executable", "pid", pid, "exe", exe, "err", err)
		return
	}
	t.Env = readEnv(ctx, pid)
	s.seen[pid] = start
	if err := s.objs.ProcscanTracked.Put(uint32(pid), uint8(1)); err != nil {
		s.log.Warn("cannot watch target exit; it will be noticed late", "pid", pid, "err", err)
	}
	// The process may have exited before it was tracked: its exit event is lost.
	if now, err := startTime(pid); err != nil || now != start {
		delete(s.seen, pid)
		s.untrack(pid)
		s.goneEarly(pid, comm, errors.New("exited during discovery"))
		return
	}
	h.Appeared(t)
}

// goneEarly notes a matching process that exited before it could be traced.
// A refusal is not an exit: it says which capability is missing.
func (s *Scanner) goneEarly(pid int, comm string, err error) {
	if errors.Is(err, fs.ErrPermission) {
		s.log.Warn("target matched but its executable cannot be read (CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH are needed)", "pid", pid, "comm", comm, "err", err)
		return
	}
	s.gone.Add(1)
	s.log.Debug("target exited before it could be traced", "pid", pid, "comm", comm, "err", err)
}

// startTime reads when pid started (field 22 of /proc/PID/stat, after the
// parenthesised comm, which may itself hold spaces and parentheses).
func startTime(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("bad /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, fmt.Errorf("bad /proc/%d/stat", pid)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

func (s *Scanner) untrack(pid int) {
	_ = s.objs.ProcscanTracked.Delete(uint32(pid))
}

// Matches reports whether a process with this comm or executable basename is
// a target. comm is cut by the kernel, so a long name matches its first 15 bytes.
func Matches(names []string, comm, exeName string) bool {
	for _, n := range names {
		if n == exeName || n == comm || (len(n) > commLen && len(comm) == commLen && n[:commLen] == comm) {
			return true
		}
	}
	return false
}

// envKeys are the target's own variables the resource is built from.
var envKeys = append([]string{"OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"}, k8sresource.EnvKeys...)

// readEnv reads the target's OTEL_* settings. Right after exec the environ
// file can read empty for a moment, so an empty read is retried briefly.
func readEnv(ctx context.Context, pid int) map[string]string {
	path := fmt.Sprintf("/proc/%d/environ", pid)
	for range 20 {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		if len(b) > 0 {
			return parseEnv(b)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// parseEnv picks envKeys out of an environ file: NUL-separated KEY=VALUE
// entries, written by the target, so any bytes at all.
func parseEnv(b []byte) map[string]string {
	env := map[string]string{}
	for kv := range bytes.SplitSeq(b, []byte{0}) {
		for _, k := range envKeys {
			if v, ok := bytes.CutPrefix(kv, []byte(k+"=")); ok {
				env[k] = string(v)
			}
		}
	}
	return env
}
