package gobin

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
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

// TestContainsAcrossChunks: a pattern split by a chunk boundary is found.
func TestContainsAcrossChunks(t *testing.T) {
	data := bytes.Repeat([]byte{0}, 3<<20)
	for _, at := range []int{0, 1<<20 - 2, 2<<20 - 1, len(data) - 4} {
		d := bytes.Clone(data)
		copy(d[at:], fionread)
		if ok, err := contains(iotest.HalfReader(bytes.NewReader(d)), fionread); !ok || err != nil {
			t.Errorf("pattern at %d: found %v, %v", at, ok, err)
		}
	}
	if ok, _ := contains(strings.NewReader(string(data)), fionread); ok {
		t.Error("found in zeros")
	}
}
