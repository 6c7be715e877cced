package main

import (
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// bpfRBNoWakeup is BPF_RB_NO_WAKEUP: submit without waking a waiting reader.
const bpfRBNoWakeup = 1

// recordSize is the ring-buffer record the probes submit, about the size of
// a span event header.
const recordSize = 64

func loadProg(typ ebpf.ProgramType, attach ebpf.AttachType, name string, insns asm.Instructions) (*ebpf.Program, error) {
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: name, Type: typ, AttachType: attach, License: "GPL", Instructions: insns})
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", name, err)
	}
	return p, nil
}

// uprobeAttach is the attach type of a uprobe program: the kernel fixes at
// load whether it is for a uprobe_multi link.
func uprobeAttach(multi bool) ebpf.AttachType {
	if multi {
		return ebpf.AttachTraceUprobeMulti
	}
	return ebpf.AttachNone
}

// emptyInsns return at once: the cost of the hook itself.
func emptyInsns() asm.Instructions {
	return asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}
}

// ringbufInsns do what each agent uprobe does at least: look the process up
// in a hash map (pid -> anything) and, when found, reserve a record, write
// it and submit it with flags.
func ringbufInsns(procs, ring *ebpf.Map, flags int32) asm.Instructions {
	return asm.Instructions{
		asm.FnGetCurrentPidTgid.Call(),
		asm.RSh.Imm(asm.R0, 32),
		asm.StoreMem(asm.RFP, -4, asm.R0, asm.Word),
		asm.LoadMapPtr(asm.R1, procs.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		asm.LoadMapPtr(asm.R1, ring.FD()),
		asm.Mov.Imm(asm.R2, recordSize),
		asm.Mov.Imm(asm.R3, 0),
		asm.FnRingbufReserve.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		asm.StoreImm(asm.R0, 0, 1, asm.Word),
		asm.Mov.Reg(asm.R1, asm.R0),
		asm.Mov.Imm(asm.R2, flags),
		asm.FnRingbufSubmit.Call(),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("out"),
		asm.Return(),
	}
}

// pidFilterInsns return at once for every process but pid, and count pid's
// hits in counter[0] so the run can be checked.
func pidFilterInsns(pid int, counter *ebpf.Map) asm.Instructions {
	return asm.Instructions{
		asm.FnGetCurrentPidTgid.Call(),
		asm.RSh.Imm(asm.R0, 32),
		asm.JNE.Imm(asm.R0, int32(pid), "out"),
		asm.StoreImm(asm.RFP, -4, 0, asm.Word),
		asm.LoadMapPtr(asm.R1, counter.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		asm.Mov.Imm(asm.R1, 1),
		asm.AddAtomic.Mem(asm.R0, asm.R1, asm.DWord, 0),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("out"),
		asm.Return(),
	}
}
