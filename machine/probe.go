package machine

import (
	"fmt"

	"kvmboot/loader"
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
		Map:     loader.NewMemoryMap(ProbeMem),
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
