package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tracewire/tracewire/internal/otlptest"
)

// TestChurnAndScale: 1000 starts and exits of targets leave the agent's
// hook fds, fds and memory where they were, and later processes are
// traced; then 100 targets at once are all traced and all released.
func TestChurnAndScale(t *testing.T) {
	requireEBPF(t)
	recv := otlptest.Start(t)
	exe := copyExe(t, "hello-go126", "scaled")
	// Discovery's own resources are measured: no metrics exporter, whose
	// connection would open at its first push, in the middle of the count.
	ag := startAgent(t, recv, []string{"scaled"}, "OTEL_METRICS_EXPORTER=none")
	pid := ag.cmd.Process.Pid
	idle := idleHookFDs(t, ag)
	first := startExe(t, exe)
	waitTraced(t, recv, first)
	first.stop()
	waitHookFDs(t, ag, idle)
	fds, rss := countFDs(t, pid), statusKiB(t, pid, "VmRSS")

	// 1000 processes, four at a time, each living 0-100 ms.
	start := time.Now()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 250 {
				cmd := exec.Command(exe, "-addr", "127.0.0.1:0")
				if err := cmd.Start(); err != nil {
					t.Errorf("worker %d start %d: %v", w, i, err)
					return
				}
				time.Sleep(time.Duration(rand.IntN(100)) * time.Millisecond)
				cmd.Process.Kill()
				cmd.Wait()
			}
		})
	}
	wg.Wait()
	t.Logf("1000 starts and exits in %v", time.Since(start).Round(time.Millisecond))
	waitHookFDs(t, ag, idle)
	waitFDsAtMost(t, pid, fds)
	// The executables' parsing garbage is returned to the OS after each
	// target; what stays is bounded maps and caches.
	after := statusKiB(t, pid, "VmRSS")
	t.Logf("agent RSS: %d KiB before the churn, %d KiB after", rss, after)
	if after > rss+16<<10 {
		t.Errorf("agent RSS grew from %d to %d KiB over 1000 targets", rss, after)
	}

	// 100 at once: each traced, its own resource.
	apps, got := startTraced(t, recv, exe, 100, "/users/many-")
	for i, g := range got {
		if g.Resource["process.executable.name"] != "scaled" {
			t.Errorf("target %d: resource %v", i, g.Resource)
		}
	}
	for _, a := range apps {
		a.stop()
	}
	waitHookFDs(t, ag, idle)
}

// statusKiB reads a "kB" field of /proc/PID/status.
func statusKiB(t *testing.T, pid int, field string) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// TestExecReuseReplace: a process that execs a target binary is traced from
// the exec; a pid reused by another target gets that target's resource; a
// process whose executable was replaced on disk is still traced, and so is
// a process of the new file.
func TestExecReuseReplace(t *testing.T) {
	requireEBPF(t)
	execd := copyExe(t, "hello-go126", "execd")
	reuseA := copyExe(t, "hello-go126", "reuse-a")
	reuseB := copyExe(t, "hello-go124", "reuse-b")
	replaced := copyExe(t, "hello-go125", "replaced")
	old := startExe(t, replaced)
	// Replace the file under the running process (a deploy): rename a new
	// build over it, as package managers and image layers do.
	next := copyExe(t, "hello-go126", "replaced-next")
	if err := os.Rename(next, replaced); err != nil {
		t.Fatal(err)
	}

	recv := otlptest.Start(t)
	startAgent(t, recv, []string{"execd", "execer", "reuse-a", "reuse-b", "replaced"})

	t.Run("replaced", func(t *testing.T) {
		// Found by the start-up scan although /proc/PID/exe says (deleted).
		waitTraced(t, recv, old)
		fresh := startExe(t, replaced)
		waitTraced(t, recv, fresh)
		for a, want := range map[*app]string{old: "go1.25.7", fresh: runtime.Version()} {
			g := recv.WaitSpans(t, 10*time.Second, spanOf(a), 1)[0]
			if v := g.Resource["process.runtime.version"]; v != want {
				t.Errorf("pid %d: runtime version %v, want %s", a.cmd.Process.Pid, v, want)
			}
		}
	})

	t.Run("exec", func(t *testing.T) {
		// execer is a shell (not Go: not traced) named like a target; it
		// execs execd, which must be traced from its exec.
		sh := copyExe(t, "", "execer")
		a := &app{name: "execd", port: freePort(t)}
		a.cmd = exec.Command(sh, "-c", fmt.Sprintf("sleep 0.5; exec %s -addr 127.0.0.1:%d", execd, a.port))
		if err := a.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(a.stop)
		waitListening(t, a.port)
		waitTraced(t, recv, a)
	})

	t.Run("pid reuse", func(t *testing.T) {
		a := startExe(t, reuseA, "OTEL_SERVICE_NAME=first")
		waitTraced(t, recv, a)
		pid := a.cmd.Process.Pid
		a.stop()
		var b *app
		for try := 0; try < 20 && b == nil; try++ {
			// The next pid the kernel hands out is ns_last_pid + 1.
			if err := os.WriteFile("/proc/sys/kernel/ns_last_pid", []byte(strconv.Itoa(pid-1)), 0); err != nil {
				t.Fatal(err)
			}
			c := startExe(t, reuseB, "OTEL_SERVICE_NAME=second")
			if c.cmd.Process.Pid == pid {
				b = c
			} else {
				c.stop()
			}
		}
		if b == nil {
			t.Fatalf("could not get pid %d again", pid)
		}
		waitTraced(t, recv, b)
		get(t, b.url("/users/after-reuse"))
		g := recv.WaitSpans(t, 10*time.Second, spanWithPath(b, "/users/after-reuse"), 1)[0]
		want := map[string]any{"service.name": "second", "process.executable.name": "reuse-b", "process.runtime.version": "go1.24.13"}
		for k, v := range want {
			if g.Resource[k] != v {
				t.Errorf("pid %d reused: %s = %v, want %v", pid, k, g.Resource[k], v)
			}
		}
	})
}

// spanOf matches any span of a's process.
func spanOf(a *app) func(otlptest.Got) bool {
	return func(g otlptest.Got) bool { return g.Resource["process.pid"] == int64(a.cmd.Process.Pid) }
}
