package kvm

import (
	"slices"

	gokvm "github.com/bobuhiro11/gokvm/kvm"
)

// CPUID topology leaves and bits (Intel SDM vol. 2, CPUID; AMD APM vol. 3,
// appendix E) that guestCPUID sets: each processor is a package of one
// core of one thread, as the MP table and the MADT list them (one entry a
// processor) and as QEMU's -smp N,sockets=N makes them.
const (
	cpuidLeaf1EBXAPICIDShift = 24
	cpuidLeaf1EBXLogicalMask = 0xFF << 16 // logical processors in the package
	cpuidLeaf1EDXHTT         = 1 << 28    // the package has more than one
	cpuidLeaf4CoresMask      = 0xFFFFC000 // cores in the package - 1 [31:26], threads sharing the cache - 1 [25:14]
	cpuidTopology            = 0xB        // extended topology
	cpuidTopologyV2          = 0x1F
	cpuidTopologySMT         = 1 << 8 // level types in ECX[15:8]
	cpuidTopologyCore        = 2 << 8
	cpuidExtFeatures         = 0x80000001
	cpuidExtECXCmpLegacy     = 1 << 1
	cpuidExtECXTopoExt       = 1 << 22
	cpuidAMDSize             = 0x80000008
	cpuidAMDSizeCoresMask    = 0xF0FF // ECX: APIC ID bits for cores [15:12], cores - 1 [7:0]
	cpuidAMDTopology         = 0x8000001E
)

// guestCPUID is the CPUID of the processor with local APIC ID apicID,
// from what KVM supports: RDRAND and RDSEED hidden; the guest told it runs
// on KVM (leaf 1's hypervisor bit and KVM's signature leaf pointing at its
// features leaf), as a Linux guest needs to use kvmclock and KVM's other
// paravirtual features (the features leaf is KVM's own; without one, no
// signature is made up); the initial APIC ID its local APIC's (Linux
// reports a firmware bug when they differ); the host's topology replaced
// by one package per processor, one core, one thread.
func guestCPUID(entries []gokvm.CPUIDEntry2, apicID uint32) []gokvm.CPUIDEntry2 {
	hasFeatures := slices.ContainsFunc(entries, func(e gokvm.CPUIDEntry2) bool { return e.Function == cpuidKVMFeatures })
	entries = slices.DeleteFunc(entries, func(e gokvm.CPUIDEntry2) bool { return e.Function == cpuidAMDTopology })
	signature := false
	for i := range entries {
		e := &entries[i]
		switch {
		case e.Function == 1:
			e.Ecx &^= cpuidLeaf1ECXRDRAND
			e.Ecx |= cpuidLeaf1ECXHypervisor
			e.Ebx = e.Ebx&^(0xFF<<cpuidLeaf1EBXAPICIDShift|cpuidLeaf1EBXLogicalMask) | apicID<<cpuidLeaf1EBXAPICIDShift | 1<<16
			e.Edx &^= cpuidLeaf1EDXHTT
		case e.Function == 4:
			e.Eax &^= cpuidLeaf4CoresMask
		case e.Function == 7 && e.Index == 0:
			e.Ebx &^= cpuidLeaf7EBXRDSEED
		case e.Function == cpuidTopology || e.Function == cpuidTopologyV2:
			// Level 0 the thread, level 1 the core, one of each: no
			// APIC ID bits below the package's.
			e.Eax, e.Ebx, e.Ecx, e.Edx = 0, 0, e.Index, apicID
			switch e.Index {
			case 0:
				e.Ebx, e.Ecx = 1, cpuidTopologySMT
			case 1:
				e.Ebx, e.Ecx = 1, cpuidTopologyCore|1
			}
		case e.Function == cpuidExtFeatures:
			e.Ecx &^= cpuidExtECXCmpLegacy | cpuidExtECXTopoExt
		case e.Function == cpuidAMDSize:
			e.Ecx &^= cpuidAMDSizeCoresMask
		case e.Function == cpuidKVMSignature && hasFeatures:
			e.Eax = max(e.Eax, cpuidKVMFeatures)
			e.Ebx, e.Ecx, e.Edx = kvmSignature[0], kvmSignature[1], kvmSignature[2]
			signature = true
		}
	}
	if hasFeatures && !signature {
		entries = append(entries, gokvm.CPUIDEntry2{Function: cpuidKVMSignature, Eax: cpuidKVMFeatures,
			Ebx: kvmSignature[0], Ecx: kvmSignature[1], Edx: kvmSignature[2]})
	}
	return entries
}
