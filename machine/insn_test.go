package machine

import (
	"testing"

	"golang.org/x/arch/x86/x86asm"
)

func regs32(eax, ecx, edx, ebx, esp, ebp, esi, edi uint32) map[x86asm.Reg]uint32 {
	return map[x86asm.Reg]uint32{
		x86asm.EAX: eax, x86asm.ECX: ecx, x86asm.EDX: edx, x86asm.EBX: ebx,
		x86asm.ESP: esp, x86asm.EBP: ebp, x86asm.ESI: esi, x86asm.EDI: edi,
	}
}

// Matches: the segment an operand uses, the bytes an access covers,
// string steps, stack accesses either side of ESP.
func TestMatches(t *testing.T) {
	dec := func(b []byte, mode int) x86asm.Inst {
		inst, err := x86asm.Decode(b, mode)
		if err != nil {
			t.Fatalf("decode % x: %v", b, err)
		}
		return inst
	}
	stack := Regs{GPR: regs32(0x100, 2, 0, 0x200, 0x1000, 0x3000, 0, 0x4000), DSBase: 0x10000, SSBase: 0x20000, ESBase: 0x10000}
	otherES := stack
	otherES.ESBase = 0x30000
	for _, tc := range []struct {
		name string
		b    []byte
		mode int
		r    Regs
		addr uint64
		want bool
	}{
		{"[esp+ecx*4+8] is SS-based", []byte{0x89, 0x44, 0x8C, 0x08}, 32, stack, 0x20000 + 0x1010, true},
		{"[esp+ecx*4+8] is not DS-based", []byte{0x89, 0x44, 0x8C, 0x08}, 32, stack, 0x10000 + 0x1010, false},
		{"[ebp+8] is SS-based", []byte{0x89, 0x45, 0x08}, 32, stack, 0x23008, true},
		{"[ebx] is DS-based", []byte{0x89, 0x03}, 32, stack, 0x10200, true},
		{"ss: override on [ebx]", []byte{0x36, 0x89, 0x03}, 32, stack, 0x20200, true},
		{"dword store covers 4 bytes: first", []byte{0x89, 0x03}, 32, stack, 0x10200, true},
		{"dword store covers 4 bytes: last", []byte{0x89, 0x03}, 32, stack, 0x10203, true},
		{"dword store covers 4 bytes: one past", []byte{0x89, 0x03}, 32, stack, 0x10204, false},
		{"dword store covers 4 bytes: one before", []byte{0x89, 0x03}, 32, stack, 0x101FF, false},
		{"byte store covers 1 byte", []byte{0x88, 0x03}, 32, stack, 0x10201, false},
		{"stosd after the step", []byte{0xAB}, 32, stack, 0x10000 + 0x4000 - 4, true},
		{"stosd after a backward step", []byte{0xAB}, 32, stack, 0x10000 + 0x4000 + 4, true},
		{"stosd writes through ES, not DS", []byte{0xAB}, 32, otherES, 0x30000 + 0x4000, true},
		{"stosd does not write through DS", []byte{0xAB}, 32, otherES, 0x10000 + 0x4000, false},
		{"stosd two steps away", []byte{0xAB}, 32, stack, 0x10000 + 0x4000 - 8, false},
		{"no memory operand", []byte{0x01, 0xD0}, 32, stack, 0x10000, false}, // add eax, edx
		{"address above 4 GiB", []byte{0x89, 0x03}, 32, stack, 1<<32 + 0x10200, false},
		{"push: below ESP before it runs", []byte{0x50}, 32, stack, 0x20000 + 0x1000 - 4, true},
		{"push: at ESP once it ran", []byte{0x50}, 32, stack, 0x20000 + 0x1000, true},
		{"push: not beyond", []byte{0x50}, 32, stack, 0x20000 + 0x1000 + 4, false},
		{"pop reads at ESP", []byte{0x58}, 32, stack, 0x20000 + 0x1002, true},
		{"16-bit push: a word below SP", []byte{0x50}, 16, stack, 0x20000 + 0x1000 - 2, true},
		{"16-bit push: not a dword below", []byte{0x50}, 16, stack, 0x20000 + 0x1000 - 4, false},
		{"linear address wraps at 4 GiB", []byte{0x89, 0x03}, 32, Regs{GPR: regs32(0, 0, 0, 0x20, 0, 0, 0, 0), DSBase: 0xFFFFFFF0}, 0x10, true},
	} {
		if got := tc.r.Matches(dec(tc.b, tc.mode), tc.addr); got != tc.want {
			t.Errorf("%s: Matches(%#x) = %v, want %v", tc.name, tc.addr, got, tc.want)
		}
	}
}

// Reg32 reads 16-bit registers as the low half of their 32-bit ones.
func TestReg32(t *testing.T) {
	r := Regs{GPR: regs32(0x11112222, 0x33334444, 0x55556666, 0x77778888, 0x9999AAAA, 0xBBBBCCCC, 0xDDDDEEEE, 0x0F0F1E1E)}
	for _, tc := range []struct {
		reg  x86asm.Reg
		want uint32
	}{
		{x86asm.EAX, 0x11112222}, {x86asm.AX, 0x2222},
		{x86asm.ECX, 0x33334444}, {x86asm.CX, 0x4444},
		{x86asm.EBX, 0x77778888}, {x86asm.BX, 0x8888},
		{x86asm.SP, 0xAAAA}, {x86asm.BP, 0xCCCC},
		{x86asm.SI, 0xEEEE}, {x86asm.DI, 0x1E1E}, {x86asm.EDI, 0x0F0F1E1E},
	} {
		if got := r.Reg32(tc.reg); got != tc.want {
			t.Errorf("Reg32(%v) = %#x, want %#x", tc.reg, got, tc.want)
		}
	}
}

func TestTraceLine(t *testing.T) {
	for _, tc := range []struct {
		mode        int
		cs          uint16
		eip, linear uint64
		code        []byte
		want        string
	}{
		{16, 0xf000, 0xfff0, 0xfffffff0, []byte{0xea, 0x5b, 0xe0, 0x00, 0xf0, 0x00}, "16 f000:fff0  ea 5b e0 00 f0           jmp far 0xe05b, 0xf000"},
		// 16-bit relative targets are offsets in CS, 32-bit ones linear.
		{16, 0x1000, 0x10, 0x10010, []byte{0xeb, 0x02}, "16 1000:0010  eb 02                    jmp 0x14"},
		{32, 0x10, 0x2001005, 0x2001005, []byte{0x89, 0x10, 0x90}, "32 02001005  89 10                    mov dword ptr [eax], edx"},
		{32, 0x10, 0x100, 0x100, nil, "32 00000100                           (undecodable)"},
	} {
		if got := TraceLine(tc.mode, tc.cs, tc.eip, tc.linear, tc.code); got != tc.want {
			t.Errorf("got  %q\nwant %q", got, tc.want)
		}
	}
}
