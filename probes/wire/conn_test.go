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

// ioCtx is io with the context the kernel attached to the syscall.
func (r *rig) ioCtx(dir uint16, s string, k kernelCtx) {
	r.ts += 1000
	k.ts, k.in = r.ts, dir == dirIn
	e := event{ts: r.ts, pid: 1, tid: r.tid, fd: r.fd, dir: dir, data: []byte(s), n: int64(len(s)),
		local: netip.MustParseAddrPort("10.0.0.1:8080"), remote: r.peer, ctx: k}
	r.got = append(r.got, r.d.feed(e)...)
}

func ids(trace, span, parent byte) spanIDs {
	return spanIDs{trace: [16]byte{15: trace}, span: [8]byte{7: span}, parent: [8]byte{7: parent}, flags: 1}
}

// The kernel's choices win: a server request takes the ids it began with
// (sk_msg gave them to the thread's calls), and a call takes the ids its
// traceparent carried.
func TestKernelContext(t *testing.T) {
	r := newRig()
	var told []netip.AddrPort
	r.d.teach = func(ep netip.AddrPort) { told = append(told, ep) }
	server := ids(7, 1, 0)
	r.ioCtx(dirIn, "GET /a HTTP/1.1\r\nHost: shop\r\n\r\n", kernelCtx{kind: ctxBegun, ids: server})
	// The thread calls out on another connection, with the header sk_msg added.
	r.fd, r.peer = 6, netip.MustParseAddrPort("10.0.0.7:9090")
	sent := ids(7, 2, 1)
	r.ioCtx(dirOut, "GET /down HTTP/1.1\r\nHost: down\r\n\r\n", kernelCtx{kind: ctxSent, ids: sent})
	r.in(ok5)
	r.fd, r.peer = 5, netip.MustParseAddrPort("10.0.0.9:40000")
	r.out(ok5)
	r.check(t, "GET /down 200", "GET /a 200")
	if got := r.got[0].req.ids; got != sent {
		t.Errorf("call ids %+v, want %+v", got, sent)
	}
	if got := r.got[1].req.ids; got != server {
		t.Errorf("server ids %+v, want %+v", got, server)
	}
	want := []netip.AddrPort{netip.MustParseAddrPort("10.0.0.1:8080"), netip.MustParseAddrPort("10.0.0.7:9090")}
	if len(told) != 2 || told[0] != want[0] || told[1] != want[1] {
		t.Errorf("endpoints told %v, want %v", told, want)
	}
	// Told once each.
	r.ioCtx(dirIn, "GET /b HTTP/1.1\r\nHost: shop\r\n\r\n", kernelCtx{})
	if len(told) != 2 {
		t.Errorf("endpoints told %v again", told)
	}
}

// A kernel context that disagrees with the head (the kernel read another
// traceparent) is not used for the server span; a call whose sent parent
// is no request the thread serves keeps its ids but loses its parent.
func TestKernelContextMismatch(t *testing.T) {
	r := newRig()
	tp := "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	r.ioCtx(dirIn, "GET /a HTTP/1.1\r\ntraceparent:  "+tp+"\r\n\r\n", kernelCtx{kind: ctxBegun, ids: ids(7, 1, 0)})
	r.fd = 6
	sent := ids(7, 2, 1)
	r.ioCtx(dirOut, "GET /down HTTP/1.1\r\n\r\n", kernelCtx{kind: ctxSent, ids: sent})
	r.in(ok5)
	r.fd = 5
	r.out(ok5)
	r.check(t, "GET /down 200", "GET /a 200")
	if r.d.count.ContextMismatch.Load() != 1 || r.d.count.NoParent.Load() != 1 {
		t.Errorf("mismatch %d, no parent %d; want 1, 1", r.d.count.ContextMismatch.Load(), r.d.count.NoParent.Load())
	}
	call, server := r.got[0].req.ids, r.got[1].req.ids
	if call.trace != sent.trace || call.span != sent.span || call.parent != ([8]byte{}) {
		t.Errorf("call ids %+v", call)
	}
	if server.trace != [16]byte{0x0a, 0xf7, 0x65, 0x19, 0x16, 0xcd, 0x43, 0xdd, 0x84, 0x48, 0xeb, 0x21, 0x1c, 0x80, 0x31, 0x9c} {
		t.Errorf("server trace %x, want the header's", server.trace)
	}
}

// A kernel context begun by a syscall whose first bytes were a body is not
// given to a request starting later in the same bytes.
func TestKernelContextNotFresh(t *testing.T) {
	r := newRig()
	r.in("POST /p HTTP/1.1\r\nContent-Length: 5\r\n\r\n")
	r.ioCtx(dirIn, "GET /GET /b HTTP/1.1\r\n\r\n", kernelCtx{kind: ctxBegun, ids: ids(7, 1, 0)})
	r.out(ok5)
	r.out(ok5)
	r.check(t, "POST /p 200", "GET /b 200")
	if got := r.got[1].req.ids; got.span == ids(7, 1, 0).span {
		t.Errorf("request took the body's kernel context")
	}
}
