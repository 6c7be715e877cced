// Package e2e runs the real agent against real target programs on this
// kernel and checks the OTLP spans it exports, field by field.
package e2e

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tracewire/tracewire/internal/otlptest"
	"github.com/tracewire/tracewire/internal/testenv"
)

// requireEBPF: see testenv.RequireEBPF.
var requireEBPF = testenv.RequireEBPF

var (
	buildDir  string
	buildOnce sync.Once
	buildErr  error
)

// variant is one build of testdata/apps/hello.
type variant struct {
	name      string // executable name, also the --target name
	toolchain string // GOTOOLCHAIN, "" for the current one
	flags     []string
	goVersion string // expected process.runtime.version prefix
	pattern   bool   // has Request.Pattern (Go >= 1.22)
}

var variants = []variant{
	{name: "hello-go121", toolchain: "go1.21.13", goVersion: "go1.21.13"},
	{name: "hello-go122", toolchain: "go1.22.12", goVersion: "go1.22.12", pattern: true},
	{name: "hello-go123", toolchain: "go1.23.12", goVersion: "go1.23.12", pattern: true},
	{name: "hello-go124", toolchain: "go1.24.13", goVersion: "go1.24.13", pattern: true},
	{name: "hello-go125", toolchain: "go1.25.7", goVersion: "go1.25.7", pattern: true},
	{name: "hello-go126", goVersion: runtime.Version(), pattern: true},
	{name: "hello-stripped", flags: []string{"-ldflags=-s -w"}, goVersion: runtime.Version(), pattern: true},
	{name: "hello-pie", flags: []string{"-buildmode=pie"}, goVersion: runtime.Version(), pattern: true},
	{name: "hello-pie-strip", flags: []string{"-buildmode=pie", "-ldflags=-s -w"}, goVersion: "go1.21.13", toolchain: "go1.21.13"},
}

// buildAll builds the agent and every variant once per test binary.
func buildAll(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "tracewire-e2e-")
		if buildErr != nil {
			return
		}
		// TestUsage runs the agent as an unprivileged user.
		if buildErr = os.Chmod(buildDir, 0o755); buildErr != nil {
			return
		}
		var wg sync.WaitGroup
		errs := make(chan error, len(variants)+len(grpcVariants)+16) // room for every build below
		wg.Go(func() {
			errs <- goBuild("", "../cmd/agent", filepath.Join(buildDir, "agent"), nil)
		})
		for _, v := range variants {
			wg.Go(func() {
				errs <- goBuild(v.toolchain, "../testdata/apps/hello", filepath.Join(buildDir, v.name), v.flags)
			})
		}
		wg.Go(func() {
			errs <- goBuild("", "../testdata/apps/serveronly", filepath.Join(buildDir, "serveronly"), []string{"-ldflags=-s -w"})
		})
		wg.Go(func() {
			errs <- goBuild("", "../testdata/apps/sqlapp/native", filepath.Join(buildDir, "pgxnative"), nil)
		})
		for _, app := range []string{"sqlapp", "grpcapp", "sockcheck", "idle", "tlsserver", "xh2c"} {
			wg.Go(func() {
				errs <- goBuild("", "../testdata/apps/"+app, filepath.Join(buildDir, app), nil)
			})
		}
		for _, v := range grpcVariants {
			wg.Go(func() { errs <- buildGRPCVariant(v, buildDir) })
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil && buildErr == nil {
				buildErr = err
			}
		}
	})
	if buildErr != nil {
		t.Fatalf("build: %v", buildErr)
	}
	return buildDir
}

func goBuild(toolchain, pkg, out string, flags []string) error {
	dir, err := filepath.Abs(pkg)
	if err != nil {
		return err
	}
	args := append([]string{"build", "-o", out}, flags...)
	cmd := exec.Command("go", append(args, ".")...)
	cmd.Dir = dir
	cmd.Env = os.Environ()
	if toolchain != "" {
		cmd.Env = append(cmd.Env, "GOTOOLCHAIN="+toolchain)
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s (%s %v): %v\n%s", pkg, toolchain, flags, err, b)
	}
	return nil
}

// grpcVariant is testdata/apps/grpcapp built with another grpc release.
type grpcVariant struct {
	name, grpc string
	flags      []string
}

// grpcVariants cover the three layouts of the hooked code: WriteStatus and
// *Stream arguments (< v1.69), ServerStream embedding *Stream (v1.69-v1.76),
// and the current one (built from go.mod as "grpcapp").
var grpcVariants = []grpcVariant{
	{name: "grpcapp-v166", grpc: "v1.66.2"},
	{name: "grpcapp-v172", grpc: "v1.72.2"},
	{name: "grpcapp-v172-stripped", grpc: "v1.72.2", flags: []string{"-ldflags=-s -w"}},
	{name: "grpcapp-stripped", grpc: "v1.85.0", flags: []string{"-ldflags=-s -w"}},
}

// buildGRPCVariant copies grpcapp's module, moves it to v.grpc and builds it.
func buildGRPCVariant(v grpcVariant, dir string) error {
	src, err := filepath.Abs("../testdata/apps/grpcapp")
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "grpcapp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := os.CopyFS(tmp, os.DirFS(src)); err != nil {
		return fmt.Errorf("copy grpcapp: %w", err)
	}
	for _, args := range [][]string{{"get", "google.golang.org/grpc@" + v.grpc}, {"mod", "tidy"}} {
		cmd := exec.Command("go", args...)
		cmd.Dir = tmp
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go %v in grpcapp for %s: %v\n%s", args, v.name, err, b)
		}
	}
	return goBuild("", tmp, filepath.Join(dir, v.name), v.flags)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// app is a running target.
type app struct {
	name string
	port int
	cmd  *exec.Cmd
}

func (a *app) url(path string) string { return fmt.Sprintf("http://127.0.0.1:%d%s", a.port, path) }

// startApp runs a built variant and waits until it answers.
func startApp(t *testing.T, name string, env ...string) *app {
	t.Helper()
	return startAppArgs(t, name, nil, env...)
}

// startAppArgs is startApp with more command-line arguments.
func startAppArgs(t *testing.T, name string, args []string, env ...string) *app {
	t.Helper()
	dir := buildAll(t)
	a := &app{name: name, port: freePort(t)}
	a.cmd = exec.Command(filepath.Join(dir, name), append([]string{"-addr", fmt.Sprintf("127.0.0.1:%d", a.port)}, args...)...)
	a.cmd.Env = append(os.Environ(), append([]string{"GODEBUG=httpmuxgo121=0"}, env...)...)
	if err := a.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() { a.stop() })
	waitListening(t, a.port)
	return a
}

func (a *app) stop() {
	if a.cmd.ProcessState == nil {
		a.cmd.Process.Kill()
		a.cmd.Wait()
	}
}

// agentProc is a running agent.
type agentProc struct {
	cmd            *exec.Cmd
	stdout, stderr *bytes.Buffer
	done           chan struct{}
	killed         bool // by the test, with SIGKILL
}

// kill sends SIGKILL and waits until the agent is gone.
func (ag *agentProc) kill() {
	ag.killed = true
	ag.cmd.Process.Kill()
	<-ag.done
}

// startAgent runs the agent with targets, exporting to recv.
func startAgent(t *testing.T, recv *otlptest.Receiver, targets []string, env ...string) *agentProc {
	t.Helper()
	return startAgentArgs(t, recv, targets, nil, env...)
}

// startAgentArgs is startAgent with more command-line arguments.
func startAgentArgs(t *testing.T, recv *otlptest.Receiver, targets, extra []string, env ...string) *agentProc {
	t.Helper()
	return runAgent(t, exec.Command(filepath.Join(buildAll(t), "agent"), agentArgs(targets, extra)...), recv, env...)
}

// agentArgs are the agent's arguments for targets, at debug level.
func agentArgs(targets, extra []string) []string {
	args := append([]string{"--log-level", "debug"}, extra...)
	for _, n := range targets {
		args = append(args, "--target", n)
	}
	return args
}

// runAgent starts cmd (the agent, perhaps wrapped) exporting to recv; at the
// end of the test it must exit 0 within 5 s of SIGTERM.
func runAgent(t *testing.T, cmd *exec.Cmd, recv *otlptest.Receiver, env ...string) *agentProc {
	t.Helper()
	ag := &agentProc{cmd: cmd, stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}, done: make(chan struct{})}
	ag.cmd.Env = append(os.Environ(),
		"OTEL_EXPORTER_OTLP_ENDPOINT="+recv.Endpoint(),
		"OTEL_BSP_SCHEDULE_DELAY=100",
	)
	ag.cmd.Env = append(ag.cmd.Env, env...)
	ag.cmd.Stderr = &syncWriter{w: ag.stderr}
	ag.cmd.Stdout = &syncWriter{w: ag.stdout}
	if err := ag.cmd.Start(); err != nil {
		t.Fatalf("start agent: %v", err)
	}
	go func() { ag.cmd.Wait(); close(ag.done) }()
	t.Cleanup(func() {
		if code := ag.terminate(t); code != 0 && !ag.killed {
			t.Errorf("agent exited with %d", code)
		}
		if t.Failed() {
			t.Logf("agent log:\n%s", ag.stderr.String())
		}
	})
	return ag
}

// terminate sends SIGTERM and returns the exit code; the agent must be gone
// within 5 s.
func (ag *agentProc) terminate(t *testing.T) int {
	select {
	case <-ag.done:
	default:
		ag.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-ag.done:
		case <-time.After(5 * time.Second):
			ag.cmd.Process.Kill()
			<-ag.done
			t.Errorf("agent did not exit within 5 s of SIGTERM")
		}
	}
	return ag.cmd.ProcessState.ExitCode()
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

var client = &http.Client{Timeout: 5 * time.Second}

// get sends one request and returns its status.
func get(t *testing.T, url string) int {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// spanWithPath matches a server span of app by url.path.
func spanWithPath(a *app, path string) func(otlptest.Got) bool {
	return func(g otlptest.Got) bool {
		return g.Resource["process.pid"] == int64(a.cmd.Process.Pid) && otlptest.Attrs(g.Span.Attributes)["url.path"] == path
	}
}

var warmups atomic.Int64

// waitTraced repeats a warm-up request until its span arrives: the agent has
// found a and attached its probes.
func waitTraced(t *testing.T, recv *otlptest.Receiver, a *app) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		// Unique across the test binary: a pid reused by another process
		// must not find the first one's span.
		path := fmt.Sprintf("/users/warmup-%d", warmups.Add(1))
		get(t, a.url(path))
		if waitQuiet(recv, spanWithPath(a, path), 300*time.Millisecond) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no span within 30 s", a.name)
		}
	}
}

// waitQuiet polls for a matching span without failing the test.
func waitQuiet(recv *otlptest.Receiver, match func(otlptest.Got) bool, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		for _, g := range recv.Spans() {
			if match(g) {
				return true
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// count returns how many received spans match.
func count(recv *otlptest.Receiver, match func(otlptest.Got) bool) int {
	n := 0
	for _, g := range recv.Spans() {
		if match(g) {
			n++
		}
	}
	return n
}

func hasPrefix(path string) func(otlptest.Got) bool {
	return func(g otlptest.Got) bool {
		p, _ := otlptest.Attrs(g.Span.Attributes)["url.path"].(string)
		return strings.HasPrefix(p, path)
	}
}

// listenEach listens on a free loopback port and serves each connection
// accepted, numbered from 0, on a goroutine of its own, until the test ends.
func listenEach(t *testing.T, serve func(i int, c net.Conn)) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for i := 0; ; i++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serve(i, c)
		}
	}()
	return ln
}
