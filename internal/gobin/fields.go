package gobin

import (
	"debug/dwarf"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sync"
)

// ErrNoField reports that a struct type exists but has no such field in the
// binary's Go version (e.g. net/http.Request.Pattern before Go 1.23).
var ErrNoField = errors.New("no such field")

// errNotInDWARF reports that the binary's DWARF lacks a type. The linker only
// writes types the program uses, so the offsets table is asked instead.
var errNotInDWARF = errors.New("type not in DWARF")

// offsetsJSON holds, per Go minor version ("go1.22"), the byte offset of
// every field of the struct types the probes read. It is keyed by minor
// version because patch releases are not expected to change these layouts;
// DWARF, when present, is preferred and exact. It is written by offsetgen:
//
//	go run ./internal/gobin/offsetgen -o internal/gobin/offsets.json
//
//go:embed offsets.json
var offsetsJSON []byte

// offsetTable maps Go minor version -> struct type -> field -> byte offset.
type offsetTable map[string]map[string]map[string]uint64

var loadOffsets = sync.OnceValues(func() (offsetTable, error) {
	var t offsetTable
	if err := json.Unmarshal(offsetsJSON, &t); err != nil {
		return nil, fmt.Errorf("parse embedded offsets.json: %w", err)
	}
	return t, nil
})

// minorVersion extracts "go1.22" from "go1.22.12", "go1.22rc1" or
// "go1.22.1 X:boringcrypto".
var minorVersion = regexp.MustCompile(`^go1\.[0-9]+`)

// FieldOffset returns the byte offset of field in the struct type typ, both
// named as in DWARF (e.g. "net/http.Request", "Method"). It reads the
// binary's DWARF when that describes typ, and otherwise the embedded table
// for the binary's Go minor version. It returns an error wrapping ErrNoField
// when typ has no such field in that version.
func (b *Binary) FieldOffset(typ, field string) (uint64, error) {
	if b.dwarf != nil {
		off, err := b.dwarfFieldOffset(typ, field)
		if !errors.Is(err, errNotInDWARF) {
			return off, err
		}
	}
	return b.tableFieldOffset(typ, field)
}

func (b *Binary) dwarfFieldOffset(typ, field string) (uint64, error) {
	b.structsOnce.Do(func() { b.structs, b.structsErr = structIndex(b.dwarf) })
	if b.structsErr != nil {
		return 0, fmt.Errorf("field %s.%s: %w", typ, field, b.structsErr)
	}
	at, ok := b.structs[typ]
	if !ok {
		return 0, fmt.Errorf("field %s.%s: %w", typ, field, errNotInDWARF)
	}
	r := b.dwarf.Reader()
	r.Seek(at)
	st, err := r.Next() // the struct's own entry; its members follow
	if err != nil {
		return 0, fmt.Errorf("field %s.%s: read DWARF: %w", typ, field, err)
	}
	for st.Children { // an empty struct has no member entries at all
		e, err := r.Next()
		if err != nil {
			return 0, fmt.Errorf("field %s.%s: read DWARF: %w", typ, field, err)
		}
		if e == nil || e.Tag == 0 { // end of the struct's members
			break
		}
		r.SkipChildren()
		if e.Tag != dwarf.TagMember || e.Val(dwarf.AttrName) != field {
			continue
		}
		loc, ok := e.Val(dwarf.AttrDataMemberLoc).(int64)
		if !ok {
			return 0, fmt.Errorf("field %s.%s: DWARF gives no constant offset", typ, field)
		}
		return uint64(loc), nil
	}
	return 0, fmt.Errorf("%s has no field %s in DWARF: %w", typ, field, ErrNoField)
}

// structIndex maps every named struct type in d to its entry. Go emits types
// directly under compile units, so other entries' children are skipped.
func structIndex(d *dwarf.Data) (map[string]dwarf.Offset, error) {
	index := make(map[string]dwarf.Offset)
	r := d.Reader()
	for {
		e, err := r.Next()
		if err != nil {
			return nil, fmt.Errorf("index DWARF structs: %w", err)
		}
		if e == nil {
			return index, nil
		}
		if e.Tag == dwarf.TagCompileUnit {
			continue
		}
		r.SkipChildren()
		if name, ok := e.Val(dwarf.AttrName).(string); ok && e.Tag == dwarf.TagStructType {
			if _, dup := index[name]; !dup {
				index[name] = e.Offset
			}
		}
	}
}

func (b *Binary) tableFieldOffset(typ, field string) (uint64, error) {
	table, err := loadOffsets()
	if err != nil {
		return 0, err
	}
	minor := minorVersion.FindString(b.GoVersion)
	types, ok := table[minor]
	if !ok {
		return 0, fmt.Errorf("field %s.%s: no DWARF for it and no offsets table for %s", typ, field, b.GoVersion)
	}
	fields, ok := types[typ]
	if !ok {
		return 0, fmt.Errorf("field %s.%s: type %s is not in the %s offsets table", typ, field, typ, minor)
	}
	off, ok := fields[field]
	if !ok {
		return 0, fmt.Errorf("%s has no field %s in %s: %w", typ, field, minor, ErrNoField)
	}
	return off, nil
}
