// Package ringtest fuzzes ring-buffer record decoders: it hands them bytes
// laid out as the kernel hands records out, and checks what every probe's
// decoder must do with any record, however corrupt.
package ringtest

import (
	"iter"
	"testing"
	"unsafe"

	"github.com/tracewire/tracewire/spans"
)

// Bytes returns the memory of a record struct, for seeds.
func Bytes[T any](rec *T) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(rec)), unsafe.Sizeof(*rec))
}

// Fill copies s into the C char array dst (cut at its size) and returns
// the length of s, as the kernel fills a record's string and its length.
func Fill(dst []int8, s string) int64 {
	copy(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(dst))), len(dst)), s)
	return int64(len(s))
}

// Aligned copies raw into 8-byte aligned memory: the kernel aligns every
// ring-buffer record so, and decoders view records in place.
func Aligned(raw []byte) []byte {
	buf := make([]uint64, (len(raw)+7)/8)
	out := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(buf))), len(raw))
	copy(out, raw)
	return out
}

// Split cuts raw into records of size bytes (the last may be shorter), each
// aligned: one fuzz input can then be a sequence of records, for decoders
// that keep state between them.
func Split(raw []byte, size int) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		for len(raw) > 0 {
			n := min(size, len(raw))
			if !yield(Aligned(raw[:n])) {
				return
			}
			raw = raw[n:]
		}
	}
}

// Decode is a probe's decoder: a span, or nil for a record it cannot use.
type Decode func(raw []byte, process func(pid int) *spans.Process) *spans.Span

// Fuzz checks decode on every fuzz input (seeds first): any record decodes
// to nil or to a span of the target's process that has attributes; a
// record the kernel cannot have made, misaligned, decodes to nil. check,
// when not nil, asserts more of each span before it is released.
func Fuzz(f *testing.F, seeds [][]byte, decode Decode, check func(t *testing.T, s *spans.Span)) {
	for _, s := range seeds {
		f.Add(s)
	}
	proc := &spans.Process{PID: 1}
	process := func(int) *spans.Process { return proc }
	f.Fuzz(func(t *testing.T, raw []byte) {
		if s := decode(Aligned(raw), process); s != nil {
			if s.Process != proc || len(s.Attrs) == 0 {
				t.Fatalf("decoded span without process or attributes: %+v", s)
			}
			if check != nil {
				check(t, s)
			}
			s.Release()
		}
		odd := Aligned(append([]byte{0}, raw...))[1:]
		if s := decode(odd, process); s != nil {
			t.Fatalf("a misaligned record decoded to %+v", s)
		}
	})
}
