package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
)

const bpfStatsSysctl = "/proc/sys/kernel/bpf_stats_enabled"

// setBPFStats turns run_cnt/run_time_ns accounting on ("1") or off ("0")
// and returns the function that restores the previous setting. Accounting
// adds two clock reads to every program run.
func setBPFStats(value string) (restore func(), err error) {
	old, err := os.ReadFile(bpfStatsSysctl)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", bpfStatsSysctl, err)
	}
	if err := os.WriteFile(bpfStatsSysctl, []byte(value+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("set %s to %s: %w", bpfStatsSysctl, value, err)
	}
	return func() { _ = os.WriteFile(bpfStatsSysctl, old, 0o644) }, nil // best effort on the way out
}

// progSample is one program's cumulative counters.
type progSample struct {
	name string
	runs uint64
	ns   uint64
}

// hookPrefixes select the per-request programs: the uprobes, the sk_msg
// program, the sock_ops program (connection events only), and the syscall
// tracepoints of the server-end and wire paths (their runs count every
// process's syscalls, the load generator's too, mostly cheap misses).
var hookPrefixes = []string{"uprobe_", "sk_msg", "sockops", "nethttp_exit", "nethttp_enter", "wire_"}

// agentPrograms samples the hook programs that pid holds. Programs are found
// through the process's fds rather than by name alone, because an agent of
// a concurrently running test loads programs with the same names.
func agentPrograms(pid int) (map[ebpf.ProgramID]progSample, error) {
	ids, err := heldProgramIDs(pid)
	if err != nil {
		return nil, err
	}
	out := map[ebpf.ProgramID]progSample{}
	for _, id := range ids {
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			continue // unloaded since the fd listing
		}
		info, ierr := p.Info()
		st, serr := p.Stats()
		p.Close()
		if ierr != nil || serr != nil {
			return nil, fmt.Errorf("program %d: info %v, stats %v", id, ierr, serr)
		}
		for _, pre := range hookPrefixes {
			if strings.HasPrefix(info.Name, pre) {
				out[id] = progSample{name: info.Name, runs: st.RunCount, ns: uint64(st.Runtime)}
			}
		}
	}
	return out, nil
}

// heldProgramIDs reads prog_id from the fdinfo of every fd of pid (program
// fds and link fds both name their program).
func heldProgramIDs(pid int) ([]ebpf.ProgramID, error) {
	dir := fmt.Sprintf("/proc/%d/fdinfo", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list fds: %w", err)
	}
	seen := map[ebpf.ProgramID]bool{}
	var ids []ebpf.ProgramID
	for _, e := range ents {
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // closed since the listing
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			v, ok := strings.CutPrefix(sc.Text(), "prog_id:")
			if !ok {
				continue
			}
			if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32); err == nil && !seen[ebpf.ProgramID(n)] {
				seen[ebpf.ProgramID(n)] = true
				ids = append(ids, ebpf.ProgramID(n))
			}
		}
		f.Close()
	}
	return ids, nil
}

// progCost is one program's cost over a window.
type progCost struct {
	Name        string  `json:"name"`
	RunsPerReq  float64 `json:"runs_per_request"`
	NsPerRun    float64 `json:"ns_per_run"`
	NsPerReq    float64 `json:"ns_per_request"`
	RunsInTotal uint64  `json:"runs"`
}

// programCosts turns two samples into per-request costs, and the estimated
// kernel time per request: program time plus trapNs per uprobe hit for the
// breakpoint trap and instruction emulation, which BPF run-time accounting
// does not include.
func programCosts(before, after map[ebpf.ProgramID]progSample, requests int, trapNs float64) ([]progCost, float64) {
	var out []progCost
	var perReq float64
	for id, a := range after {
		b := before[id]
		c := progCost{Name: a.name, RunsInTotal: a.runs - b.runs}
		if requests > 0 {
			c.RunsPerReq = float64(c.RunsInTotal) / float64(requests)
			c.NsPerReq = float64(a.ns-b.ns) / float64(requests)
		}
		if c.RunsInTotal > 0 {
			c.NsPerRun = float64(a.ns-b.ns) / float64(c.RunsInTotal)
		}
		perReq += c.NsPerReq
		if strings.HasPrefix(c.Name, "uprobe_") {
			perReq += c.RunsPerReq * trapNs
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, perReq
}
