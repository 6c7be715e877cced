package e2e

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/tracewire/tracewire/internal/otlptest"
)

// copyExe copies a built program (or /bin/sh when from is "") under another
// name (a fresh inode), so a test has an executable no other test traces.
func copyExe(t *testing.T, from, name string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	srcPath := "/bin/sh"
	if from != "" {
		srcPath = filepath.Join(buildAll(t), from)
	}
	src, err := os.Open(srcPath)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	path := filepath.Join(dir, name)
	dst, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// startExe runs a hello-like program at path and waits until it listens.
func startExe(t *testing.T, path string, env ...string) *app {
	t.Helper()
	a := &app{name: filepath.Base(path), port: freePort(t)}
	a.cmd = exec.Command(path, "-addr", fmt.Sprintf("127.0.0.1:%d", a.port))
	a.cmd.Env = append(append(os.Environ(), "GODEBUG=httpmuxgo121=0"), env...)
	if err := a.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	t.Cleanup(a.stop)
	waitListening(t, a.port)
	return a
}

// TestCrashLoopThenTraced: 200 processes of one executable that die 50 ms
// after they start (a crash-looping pod) must not stop the agent from
// tracing the executable's next processes, and must leave no uprobe or fd
// behind.
func TestCrashLoopThenTraced(t *testing.T) {
	requireEBPF(t)
	recv := otlptest.Start(t)
	exe := copyExe(t, "hello-go126", "crashloop")
	// Discovery's own resources are measured: no metrics exporter, whose
	// connection would open at its first push, in the middle of the count.
	ag := startAgent(t, recv, []string{"crashloop"}, "OTEL_METRICS_EXPORTER=none")
	idle := idleHookFDs(t, ag)
	// One traced process first, so the exporter's connection is open when
	// the agent's fds are counted.
	first := startExe(t, exe)
	waitTraced(t, recv, first)
	first.stop()
	waitHookFDs(t, ag, idle)
	fdsIdle := countFDs(t, ag.cmd.Process.Pid)

	for i := range 200 {
		cmd := exec.Command(exe, "-addr", "127.0.0.1:0")
		if err := cmd.Start(); err != nil {
			t.Fatalf("start %d: %v", i, err)
		}
		time.Sleep(50 * time.Millisecond)
		cmd.Process.Kill()
		cmd.Wait()
	}

	apps, _ := startTraced(t, recv, exe, 10, "/users/after-churn-")
	for _, a := range apps {
		a.stop()
	}
	// Every uprobe went with the executable's last process, and no fd of a
	// target is left open.
	waitHookFDs(t, ag, idle)
	waitFDsAtMost(t, ag.cmd.Process.Pid, fdsIdle)
}

// idleHookFDs waits until the agent has attached its tracepoints and
// returns its hook fds then: the count with no target.
func idleHookFDs(t *testing.T, ag *agentProc) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	// Tracepoints attach one after the other: wait until the count holds.
	for last := -1; ; {
		n := hookFDs(t, ag)
		if n > 0 && n == last {
			return n
		}
		last = n
		if time.Now().After(deadline) {
			t.Fatal("the agent attached no tracepoint")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitHookFDs waits until the agent has exactly n hook fds.
func waitHookFDs(t *testing.T, ag *agentProc, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for hookFDs(t, ag) != n {
		if time.Now().After(deadline) {
			t.Fatalf("agent has %d hook fds, want %d", hookFDs(t, ag), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startTraced starts n processes of exe at once, then checks that each is
// traced: the span of a request to prefix<i> arrives. It returns them and
// those spans.
func startTraced(t *testing.T, recv *otlptest.Receiver, exe string, n int, prefix string) ([]*app, []otlptest.Got) {
	t.Helper()
	apps := make([]*app, n)
	for i := range apps {
		apps[i] = startExe(t, exe)
	}
	got := make([]otlptest.Got, n)
	for i, a := range apps {
		waitTraced(t, recv, a)
		path := fmt.Sprintf("%s%d", prefix, i)
		get(t, a.url(path))
		got[i] = recv.WaitSpans(t, 10*time.Second, spanWithPath(a, path), 1)[0]
	}
	return apps, got
}

// waitFDsAtMost waits until pid has at most n fds: after a churn the agent
// may still be working through its backlog of exec events (each holds the
// executable open while it is instrumented); a leak never goes back.
func waitFDsAtMost(t *testing.T, pid, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for countFDs(t, pid) > n {
		if time.Now().After(deadline) {
			t.Fatalf("the agent has %d fds, %d before", countFDs(t, pid), n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// countFDs counts the open fds of pid.
func countFDs(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
