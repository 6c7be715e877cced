package procscan

import (
	"strings"
	"testing"

	"github.com/tracewire/tracewire/internal/ringtest"
)

// FuzzDecodeEvent: any ring-buffer record decodes to an event or is
// refused, and an exec's names are what the kernel cuts them to.
func FuzzDecodeEvent(f *testing.F) {
	exec := bpfProcscanEvent{Kind: eventExec, Pid: 42}
	ringtest.Fill(exec.Comm[:], "checkout")
	ringtest.Fill(exec.Filename[:], "/usr/local/bin/checkout")
	long := bpfProcscanEvent{Kind: eventExec, Pid: 7}
	for i := range long.Comm {
		long.Comm[i] = 'c' // no NUL at all
	}
	exit := bpfProcscanEvent{Kind: eventExit, Pid: 42}
	for _, s := range [][]byte{ringtest.Bytes(&exec), ringtest.Bytes(&long), ringtest.Bytes(&exit), {1, 0, 0, 0}} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		ev, ok := decodeEvent(ringtest.Aligned(raw))
		if !ok {
			return
		}
		var e bpfProcscanEvent
		if len(ev.comm) > len(e.Comm) || strings.IndexByte(ev.comm, 0) >= 0 {
			t.Fatalf("comm %q", ev.comm)
		}
		if len(ev.base) > len(e.Filename) || strings.ContainsAny(ev.base, "/\x00") && ev.base != "/" {
			t.Fatalf("executable basename %q", ev.base)
		}
	})
}

// FuzzParseEnv: a target's environ file, which it writes itself, gives at
// most the keys the resource is built from, never a crash.
func FuzzParseEnv(f *testing.F) {
	f.Add([]byte("PATH=/bin\x00OTEL_SERVICE_NAME=users\x00OTEL_RESOURCE_ATTRIBUTES=team=blue,x=%41\x00"))
	f.Add([]byte("OTEL_SERVICE_NAME=\x00OTEL_SERVICE_NAME=b\x00\x00="))
	f.Fuzz(func(t *testing.T, b []byte) {
		for k, v := range parseEnv(b) {
			if (k != "OTEL_SERVICE_NAME" && k != "OTEL_RESOURCE_ATTRIBUTES") || strings.IndexByte(v, 0) >= 0 {
				t.Fatalf("%q=%q from %q", k, v, b)
			}
		}
	})
}
