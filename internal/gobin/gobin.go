// Package gobin reads what the agent must know about a Go executable to put
// uprobes on it: its Go and module versions, where a function's probe-safe
// prologue instruction sits in the file, and the layout of the structs the
// probes read.
package gobin

import (
	"debug/buildinfo"
	"debug/dwarf"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
)

// ErrNotGo reports an executable that is not a Go program (no build info):
// the Go probes do not apply; the wire path may.
var ErrNotGo = errors.New("not a Go executable")

// Binary is an opened Go executable (ELF, amd64).
type Binary struct {
	GoVersion string            // from debug/buildinfo, e.g. "go1.22.12"
	Modules   map[string]string // dependency module path -> version, from buildinfo (main module excluded)

	r     io.ReaderAt // the file's bytes
	close func() error
	elf   *elf.File
	funcs map[string]funcRange // function name -> code addresses
	dwarf *dwarf.Data          // nil when the binary was built without DWARF, or it is unreadable
	// dwarfErr says why DWARF the binary has cannot be read (cut short,
	// corrupt), for the errors of lookups the tables cannot answer.
	dwarfErr error

	// structsOnce builds structs, the DWARF offset of every named struct
	// type, on the first FieldOffset: scanning all of DWARF is too slow to
	// repeat per field, and needless for callers that only hook functions.
	structsOnce sync.Once
	structs     map[string]dwarf.Offset
	structsErr  error
}

// funcRange is a function's code as virtual addresses [start, end).
type funcRange struct{ start, end uint64 }

// Open opens the Go executable at path. It fails if the file is not an ELF
// amd64 executable built by the Go toolchain.
func Open(path string) (*Binary, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open Go binary: %w", err)
	}
	b, err := NewBinary(f, path)
	if err != nil {
		f.Close()
		return nil, err
	}
	b.close = f.Close
	return b, nil
}

// NewBinary reads the Go executable whose bytes r holds, as Open does (path
// names it in errors). Close does not close r.
func NewBinary(r io.ReaderAt, path string) (*Binary, error) {
	ef, err := elf.NewFile(r)
	if err != nil {
		return nil, fmt.Errorf("%s is not an ELF file: %w", path, err)
	}
	if ef.Machine != elf.EM_X86_64 {
		return nil, fmt.Errorf("%s is built for %v, only amd64 (EM_X86_64) is supported", path, ef.Machine)
	}
	bi, err := buildinfo.Read(r)
	if err != nil {
		return nil, fmt.Errorf("%s is not a Go binary: %w (%w)", path, ErrNotGo, err)
	}
	b := &Binary{
		GoVersion: bi.GoVersion,
		Modules:   make(map[string]string, len(bi.Deps)),
		r:         r,
		elf:       ef,
	}
	for _, dep := range bi.Deps {
		// A replaced module's code is the replacement's, so its version is
		// the one that says what was compiled in. A replacement by a local
		// directory has no version (buildinfo says "(devel)"); the required
		// version is then the best description left.
		version := dep.Version
		if r := dep.Replace; r != nil && r.Version != "" && r.Version != "(devel)" {
			version = r.Version
		}
		b.Modules[dep.Path] = version
	}
	if b.funcs, err = loadFuncs(ef); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if hasDWARF(ef) {
		// Unreadable DWARF is not fatal: the embedded offsets table still
		// describes every supported Go version.
		if b.dwarf, err = ef.DWARF(); err != nil {
			b.dwarf, b.dwarfErr = nil, fmt.Errorf("its DWARF is unreadable (%w)", err)
		}
	}
	return b, nil
}

// Close releases the file Open opened.
func (b *Binary) Close() error {
	// What was read (DWARF, symbols: megabytes) goes with the file, so a
	// collection right after Close can return it.
	b.elf, b.funcs, b.dwarf, b.structs = nil, nil, nil, nil
	if b.close == nil {
		return nil
	}
	return b.close()
}

// hasDWARF tells whether the binary carries debug info (-w drops it).
func hasDWARF(f *elf.File) bool {
	return f.Section(".debug_info") != nil || f.Section(".zdebug_info") != nil
}

// loadFuncs maps every function name to its code, from .symtab when the
// binary has one, else from .gopclntab, which Go keeps even in binaries
// stripped with -s because the runtime needs it for tracebacks.
func loadFuncs(f *elf.File) (map[string]funcRange, error) {
	syms, err := f.Symbols()
	switch {
	case err == nil:
		funcs := make(map[string]funcRange, len(syms))
		for _, s := range syms {
			if elf.ST_TYPE(s.Info) == elf.STT_FUNC && s.Size > 0 {
				if s.Name == "" {
					// debug/elf names a symbol whose name lies past the
					// end of .strtab "": the table cannot be trusted.
					return nil, errors.New("read .symtab: a function has no name (.strtab truncated or corrupt)")
				}
				funcs[s.Name] = funcRange{s.Value, s.Value + s.Size}
			}
		}
		return funcs, nil
	case errors.Is(err, elf.ErrNoSymbols):
		return pclntabFuncs(f)
	default:
		return nil, fmt.Errorf("read .symtab: %w", err)
	}
}

// fileOffset maps a virtual address to its offset in the file through the
// loadable segment containing it. Segments, unlike a fixed base, also hold
// for PIE, where addresses and file offsets differ per segment.
func (b *Binary) fileOffset(addr uint64) (uint64, error) {
	for _, p := range b.elf.Progs {
		if p.Type == elf.PT_LOAD && addr >= p.Vaddr && addr < p.Vaddr+p.Filesz {
			return addr - p.Vaddr + p.Off, nil
		}
	}
	return 0, fmt.Errorf("address %#x is in no loadable segment", addr)
}

// HasFunc reports whether the binary has function name (linked in and not
// inlined everywhere).
func (b *Binary) HasFunc(name string) bool {
	_, ok := b.funcs[name]
	return ok
}

// FuncRange returns function name's link-time code addresses [start, end).
func (b *Binary) FuncRange(name string) (start, end uint64, ok bool) {
	r, ok := b.funcs[name]
	return r.start, r.end, ok
}

// Funcs returns the link-time start address and name of every function
// whose name match accepts.
func (b *Binary) Funcs(match func(name string) bool) map[uint64]string {
	out := map[uint64]string{}
	for name, r := range b.funcs {
		if match(name) {
			out[r.start] = name
		}
	}
	return out
}

// LoadBias returns what process pid added to the executable's link-time
// addresses when it mapped it: 0 unless the executable is PIE.
func (b *Binary) LoadBias(pid int) (uint64, error) {
	if b.elf.Type != elf.ET_DYN {
		return 0, nil
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return 0, fmt.Errorf("find executable of pid %d: %w", pid, err)
	}
	maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return 0, fmt.Errorf("read mappings of pid %d: %w", pid, err)
	}
	// "start-end perms offset dev inode path": the mapping of file offset 0.
	for line := range strings.Lines(string(maps)) {
		f := strings.Fields(line)
		if len(f) < 6 || f[2] != "00000000" || strings.TrimSpace(strings.Join(f[5:], " ")) != exe {
			continue
		}
		start, err := strconv.ParseUint(strings.Split(f[0], "-")[0], 16, 64)
		if err != nil {
			return 0, fmt.Errorf("pid %d mappings: %w", pid, err)
		}
		for _, p := range b.elf.Progs {
			if p.Type == elf.PT_LOAD && p.Off == 0 {
				return start - p.Vaddr, nil
			}
		}
	}
	return 0, fmt.Errorf("pid %d has not mapped %s from offset 0", pid, exe)
}
