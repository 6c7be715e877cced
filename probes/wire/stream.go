package wire

import (
	"bytes"
)

// headMax bounds a message head gathered across reads; a longer one is
// handled as one cut by the capture.
const headMax = 16 << 10

// framing is how the end of a message's body is found.
type framing uint8

const (
	frameNone    framing = iota // at a message start (or gathering its head)
	frameLength                 // body bytes still to come: stream.left
	frameChunked                // chunked transfer coding
	frameClose                  // the body lasts until the connection closes
	frameLost                   // not a message the stream can follow
)

// chunk states of a chunked body.
const (
	chunkSize    = iota // reading a chunk-size line
	chunkData           // skipping chunk data and its CRLF: stream.left
	chunkTrailer        // after the last chunk: trailer fields up to an empty line
)

// stream follows the messages of one direction of a connection: it finds
// each message's head (split across any number of syscalls) and skips its
// body by byte counts, so only heads need captured bytes. When the bytes it
// needs were not captured it is lost until the next syscall that starts
// with something a message can start with.
type stream struct {
	frame framing
	left  int64 // body bytes (frameLength) or chunk bytes (chunkData) to skip
	chunk int
	line  []byte // a chunk-size or trailer line gathered across syscalls
	head  []byte // a message head gathered across syscalls
	ts    uint64 // when the head being gathered started
	fresh bool   // it started at the first byte of a syscall
	lost  bool
}

// handler is told what a stream finds.
type handler interface {
	// head is a message head (up to its empty line, or what was captured
	// of it when cut), begun at start (at the first byte of that syscall
	// when fresh); it returns how the message's body is framed, and its
	// length for frameLength.
	head(h []byte, start, ts uint64, fresh, cut bool) (framing, int64)
	// done is the end of the current message's body.
	done(ts uint64)
	// starts tells whether data can be the start of a message.
	starts(data []byte) bool
}

// feed takes one syscall's bytes: n in all, of which data were captured.
func (s *stream) feed(h handler, ts uint64, data []byte, n int64) {
	var pos int64
	for pos < n {
		var avail []byte // the captured bytes from pos on
		if pos < int64(len(data)) {
			avail = data[pos:]
		}
		switch {
		case s.lost:
			if pos != 0 || !h.starts(avail) {
				return
			}
			s.lost = false
		case s.frame == frameLength:
			k := min(s.left, n-pos)
			pos += k
			if s.left -= k; s.left == 0 {
				s.frame = frameNone
				h.done(ts)
			}
		case s.frame == frameClose:
			return
		case s.frame == frameChunked:
			k, ok := s.chunked(h, ts, avail, n-pos)
			if !ok {
				s.lose()
				return
			}
			pos += k
		default:
			if len(avail) == 0 {
				s.lose() // a message starts in bytes not captured
				return
			}
			if len(s.head) == 0 {
				if !h.starts(avail) {
					s.lose()
					return
				}
				s.ts, s.fresh = ts, pos == 0
			}
			k, found := s.gather(avail)
			pos += k
			if !found {
				if pos < n || len(s.head) >= headMax {
					// The head goes on in bytes not captured.
					h.head(s.head, s.ts, ts, s.fresh, true)
					s.lose()
					return
				}
				continue
			}
			head := s.head
			s.head = s.head[:0]
			f, length := h.head(head, s.ts, ts, s.fresh, false)
			if f == frameLost {
				s.lose()
				return
			}
			s.frame, s.chunk, s.left = f, chunkSize, length
			if f == frameNone || f == frameLength && length <= 0 {
				s.frame = frameNone
				h.done(ts)
			}
		}
	}
}

// gather appends avail to the head until its empty line; it returns how
// many bytes of avail it took and whether the head is complete.
func (s *stream) gather(avail []byte) (int64, bool) {
	prev := len(s.head)
	s.head = append(s.head, avail[:min(len(avail), headMax-prev)]...)
	// The empty line may straddle the previous bytes.
	from := max(0, prev-3)
	if i := bytes.Index(s.head[from:], []byte("\r\n\r\n")); i >= 0 {
		end := from + i + 4
		s.head = s.head[:end]
		return int64(end - prev), true
	}
	return int64(len(s.head) - prev), false
}

// chunked advances through a chunked body; it returns the bytes taken and
// false when it needs bytes that were not captured.
func (s *stream) chunked(h handler, ts uint64, avail []byte, n int64) (int64, bool) {
	switch s.chunk {
	case chunkData:
		k := min(s.left, n)
		s.left -= k
		if s.left == 0 {
			s.chunk = chunkSize
		}
		return k, true
	case chunkSize, chunkTrailer:
		if len(avail) == 0 {
			return 0, false
		}
		i := bytes.IndexByte(avail, '\n')
		if i < 0 {
			if len(s.line)+len(avail) > 256 {
				return 0, false
			}
			s.line = append(s.line, avail...)
			return int64(len(avail)), int64(len(avail)) == n
		}
		line := append(s.line, avail[:i+1]...)
		s.line = s.line[:0]
		line = bytes.TrimRight(line, "\r\n")
		if s.chunk == chunkTrailer {
			if len(line) == 0 {
				s.frame = frameNone
				h.done(ts)
			}
			return int64(i + 1), true
		}
		size, ok := chunkLen(line)
		if !ok {
			return 0, false
		}
		if size == 0 {
			s.chunk = chunkTrailer
		} else {
			s.chunk, s.left = chunkData, size+2 // the data and its CRLF
		}
		return int64(i + 1), true
	}
	return 0, false
}

// chunkLen parses a chunk-size line (hex, optional extensions).
func chunkLen(line []byte) (int64, bool) {
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		line = line[:i]
	}
	line = bytes.TrimSpace(line)
	if len(line) == 0 || len(line) > 15 {
		return 0, false
	}
	var v int64
	for _, c := range line {
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | int64(c-'0')
		case c >= 'a' && c <= 'f':
			v = v<<4 | int64(c-'a'+10)
		case c >= 'A' && c <= 'F':
			v = v<<4 | int64(c-'A'+10)
		default:
			return 0, false
		}
	}
	return v, true
}

// lose forgets where messages start until one can be recognised again.
func (s *stream) lose() {
	s.lost, s.frame, s.left = true, frameNone, 0
	s.head, s.line = s.head[:0], s.line[:0]
}
