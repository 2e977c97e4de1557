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
	esBase uint64 // string destinations (stos, movs) and es: overrides
}

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
func faultingInstruction(read func(a uint64, n int) []byte, ip uint64, mode int, regs cpuRegs, addr uint64, write bool) (uint64, string) {
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
	if inst, ok := decode(ip); ok && (!write || stringStep(inst.Op) != 0 && regs.matches(inst, addr)) {
		return format(ip, inst)
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
			// An instruction decodes without its prefixes too, ending
			// at the same place and found first: take them back.
			for at > 0 && isPrefix(read(at-1, 1)) {
				p, ok := decode(at - 1)
				if !ok || uint64(p.Len) != ip-(at-1) || !regs.matches(p, addr) {
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

// stringStep is the element size of a string instruction, 0 for others.
func stringStep(op x86asm.Op) uint32 {
	switch op {
	case x86asm.STOSB, x86asm.MOVSB, x86asm.LODSB, x86asm.SCASB, x86asm.CMPSB, x86asm.INSB, x86asm.OUTSB:
		return 1
	case x86asm.STOSW, x86asm.MOVSW, x86asm.LODSW, x86asm.SCASW, x86asm.CMPSW, x86asm.INSW, x86asm.OUTSW:
		return 2
	case x86asm.STOSD, x86asm.MOVSD, x86asm.LODSD, x86asm.SCASD, x86asm.CMPSD, x86asm.INSD, x86asm.OUTSD:
		return 4
	}
	return 0
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

// matches reports whether one of inst's explicit memory operands covers
// addr with the current register values: addr may be any byte of the
// access (KVM exits for the part of a straddling access that is in no
// slot), and a string instruction's registers may have moved one element
// on, up or down.
func (r cpuRegs) matches(inst x86asm.Inst, addr uint64) bool {
	if addr > 0xFFFFFFFF {
		return false
	}
	size := uint32(max(inst.MemBytes, 1))
	step := stringStep(inst.Op)
	if step != 0 {
		size = step
	}
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
		switch {
		case m.Segment == x86asm.ES:
			seg = r.esBase
		case m.Segment == x86asm.SS, m.Segment == 0 && (m.Base == x86asm.ESP || m.Base == x86asm.EBP || m.Base == x86asm.SP || m.Base == x86asm.BP):
			seg = r.ssBase
		}
		if inst.AddrSize == 16 {
			ea &= 0xFFFF
		}
		lin := uint32(seg + uint64(ea))
		for _, start := range []uint32{lin, lin - step, lin + step} {
			if uint32(addr)-start < size {
				return true
			}
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
