package nethttp

import (
	"strings"
	"testing"

	"github.com/tracewire/tracewire/internal/ringtest"
	"github.com/tracewire/tracewire/spans"
)

// FuzzDecode: any ring-buffer record, however corrupt, decodes to a span or
// to nil (counted by the caller), never a crash.
func FuzzDecode(f *testing.F) {
	var srv bpfNethttpServerEvent
	srv.Kind, srv.Pid, srv.MethodLen, srv.PathLen = uint32(bpfEventKindEVENT_SERVER), 1, 3, 1<<40
	ringtest.Fill(srv.Method[:], "GET")
	var cl bpfNethttpClientEvent
	cl.Kind, cl.Pid, cl.QueryLen, cl.Status = uint32(bpfEventKindEVENT_CLIENT), 1, -5, -1
	ringtest.Fill(cl.Query[:], "a=1&&b")
	seeds := [][]byte{ringtest.Bytes(&srv), ringtest.Bytes(&cl), {1, 0, 0, 0}}
	d := &decoder{}
	ringtest.Fuzz(f, seeds, d.decode, checkCut)
}

// checkCut: strings from the request are cut where the README says.
func checkCut(t *testing.T, s *spans.Span) {
	var e bpfNethttpServerEvent
	limits := map[string]int{
		"url.path": len(e.Path), "http.route": len(e.Pattern), "server.address": len(e.Host),
		"client.address": len(e.Remote), "http.request.method_original": len(e.Method),
	}
	if s.Kind != spans.KindServer {
		return
	}
	for _, a := range s.Attrs {
		if n, ok := limits[a.Key]; ok && len(a.Str) > n {
			t.Fatalf("%s is %d bytes, over %d", a.Key, len(a.Str), n)
		}
	}
	if len(s.TraceState) > len(e.Tracestate) {
		t.Fatalf("tracestate is %d bytes", len(s.TraceState))
	}
}

// FuzzURLParts: the string helpers never panic, and url.full never carries a
// query value (keys stay, as semantic conventions say): a value changes
// nothing in it. (Checking that the value is not in it was wrong where the
// parts around '?' spell the value; testdata holds such an input.)
func FuzzURLParts(f *testing.F) {
	f.Add("http", "svc:80", "/a", "token", "secret", true)
	f.Add("", "[::1", "", "=&", "", false)
	f.Fuzz(func(t *testing.T, scheme, host, path, key, value string, user bool) {
		route(path)
		spans.HostPort(host, 80)
		procNetAddr(host)
		out := string(spans.FullURL(nil, scheme, host, path, "x=1&"+key+"="+value, user))
		if other := string(spans.FullURL(nil, scheme, host, path, "x=1&"+key+"=v", user)); !strings.Contains(value, "&") && out != other {
			t.Fatalf("query value %q shows: %q, with another value %q", value, out, other)
		}
	})
}
