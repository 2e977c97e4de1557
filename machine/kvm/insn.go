package kvm

import (
	"fmt"

	"golang.org/x/arch/x86/x86asm"

	"kvmboot/machine"
)

// faultingInstruction finds the instruction that made a memory access at
// addr, given the vCPU's linear instruction pointer ip at the exit.
//
// KVM completes an emulated MMIO *write* before it exits (the instruction is
// retired, ip points past it), but an MMIO *read* exits before the
// instruction completes (ip points at it). A rep string instruction is the
// exception: between iterations ip stays on it, its registers already
// advanced past the element it wrote. So for a write the instruction at ip
// counts only if it is a string instruction addressing addr; otherwise we
// decode backwards: every start 1..15 bytes before ip whose instruction
// ends exactly at ip and has a memory operand is a candidate, and one whose
// effective address covers addr (registers are unchanged by a plain store)
// wins, with any prefixes (66, rep, a segment) before it.
// read(a, n) returns up to n guest bytes at linear address a.
func faultingInstruction(read func(a uint64, n int) []byte, ip uint64, mode int, regs machine.Regs, addr uint64, write bool) (uint64, string) {
	decode := func(at uint64) (x86asm.Inst, bool) {
		inst, err := x86asm.Decode(read(at, 15), mode)
		return inst, err == nil
	}
	format := func(at uint64, inst x86asm.Inst) (uint64, string) {
		return at, x86asm.IntelSyntax(inst, at, nil)
	}
	// The instruction at ip: a read, or a string instruction that KVM
	// has not retired yet. Any other instruction at ip has not run: a
	// load that follows a store to the same address is not the store.
	if inst, ok := decode(ip); ok && (!write || machine.StringStep(inst.Op) != 0 && regs.Matches(inst, addr)) {
		return format(ip, inst)
	}
	var fallback *x86asm.Inst
	var fallbackAt uint64
	for back := uint64(1); back <= 15 && back <= ip; back++ {
		at := ip - back
		inst, ok := decode(at)
		if !ok || uint64(inst.Len) != back || !machine.HasMem(inst) {
			continue
		}
		if regs.Matches(inst, addr) {
			// An instruction decodes without its prefixes too, ending
			// at the same place and found first: take them back.
			for at > 0 && isPrefix(read(at-1, 1)) {
				p, ok := decode(at - 1)
				if !ok || uint64(p.Len) != ip-(at-1) || !regs.Matches(p, addr) {
					break
				}
				at, inst = at-1, p
			}
			return format(at, inst)
		}
		if fallback == nil {
			f := inst
			fallback, fallbackAt = &f, at
		}
	}
	if fallback != nil {
		return format(fallbackAt, *fallback)
	}
	return ip, fmt.Sprintf("(no instruction found before %#x)", ip)
}

// isPrefix reports whether b is one byte of an instruction prefix.
func isPrefix(b []byte) bool {
	if len(b) != 1 {
		return false
	}
	switch b[0] {
	case 0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65, 0x66, 0x67, 0xF0, 0xF2, 0xF3:
		return true
	}
	return false
}
