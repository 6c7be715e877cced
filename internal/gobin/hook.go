package gobin

import (
	"errors"
	"fmt"

	"golang.org/x/arch/x86/x86asm"
)

// maxPrologueInsns bounds the prologue scan. The longest Go 1.21+ prologue
// (huge frames: MOVQ, SUBQ, JCS, CMPQ, JBE, PUSHQ) has six instructions.
const maxPrologueInsns = 16

// maxInsnLen is the longest x86 instruction, in bytes.
const maxInsnLen = 15

// ErrNoFunc reports a function the binary does not have (never linked in,
// or inlined everywhere).
var ErrNoFunc = errors.New("function not in binary (absent or inlined everywhere)")

// HookOffset returns the file offset at which to attach a uprobe to fn (a
// full Go symbol name such as "net/http.(*response).finishRequest").
//
// The offset is that of an instruction the kernel's x86 uprobe code emulates
// rather than single-steps out of line: PUSHQ BP, which runs once per call,
// or failing that the conditional jump after Go's stack-bound check, which
// runs again whenever the stack grows. Entry-point probes on Go code land on
// the stack-bound CMPQ, which must be single-stepped.
func (b *Binary) HookOffset(fn string) (uint64, error) {
	r, ok := b.funcs[fn]
	if !ok {
		return 0, fmt.Errorf("hook %s: %w", fn, ErrNoFunc)
	}
	start, err := b.fileOffset(r.start)
	if err != nil {
		return 0, fmt.Errorf("hook %s: %w", fn, err)
	}
	code := make([]byte, min(r.end-r.start, maxPrologueInsns*maxInsnLen))
	if _, err := b.r.ReadAt(code, int64(start)); err != nil {
		return 0, fmt.Errorf("hook %s: read code: %w", fn, err)
	}
	at, err := hookInstruction(code)
	if err != nil {
		return 0, fmt.Errorf("hook %s: %w", fn, err)
	}
	return start + at, nil
}

// hookInstruction returns the offset in code (a function's first bytes) of
// its PUSHQ BP, or else of the JBE that follows the stack-bound check.
func hookInstruction(code []byte) (uint64, error) {
	var pc int
	jump := -1     // offset of the stack-check JBE, if seen
	check := false // previous instruction was the stack-bound CMPQ
	for range maxPrologueInsns {
		if pc >= len(code) {
			break
		}
		inst, err := x86asm.Decode(code[pc:], 64)
		if err != nil {
			return 0, fmt.Errorf("decode prologue at +%#x: %w", pc, err)
		}
		switch {
		case inst.Op == x86asm.PUSH && inst.Args[0] == x86asm.RBP:
			return uint64(pc), nil
		case inst.Op == x86asm.JBE && check && jump < 0:
			jump = pc
		}
		if inst.Op == x86asm.CALL || inst.Op == x86asm.RET {
			break // past the prologue
		}
		check = isStackCheck(inst)
		pc += inst.Len
	}
	if jump < 0 {
		return 0, errors.New("no PUSHQ BP or stack-check JBE in the prologue")
	}
	return uint64(jump), nil
}

// isStackCheck tells whether inst compares against g.stackguard0, i.e.
// 16(R14): since Go 1.17's register ABI, R14 holds the current g.
func isStackCheck(inst x86asm.Inst) bool {
	if inst.Op != x86asm.CMP {
		return false
	}
	for _, a := range inst.Args {
		if m, ok := a.(x86asm.Mem); ok && m.Base == x86asm.R14 && m.Disp == 16 && m.Index == 0 {
			return true
		}
	}
	return false
}
