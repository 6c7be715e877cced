// Package testenv decides whether a test that needs root and eBPF can run.
package testenv

import (
	"os"
	"testing"
)

// RequireEBPF fails the test under CI=true, and skips it elsewhere, when this
// process is not root: loading eBPF programs needs it.
func RequireEBPF(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("this test needs root and eBPF (running as uid %d)", os.Geteuid())
	}
	t.Skipf("this test needs root and eBPF (running as uid %d)", os.Geteuid())
}
