package wire

// payloadMax bounds the captured start of a message's payload kept for its
// parser (a query text longer than this is cut, as the capture cuts it).
const payloadMax = 4096

// framing of length-prefixed messages (PostgreSQL, MySQL).
type lengthPrefix interface {
	// size is the header's length; length reads a header: the payload's
	// length, false when the bytes cannot be a header.
	size() int
	length(hdr []byte) (int64, bool)
	// message is one message: its header, the captured start of its
	// payload, the payload's length, and when its last byte went through.
	message(hdr, payload []byte, n int64, ts uint64)
}

// framed follows one direction's length-prefixed messages: headers must be
// captured; payloads are kept up to what was captured and skipped by
// count. When a header was not captured it is lost until a syscall starts
// with a header again.
type framed struct {
	hdr     [8]byte
	nhdr    int
	left    int64 // payload bytes still to come
	n       int64 // the payload's length
	payload []byte
	short   bool // payload holds only a prefix of what came so far
	lost    bool
}

func (f *framed) feed(p lengthPrefix, ts uint64, data []byte, n int64) {
	var pos int64
	for pos < n {
		var avail []byte
		if pos < int64(len(data)) {
			avail = data[pos:]
		}
		if f.lost {
			if pos != 0 || len(avail) < p.size() {
				return
			}
			if _, ok := p.length(avail[:p.size()]); !ok {
				return
			}
			f.lost = false
		}
		if f.nhdr < p.size() {
			if len(avail) == 0 {
				f.lose()
				return
			}
			k := copy(f.hdr[f.nhdr:p.size()], avail)
			f.nhdr += k
			pos += int64(k)
			if f.nhdr < p.size() {
				continue
			}
			l, ok := p.length(f.hdr[:p.size()])
			if !ok {
				f.lose()
				return
			}
			f.n, f.left, f.payload, f.short = l, l, f.payload[:0], false
		} else {
			k := min(f.left, n-pos)
			if !f.short {
				// Only a prefix: once bytes are missing, later ones
				// would not follow on.
				have := min(int64(len(avail)), k, int64(payloadMax-len(f.payload)))
				f.payload = append(f.payload, avail[:have]...)
				f.short = have < k
			}
			pos += k
			f.left -= k
		}
		if f.nhdr == p.size() && f.left == 0 {
			p.message(f.hdr[:p.size()], f.payload, f.n, ts)
			f.nhdr = 0
		}
	}
}

func (f *framed) lose() {
	f.lost, f.nhdr, f.left = true, 0, 0
}
