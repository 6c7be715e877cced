package gobin

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// tinyProgram is small enough to fuzz whole: a struct of its own for the
// DWARF lookups, the runtime for the rest.
var tinyProgram = map[string]string{
	"go.mod": "module example.com/tiny\n\ngo 1.21\n",
	"main.go": `package main

type T struct {
	A int
	B *int
}

var sink T

func main() {
	sink.B = &sink.A
	println(sink.A)
}
`,
}

// tinyVariants are the ways of reading functions and types that a damaged
// binary can break: .symtab and compressed DWARF (the default), plain
// DWARF, and .gopclntab without DWARF (stripped).
var tinyVariants = []variant{
	{name: "plain"},
	{name: "raw-dwarf", flags: []string{"-ldflags=-compressdwarf=false"}},
	{name: "stripped", flags: []string{"-ldflags=-s -w"}},
}

// buildTiny builds every tiny variant and returns their bytes.
func buildTiny(tb testing.TB) [][]byte {
	tb.Helper()
	src := tb.TempDir()
	for name, content := range tinyProgram {
		if err := os.WriteFile(filepath.Join(src, name), []byte(content), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	out := make([][]byte, len(tinyVariants))
	for i, v := range tinyVariants {
		exe := filepath.Join(src, v.name)
		if err := build(src, exe, v); err != nil {
			tb.Fatal(err)
		}
		b, err := os.ReadFile(exe)
		if err != nil {
			tb.Fatal(err)
		}
		out[i] = b
	}
	return out
}

// regions are the parts of an executable that the fuzz inputs damage, by
// index: sections the package reads, then the ELF header (with the program
// headers after it). A variant without a section gets the header instead.
var regions = []string{
	".gopclntab", ".debug_info", ".debug_abbrev", ".go.buildinfo", ".symtab", ".strtab",
	".text", ".go.module", ".debug_str", ".shstrtab", "ELF header",
}

// damage returns a copy of exe with patch written at offset at of a region,
// the region's section cut to size bytes (size > 0: its header claims less
// than the data it had), and the file cut to cut bytes (cut > 0).
func damage(exe []byte, region uint8, at uint32, patch []byte, size, cut uint32) []byte {
	out := bytes.Clone(exe)
	f, err := elf.NewFile(bytes.NewReader(exe))
	if err != nil {
		panic(err)
	}
	start, n := uint64(0), uint64(64+len(f.Progs)*56) // ELF header and program headers
	name := regions[int(region)%len(regions)]
	idx := -1
	for i, s := range f.Sections {
		if s.Name == name && s.Type != elf.SHT_NOBITS {
			idx, start, n = i, s.Offset, s.FileSize
		}
	}
	if off := start + uint64(at)%max(n, 1); len(patch) > 0 && off < uint64(len(out)) {
		copy(out[off:], patch)
	}
	if idx >= 0 && size > 0 {
		// The section header's sh_size is 32 bytes into its 64-byte entry.
		shoff := binary.LittleEndian.Uint64(exe[0x28:])
		sh := shoff + uint64(idx)*64 + 32
		binary.LittleEndian.PutUint64(out[sh:], uint64(size)%max(n, 1))
	}
	if cut > 0 {
		out = out[:int(cut)%len(out)]
	}
	return out
}

// exercise calls everything the agent asks of a binary; with damaged input
// any of it may fail, none of it may panic.
func exercise(b *Binary) {
	b.Funcs(func(string) bool { return true })
	for _, fn := range []string{"main.main", "runtime.main", "runtime.mallocgc"} {
		_, _ = b.HookOffset(fn)
	}
	for _, f := range [][2]string{{"main.T", "B"}, {"runtime.g", "goid"}, {"net/http.Request", "Pattern"}} {
		_, _ = b.FieldOffset(f[0], f[1])
		_, _ = b.FieldIsPointer(f[0], f[1])
	}
}

// FuzzBinary opens real Go executables, damaged as the input says (bytes
// overwritten in a region, a section cut short, the file truncated): each
// opens with an error or reads without panicking. testdata holds inputs
// that once crashed or misled the reader.
func FuzzBinary(f *testing.F) {
	exes := buildTiny(f)
	for v := range tinyVariants {
		f.Add(uint8(v), uint8(0), uint32(0), []byte(nil), uint32(0), uint32(0))
		for r := range regions {
			f.Add(uint8(v), uint8(r), uint32(16), []byte{0xff, 0xff, 0xff, 0x7f}, uint32(64), uint32(0))
		}
	}
	f.Fuzz(func(t *testing.T, variant, region uint8, at uint32, patch []byte, size, cut uint32) {
		exe := damage(exes[int(variant)%len(exes)], region, at, patch, size, cut)
		b, err := NewBinary(bytes.NewReader(exe), "fuzzed")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzzed") {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		exercise(b)
	})
}

// TestDamagedBinary: a table cut short gives an error that says so; cut
// DWARF is read as none, since the offsets tables stand in for it, and
// errors of lookups they cannot answer say why DWARF did not. (These were
// an empty function table, unnamed functions, and "no DWARF for it"; the
// same inputs are FuzzBinary seeds in testdata.)
func TestDamagedBinary(t *testing.T) {
	exes := buildTiny(t)
	index := func(names []string, name string) uint8 { return uint8(slices.Index(names, name)) }
	var variants []string
	for _, v := range tinyVariants {
		variants = append(variants, v.name)
	}
	pristine, err := NewBinary(bytes.NewReader(exes[index(variants, "raw-dwarf")]), "pristine")
	if err != nil {
		t.Fatal(err)
	}
	goid, err := pristine.FieldOffset("runtime.g", "goid")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		variant, region string
		size            uint32
		openErr         string // "": opens, DWARF unreadable
	}{
		{"stripped", ".gopclntab", 4096, "pclntab is truncated or corrupt"},
		{"plain", ".strtab", 4096, "a function has no name (.strtab truncated or corrupt)"},
		{"plain", ".debug_info", 4096, ""},      // compressed: unreadable at Open
		{"raw-dwarf", ".debug_info", 4096, ""},  // unreadable at Open
		{"raw-dwarf", ".debug_abbrev", 100, ""}, // unreadable when indexed
	} {
		name := tc.variant + " " + tc.region
		exe := damage(exes[index(variants, tc.variant)], index(regions, tc.region), 0, nil, tc.size, 0)
		b, err := NewBinary(bytes.NewReader(exe), "damaged")
		if tc.openErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.openErr) {
				t.Errorf("%s: error %v, want one saying %q", name, err, tc.openErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if off, err := b.FieldOffset("runtime.g", "goid"); err != nil || off != goid {
			t.Errorf("%s: runtime.g.goid at %d, %v; want %d from the tables", name, off, err, goid)
		}
		if _, err := b.FieldOffset("main.T", "B"); err == nil || !strings.Contains(err.Error(), "its DWARF is unreadable (") {
			t.Errorf("%s: main.T.B error %v, want one saying DWARF is unreadable", name, err)
		}
	}
}

// FuzzHookInstruction: any bytes as a function's prologue give an offset
// inside them or an error.
func FuzzHookInstruction(f *testing.F) {
	f.Add([]byte{0x49, 0x3b, 0x66, 0x10, 0x0f, 0x86, 0x10, 0, 0, 0, 0x55, 0x48, 0x89, 0xe5}) // stack check, JBE, PUSHQ BP
	f.Add([]byte{0x55, 0x48, 0x89, 0xe5, 0xc3})                                              // PUSHQ BP, MOVQ SP, BP, RET
	f.Add([]byte{0x0f, 0x86})                                                                // cut JBE
	f.Fuzz(func(t *testing.T, code []byte) {
		if at, err := hookInstruction(code); err == nil && at >= uint64(len(code)) {
			t.Fatalf("hook at %d in %d bytes", at, len(code))
		}
	})
}
