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
	// Or is the field's name in the versions that lack Name (renamed).
	Or       string
	Optional bool // absent in some versions: OffNone there
}

// ResolveFields fills every field's offset for bin.
func ResolveFields(bin *gobin.Binary, fs []Field) error {
	for _, f := range fs {
		v, err := bin.FieldOffset(f.Typ, f.Name)
		if f.Or != "" && errors.Is(err, gobin.ErrNoField) {
			v, err = bin.FieldOffset(f.Typ, f.Or)
		}
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

// ResolveAllOrNone fills every field of fs for bin, or, when one of them
// cannot be resolved, sets them all to OffNone and says why: a capability
// that needs them all is then off (the programs check one of them).
func ResolveAllOrNone(bin *gobin.Binary, fs []Field) error {
	err := ResolveFields(bin, fs)
	if err != nil {
		for _, f := range fs {
			*f.Dst = OffNone
		}
	}
	return err
}

// GoroutineFields are the runtime.g offsets every probe's programs use to
// key state by goroutine (struct g_offsets in goctx.h).
func GoroutineFields(goid, parentGoid *uint64) []Field {
	return []Field{
		{Dst: goid, Typ: "runtime.g", Name: "goid"},
		{Dst: parentGoid, Typ: "runtime.g", Name: "parentGoid", Optional: true},
	}
}

// GoMap holds the fields of struct gomap_offsets (bpf/gomap.h): what the
// programs need to scan a map[string][]string (http.Header, gRPC metadata).
type GoMap struct {
	Swiss       uint64
	HmapB       uint64
	HmapBuckets uint64
	SwissDirPtr uint64
	SwissDirLen uint64
	TableGroups uint64
	TableMask   uint64
}

// MapOffsets returns bin's map layout: swiss tables since Go 1.24, hash
// maps before.
func MapOffsets(bin *gobin.Binary) (GoMap, error) {
	var m GoMap
	var groups, data, mask uint64
	swiss := []Field{
		{Dst: &m.SwissDirPtr, Typ: "internal/runtime/maps.Map", Name: "dirPtr"},
		{Dst: &m.SwissDirLen, Typ: "internal/runtime/maps.Map", Name: "dirLen"},
		{Dst: &groups, Typ: "internal/runtime/maps.table", Name: "groups"},
		{Dst: &data, Typ: "internal/runtime/maps.groupsReference", Name: "data"},
		{Dst: &mask, Typ: "internal/runtime/maps.groupsReference", Name: "lengthMask"},
	}
	err := ResolveFields(bin, swiss)
	if err == nil {
		m.Swiss = 1
		m.TableGroups, m.TableMask = groups+data, groups+mask
		return m, nil
	}
	if !errors.Is(err, gobin.ErrNoField) {
		return m, err
	}
	err = ResolveFields(bin, []Field{
		{Dst: &m.HmapB, Typ: "runtime.hmap", Name: "B"},
		{Dst: &m.HmapBuckets, Typ: "runtime.hmap", Name: "buckets"},
	})
	return m, err
}
