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
			if f.req.status == 0 || f.end < f.req.start {
				t.Fatalf("finished %+v without a response", f.req)
			}
		}
	})
}
