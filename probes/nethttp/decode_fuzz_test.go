package nethttp

import (
	"strings"
	"testing"
	"unsafe"

	"github.com/tracewire/tracewire/spans"
)

// FuzzDecode: any ring-buffer record, however corrupt, decodes to a span or
// to nil (counted by the caller), never a crash.
func FuzzDecode(f *testing.F) {
	var srv bpfNethttpServerEvent
	srv.Kind, srv.Pid, srv.MethodLen, srv.PathLen = uint32(bpfEventKindEVENT_SERVER), 1, 3, 1<<40
	fill(srv.Method[:], "GET")
	var cl bpfNethttpClientEvent
	cl.Kind, cl.Pid, cl.QueryLen, cl.Status = uint32(bpfEventKindEVENT_CLIENT), 1, -5, -1
	fill(cl.Query[:], "a=1&&b")
	f.Add(unsafe.Slice((*byte)(unsafe.Pointer(&srv)), unsafe.Sizeof(srv)))
	f.Add(unsafe.Slice((*byte)(unsafe.Pointer(&cl)), unsafe.Sizeof(cl)))
	f.Add([]byte{1, 0, 0, 0})
	proc := &spans.Process{PID: 1}
	d := &decoder{}
	f.Fuzz(func(t *testing.T, raw []byte) {
		// Ring-buffer records are 8-byte aligned: give the decoder the same.
		buf := make([]uint64, (len(raw)+7)/8)
		aligned := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(buf))), len(raw))
		copy(aligned, raw)
		if s := d.decode(aligned, func(int) *spans.Process { return proc }); s != nil {
			if s.Process != proc || len(s.Attrs) == 0 {
				t.Fatalf("decoded span without process or attributes: %+v", s)
			}
			s.Release()
		}
	})
}

// FuzzURLParts: the string helpers never panic, and url.full never carries a
// query value (keys stay, as semantic conventions say).
func FuzzURLParts(f *testing.F) {
	f.Add("http", "svc:80", "/a", "token", "secret", true)
	f.Add("", "[::1", "", "=&", "", false)
	f.Fuzz(func(t *testing.T, scheme, host, path, key, value string, user bool) {
		route(path)
		hostPort(host, 80)
		procNetAddr(host)
		out := string(fullURL(nil, scheme, host, path, "x=1&"+key+"="+value, user))
		if len(value) > 2 && !strings.ContainsAny(value, "&=") && !strings.Contains(scheme+host+path+key+"REDACTED:REDACTED@://?x=1&=REDACTED", value) &&
			strings.Contains(out, value) {
			t.Fatalf("query value %q survived: %q", value, out)
		}
	})
}
