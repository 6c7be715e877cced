package wire

import (
	"testing"
)

// FuzzFeed: any bytes, split into syscalls of any sizes and directions and
// cut by the capture anywhere, never crash the decoder, and every span it
// finishes is of a request that had a response.
func FuzzFeed(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), []byte(ok5), uint8(7), uint16(1024))
	f.Add([]byte("POST /u HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
		[]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n"), uint8(3), uint16(20))
	// A PostgreSQL client (startup, then a query) and a MySQL one (the
	// server's greeting first).
	f.Add([]byte(pgMsg('R', "\x00\x00\x00\x00")+pgMsg('Z', "I")+pgMsg('E', "Mbad\x00\x00")+pgMsg('Z', "I")),
		[]byte(pgStartup()+pgMsg('Q', "SELECT 1\x00")+pgMsg('P', "s\x00SELECT $1\x00\x00\x00")+pgMsg('B', "\x00s\x00")+pgMsg('E', "\x00")+pgMsg('S')),
		uint8(63), uint16(1024))
	f.Add([]byte(myPkt(0, "\x0a5.7\x00")+myPkt(1, "\x01")+myPkt(2, "c")+myPkt(3, "\xfe\x00\x00\x02\x00")+myPkt(4, "\xfe\x00\x00\x02\x00")),
		[]byte(myPkt(0, "\x03SELECT a FROM t")), uint8(63), uint16(1024))
	f.Fuzz(func(t *testing.T, in, out []byte, step uint8, capture uint16) {
		r := newRig()
		n := int(step%64) + 1
		for len(in) > 0 || len(out) > 0 {
			k := min(n, len(in))
			if k > 0 {
				r.io(dirIn, string(in[:k]), int(capture))
				in = in[k:]
			}
			k = min(n, len(out))
			if k > 0 {
				r.io(dirOut, string(out[:k]), int(capture))
				out = out[k:]
			}
		}
		r.io(dirClose, "", -1)
		for _, f := range r.got {
			switch {
			case f.op != nil && (!f.op.span || f.end < f.op.start):
				t.Fatalf("finished call %+v", f.op)
			case f.req != nil && (f.req.status == 0 || f.end < f.req.start):
				t.Fatalf("finished %+v without a response", f.req)
			}
		}
	})
}
