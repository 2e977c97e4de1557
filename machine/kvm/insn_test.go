package kvm

import (
	"testing"

	"golang.org/x/arch/x86/x86asm"

	"kvmboot/machine"
)

// guestText is guest memory holding code at linear address base.
type guestText struct {
	base uint64
	b    []byte
}

// read returns up to n bytes at a, as runner.readPhys does: fewer at the
// end of the mapped bytes, nil outside them.
func (g guestText) read(a uint64, n int) []byte {
	if a < g.base || a >= g.base+uint64(len(g.b)) {
		return nil
	}
	off := a - g.base
	return g.b[off:min(off+uint64(n), uint64(len(g.b)))]
}

func regs32(eax, ecx, edx, ebx, esp, ebp, esi, edi uint32) map[x86asm.Reg]uint32 {
	return map[x86asm.Reg]uint32{
		x86asm.EAX: eax, x86asm.ECX: ecx, x86asm.EDX: edx, x86asm.EBX: ebx,
		x86asm.ESP: esp, x86asm.EBP: ebp, x86asm.ESI: esi, x86asm.EDI: edi,
	}
}

// The vCPU state at a bad-RAM exit is what KVM leaves (arch/x86/kvm/x86.c,
// x86_emulate_instruction): a write is retired before the exit, so RIP is
// past the storing instruction and its registers are final; a read exits
// before the instruction completes, RIP on it; a rep string instruction
// between iterations has RIP on it but its registers already advanced
// (writeback_registers before EMULATION_RESTART). Every case names the
// instruction a person debugging the guest needs to see.
func TestFaultingInstruction(t *testing.T) {
	const bad = 0x2000000
	for _, tc := range []struct {
		name   string
		text   []byte
		base   uint64
		ip     uint64
		mode   int
		regs   machine.Regs
		addr   uint64
		write  bool
		wantAt uint64
		want   string
	}{
		{
			// mov edx, 0xdeadbeef; mov [eax], edx; hlt. The imm32's
			// bytes are decoding traps, and hlt at RIP is no store.
			name: "store retired, RIP past it",
			text: []byte{0xBA, 0xEF, 0xBE, 0xAD, 0xDE, 0x89, 0x10, 0xF4},
			base: 0x1000, ip: 0x1007, mode: 32,
			regs: machine.Regs{GPR: regs32(bad, 0, 0xDEADBEEF, 0, 0x7000, 0, 0, 0)},
			addr: bad, write: true,
			wantAt: 0x1005, want: "mov dword ptr [eax], edx",
		},
		{
			// A memory test's write then read-back: the load at RIP
			// addresses the same byte, but a write exit never comes from
			// the instruction at RIP unless it is an unfinished string
			// instruction.
			name: "store followed by a load of the same address",
			text: []byte{0xBA, 0x55, 0xAA, 0x55, 0xAA, 0x89, 0x10, 0x8B, 0x08},
			base: 0x1000, ip: 0x1007, mode: 32,
			regs: machine.Regs{GPR: regs32(bad, 0, 0xAA55AA55, 0, 0x7000, 0, 0, 0)},
			addr: bad, write: true,
			wantAt: 0x1005, want: "mov dword ptr [eax], edx",
		},
		{
			name: "store with an 8-bit displacement",
			text: []byte{0x89, 0x50, 0x10},
			base: 0x1000, ip: 0x1003, mode: 32,
			regs: machine.Regs{GPR: regs32(bad-0x10, 0, 0, 0, 0x7000, 0, 0, 0)},
			addr: bad, write: true,
			wantAt: 0x1000, want: "mov dword ptr [eax+0x10], edx",
		},
		{
			// Two instructions end at RIP and both store: "mov
			// [eax+0x1089], edx" (6 bytes) and its tail "add [eax], al"
			// (2 bytes, found first). Only the register values tell
			// which one wrote the address.
			name: "effective address picks the longer candidate",
			text: []byte{0x89, 0x90, 0x89, 0x10, 0x00, 0x00},
			base: 0x1000, ip: 0x1006, mode: 32,
			regs: machine.Regs{GPR: regs32(bad-0x1089, 0, 0, 0, 0x7000, 0, 0, 0)},
			addr: bad, write: true,
			wantAt: 0x1000, want: "mov dword ptr [eax+0x1089], edx",
		},
		{
			name: "effective address picks the shorter candidate",
			text: []byte{0x89, 0x90, 0x89, 0x10, 0x00, 0x00},
			base: 0x1000, ip: 0x1006, mode: 32,
			regs: machine.Regs{GPR: regs32(bad, 0, 0, 0, 0x7000, 0, 0, 0)},
			addr: bad, write: true,
			wantAt: 0x1004, want: "add byte ptr [eax], al",
		},
		{
			// SIB with scale and a base in the stack segment: ESP-based
			// operands use SS's base, here different from DS's.
			name: "store through ESP uses SS",
			text: []byte{0x89, 0x44, 0x8C, 0x08}, // mov [esp+ecx*4+8], eax
			base: 0x1000, ip: 0x1004, mode: 32,
			regs: machine.Regs{GPR: regs32(0, 2, 0, 0, 0x1000, 0, 0, 0), SSBase: bad - 0x1010, DSBase: 0},
			addr: bad, write: true,
			wantAt: 0x1000, want: "mov dword ptr [esp+4*ecx+0x8], eax",
		},
		{
			// A 4-byte store that starts 2 bytes below the bad page: KVM
			// writes the good half and exits for the half in no slot,
			// with the address of that fragment.
			name: "store straddling into bad RAM",
			text: []byte{0x89, 0x10},
			base: 0x1000, ip: 0x1002, mode: 32,
			regs: machine.Regs{GPR: regs32(bad-2, 0, 0, 0, 0x7000, 0, 0, 0)},
			addr: bad, write: true,
			wantAt: 0x1000, want: "mov dword ptr [eax], edx",
		},
		{
			name: "load, RIP on it",
			text: []byte{0x8B, 0x08, 0xF4},
			base: 0x1000, ip: 0x1000, mode: 32,
			regs: machine.Regs{GPR: regs32(bad, 0, 0, 0, 0x7000, 0, 0, 0)},
			addr: bad, write: false,
			wantAt: 0x1000, want: "mov ecx, dword ptr [eax]",
		},
		{
			// A read is the instruction at RIP even right after a store
			// to the same address (the store itself went to good RAM or
			// was recorded earlier).
			name: "load after a store, RIP on the load",
			text: []byte{0x89, 0x10, 0x8B, 0x08},
			base: 0x1000, ip: 0x1002, mode: 32,
			regs: machine.Regs{GPR: regs32(bad, 0, 0, 0, 0x7000, 0, 0, 0)},
			addr: bad, write: false,
			wantAt: 0x1002, want: "mov ecx, dword ptr [eax]",
		},
		{
			// Real mode: DS = 0x1000, mov [bx], ax. BX is the low half of
			// EBX; the upper half is whatever 32-bit code left there.
			name: "16-bit store",
			text: []byte{0xB8, 0x34, 0x12, 0x89, 0x07},
			base: 0x7C00, ip: 0x7C05, mode: 16,
			regs: machine.Regs{GPR: regs32(0x1234, 0, 0, 0xABCD0020, 0x7000, 0, 0, 0), DSBase: 0x10000},
			addr: 0x10020, write: true,
			wantAt: 0x7C03, want: "mov word ptr [bx], ax",
		},
		{
			// 16-bit effective addresses wrap at 64 KiB: BX=0xfff0 plus
			// 0x20 is offset 0x10.
			name: "16-bit offset wraps",
			text: []byte{0x89, 0x47, 0x20}, // mov [bx+0x20], ax
			base: 0x7C00, ip: 0x7C03, mode: 16,
			regs: machine.Regs{GPR: regs32(0, 0, 0, 0xFFF0, 0x7000, 0, 0, 0), DSBase: 0x10000},
			addr: 0x10010, write: true,
			wantAt: 0x7C00, want: "mov word ptr [bx+0x20], ax",
		},
		{
			// [bp+si] defaults to SS.
			name: "16-bit [bp+si] uses SS",
			text: []byte{0x89, 0x02}, // mov [bp+si], ax
			base: 0x7C00, ip: 0x7C02, mode: 16,
			regs: machine.Regs{GPR: regs32(0, 0, 0, 0, 0x7000, 0x100, 0x10, 0), DSBase: 0x10000, SSBase: 0x20000},
			addr: 0x20110, write: true,
			wantAt: 0x7C00, want: "mov word ptr [bp+si*1], ax",
		},
		{
			// Unreal-mode style: an address-size prefix in 16-bit code
			// makes the address 32 bits, not cut to 64 KiB.
			name: "16-bit code with a 32-bit address",
			text: []byte{0x67, 0x66, 0x89, 0x10}, // mov [eax], edx
			base: 0x7C00, ip: 0x7C04, mode: 16,
			regs: machine.Regs{GPR: regs32(bad, 0, 0, 0, 0x7000, 0, 0, 0)},
			addr: bad, write: true,
			wantAt: 0x7C00, want: "mov dword ptr [eax], edx",
		},
		{
			// mov ecx, 0x400; rep stosd; hlt. Between iterations RIP is
			// on rep stosd and EDI has already moved past the dword it
			// stored.
			name: "rep stosd at RIP",
			text: []byte{0xB9, 0x00, 0x04, 0x00, 0x00, 0xF3, 0xAB, 0xF4},
			base: 0x1000, ip: 0x1005, mode: 32,
			regs: machine.Regs{GPR: regs32(0, 0x3FF, 0, 0, 0x7000, 0, 0, bad+4)},
			addr: bad, write: true,
			wantAt: 0x1005, want: "rep stosd dword ptr [edi]",
		},
		{
			// Same with the direction flag set: EDI moved down.
			name: "rep stosd at RIP, std",
			text: []byte{0xB9, 0x00, 0x04, 0x00, 0x00, 0xF3, 0xAB, 0xF4},
			base: 0x1000, ip: 0x1005, mode: 32,
			regs: machine.Regs{GPR: regs32(0, 0x3FF, 0, 0, 0x7000, 0, 0, bad-4)},
			addr: bad, write: true,
			wantAt: 0x1005, want: "rep stosd dword ptr [edi]",
		},
		{
			// Registers not yet advanced (an emulator that exits before
			// the writeback) must work too.
			name: "rep stosd at RIP, EDI on the address",
			text: []byte{0xF3, 0xAB},
			base: 0x1000, ip: 0x1000, mode: 32,
			regs: machine.Regs{GPR: regs32(0, 0x3FF, 0, 0, 0x7000, 0, 0, bad)},
			addr: bad, write: true,
			wantAt: 0x1000, want: "rep stosd dword ptr [edi]",
		},
		{
			// The last iteration retires the instruction: RIP past it.
			name: "rep stosd, last iteration",
			text: []byte{0xF3, 0xAB, 0xF4},
			base: 0x1000, ip: 0x1002, mode: 32,
			regs: machine.Regs{GPR: regs32(0, 0, 0, 0, 0x7000, 0, 0, bad+4)},
			addr: bad, write: true,
			wantAt: 0x1000, want: "rep stosd dword ptr [edi]",
		},
		{
			// rep movsb: the destination [edi] wrote; a byte at a time.
			name: "rep movsb at RIP",
			text: []byte{0xF3, 0xA4},
			base: 0x1000, ip: 0x1000, mode: 32,
			regs: machine.Regs{GPR: regs32(0, 9, 0, 0, 0x7000, 0, 0x3000, bad+1)},
			addr: bad, write: true,
			wantAt: 0x1000, want: "rep movsb byte ptr [edi], byte ptr [esi]",
		},
		{
			// Nothing before RIP ends there with a memory operand.
			name: "no candidate",
			text: []byte{0x90, 0x90, 0x90, 0xF4},
			base: 0x1000, ip: 0x1003, mode: 32,
			regs: machine.Regs{GPR: regs32(0, 0, 0, 0, 0x7000, 0, 0, 0)},
			addr: bad, write: true,
			wantAt: 0x1003, want: "(no instruction found before 0x1003)",
		},
		{
			// RIP in memory we cannot read (say, in bad RAM itself).
			name: "no bytes at all",
			text: []byte{0x90},
			base: 0x1000, ip: 0x5000, mode: 32,
			regs: machine.Regs{GPR: regs32(0, 0, 0, 0, 0x7000, 0, 0, 0)},
			addr: bad, write: false,
			wantAt: 0x5000, want: "(no instruction found before 0x5000)",
		},
		{
			// RIP near 0: the backward scan must not wrap below 0.
			name: "RIP at 1",
			text: []byte{0x90, 0x90},
			base: 0, ip: 1, mode: 16,
			regs: machine.Regs{GPR: regs32(0, 0, 0, 0, 0x7000, 0, 0, 0)},
			addr: bad, write: true,
			wantAt: 1, want: "(no instruction found before 0x1)",
		},
		{
			// No candidate addresses the byte (registers changed by a
			// later instruction KVM also ran): the nearest store before
			// RIP is the best guess.
			name: "fallback to the nearest store",
			text: []byte{0x89, 0x10},
			base: 0x1000, ip: 0x1002, mode: 32,
			regs: machine.Regs{GPR: regs32(0x5000, 0, 0, 0, 0x7000, 0, 0, 0)},
			addr: bad, write: true,
			wantAt: 0x1000, want: "mov dword ptr [eax], edx",
		},
	} {
		g := guestText{tc.base, tc.text}
		at, insn := faultingInstruction(g.read, tc.ip, tc.mode, tc.regs, tc.addr, tc.write)
		if at != tc.wantAt || insn != tc.want {
			t.Errorf("%s: got %#x %q, want %#x %q", tc.name, at, insn, tc.wantAt, tc.want)
		}
	}
}
