package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// cleanups holds what must be undone on every exit path (normal return,
// error, SIGINT/SIGTERM): child processes and the bpf_stats sysctl. A
// function may find its job done already (a child stopped normally).
type cleanups struct {
	mu  sync.Mutex
	fns []func()
}

func (c *cleanups) add(f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fns = append(c.fns, f)
}

// run calls every function once, newest first.
func (c *cleanups) run() {
	c.mu.Lock()
	fns := c.fns
	c.fns = nil
	c.mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
}

// child is a started process with its stderr kept for the agent's counters.
type child struct {
	cmd    *exec.Cmd
	stderr *lockedBuffer
	done   chan struct{}
}

// startChild starts path with args on the given CPUs (nil: no pinning). The
// child inherits the affinity of the thread that forks it, so every thread
// it ever creates is pinned from birth and its Go runtime sizes GOMAXPROCS
// to those CPUs; setting it after the fact would miss threads and leave
// GOMAXPROCS too high.
func startChild(cl *cleanups, cpus []int, path string, args, env []string) (*child, error) {
	c := &child{cmd: exec.Command(path, args...), stderr: &lockedBuffer{}, done: make(chan struct{})}
	c.cmd.Env = append(os.Environ(), env...)
	c.cmd.Stderr = c.stderr
	// Dies with us even on SIGKILL, which no cleanup list can catch.
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := startOn(c.cmd, cpus); err != nil {
		return nil, fmt.Errorf("start %s: %w", path, err)
	}
	go func() { _ = c.cmd.Wait(); close(c.done) }() // the exit status is read from ProcessState
	cl.add(func() { c.stop(syscall.SIGKILL, time.Second) })
	return c, nil
}

// startOn forks cmd from a thread pinned to cpus. Go creates new threads of
// a locked thread from its template thread, so the temporary affinity does
// not leak into this process's other threads.
func startOn(cmd *exec.Cmd, cpus []int) error {
	if cpus == nil {
		return cmd.Start()
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var old, set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		return fmt.Errorf("sched_getaffinity: %w", err)
	}
	for _, c := range cpus {
		set.Set(c)
	}
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("sched_setaffinity %v: %w", cpus, err)
	}
	err := cmd.Start()
	if rerr := unix.SchedSetaffinity(0, &old); rerr != nil && err == nil {
		err = fmt.Errorf("restore affinity: %w", rerr)
	}
	return err
}

// pinSelf moves every thread of this process to cpu. Threads created later
// inherit the affinity of their creator, so this covers them too.
func pinSelf(cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return fmt.Errorf("list own threads: %w", err)
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		// A thread may have exited since the listing.
		if err := unix.SchedSetaffinity(tid, &set); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("pin thread %d to CPU %d: %w", tid, cpu, err)
		}
	}
	return nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// stop sends sig, then SIGKILL after grace, and waits for the exit.
func (c *child) stop(sig syscall.Signal, grace time.Duration) {
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Signal(sig) // fails only if it already exited
	select {
	case <-c.done:
	case <-time.After(grace):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// lockedBuffer is a bytes.Buffer written by exec's copier and read by us.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
