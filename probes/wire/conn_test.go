package wire

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/tracewire/tracewire/internal/sampling"
)

// rig feeds one connection's syscalls to a decoder and keeps what finishes.
type rig struct {
	d    *decoder
	ts   uint64
	fd   int32
	tid  uint32
	got  []finished
	peer netip.AddrPort
}

func newRig() *rig {
	return &rig{d: newDecoder(sampling.Default, &Counters{}), fd: 5, tid: 100, peer: netip.MustParseAddrPort("10.0.0.9:40000")}
}

// io sends one syscall's bytes; cap cuts what was captured of them.
func (r *rig) io(dir uint16, s string, capture int) {
	r.ts += 1000
	data := []byte(s)
	if capture >= 0 && capture < len(data) {
		data = data[:capture]
	}
	e := event{ts: r.ts, pid: 1, tid: r.tid, fd: r.fd, dir: dir, data: data, n: int64(len(s)),
		local: netip.MustParseAddrPort("10.0.0.1:8080"), remote: r.peer}
	r.got = append(r.got, r.d.feed(e)...)
}

func (r *rig) in(s string)  { r.io(dirIn, s, -1) }
func (r *rig) out(s string) { r.io(dirOut, s, -1) }

// check checks the finished requests' methods, targets and statuses.
func (r *rig) check(t *testing.T, want ...string) {
	t.Helper()
	var got []string
	for _, f := range r.got {
		got = append(got, f.req.msg.method+" "+f.req.msg.target+" "+itoa(f.req.status))
	}
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Errorf("finished %q, want %q", got, want)
	}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

const ok5 = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"

func TestServerKeepAlive(t *testing.T) {
	r := newRig()
	r.in("GET /a?q=1 HTTP/1.1\r\nHost: shop:8080\r\n\r\n")
	r.out(ok5)
	r.in("POST /b HTTP/1.1\r\nHost: shop\r\nContent-Length: 3\r\n\r\nabc")
	r.out("HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
	r.check(t, "GET /a?q=1 200", "POST /b 201")
	if f := r.got[0]; f.conn.role != roleServer || f.req.start != 1000 || f.end != 2000 || f.req.msg.path() != "/a" {
		t.Errorf("first: role %v start %d end %d path %q", f.conn.role, f.req.start, f.end, f.req.msg.path())
	}
}

func TestServerPipelinedAndSplit(t *testing.T) {
	r := newRig()
	r.in("GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHo")
	r.in("st: a\r\n")
	r.in("\r\n")
	r.out(ok5 + "HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\n\r\n01234")
	r.out("56789")
	r.check(t, "GET /1 200", "GET /2 404")
	if r.got[1].end != r.got[0].end+1000 {
		t.Errorf("second response ended at %d, want with its last byte at %d", r.got[1].end, r.got[0].end+1000)
	}
}

func TestChunkedAndContinue(t *testing.T) {
	r := newRig()
	r.in("POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n")
	r.out("HTTP/1.1 100 Continue\r\n\r\n")
	r.in("3\r\nabc\r\n")
	r.in("0\r\n\r\n")
	r.out("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel")
	r.out("lo\r\n")
	r.check(t)
	r.out("0\r\n\r\n")
	r.in("HEAD /h HTTP/1.1\r\nHost: a\r\n\r\n")
	r.out("HTTP/1.1 200 OK\r\nContent-Length: 999\r\n\r\n")
	r.check(t, "POST /up 200", "HEAD /h 200")
}

// A head longer than the capture gives a span flagged cut; the stream
// finds the next request at the next syscall.
func TestCutHeadThenResync(t *testing.T) {
	r := newRig()
	big := "GET /big HTTP/1.1\r\nHost: a\r\nCookie: " + strings.Repeat("x", 3000) + "\r\n\r\n"
	r.io(dirIn, big, 1024)
	r.out(ok5)
	r.in("GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
	r.out(ok5)
	r.check(t, "GET /big 200", "GET /next 200")
	if !r.got[0].req.msg.cut || r.got[1].req.msg.cut || r.got[0].req.msg.host != "a" {
		t.Errorf("cut flags %v %v, host %q", r.got[0].req.msg.cut, r.got[1].req.msg.cut, r.got[0].req.msg.host)
	}
}

// A connection opened before the agent: its first bytes are the middle of
// a message; spans start with the next request.
func TestPreexistingConnection(t *testing.T) {
	r := newRig()
	r.in("ody of something\r\n")
	r.out("lo world")
	r.in("GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
	r.out(ok5)
	r.check(t, "GET /x 200")
}

func TestClientChildOfServedRequest(t *testing.T) {
	r := newRig()
	r.in("GET /front HTTP/1.1\r\nHost: a\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n")
	// The handler thread calls another service on another connection.
	r.fd, r.peer = 6, netip.MustParseAddrPort("10.0.0.2:9000")
	r.out("GET /back?token=s3cret HTTP/1.1\r\nHost: api:9000\r\n\r\n")
	r.in("HTTP/1.1 503 Unavailable\r\nContent-Length: 0\r\n\r\n")
	r.fd, r.peer = 5, netip.MustParseAddrPort("10.0.0.9:40000")
	r.out(ok5)
	r.check(t, "GET /back?token=s3cret 503", "GET /front 200")
	client, server := r.got[0].req, r.got[1].req
	if r.got[0].conn.role != roleClient || server.ids.trace != client.ids.trace || client.ids.parent != server.ids.span || server.ids.flags != 1 {
		t.Errorf("client %+v, server %+v", client.ids, server.ids)
	}
	if server.ids.parent != [8]byte{0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31} {
		t.Errorf("server parent %x, want the incoming traceparent's", server.ids.parent)
	}
}

// A response delimited by the close of its connection ends with its last
// byte; a request without a response is counted, not a span.
func TestCloseEnds(t *testing.T) {
	r := newRig()
	r.in("GET /stream HTTP/1.0\r\n\r\n")
	r.out("HTTP/1.0 200 OK\r\n\r\npart1")
	r.out("part2")
	r.io(dirClose, "", -1)
	r.in("GET /lost HTTP/1.1\r\nHost: a\r\n\r\n")
	r.io(dirClose, "", -1)
	r.check(t, "GET /stream 200")
	if r.got[0].end != 3000 || r.d.count.NoResponse.Load() != 1 {
		t.Errorf("end %d, no response %d", r.got[0].end, r.d.count.NoResponse.Load())
	}
}
