package gobin

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
)

// ErrUnknownVersion reports that a binary without DWARF for a type was built
// with a version (of Go, or of the module defining the type) that the
// embedded tables do not describe. The tables are not extrapolated: grpc's
// layouts change even between patch releases.
var ErrUnknownVersion = errors.New("version not in the offsets tables")

// offsetsJSON holds, per Go minor version ("go1.22"), the layout of the
// standard library struct types the probes read. It is keyed by minor
// version because patch releases are not expected to change these layouts.
//
//go:embed offsets.json
var offsetsJSON []byte

// grpcOffsetsJSON holds, per exact google.golang.org/grpc version
// ("v1.83.1"), the layout of the grpc struct types the probes read, and of
// the genproto googleapis/rpc status message that grpc's status wraps. That
// message belongs to another module, whose version a target may pick
// differently from the probe that produced the table (recorded per grpc
// version as genproto_rpc): it then gets the probe's layout, which has been
// the same (Code at 40) in every genproto version seen so far.
//
//go:embed grpc_offsets.json
var grpcOffsetsJSON []byte

// Both tables are written by offsetgen; DWARF, when present, is preferred
// and exact:
//
//	go run ./internal/gobin/offsetgen -o internal/gobin/offsets.json -grpc-o internal/gobin/grpc_offsets.json
var (
	loadGoTable   = sync.OnceValues(func() (*layoutTable, error) { return parseTable("offsets.json", offsetsJSON) })
	loadGRPCTable = sync.OnceValues(func() (*layoutTable, error) { return parseTable("grpc_offsets.json", grpcOffsetsJSON) })
)

// grpcModule is the module whose version from buildinfo keys the grpc table.
const grpcModule = "google.golang.org/grpc"

// grpcTablePackages are the package trees whose types the grpc table holds.
var grpcTablePackages = []string{grpcModule, "google.golang.org/genproto/googleapis/rpc"}

// tableFile is the JSON shape offsetgen writes. Each type lists its
// distinct layouts, each with the versions that share it.
type tableFile struct {
	Versions map[string]versionInfo  `json:"versions"`
	Types    map[string][]layoutSpan `json:"types"`
}

// versionInfo says how one version's layouts were obtained.
type versionInfo struct {
	Toolchain   string `json:"toolchain"`              // the Go that built offsetgen's probe
	GenprotoRPC string `json:"genproto_rpc,omitempty"` // genproto googleapis/rpc in the grpc probe
}

// layoutSpan is one layout of a type and the versions that have it.
type layoutSpan struct {
	Versions []string          `json:"versions"`
	Offsets  map[string]uint64 `json:"offsets"`
	Pointers []string          `json:"pointers"` // fields whose DWARF type is a pointer
}

// layoutTable is a parsed table: version -> type -> layout.
type layoutTable struct {
	name     string // the file, for errors
	versions map[string]map[string]*structLayout
}

// structLayout is a struct type's fields in one version.
type structLayout struct {
	offsets  map[string]uint64
	pointers map[string]bool
}

func parseTable(name string, data []byte) (*layoutTable, error) {
	var file tableFile
	if err := json.Unmarshal(data, &file); err != nil {
		return nil, fmt.Errorf("parse embedded %s: %w", name, err)
	}
	t := &layoutTable{name: name, versions: make(map[string]map[string]*structLayout, len(file.Versions))}
	for v := range file.Versions {
		t.versions[v] = map[string]*structLayout{}
	}
	for typ, spans := range file.Types {
		for _, s := range spans {
			l := &structLayout{offsets: s.Offsets, pointers: make(map[string]bool, len(s.Pointers))}
			for _, f := range s.Pointers {
				l.pointers[f] = true
			}
			for _, v := range s.Versions {
				types, ok := t.versions[v]
				if !ok {
					return nil, fmt.Errorf("embedded %s: %s lists version %s, which is not in versions", name, typ, v)
				}
				if types[typ] != nil {
					return nil, fmt.Errorf("embedded %s: %s has two layouts for %s", name, typ, v)
				}
				types[typ] = l
			}
		}
	}
	return t, nil
}

// minorVersion extracts "go1.22" from "go1.22.12", "go1.22rc1" or
// "go1.22.1 X:boringcrypto".
var minorVersion = regexp.MustCompile(`^go1\.[0-9]+`)

// tableLayout returns typ's layout in the table for b's version, and that
// version, for messages.
func (b *Binary) tableLayout(typ, field string) (*structLayout, string, error) {
	table, key, version, err := b.tableFor(typ, field)
	if err != nil {
		return nil, "", err
	}
	types, ok := table.versions[key]
	if !ok {
		return nil, "", fmt.Errorf("field %s.%s: %s and %s is not in %s: %w", typ, field, b.noDWARF(), version, table.name, ErrUnknownVersion)
	}
	l, ok := types[typ]
	if !ok {
		return nil, "", fmt.Errorf("field %s.%s: %s and type %s is not in %s", typ, field, b.noDWARF(), typ, table.name)
	}
	return l, version, nil
}

// tableFor picks the table describing typ and the key of b's version in it:
// the grpc table, keyed by the exact grpc module version, for grpc's (and
// genproto's rpc) types; else the Go table, keyed by Go minor version.
func (b *Binary) tableFor(typ, field string) (table *layoutTable, key, version string, err error) {
	if underAny(typePackage(typ), grpcTablePackages) {
		v, ok := b.Modules[grpcModule]
		if !ok {
			return nil, "", "", fmt.Errorf("field %s.%s: %s, and the binary does not depend on %s, whose version would pick its layout", typ, field, b.noDWARF(), grpcModule)
		}
		table, err = loadGRPCTable()
		return table, v, grpcModule + " " + v, err
	}
	table, err = loadGoTable()
	return table, minorVersion.FindString(b.GoVersion), b.GoVersion, err
}

// noDWARF says why DWARF did not describe a type.
func (b *Binary) noDWARF() string {
	if b.dwarfErr != nil {
		return b.dwarfErr.Error()
	}
	return "no DWARF for it"
}

// typePackage returns the import path of a DWARF type name:
// "google.golang.org/grpc" for "google.golang.org/grpc.clientStream".
func typePackage(typ string) string {
	typ, _, _ = strings.Cut(typ, "[") // type arguments may hold dots and slashes
	slash := strings.LastIndexByte(typ, '/')
	dot := strings.IndexByte(typ[slash+1:], '.')
	if dot < 0 {
		return ""
	}
	return typ[:slash+1+dot]
}

// underAny tells whether pkg is one of roots or a package below one.
func underAny(pkg string, roots []string) bool {
	for _, r := range roots {
		if pkg == r || strings.HasPrefix(pkg, r+"/") {
			return true
		}
	}
	return false
}
