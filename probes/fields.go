package probes

import (
	"errors"
	"fmt"

	"github.com/tracewire/tracewire/internal/gobin"
)

// OffNone marks a field the binary's version does not have (OFF_NONE in C).
const OffNone = ^uint64(0)

// Field is a struct field offset a probe's programs read, and where to store it.
type Field struct {
	Dst       *uint64
	Typ, Name string
	Optional  bool // absent in some versions: OffNone there
}

// ResolveFields fills every field's offset for bin.
func ResolveFields(bin *gobin.Binary, fs []Field) error {
	for _, f := range fs {
		v, err := bin.FieldOffset(f.Typ, f.Name)
		switch {
		case err == nil:
			*f.Dst = v
		case f.Optional && errors.Is(err, gobin.ErrNoField):
			*f.Dst = OffNone
		default:
			return fmt.Errorf("offset of %s.%s: %w", f.Typ, f.Name, err)
		}
	}
	return nil
}

// GoroutineFields are the runtime.g offsets every probe's programs use to
// key state by goroutine (struct g_offsets in goctx.h).
func GoroutineFields(goid, parentGoid *uint64) []Field {
	return []Field{
		{goid, "runtime.g", "goid", false},
		{parentGoid, "runtime.g", "parentGoid", true},
	}
}
