package qemu

import (
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/arch/x86/x86asm"

	"kvmboot/loader/memmap"
	"kvmboot/machine"
	"kvmboot/realmode"
)

// cpuRegs is what kvmboot reads from QEMU's "info registers".
type cpuRegs struct {
	gpr    map[string]uint64 // EAX ... EIP, EFL, CR0, CR2, CR3, CR4
	csSel  uint64
	csBase uint64
	csD    bool              // CS descriptor's D bit: 32-bit code
	bases  map[string]uint64 // DS, ES, SS: segment bases
}

// parseRegisters reads the HMP "info registers" text of an i386 CPU:
//
//	EAX=00000000 EBX=00000000 ECX=00000000 EDX=00000663
//	EIP=0000fff0 EFL=00000002 [-------] CPL=0 II=0 A20=1 SMM=0 HLT=0
//	CS =f000 ffff0000 0000ffff 00009b00
//	CR0=60000010 CR2=00000000 CR3=00000000 CR4=00000000
func parseRegisters(text string) (*cpuRegs, bool) {
	r := &cpuRegs{gpr: map[string]uint64{}, bases: map[string]uint64{}}
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimRight(line, "\r")
		if seg, rest, ok := strings.Cut(line, " ="); ok && len(seg) == 2 {
			f := strings.Fields(rest)
			if len(f) < 4 {
				continue
			}
			base, _ := strconv.ParseUint(f[1], 16, 64)
			r.bases[seg] = base
			if seg == "CS" {
				r.csSel, _ = strconv.ParseUint(f[0], 16, 32)
				r.csBase = base
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

// machineRegs are the registers that locate a memory access.
func (r *cpuRegs) machineRegs() machine.Regs {
	g := map[x86asm.Reg]uint32{}
	for reg, name := range gprNames {
		g[reg] = uint32(r.gpr[name])
	}
	return machine.Regs{GPR: g, DSBase: r.bases["DS"], SSBase: r.bases["SS"], ESBase: r.bases["ES"]}
}

var gprNames = map[x86asm.Reg]string{x86asm.EAX: "EAX", x86asm.EBX: "EBX", x86asm.ECX: "ECX", x86asm.EDX: "EDX",
	x86asm.ESI: "ESI", x86asm.EDI: "EDI", x86asm.EBP: "EBP", x86asm.ESP: "ESP"}

// paging says whether CR0.PG is set: linear addresses are not physical.
func (r *cpuRegs) paging() bool { return r.gpr["CR0"]&(1<<31) != 0 }

// protected says whether CR0.PE is set.
func (r *cpuRegs) protected() bool { return r.gpr["CR0"]&1 != 0 }

// mode is the code size the CPU decodes: 16 or 32.
func (r *cpuRegs) mode() int {
	if r.gpr["CR0"]&1 == 0 || !r.csD {
		return 16
	}
	return 32
}

// state turns the registers into the crash report's CPU state, with the
// instruction at EIP when read(linear, n) can fetch it (paging off).
func (r *cpuRegs) state(read func(addr uint64, n int) []byte) *machine.CPUState {
	g := r.gpr
	ip := (r.csBase + g["EIP"]) & 0xFFFFFFFF
	insn := "(paging on: not read)"
	if !r.paging() {
		insn = disassemble(read(ip, 15), ip, r.mode())
	}
	return &machine.CPUState{
		Mode: machine.ModeName(g["CR0"], r.mode()), CS: uint16(r.csSel), EIP: uint32(g["EIP"]), Linear: uint32(ip),
		EAX: uint32(g["EAX"]), EBX: uint32(g["EBX"]), ECX: uint32(g["ECX"]), EDX: uint32(g["EDX"]),
		ESI: uint32(g["ESI"]), EDI: uint32(g["EDI"]), EBP: uint32(g["EBP"]), ESP: uint32(g["ESP"]),
		EFLAGS: uint32(g["EFL"]), CR0: uint32(g["CR0"]), CR3: uint32(g["CR3"]), CR4: uint32(g["CR4"]),
		Insn: insn,
	}
}

// enablesPaging says whether the instruction at EIP is a mov to CR0 that
// sets PG: a guest an emulating KVM refuses (DESIGN.md §7).
func (r *cpuRegs) enablesPaging(read func(addr uint64, n int) []byte) bool {
	ip := (r.csBase + r.gpr["EIP"]) & 0xFFFFFFFF
	return machine.MovSetsPaging(read(ip, 15), r.mode(), func(src x86asm.Reg) uint64 {
		return r.gpr[gprNames[src]] // 0 for "": not a 32-bit general register
	})
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
// then nil). The 640K-1M hole reads as nothing.
func physReader(ram, rom []byte) func(addr uint64, n int) []byte {
	return func(addr uint64, n int) []byte {
		if rom != nil && (addr >= realmode.ROMBase && addr < realmode.ROMBase+realmode.ROMSize ||
			addr >= realmode.ROMHigh && addr < realmode.ROMHigh+realmode.ROMSize) {
			off := (addr - realmode.ROMBase) % realmode.ROMSize
			return rom[off:min(off+uint64(n), realmode.ROMSize)]
		}
		if addr >= memmap.LowRAMEnd && addr < memmap.HighRAMStart {
			return nil
		}
		if addr < uint64(len(ram)) {
			return ram[addr:min(addr+uint64(n), uint64(len(ram)))]
		}
		return nil
	}
}
