package kvm

import (
	"fmt"

	"golang.org/x/arch/x86/x86asm"
)

// cpuRegs is what locating a faulting instruction needs of the vCPU.
type cpuRegs struct {
	gpr    map[x86asm.Reg]uint32 // EAX..EDI
	dsBase uint64
	ssBase uint64
}

// faultingInstruction finds the instruction that made a memory access at
// addr, given the vCPU's linear instruction pointer ip at the exit.
//
// KVM completes an emulated MMIO *write* before it exits (the instruction is
// retired, ip points past it), but an MMIO *read* exits before the
// instruction completes (ip points at it). So for a write we decode
// backwards: every start 1..15 bytes before ip whose instruction ends
// exactly at ip and has a memory operand is a candidate, and one whose
// effective address is addr (registers are unchanged by a plain store) wins.
// read(a, n) returns up to n guest bytes at linear address a.
func faultingInstruction(read func(a uint64, n int) []byte, ip uint64, mode int, regs cpuRegs, addr uint64, write bool) (uint64, string) {
	decode := func(at uint64) (x86asm.Inst, bool) {
		inst, err := x86asm.Decode(read(at, 15), mode)
		return inst, err == nil
	}
	format := func(at uint64, inst x86asm.Inst) (uint64, string) {
		return at, x86asm.IntelSyntax(inst, at, nil)
	}
	// The instruction at ip: a read, or a string instruction that KVM
	// has not retired yet.
	if inst, ok := decode(ip); ok && (!write || regs.matches(inst, addr)) {
		if !write || hasMem(inst) {
			return format(ip, inst)
		}
	}
	var fallback *x86asm.Inst
	var fallbackAt uint64
	for back := uint64(1); back <= 15 && back <= ip; back++ {
		at := ip - back
		inst, ok := decode(at)
		if !ok || uint64(inst.Len) != back || !hasMem(inst) {
			continue
		}
		if regs.matches(inst, addr) {
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

func hasMem(inst x86asm.Inst) bool {
	for _, a := range inst.Args {
		if _, ok := a.(x86asm.Mem); ok {
			return true
		}
	}
	switch inst.Op {
	case x86asm.STOSB, x86asm.STOSW, x86asm.STOSD, x86asm.MOVSB, x86asm.MOVSW, x86asm.MOVSD,
		x86asm.PUSH, x86asm.CALL:
		return true // implicit memory operands
	}
	return false
}

// matches reports whether one of inst's explicit memory operands addresses
// addr with the current register values.
func (r cpuRegs) matches(inst x86asm.Inst, addr uint64) bool {
	for _, a := range inst.Args {
		m, ok := a.(x86asm.Mem)
		if !ok {
			continue
		}
		ea := uint32(m.Disp)
		if m.Base != 0 {
			ea += r.reg32(m.Base)
		}
		if m.Index != 0 {
			ea += r.reg32(m.Index) * uint32(m.Scale)
		}
		seg := r.dsBase
		if m.Segment == x86asm.SS || m.Base == x86asm.ESP || m.Base == x86asm.EBP || m.Base == x86asm.SP || m.Base == x86asm.BP {
			seg = r.ssBase
		}
		if inst.Mode == 16 {
			ea &= 0xFFFF
		}
		if (seg+uint64(ea))&0xFFFFFFFF == addr {
			return true
		}
	}
	return false
}

// reg32 reads a 32-bit or 16-bit general register.
func (r cpuRegs) reg32(reg x86asm.Reg) uint32 {
	if reg >= x86asm.AX && reg <= x86asm.DI {
		return r.gpr[reg-x86asm.AX+x86asm.EAX] & 0xFFFF
	}
	return r.gpr[reg]
}
