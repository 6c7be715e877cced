package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
)

// binaries are the executables a bench run needs. The two services are the
// same program under two names so the agent tells them apart by name.
type binaries struct {
	agent, svcA, svcB string
}

// The service names are distinct from the e2e tests' hello-* targets, so an
// agent of a concurrently running test does not instrument our services.
const (
	svcAName = "bench-svc-a"
	svcBName = "bench-svc-b"
)

// build compiles the agent and the hello service into bin/ (go's build
// cache makes repeated runs cheap).
func build(ctx context.Context) (binaries, error) {
	bin, err := filepath.Abs("bin")
	if err != nil {
		return binaries{}, fmt.Errorf("bin directory: %w", err)
	}
	b := binaries{
		agent: filepath.Join(bin, "agent"),
		svcA:  filepath.Join(bin, svcAName),
		svcB:  filepath.Join(bin, svcBName),
	}
	if err := goBuild(ctx, ".", b.agent, "./cmd/agent"); err != nil {
		return binaries{}, err
	}
	if err := goBuild(ctx, "testdata/apps/hello", b.svcA, "."); err != nil {
		return binaries{}, err
	}
	// A copy, not a link: a link would share the inode, and the basename of
	// /proc/PID/exe would not be what we asked for.
	if err := copyFile(b.svcA, b.svcB); err != nil {
		return binaries{}, err
	}
	return b, nil
}

func goBuild(ctx context.Context, dir, out, pkg string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-C", dir, "-o", out, pkg)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build -C %s %s: %w\n%s", dir, pkg, err, b)
	}
	return nil
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return fmt.Errorf("copy: %w", err)
	}
	defer in.Close()
	// Remove first: the old file may be running (text file busy).
	if err := os.Remove(to); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("copy: %w", err)
	}
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return fmt.Errorf("copy: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s to %s: %w", from, to, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("copy %s to %s: %w", from, to, err)
	}
	return nil
}
