package gobin

import (
	"debug/dwarf"
	"errors"
	"fmt"
)

// ErrNoField reports that a struct type exists but has no such field in the
// binary's version of it (e.g. net/http.Request.Pattern before Go 1.23, or
// grpc's csAttempt.t, renamed transport in v1.71.0).
var ErrNoField = errors.New("no such field")

// errNotInDWARF reports that the binary's DWARF lacks a type. The linker only
// writes types the program uses, so the offsets tables are asked instead.
var errNotInDWARF = errors.New("type not in DWARF")

// FieldOffset returns the byte offset of field in the struct type typ, both
// named as in DWARF (e.g. "net/http.Request", "Method"). It reads the
// binary's DWARF when that describes typ, and otherwise the embedded tables:
// for types of google.golang.org/grpc (and google.golang.org/genproto's
// googleapis/rpc), the one for the binary's exact grpc module version, else
// the one for its Go minor version. genproto's status message is looked up
// under the grpc version too, so a target that resolved another genproto
// version than offsetgen's probe did gets the probe's layout (its Code
// field has been at 40 in every version seen).
//
// It returns an error wrapping ErrNoField when typ has no such field in
// that version, and one wrapping ErrUnknownVersion when the table does not
// know that version: versions are never guessed.
func (b *Binary) FieldOffset(typ, field string) (uint64, error) {
	if b.dwarf != nil {
		off, err := b.dwarfFieldOffset(typ, field)
		if !errors.Is(err, errNotInDWARF) {
			return off, err
		}
	}
	l, version, err := b.tableLayout(typ, field)
	if err != nil {
		return 0, err
	}
	off, ok := l.offsets[field]
	if !ok {
		return 0, fmt.Errorf("%s has no field %s in %s: %w", typ, field, version, ErrNoField)
	}
	return off, nil
}

// FieldIsPointer reports whether field of the struct type typ is a pointer
// (*T or unsafe.Pointer; not a map, channel, func or interface), which tells
// a probe whether to follow it to reach what it points to. gRPC's
// transport.ServerStream, for one, embeds *Stream in v1.69.0-v1.76.0 and
// Stream itself from v1.77.0. It answers from DWARF or the tables as
// FieldOffset does, with the same errors.
func (b *Binary) FieldIsPointer(typ, field string) (bool, error) {
	if b.dwarf != nil {
		ptr, err := b.dwarfFieldIsPointer(typ, field)
		if !errors.Is(err, errNotInDWARF) {
			return ptr, err
		}
	}
	l, version, err := b.tableLayout(typ, field)
	if err != nil {
		return false, err
	}
	if _, ok := l.offsets[field]; !ok {
		return false, fmt.Errorf("%s has no field %s in %s: %w", typ, field, version, ErrNoField)
	}
	return l.pointers[field], nil
}

// dwarfMember returns the DWARF entry of typ's member field.
func (b *Binary) dwarfMember(typ, field string) (*dwarf.Entry, error) {
	structs, err := b.structIndex()
	if err != nil {
		return nil, fmt.Errorf("field %s.%s: %w", typ, field, err)
	}
	at, ok := structs[typ]
	if !ok {
		return nil, fmt.Errorf("field %s.%s: %w", typ, field, errNotInDWARF)
	}
	r := b.dwarf.Reader()
	r.Seek(at)
	st, err := r.Next() // the struct's own entry; its members follow
	if err != nil {
		return nil, fmt.Errorf("field %s.%s: read DWARF: %w", typ, field, err)
	}
	for st.Children { // an empty struct has no member entries at all
		e, err := r.Next()
		if err != nil {
			return nil, fmt.Errorf("field %s.%s: read DWARF: %w", typ, field, err)
		}
		if e == nil || e.Tag == 0 { // end of the struct's members
			break
		}
		r.SkipChildren()
		if e.Tag == dwarf.TagMember && e.Val(dwarf.AttrName) == field {
			return e, nil
		}
	}
	return nil, fmt.Errorf("%s has no field %s in DWARF: %w", typ, field, ErrNoField)
}

func (b *Binary) dwarfFieldOffset(typ, field string) (uint64, error) {
	m, err := b.dwarfMember(typ, field)
	if err != nil {
		return 0, err
	}
	loc, ok := m.Val(dwarf.AttrDataMemberLoc).(int64)
	if !ok {
		return 0, fmt.Errorf("field %s.%s: DWARF gives no constant offset", typ, field)
	}
	return uint64(loc), nil
}

// dwarfFieldIsPointer reads the tag of the member's type. Only the tag
// counts, as in offsetgen's tables: Go describes maps and channels as
// typedefs of pointers, which a probe must not mistake for *T.
func (b *Binary) dwarfFieldIsPointer(typ, field string) (bool, error) {
	m, err := b.dwarfMember(typ, field)
	if err != nil {
		return false, err
	}
	at, ok := m.Val(dwarf.AttrType).(dwarf.Offset)
	if !ok {
		return false, fmt.Errorf("field %s.%s: DWARF gives it no type", typ, field)
	}
	r := b.dwarf.Reader()
	r.Seek(at)
	t, err := r.Next()
	if err != nil {
		return false, fmt.Errorf("field %s.%s: read DWARF type: %w", typ, field, err)
	}
	if t == nil {
		return false, fmt.Errorf("field %s.%s: DWARF type at %#x is missing", typ, field, at)
	}
	return t.Tag == dwarf.TagPointerType, nil
}

// structIndex returns the index of b's DWARF structs, built on first use.
// DWARF that cannot be indexed (cut short, corrupt) is treated as no DWARF
// at all, as at Open: the tables answer, and their errors say why.
func (b *Binary) structIndex() (map[string]dwarf.Offset, error) {
	b.structsOnce.Do(func() {
		if b.structs, b.structsErr = structIndex(b.dwarf); b.structsErr != nil {
			b.dwarfErr = fmt.Errorf("its DWARF is unreadable (%w)", b.structsErr)
			b.structsErr = fmt.Errorf("%w: %w", errNotInDWARF, b.structsErr)
		}
	})
	return b.structs, b.structsErr
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
