package qemu

import (
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/arch/x86/x86asm"

	"kvmboot/realmode"
)

// cpuRegs is what kvmboot reads from QEMU's "info registers".
type cpuRegs struct {
	gpr    map[string]uint64 // EAX ... EIP, EFL, CR0, CR2, CR3, CR4
	csSel  uint64
	csBase uint64
	csD    bool // CS descriptor's D bit: 32-bit code
}

// parseRegisters reads the HMP "info registers" text of an i386 CPU:
//
//	EAX=00000000 EBX=00000000 ECX=00000000 EDX=00000663
//	EIP=0000fff0 EFL=00000002 [-------] CPL=0 II=0 A20=1 SMM=0 HLT=0
//	CS =f000 ffff0000 0000ffff 00009b00
//	CR0=60000010 CR2=00000000 CR3=00000000 CR4=00000000
func parseRegisters(text string) (*cpuRegs, bool) {
	r := &cpuRegs{gpr: map[string]uint64{}}
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimRight(line, "\r")
		if rest, ok := strings.CutPrefix(line, "CS ="); ok {
			f := strings.Fields(rest)
			if len(f) >= 4 {
				r.csSel, _ = strconv.ParseUint(f[0], 16, 32)
				r.csBase, _ = strconv.ParseUint(f[1], 16, 64)
				flags, _ := strconv.ParseUint(f[3], 16, 32)
				r.csD = flags&(1<<22) != 0
			}
			continue
		}
		for _, w := range strings.Fields(line) {
			name, val, ok := strings.Cut(w, "=")
			if !ok || name == "" {
				continue
			}
			switch name {
			case "EAX", "EBX", "ECX", "EDX", "ESI", "EDI", "EBP", "ESP", "EIP", "EFL", "CR0", "CR2", "CR3", "CR4":
				if v, err := strconv.ParseUint(val, 16, 64); err == nil {
					r.gpr[name] = v
				}
			}
		}
	}
	_, ok := r.gpr["EIP"]
	return r, ok
}

// mode is the code size the CPU decodes: 16 or 32.
func (r *cpuRegs) mode() int {
	if r.gpr["CR0"]&1 == 0 || !r.csD {
		return 16
	}
	return 32
}

// describe renders the registers like the KVM backend's crash reports:
// mode, cs:eip, general registers, control registers, the instruction at
// EIP when read(linear, n) can fetch it.
func (r *cpuRegs) describe(read func(addr uint64, n int) []byte) string {
	g := r.gpr
	name := "real mode"
	switch {
	case g["CR0"]&1 != 0 && r.mode() == 32:
		name = "32-bit protected mode"
	case g["CR0"]&1 != 0:
		name = "16-bit protected mode"
	}
	paging := g["CR0"]&(1<<31) != 0
	if paging {
		name += ", paging on"
	}
	ip := (r.csBase + g["EIP"]) & 0xFFFFFFFF
	insn := "(paging on: not read)"
	if !paging {
		insn = disassemble(read(ip, 15), ip, r.mode())
	}
	return fmt.Sprintf("%s, cs=%#x eip=%#x (linear %#x) eax=%#x ebx=%#x ecx=%#x edx=%#x esi=%#x edi=%#x ebp=%#x esp=%#x eflags=%#x cr0=%#x cr3=%#x cr4=%#x, at eip: %s",
		name, r.csSel, g["EIP"], ip, g["EAX"], g["EBX"], g["ECX"], g["EDX"], g["ESI"], g["EDI"], g["EBP"], g["ESP"], g["EFL"],
		g["CR0"], g["CR3"], g["CR4"], insn)
}

func disassemble(code []byte, ip uint64, mode int) string {
	if len(code) == 0 {
		return "(not in RAM or ROM)"
	}
	inst, err := x86asm.Decode(code, mode)
	if err != nil {
		return fmt.Sprintf("(cannot decode % x)", code)
	}
	return x86asm.IntelSyntax(inst, ip, nil)
}

// physReader reads guest physical memory from the shared RAM file and our
// firmware image (for the reference run, QEMU's BIOS is not ours: rom is
// then nil).
func physReader(ram, rom []byte, lowHole bool) func(addr uint64, n int) []byte {
	return func(addr uint64, n int) []byte {
		if rom != nil && (addr >= realmode.ROMBase && addr < realmode.ROMBase+realmode.ROMSize ||
			addr >= realmode.ROMHigh && addr < realmode.ROMHigh+realmode.ROMSize) {
			off := (addr - realmode.ROMBase) % realmode.ROMSize
			return rom[off:min(off+uint64(n), realmode.ROMSize)]
		}
		if lowHole && addr >= 0xA0000 && addr < 0x100000 {
			return nil
		}
		if addr < uint64(len(ram)) {
			return ram[addr:min(addr+uint64(n), uint64(len(ram)))]
		}
		return nil
	}
}
