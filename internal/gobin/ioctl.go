package gobin

import (
	"bytes"
	"debug/elf"
	"fmt"
	"io"
)

// fionread is the ioctl request FIONREAD (also SIOCINQ, TIOCINQ) on Linux,
// as the 32-bit little-endian immediate a call site loads.
var fionread = []byte{0x1b, 0x54, 0x00, 0x00}

// AsksFIONREAD tells whether the executable's own code may ask FIONREAD:
// whether an instruction of its executable sections loads the request
// number as an immediate (what a Go or cgo call site compiles to). A false
// positive only costs propagation. Shared libraries are not read.
func (b *Binary) AsksFIONREAD() (bool, error) { return ELFAsksFIONREAD(b.elf) }

// FileAsksFIONREAD is AsksFIONREAD for any ELF file (a runtime, a shared
// library).
func FileAsksFIONREAD(path string) (bool, error) {
	f, err := elf.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	return ELFAsksFIONREAD(f)
}

// ELFAsksFIONREAD is AsksFIONREAD for an open ELF file.
func ELFAsksFIONREAD(f *elf.File) (bool, error) {
	for _, s := range f.Sections {
		if s.Type != elf.SHT_PROGBITS || s.Flags&elf.SHF_EXECINSTR == 0 {
			continue
		}
		found, err := loadsImmediate(s.Open(), fionread)
		if err != nil {
			return true, fmt.Errorf("read section %s: %w", s.Name, err)
		}
		if found {
			return true, nil
		}
	}
	return false, nil
}

// context is how many bytes before an immediate its instruction may start.
const context = 4

// loadsImmediate scans amd64 code for an instruction that puts imm in a
// register or a stack slot: MOV r32/r64, imm (B8+r), MOV r/m32, imm with a
// register operand (C7 C0+r) or [RSP+disp8] (C7 44 24 d8), and PUSH imm32
// (68). The same bytes inside a RIP-relative displacement (every other
// instruction's address of a global) do not count.
func loadsImmediate(r io.Reader, imm []byte) (bool, error) {
	buf := make([]byte, 1<<20)
	keep := 0 // bytes carried over from the previous chunk
	for {
		n, err := io.ReadFull(r, buf[keep:])
		data := buf[:keep+n]
		for i := 0; ; {
			j := bytes.Index(data[i:], imm)
			if j < 0 {
				break
			}
			if at := i + j; isImmediate(data[max(0, at-context):at]) {
				return true, nil
			}
			i += j + 1
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		carry := len(imm) - 1 + context
		keep = copy(buf, data[len(data)-carry:])
	}
}

// isImmediate tells whether the bytes before an immediate end with the
// opcode (and operand bytes) of an instruction that loads it.
func isImmediate(pre []byte) bool {
	at := func(k int) int { // the k-th byte before the immediate, or -1
		if k > len(pre) {
			return -1
		}
		return int(pre[len(pre)-k])
	}
	switch {
	case at(1) >= 0xb8 && at(1) <= 0xbf, at(1) == 0x68:
		return true
	case at(2) == 0xc7 && at(1)&0xf8 == 0xc0:
		return true
	case at(4) == 0xc7 && at(3) == 0x44 && at(2) == 0x24:
		return true
	}
	return false
}
