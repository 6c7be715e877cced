package gobin

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"
)

// TestLoadBias runs the test program as plain and PIE executables and checks
// that link-time address + LoadBias is where the process really has the code.
func TestLoadBias(t *testing.T) {
	exes := buildVariants(t, []variant{variants[0], variants[2]})
	for name, exe := range exes {
		t.Run(name, func(t *testing.T) {
			b, err := Open(exe)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			cmd := exec.Command(exe)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { cmd.Process.Kill(); cmd.Wait() }()
			var bias uint64
			// The process maps itself as it starts.
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				if bias, err = b.LoadBias(cmd.Process.Pid); err == nil || time.Now().After(deadline) {
					break
				}
			}
			if err != nil {
				t.Fatal(err)
			}
			if (name == "pie") != (bias != 0) {
				t.Errorf("bias %#x for a %s executable", bias, name)
			}
			fns := b.Funcs(func(n string) bool { return n == "main.main" })
			if len(fns) != 1 {
				t.Fatalf("Funcs(main.main) = %v", fns)
			}
			for addr := range fns {
				off, err := b.fileOffset(addr)
				if err != nil {
					t.Fatal(err)
				}
				want := make([]byte, 32)
				if _, err := b.r.ReadAt(want, int64(off)); err != nil {
					t.Fatal(err)
				}
				mem, err := os.Open(fmt.Sprintf("/proc/%d/mem", cmd.Process.Pid))
				if err != nil {
					t.Fatal(err)
				}
				defer mem.Close()
				got := make([]byte, 32)
				if _, err := mem.ReadAt(got, int64(addr+bias)); err != nil {
					t.Fatalf("read main.main at %#x: %v", addr+bias, err)
				}
				if string(got) != string(want) {
					t.Errorf("code at %#x+%#x is not main.main", addr, bias)
				}
			}
		})
	}
}
