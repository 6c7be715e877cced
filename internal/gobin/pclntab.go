package gobin

import (
	"bytes"
	"debug/elf"
	"debug/gosym"
	"encoding/binary"
	"errors"
	"fmt"
)

// pclntabMagic opens a Go 1.20+ pclntab header on amd64: magic 0xfffffff1,
// two zero pad bytes, minimum instruction size 1, pointer size 8.
var pclntabMagic = []byte{0xf1, 0xff, 0xff, 0xff, 0, 0, 1, 8}

const (
	// pclntabTextStart is where Go 1.18-1.25 store runtime.text in the
	// pclntab header: after the magic block and the function and file counts.
	pclntabTextStart = 8 + 2*8
	// moduledataText is the offset of runtime.moduledata's text field: after
	// pcHeader, six slices, findfunctab, minpc and maxpc (same since Go 1.18).
	moduledataText = 8 + 6*24 + 3*8
)

// pclntabFuncs reads the function table the runtime keeps for tracebacks.
func pclntabFuncs(f *elf.File) (map[string]funcRange, error) {
	text := f.Section(".text")
	if text == nil {
		return nil, errors.New("no .symtab and no .text section")
	}
	pclntab, err := findPclntab(f)
	if err != nil {
		return nil, err
	}
	if err := checkPclntab(pclntab); err != nil {
		return nil, err
	}
	tab, err := gosym.NewTable(nil, gosym.NewLineTable(pclntab, runtimeText(f, text, pclntab)))
	if err != nil {
		return nil, fmt.Errorf("parse pclntab: %w", err)
	}
	if len(tab.Funcs) == 0 {
		// debug/gosym reads a table it cannot parse (cut short, say) as
		// empty: that is no function at all, not a program without any.
		return nil, errors.New("pclntab is truncated or corrupt: no function can be read from it")
	}
	funcs := make(map[string]funcRange, len(tab.Funcs))
	for _, fn := range tab.Funcs {
		funcs[fn.Name] = funcRange{fn.Entry, fn.End}
	}
	return funcs, nil
}

// pclntabHeaderLen is the length of a Go 1.20+ pclntab header: the magic
// block, then eight words: the function and file counts, runtime.text, and
// the offsets of the function name, compilation unit, file, pc and
// function tables.
const pclntabHeaderLen = 8 + 8*8

// checkPclntab refuses a table whose function table does not fit in it.
// debug/gosym trusts the header's function count and allocates for every
// function before it reads one, so a count that a damaged header makes
// huge would crash the agent with an out-of-memory error it cannot recover.
func checkPclntab(tab []byte) error {
	if len(tab) < pclntabHeaderLen || !bytes.Equal(tab[:len(pclntabMagic)], pclntabMagic) {
		return errors.New("pclntab is truncated or not that of Go 1.20 or later")
	}
	n := uint64(len(tab))
	nfunc := binary.LittleEndian.Uint64(tab[8:])
	functab := binary.LittleEndian.Uint64(tab[8+7*8:])
	// nfunc pairs of uint32 (entry, data offset), then the end PC.
	if functab > n || n-functab < 4 || nfunc > (n-functab-4)/8 {
		return fmt.Errorf("pclntab is truncated or corrupt: %d functions at offset %d do not fit in its %d bytes", nfunc, functab, n)
	}
	return nil
}

// findPclntab returns the bytes from the start of the pclntab on.
func findPclntab(f *elf.File) ([]byte, error) {
	// Go's own linker names the section (.data.rel.ro.gopclntab in older PIE builds).
	for _, name := range []string{".gopclntab", ".data.rel.ro.gopclntab"} {
		if s := f.Section(name); s != nil {
			data, err := s.Data()
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", name, err)
			}
			return data, nil
		}
	}
	// An external linker may merge it into .data.rel.ro (PIE before Go
	// 1.26), where only its header gives it away.
	for _, s := range f.Sections {
		if s.Type != elf.SHT_PROGBITS || s.Flags&elf.SHF_ALLOC == 0 || s.Flags&elf.SHF_EXECINSTR != 0 {
			continue
		}
		data, err := s.Data()
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", s.Name, err)
		}
		if i := bytes.Index(data, pclntabMagic); i >= 0 {
			return data[i:], nil
		}
	}
	return nil, errors.New("no .symtab and no Go 1.20+ pclntab")
}

// runtimeText returns the address of runtime.text, which pclntab's function
// entries are offsets from. It is not always .text's start: an external
// linker puts C start-up code first.
func runtimeText(f *elf.File, text *elf.Section, pclntab []byte) uint64 {
	inText := func(addr uint64) bool { return addr >= text.Addr && addr < text.Addr+text.Size }
	if len(pclntab) >= pclntabTextStart+8 {
		if addr := binary.LittleEndian.Uint64(pclntab[pclntabTextStart:]); inText(addr) {
			return addr
		}
	}
	// Go 1.26 leaves that header field zero and has the runtime read
	// moduledata.text instead; moduledata got its own section then too.
	if m := f.Section(".go.module"); m != nil {
		var buf [8]byte
		if _, err := m.ReadAt(buf[:], moduledataText); err == nil {
			if addr := binary.LittleEndian.Uint64(buf[:]); inText(addr) {
				return addr
			}
		}
	}
	// Go's internal linker starts .text with runtime.text.
	return text.Addr
}
