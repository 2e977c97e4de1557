package machine

import (
	"fmt"

	"golang.org/x/arch/x86/x86asm"
)

// Regs are the vCPU registers that locate an instruction's memory
// accesses: the general registers (EAX..EDI) and the data segments' bases.
type Regs struct {
	GPR    map[x86asm.Reg]uint32
	DSBase uint64
	SSBase uint64
	ESBase uint64 // string destinations (stos, movs) and es: overrides
}

// Operand is memory an instruction may access: Size bytes from the linear
// address Linear.
type Operand struct {
	Linear uint32
	Size   uint32
}

// Covers reports whether the operand holds linear address a.
func (o Operand) Covers(a uint64) bool { return a <= 0xFFFFFFFF && uint32(a)-o.Linear < o.Size }

// Operands returns the memory inst accesses with these registers, linear
// addresses wrapping at 4 GiB. A backend may stop the vCPU before the
// instruction ran or after: a string instruction's registers may have
// moved one element on, up or down, and a stack access may be on either
// side of ESP, so those come with each candidate.
func (r Regs) Operands(inst x86asm.Inst) []Operand {
	var ops []Operand
	size := uint32(max(inst.MemBytes, 1))
	step := StringStep(inst.Op)
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
			ea += r.Reg32(m.Base)
		}
		if m.Index != 0 {
			ea += r.Reg32(m.Index) * uint32(m.Scale)
		}
		seg := r.DSBase
		switch {
		case m.Segment == x86asm.ES:
			seg = r.ESBase
		case m.Segment == x86asm.SS, m.Segment == 0 && (m.Base == x86asm.ESP || m.Base == x86asm.EBP || m.Base == x86asm.SP || m.Base == x86asm.BP):
			seg = r.SSBase
		}
		if inst.AddrSize == 16 {
			ea &= 0xFFFF
		}
		lin := uint32(seg + uint64(ea))
		ops = append(ops, Operand{lin, size})
		if step != 0 {
			ops = append(ops, Operand{lin - step, size}, Operand{lin + step, size})
		}
	}
	if n := stackBytes(inst); n != 0 {
		sp := r.GPR[x86asm.ESP]
		if inst.Mode == 16 { // 16-bit code: a 16-bit stack
			sp &= 0xFFFF
		}
		top := uint32(r.SSBase + uint64(sp))
		ops = append(ops, Operand{top - n, n}, Operand{top, n})
	}
	return ops
}

// Matches reports whether one of inst's memory operands covers addr with
// these registers.
func (r Regs) Matches(inst x86asm.Inst, addr uint64) bool {
	for _, o := range r.Operands(inst) {
		if o.Covers(addr) {
			return true
		}
	}
	return false
}

// stackBytes is how many bytes inst pushes or pops on the stack, beyond
// its explicit operands.
func stackBytes(inst x86asm.Inst) uint32 {
	word := uint32(max(inst.DataSize, 16) / 8)
	switch inst.Op {
	case x86asm.PUSH, x86asm.POP, x86asm.CALL, x86asm.RET, x86asm.PUSHF, x86asm.PUSHFD, x86asm.POPF, x86asm.POPFD:
		return word
	case x86asm.PUSHA, x86asm.PUSHAD, x86asm.POPA, x86asm.POPAD:
		return 8 * word
	}
	return 0
}

// Reg32 reads a 32-bit or 16-bit general register.
func (r Regs) Reg32(reg x86asm.Reg) uint32 {
	if reg >= x86asm.AX && reg <= x86asm.DI {
		return r.GPR[reg-x86asm.AX+x86asm.EAX] & 0xFFFF
	}
	return r.GPR[reg]
}

// HasMem reports whether inst accesses memory, explicitly or implicitly.
func HasMem(inst x86asm.Inst) bool {
	for _, a := range inst.Args {
		if _, ok := a.(x86asm.Mem); ok {
			return true
		}
	}
	return StringStep(inst.Op) != 0 || stackBytes(inst) != 0
}

// StringStep is the element size of a string instruction, 0 for others.
func StringStep(op x86asm.Op) uint32 {
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

// TraceLine formats one traced instruction as every backend prints it:
// mode, CS:IP (16-bit code) or the linear address (32-bit), the
// instruction's bytes and its disassembly, relative targets as the CPU
// sees them (offsets in the code segment in 16-bit mode, linear in 32-bit
// mode). code holds the instruction and may hold more.
func TraceLine(mode int, cs uint16, eip, linear uint64, code []byte) string {
	pc, loc := eip, fmt.Sprintf("%04x:%04x", cs, eip)
	if mode == 32 {
		pc, loc = linear, fmt.Sprintf("%08x", linear)
	}
	text, raw := "(undecodable)", code[:min(len(code), 4)]
	if inst, err := x86asm.Decode(code, mode); err == nil {
		text, raw = x86asm.IntelSyntax(inst, pc, nil), code[:inst.Len]
	}
	return fmt.Sprintf("%2d %s  %-24s %s", mode, loc, fmt.Sprintf("% x", raw), text)
}

// BadRAMCrash is the result of a run stopped at a bad-RAM access whose
// instruction is known.
func BadRAMCrash(a BadAccess) *Result {
	verb := "read"
	if a.Write {
		verb = "write"
	}
	return Crashed("guest touched bad RAM: %d-byte %s at %#x by %q at eip %#x on CPU %d", a.Size, verb, a.Addr, a.Insn, a.IP, a.CPU)
}
