package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// hookTargetSrc is the program the hook-cost benchmark probes. It prints
// "ready", waits for a line on stdin (the probes are attached meanwhile),
// makes WARM unmeasured calls, then N measured ones, and prints the thread
// CPU time per call in ns. Thread CPU time includes the kernel time of traps
// and BPF programs run on its behalf, and nothing of other threads.
const hookTargetSrc = `package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"unsafe"
)

//go:noinline
func leaf(x int) int { return x ^ 0x5a }

// target calls leaf, so it has a frame and its prologue a PUSH RBP.
//
//go:noinline
func target(x int) int { return leaf(x) + 1 }

var sink int

func threadCPU() int64 {
	var ts syscall.Timespec
	const clockThreadCPUTimeID = 3
	syscall.RawSyscall(syscall.SYS_CLOCK_GETTIME, clockThreadCPUTimeID, uintptr(unsafe.Pointer(&ts)), 0)
	return ts.Nano()
}

func loop(mode string, n int) {
	for i := 0; i < n; i++ {
		if mode == "getppid" {
			syscall.RawSyscall(syscall.SYS_GETPPID, 0, 0, 0)
		} else {
			sink += target(i)
		}
	}
}

func main() {
	runtime.LockOSThread()
	mode := os.Args[1]
	n, _ := strconv.Atoi(os.Args[2])
	warm, _ := strconv.Atoi(os.Args[3])
	fmt.Println("ready")
	bufio.NewReader(os.Stdin).ReadString('\n')
	loop(mode, warm)
	t0 := threadCPU()
	loop(mode, n)
	fmt.Println(float64(threadCPU()-t0) / float64(n))
}
`

// warmCalls is how many unmeasured calls the target makes first (hooked too:
// they fault in the probe's pages and count as events).
const warmCalls = 1000

// buildHookTarget writes the target into a temporary module and builds it.
func buildHookTarget(ctx context.Context) (path string, cleanup func(), err error) {
	dir, err := os.MkdirTemp("", "tracewire-hookcost-")
	if err != nil {
		return "", nil, fmt.Errorf("temp dir: %w", err)
	}
	cleanup = func() { os.RemoveAll(dir) }
	files := map[string]string{"go.mod": "module hooktarget\n\ngo 1.26\n", "main.go": hookTargetSrc}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			cleanup()
			return "", nil, fmt.Errorf("write hook target: %w", err)
		}
	}
	path = filepath.Join(dir, "hooktarget")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", path, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("build hook target: %w\n%s", err, out)
	}
	return path, cleanup, nil
}
