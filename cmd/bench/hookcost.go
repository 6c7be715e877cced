package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"

	"github.com/tracewire/tracewire/internal/gobin"
)

// hookResult is one hook kind's added cost per call.
type hookResult struct {
	Hook       string    `json:"hook"`
	Loop       string    `json:"loop"` // what the target calls: main.target or getppid
	Calls      int       `json:"calls_per_round"`
	AddedNs    float64   `json:"added_ns_median"`
	RoundsNs   []float64 `json:"added_ns_per_round"`
	EventCheck string    `json:"event_check,omitempty"`
}

type hookReport struct {
	Started    time.Time          `json:"started"`
	Host       string             `json:"host"`
	Pinning    string             `json:"pinning"`
	Rounds     int                `json:"rounds"`
	PushOffset string             `json:"push_rbp_file_offset"`
	BaselineNs map[string]float64 `json:"baseline_ns_median"`
	Results    []hookResult       `json:"results"`
	Notes      []string           `json:"notes"`
}

// detachFn removes a hook and returns how many events its program recorded
// (-1 when it records none).
type detachFn func() (int64, error)

// hookCase is one hook kind, attached for one target process.
type hookCase struct {
	name   string
	loop   string // what the target calls: "main.target" or "getppid"
	slow   bool   // single-stepped: a tenth of the calls keeps the run short
	attach func(pid int) (detachFn, error)
}

// calls scales the calls per measurement: single-stepped probes are slow.
func (c hookCase) calls(n int) int {
	if c.slow {
		return n / 10
	}
	return n
}

// hookRig is what every measurement shares.
type hookRig struct {
	cl      *cleanups
	target  string
	exe     *link.Executable
	pushOff uint64
	cpus    []int
}

func runHookCost(ctx context.Context, cl *cleanups, pin bool, calls, rounds int, out string) error {
	rep := hookReport{Started: time.Now().UTC(), Host: hostInfo(), Rounds: rounds, Pinning: "none (-pin=false)", BaselineNs: map[string]float64{}}
	rig := &hookRig{cl: cl}
	if pin && runtime.NumCPU() >= 2 {
		// The target alone on CPU 1; the ring-buffer reader (this process) on CPU 0.
		if err := pinSelf(0); err != nil {
			return err
		}
		rig.cpus = []int{1}
		rep.Pinning = "target on CPU 1, ring-buffer reader (this process) on CPU 0"
	}
	if err := prepareKernel(cl); err != nil {
		return err
	}
	path, rm, err := buildHookTarget(ctx)
	if err != nil {
		return err
	}
	defer rm()
	rig.target = path
	if rig.pushOff, err = pushRBPOffset(path); err != nil {
		return err
	}
	rep.PushOffset = fmt.Sprintf("%#x", rig.pushOff)
	if rig.exe, err = link.OpenExecutable(path); err != nil {
		return fmt.Errorf("open hook target: %w", err)
	}

	cases := rig.cases()
	added := make([][]float64, len(cases))
	checks := make([]string, len(cases))
	base := map[string][]float64{}
	for r := 1; r <= rounds; r++ {
		b := map[string]float64{}
		for _, loop := range []string{"main.target", "getppid"} {
			ns, _, err := rig.measure(loop, calls, nil)
			if err != nil {
				return err
			}
			b[loop] = ns
			base[loop] = append(base[loop], ns)
		}
		for i, c := range cases {
			if err := ctx.Err(); err != nil {
				return err
			}
			n := c.calls(calls)
			ns, events, err := rig.measure(c.loop, n, c.attach)
			if err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			added[i] = append(added[i], ns-b[c.loop])
			// A mismatch in any round is kept; so is "exact" until one.
			if want := int64(n + warmCalls); events >= 0 && events != want {
				checks[i] = fmt.Sprintf("round %d: %d events for %d calls", r, events, want)
			} else if events >= 0 && checks[i] == "" {
				checks[i] = "one per call"
			}
		}
		slog.Info("hookcost round done", "round", r, "of", rounds)
	}
	for loop, v := range base {
		rep.BaselineNs[loop] = median(v)
	}
	for i, c := range cases {
		rep.Results = append(rep.Results, hookResult{Hook: c.name, Loop: c.loop, Calls: c.calls(calls),
			AddedNs: median(added[i]), RoundsNs: added[i], EventCheck: checks[i]})
	}
	rep.Notes = []string{
		"added ns = thread CPU time per call (CLOCK_THREAD_CPUTIME_ID over the loop) with the hook minus without, median over rounds",
		"BPF run-time accounting (kernel.bpf_stats_enabled) is off during the measurement",
		"an event check short of the calls means the ring buffer was full or a hit was missed; more means duplicate hits",
	}
	rep.print(os.Stdout)
	return writeJSON(out, rep)
}

func (rig *hookRig) cases() []hookCase {
	cs := []hookCase{
		{name: "uprobe @PUSH RBP (emulated), empty program", loop: "main.target", attach: rig.uprobeEmpty(rig.pushOff, false)},
		{name: "uprobe @PUSH RBP, hash lookup + 64 B ringbuf, BPF_RB_NO_WAKEUP", loop: "main.target", attach: rig.uprobeRing(bpfRBNoWakeup, false)},
		{name: "uprobe @PUSH RBP, hash lookup + 64 B ringbuf, wakeup (reader waiting)", loop: "main.target", attach: rig.uprobeRing(0, false)},
		{name: "tracepoint syscalls/sys_enter_getppid, pid filter, the target (hit)", loop: "getppid", attach: rig.tracepoint("getppid", true)},
		// The wire path's cost to processes it does not trace.
		{name: "tracepoint syscalls/sys_enter_getppid, pid filter, another process (miss)", loop: "getppid", attach: rig.tracepoint("getppid", false)},
		{name: "no program on getppid, one on sys_enter_getpid (the tax on other syscalls)", loop: "getppid", attach: rig.tracepoint("getpid", false)},
		// Address 0 means the symbol's own address: the first instruction.
		{name: "uprobe @+0 (single-stepped), empty program", loop: "main.target", slow: true, attach: rig.uprobeEmpty(0, false)},
	}
	// The agent's uprobes where the kernel has uprobe_multi links: the same
	// trap, reached through a BPF link instead of a perf event.
	if features.HaveBPFLinkUprobeMulti() == nil {
		cs = append(cs,
			hookCase{name: "uprobe_multi link @PUSH RBP (emulated), empty program", loop: "main.target", attach: rig.uprobeEmpty(rig.pushOff, true)},
			hookCase{name: "uprobe_multi link @PUSH RBP, hash lookup + 64 B ringbuf, BPF_RB_NO_WAKEUP", loop: "main.target", attach: rig.uprobeRing(bpfRBNoWakeup, true)},
		)
	}
	return cs
}

// prepareKernel lifts the memlock limit (old kernels), mounts tracefs for
// the tracepoint if needed, and turns BPF run-time accounting off.
func prepareKernel(cl *cleanups) error {
	if err := rlimit.RemoveMemlock(); err != nil {
		return fmt.Errorf("memlock: %w", err)
	}
	const tracefs = "/sys/kernel/tracing"
	if _, err := os.Stat(tracefs + "/events"); err != nil {
		if err := syscall.Mount("tracefs", tracefs, "tracefs", 0, ""); err != nil {
			return fmt.Errorf("mount tracefs at %s: %w", tracefs, err)
		}
	}
	restore, err := setBPFStats("0")
	if err != nil {
		return err
	}
	cl.add(restore)
	return nil
}

// pushRBPOffset asks gobin, as the agent does, where to hook main.target,
// and checks that the byte there is PUSH RBP (0x55).
func pushRBPOffset(path string) (uint64, error) {
	bin, err := gobin.Open(path)
	if err != nil {
		return 0, fmt.Errorf("open hook target: %w", err)
	}
	defer bin.Close()
	off, err := bin.HookOffset("main.target")
	if err != nil {
		return 0, err
	}
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("open hook target: %w", err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, int64(off)); err != nil {
		return 0, fmt.Errorf("read hook target: %w", err)
	}
	if b[0] != 0x55 {
		return 0, fmt.Errorf("main.target: hook offset %#x holds %#x, not PUSH RBP", off, b[0])
	}
	return off, nil
}

// measure runs the target loop n times, with the hook attached if attach is
// set, and returns ns per call and the events the hook recorded.
func (rig *hookRig) measure(loop string, n int, attach func(int) (detachFn, error)) (float64, int64, error) {
	cmd := exec.Command(rig.target, loop, strconv.Itoa(n), strconv.Itoa(warmCalls))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return 0, 0, fmt.Errorf("target stdin: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return 0, 0, fmt.Errorf("target stdout: %w", err)
	}
	if err := startOn(cmd, rig.cpus); err != nil {
		return 0, 0, fmt.Errorf("start target: %w", err)
	}
	// os.Process knows when it was reaped, so a late Kill never hits a reused pid.
	rig.cl.add(func() { _ = cmd.Process.Kill() })
	events := int64(-1)
	line, err := rig.talk(cmd, stdin, bufio.NewReader(stdout), attach, &events)
	if werr := cmd.Wait(); err == nil && werr != nil {
		err = fmt.Errorf("target: %w", werr)
	}
	if err != nil {
		return 0, 0, err
	}
	ns, err := strconv.ParseFloat(strings.TrimSpace(line), 64)
	if err != nil {
		return 0, 0, fmt.Errorf("target said %q: %w", line, err)
	}
	return ns, events, nil
}

// talk waits for "ready", attaches, lets the target run, detaches, and
// returns the target's result line.
func (rig *hookRig) talk(cmd *exec.Cmd, stdin io.WriteCloser, out *bufio.Reader, attach func(int) (detachFn, error), events *int64) (string, error) {
	fail := func(err error) (string, error) {
		_ = cmd.Process.Kill()
		return "", err
	}
	if line, err := out.ReadString('\n'); err != nil || line != "ready\n" {
		return fail(fmt.Errorf("target did not start: %q %v", line, err))
	}
	var detach detachFn
	if attach != nil {
		var err error
		if detach, err = attach(cmd.Process.Pid); err != nil {
			return fail(err)
		}
	}
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		return fail(fmt.Errorf("start target loop: %w", err))
	}
	line, err := out.ReadString('\n')
	if detach != nil {
		var derr error
		*events, derr = detach()
		err = errors.Join(err, derr)
	}
	if err != nil {
		return fail(err)
	}
	return line, nil
}

// closers closes what a hook opened, newest first.
type closers []io.Closer

func (c closers) close() {
	for i := len(c) - 1; i >= 0; i-- {
		_ = c[i].Close() // nothing to do about a failed close on the way out
	}
}

// uprobeAt attaches prog at file offset off of the target (0: main.target's
// first instruction, perf events only), as a perf event or, multi, as a
// uprobe_multi link (prog must be loaded for it).
func (rig *hookRig) uprobeAt(prog *ebpf.Program, off uint64, multi bool) (link.Link, error) {
	if multi {
		return rig.exe.UprobeMulti(nil, prog, &link.UprobeMultiOptions{Addresses: []uint64{off}})
	}
	return rig.exe.Uprobe("main.target", prog, &link.UprobeOptions{Address: off})
}

func (rig *hookRig) uprobeEmpty(off uint64, multi bool) func(int) (detachFn, error) {
	return func(int) (detachFn, error) {
		prog, err := loadProg(ebpf.Kprobe, uprobeAttach(multi), "hc_empty", emptyInsns())
		if err != nil {
			return nil, err
		}
		l, err := rig.uprobeAt(prog, off, multi)
		if err != nil {
			prog.Close()
			return nil, fmt.Errorf("attach uprobe at %#x: %w", off, err)
		}
		cs := closers{prog, l}
		return func() (int64, error) { cs.close(); return -1, nil }, nil
	}
}

func (rig *hookRig) uprobeRing(flags int32, multi bool) func(int) (detachFn, error) {
	return func(pid int) (detachFn, error) {
		var cs closers
		fail := func(err error) (detachFn, error) { cs.close(); return nil, err }
		procs, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: 64})
		if err != nil {
			return fail(fmt.Errorf("hash map: %w", err))
		}
		cs = append(cs, procs)
		if err := procs.Put(uint32(pid), uint64(1)); err != nil {
			return fail(fmt.Errorf("hash map: %w", err))
		}
		// 32 MiB holds every record of a run even if the reader falls behind.
		ring, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.RingBuf, MaxEntries: 1 << 25})
		if err != nil {
			return fail(fmt.Errorf("ring buffer: %w", err))
		}
		cs = append(cs, ring)
		prog, err := loadProg(ebpf.Kprobe, uprobeAttach(multi), "hc_ringbuf", ringbufInsns(procs, ring, flags))
		if err != nil {
			return fail(err)
		}
		cs = append(cs, prog)
		rd, err := ringbuf.NewReader(ring)
		if err != nil {
			return fail(fmt.Errorf("ring reader: %w", err))
		}
		cs = append(cs, rd)
		// Without wakeups the reader polls, as the agent's does.
		poll := time.Duration(0)
		if flags == bpfRBNoWakeup {
			poll = 10 * time.Millisecond
		}
		count := consume(rd, poll)
		l, err := rig.uprobeAt(prog, rig.pushOff, multi)
		if err != nil {
			count()
			return fail(fmt.Errorf("attach uprobe: %w", err))
		}
		return func() (int64, error) {
			l.Close()
			n := count()
			cs.close()
			return n, nil
		}, nil
	}
}

// consume reads rd in the background; the returned function stops the
// reader once the ring is drained and returns how many records it read.
func consume(rd *ringbuf.Reader, poll time.Duration) func() int64 {
	done := make(chan int64)
	go func() {
		var rec ringbuf.Record
		var n int64
		for {
			if poll > 0 {
				rd.SetDeadline(time.Now().Add(poll))
			}
			err := rd.ReadInto(&rec)
			switch {
			case err == nil:
				n++
			case errors.Is(err, os.ErrDeadlineExceeded):
			default: // ErrFlushed after Flush, or closed
				done <- n
				return
			}
		}
	}()
	return func() int64 {
		_ = rd.Flush() // fails only if the reader is closed, which also ends the loop
		return <-done
	}
}

// tracepoint attaches a pid-filtered program to syscalls/sys_enter_<sc>:
// filtering on the target's pid when hit, else on a pid that never runs.
// Only a hit is checked one event per call.
func (rig *hookRig) tracepoint(sc string, hit bool) func(pid int) (detachFn, error) {
	return func(pid int) (detachFn, error) {
		filter := pid
		if !hit {
			filter = -1
		}
		counter, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1})
		if err != nil {
			return nil, fmt.Errorf("counter map: %w", err)
		}
		prog, err := loadProg(ebpf.TracePoint, ebpf.AttachNone, "hc_pidfilter", pidFilterInsns(filter, counter))
		if err != nil {
			counter.Close()
			return nil, err
		}
		cs := closers{counter, prog}
		l, err := link.Tracepoint("syscalls", "sys_enter_"+sc, prog, nil)
		if err != nil {
			cs.close()
			return nil, fmt.Errorf("attach tracepoint: %w", err)
		}
		return func() (int64, error) {
			l.Close()
			defer cs.close()
			if !hit {
				return -1, nil
			}
			var n uint64
			if err := counter.Lookup(uint32(0), &n); err != nil {
				return 0, fmt.Errorf("read counter: %w", err)
			}
			return int64(n), nil
		}, nil
	}
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func (r *hookReport) print(w io.Writer) {
	fmt.Fprintf(w, "Hook cost per hit, %s, %s\n", r.Host, r.Started.Format(time.RFC3339))
	fmt.Fprintf(w, "pinning: %s; main.target PUSH RBP at file offset %s; %d rounds\n", r.Pinning, r.PushOffset, r.Rounds)
	fmt.Fprintf(w, "baseline: main.target call %.1f ns, getppid %.1f ns\n\n", r.BaselineNs["main.target"], r.BaselineNs["getppid"])
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "hook\tloop\tcalls\tadded ns/call (median)\tper round\tevents")
	for _, h := range r.Results {
		rounds := make([]string, len(h.RoundsNs))
		for i, v := range h.RoundsNs {
			rounds[i] = fmt.Sprintf("%.0f", v)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f\t%s\t%s\n", h.Hook, h.Loop, h.Calls, h.AddedNs, strings.Join(rounds, " "), h.EventCheck)
	}
	tw.Flush()
	for _, n := range r.Notes {
		fmt.Fprintf(w, "  - %s\n", n)
	}
}
