// Package procscan finds target processes by name: a /proc scan at start,
// then the sched_process_exec / sched_process_exit tracepoints for processes
// that start or stop later.
package procscan

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/tracewire/tracewire/probes"
)

// commLen is the kernel's TASK_COMM_LEN minus the NUL: longer names are cut.
const commLen = 15

// Target is a process whose comm or executable basename matched a target name.
type Target struct {
	PID     int
	Exe     string // /proc/PID/exe: opens the running executable even if it was replaced on disk
	ExeName string // basename of the executable
	File    probes.FileID
	// Env holds the target's OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES when set.
	Env map[string]string
}

// Handler receives lifecycle events; calls come from one goroutine.
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
}

// New loads and attaches the exec/exit tracepoints.
func New(names []string, log *slog.Logger) (*Scanner, error) {
	s := &Scanner{names: names, log: log}
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
	// the scan is seen at least once; Appeared de-duplicates by pid.
	seen := map[int]bool{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		s.log.Error("scan /proc", "err", err)
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		s.consider(ctx, pid, "", "", h, seen)
	}
	var ev bpfProcscanEvent
	probes.ReadRing(s.rd, 200*time.Millisecond, ctx.Done(), func(raw []byte) {
		if len(raw) < int(unsafe.Sizeof(ev)) {
			s.log.Warn("procscan: short ring buffer record", "len", len(raw))
			return
		}
		ev = *(*bpfProcscanEvent)(unsafe.Pointer(&raw[0]))
		pid := int(ev.Pid)
		switch ev.Kind {
		case 1: // PROCSCAN_EXEC
			// A pid that execs again is a new program: forget the old one.
			if seen[pid] {
				delete(seen, pid)
				s.untrack(pid)
				h.Exited(pid)
			}
			s.consider(ctx, pid, probes.CString(ev.Comm[:]), filepath.Base(probes.CString(ev.Filename[:])), h, seen)
		case 2: // PROCSCAN_EXIT
			if seen[pid] {
				delete(seen, pid)
				s.untrack(pid)
				h.Exited(pid)
			}
		}
	})
}

// consider reports pid if it matches. comm and base are what the exec event
// carried (empty during the /proc scan).
func (s *Scanner) consider(ctx context.Context, pid int, comm, base string, h Handler, seen map[int]bool) {
	if seen[pid] {
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
		if base == "" || !Matches(s.names, comm, base) {
			return // kernel thread, or gone
		}
		s.log.Warn("target matched but its executable cannot be read", "pid", pid, "comm", comm, "err", err)
		return
	}
	exeName := filepath.Base(strings.TrimSuffix(exe, " (deleted)"))
	if !Matches(s.names, comm, exeName) && !Matches(s.names, comm, base) {
		return
	}
	t := Target{PID: pid, Exe: fmt.Sprintf("/proc/%d/exe", pid), ExeName: exeName}
	if t.File, err = probes.StatFile(t.Exe); err != nil {
		s.log.Warn("cannot stat target executable", "pid", pid, "exe", exe, "err", err)
		return
	}
	t.Env = readEnv(ctx, pid)
	seen[pid] = true
	if err := s.objs.ProcscanTracked.Put(uint32(pid), uint8(1)); err != nil {
		s.log.Warn("cannot watch target exit; it will be noticed late", "pid", pid, "err", err)
	}
	// The process may have exited before it was tracked: its exit event is lost.
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); errors.Is(err, os.ErrNotExist) {
		delete(seen, pid)
		s.untrack(pid)
		return
	}
	h.Appeared(t)
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
var envKeys = []string{"OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"}

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
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}
