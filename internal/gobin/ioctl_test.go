package gobin

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"testing/iotest"
)

// TestAsksFIONREAD builds a program that asks FIONREAD on a socket and one
// that does not, and tells them apart.
func TestAsksFIONREAD(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, body string
		want       bool
	}{
		{"plain", `fmt.Println(net.JoinHostPort("a", "1"))`, false},
		{"asks", `c, _ := net.Dial("tcp", os.Args[1])
	rc, _ := c.(*net.TCPConn).SyscallConn()
	rc.Control(func(fd uintptr) { n, _ := unix.IoctlGetInt(int(fd), unix.SIOCINQ); fmt.Println(n) })`, true},
	} {
		src := filepath.Join(dir, tc.name)
		if err := os.MkdirAll(src, 0o755); err != nil {
			t.Fatal(err)
		}
		imports := `"fmt"; "net"`
		if tc.want {
			imports += `; "os"; "golang.org/x/sys/unix"`
		}
		prog := "package main\n\nimport (" + imports + ")\n\nfunc main() {\n\t" + tc.body + "\n}\n"
		mod, err := os.ReadFile("../../go.mod")
		if err != nil {
			t.Fatal(err)
		}
		sum, err := os.ReadFile("../../go.sum")
		if err != nil {
			t.Fatal(err)
		}
		// The repository's own module, so x/sys resolves offline from its go.sum.
		mod = bytes.Replace(mod, []byte("module github.com/tracewire/tracewire"), []byte("module fionreadtest"), 1)
		for name, b := range map[string][]byte{"main.go": []byte(prog), "go.mod": mod, "go.sum": sum} {
			if err := os.WriteFile(filepath.Join(src, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		exe := filepath.Join(dir, tc.name+".exe")
		if err := build(src, exe, variant{name: tc.name}); err != nil {
			t.Fatal(err)
		}
		b, err := Open(exe)
		if err != nil {
			t.Fatal(err)
		}
		got, err := b.AsksFIONREAD()
		b.Close()
		if err != nil || got != tc.want {
			t.Errorf("%s: AsksFIONREAD = %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}
}

// TestLoadsImmediate: the instructions that load FIONREAD are found, also
// across chunk boundaries; the same bytes in a RIP-relative displacement are not.
func TestLoadsImmediate(t *testing.T) {
	for _, tc := range []struct {
		code []byte
		want bool
	}{
		{[]byte{0xbb, 0x1b, 0x54, 0x00, 0x00}, true},                          // mov ebx, 0x541b
		{[]byte{0x41, 0xb8, 0x1b, 0x54, 0x00, 0x00}, true},                    // mov r8d, 0x541b
		{[]byte{0x48, 0xc7, 0xc3, 0x1b, 0x54, 0x00, 0x00}, true},              // mov rbx, 0x541b
		{[]byte{0xc7, 0x44, 0x24, 0x08, 0x1b, 0x54, 0x00, 0x00}, true},        // mov [rsp+8], 0x541b
		{[]byte{0x68, 0x1b, 0x54, 0x00, 0x00}, true},                          // push 0x541b
		{[]byte{0x48, 0x8d, 0x1d, 0x54, 0x1b, 0x54, 0x00}, false},             // lea rbx, [rip+0x541b54]
		{[]byte{0x83, 0x3d, 0xed, 0x1b, 0x54, 0x00, 0x00, 0x00}, false},       // cmp dword [rip+0x541bed], 0
		{[]byte{0x48, 0xc7, 0x05, 0x33, 0x1b, 0x54, 0x00, 0x00, 0x00}, false}, // mov qword [rip+0x541b33], 0
	} {
		for _, at := range []int{0, 1<<20 - 3, 2<<20 - 1} {
			code := make([]byte, 3<<20)
			copy(code[at:], tc.code)
			got, err := loadsImmediate(iotest.HalfReader(bytes.NewReader(code)), fionread)
			if err != nil || got != tc.want {
				t.Errorf("% x at %d: %v, %v; want %v", tc.code, at, got, err, tc.want)
			}
		}
	}
}
