package probes

import "unsafe"

// Record views a ring-buffer record as the C struct T it was submitted as,
// without copying, or returns nil when raw cannot be one: shorter than T
// (another kind's record, or a corrupt one) or not aligned for T. The
// kernel aligns every record to 8 bytes, so a misaligned one was not made
// by it, and reading through a misaligned pointer is undefined in Go.
func Record[T any](raw []byte) *T {
	var zero T
	if len(raw) < int(unsafe.Sizeof(zero)) {
		return nil
	}
	p := unsafe.Pointer(unsafe.SliceData(raw))
	if uintptr(p)%unsafe.Alignof(zero) != 0 {
		return nil
	}
	return (*T)(p)
}
