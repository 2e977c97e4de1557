package machine

import (
	"fmt"
	"os"

	"golang.org/x/arch/x86/x86asm"

	"kvmboot/loader"
	"kvmboot/loader/memmap"
	"kvmboot/realmode"
)

// ProbeMem is the guest RAM of a probe boot.
const ProbeMem = 16 << 20

// ProbePlan boots the probe guest (realmode.Probe) through the normal entry
// stub with EAX = test and EBX = count: every backend's probe uses it, so
// they measure the same bytes.
func ProbePlan(test, count uint32) (*loader.Plan, error) {
	plan := &loader.Plan{
		Kernel:  loader.KernelInfo{Path: "(probe)", Format: "raw", Protocol: loader.ProtocolELF},
		MemSize: ProbeMem,
		Map:     memmap.New(ProbeMem, loader.FirmwareHigh),
		Placements: []loader.Placement{{
			What: "probe", Start: realmode.ProbeAddr, Data: realmode.Probe, Size: uint64(len(realmode.Probe)),
		}},
		Entry: loader.EntryState{EIP: realmode.ProbeAddr, EAX: test, EBX: count},
	}
	return plan, plan.Finish()
}

// Describe says in one line how a probe run ended, or why it could not run.
func Describe(res *Result, err error) string {
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("%s: %s", res.Outcome, res.Reason)
}

// EmulatingKVM reports whether /dev/kvm is kvm_pvm, which runs guests by
// emulating every instruction (DESIGN.md §7): its emulator lacks
// instructions its CPUID offers (crc32 among them) and refuses 32-bit
// paging.
func EmulatingKVM() bool {
	_, err := os.Stat("/sys/module/kvm_pvm")
	return err == nil
}

// MovSetsPaging reports whether code starts with a mov to CR0 from a
// general register whose value (reg) has PG set: the instruction an
// emulating KVM refuses (DESIGN.md §7).
func MovSetsPaging(code []byte, mode int, reg func(x86asm.Reg) uint64) bool {
	inst, err := x86asm.Decode(code, mode)
	if err != nil || inst.Op != x86asm.MOV || inst.Args[0] != x86asm.CR0 {
		return false
	}
	src, ok := inst.Args[1].(x86asm.Reg)
	return ok && reg(src)&(1<<31) != 0
}
