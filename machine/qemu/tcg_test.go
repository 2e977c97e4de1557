package qemu

import (
	"bytes"
	"testing"

	"golang.org/x/arch/x86/x86asm"

	"kvmboot/machine/qemu/plugin"
)

// regsAt is a 32-bit flat vCPU with these general registers.
func regsAt(gpr map[string]uint64, cr0 uint64) *cpuRegs {
	r := &cpuRegs{gpr: map[string]uint64{"CR0": cr0}, bases: map[string]uint64{}, csD: true}
	for k, v := range gpr {
		r.gpr[k] = v
	}
	return r
}

// TestAccessInBlock: the registers as they are before the access pick the
// instruction, its kind breaking ties, never one before the last access
// of the same run of the block.
func TestAccessInBlock(t *testing.T) {
	b := &plugin.Block{Vaddr: 0x2001000, Insns: [][]byte{
		{0x8b, 0x0b},       // mov ecx, [ebx]
		{0x89, 0x03},       // mov [ebx], eax
		{0x83, 0xc3, 0x04}, // add ebx, 4
		{0x89, 0x03},       // mov [ebx], eax
		{0x50},             // push eax
	}}
	pe := uint64(0x11)
	for _, tc := range []struct {
		name  string
		gpr   map[string]uint64
		cr0   uint64
		phys  uint64
		write bool
		first int
		want  int
	}{
		{"a load: the load", map[string]uint64{"EBX": 0x1800000}, pe, 0x1800000, false, 0, 0},
		{"a store at the same address: the store", map[string]uint64{"EBX": 0x1800000}, pe, 0x1800000, true, 0, 1},
		{"the last byte of the access", map[string]uint64{"EBX": 0x1800000}, pe, 0x1800003, true, 0, 1},
		{"not an instruction before the last access", map[string]uint64{"EBX": 0x1800000}, pe, 0x1800000, true, 2, 3},
		{"the stack", map[string]uint64{"EBX": 0x100, "ESP": 0x1800010}, pe, 0x180000c, true, 0, 4},
		{"paging on: the page offset", map[string]uint64{"EBX": 0xc1800010}, pe | 1<<31, 0x3000010, false, 0, 0},
		{"nothing there", map[string]uint64{"EBX": 0x100, "ESP": 0x7000}, pe, 0x1800000, true, 0, -1},
	} {
		i, inst, op, ok := accessInBlock(b, tc.first, regsAt(tc.gpr, tc.cr0), tc.phys, tc.write)
		if !ok {
			i = -1
		}
		if i != tc.want {
			t.Errorf("%s: instruction %d (%v, %+v), want %d", tc.name, i, inst, op, tc.want)
		}
	}
}

func TestAccessKindFits(t *testing.T) {
	dec := func(b ...byte) x86asm.Inst {
		inst, err := x86asm.Decode(b, 32)
		if err != nil {
			t.Fatal(err)
		}
		return inst
	}
	for _, tc := range []struct {
		inst        x86asm.Inst
		write, fits bool
	}{
		{dec(0x89, 0x03), true, true},        // mov [ebx], eax
		{dec(0x89, 0x03), false, false},      // a mov to memory does not read it
		{dec(0x8b, 0x03), false, true},       // mov eax, [ebx]
		{dec(0x8b, 0x03), true, false},       //
		{dec(0x01, 0x03), true, true},        // add [ebx], eax reads and writes
		{dec(0x01, 0x03), false, true},       //
		{dec(0x39, 0x03), true, false},       // cmp [ebx], eax only reads
		{dec(0xab), true, true},              // stosd
		{dec(0xab), false, false},            //
		{dec(0xa5), false, true},             // movsd reads and writes
		{dec(0x50), false, false},            // push only writes
		{dec(0x0f, 0xb6, 0x03), false, true}, // movzx eax, byte [ebx]
	} {
		if got := accessKindFits(tc.inst, tc.write); got != tc.fits {
			t.Errorf("%v, write %v: %v, want %v", tc.inst, tc.write, got, tc.fits)
		}
	}
}

func TestParseMemoryDump(t *testing.T) {
	got := parseMemoryDump("c1000000: 0x89 0x10 0x90 0x90 0x90 0x90 0x90 0x90\r\nc1000008: 0xc3\r\nc1000009: Cannot access memory\r\n")
	if want := []byte{0x89, 0x10, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0xc3}; !bytes.Equal(got, want) {
		t.Errorf("got % x, want % x", got, want)
	}
	if got := parseMemoryDump("Cannot access memory\r\n"); len(got) != 0 {
		t.Errorf("got % x from an error", got)
	}
}
