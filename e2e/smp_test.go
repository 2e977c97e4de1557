package e2e

import (
	"fmt"
	"slices"
	"testing"

	"kvmboot/boot"
	"kvmboot/machine"
)

// TestSMPTestKernel runs the test kernel's SMP mode on both backends: it
// finds the processors in the MP table, starts every AP with
// INIT-SIPI-SIPI from start-up code it copies below 1 MiB, and each AP
// prints its APIC ID and counts itself in; exactly the table's APs must
// come, from 2 processors to the most kvmboot gives. The kernel runs
// relocated (16M-32M is bad): the APs' 32-bit entry and stacks are
// addresses the loader relocated.
func TestSMPTestKernel(t *testing.T) {
	for _, vmm := range backends {
		for _, n := range []int{2, 4, machine.MaxCPUs} {
			t.Run(fmt.Sprintf("%s/%d", vmm, n), func(t *testing.T) {
				requireBackend(t, vmm)
				res, rep, console := bootTestKernel(t, onBackend(vmm, boot.Config{CPUs: n, Cmdline: "kt.smp", BadRAM: badRanges(t, "16M-32M")}))
				if res.Outcome != machine.Pass || rep == nil || !rep.Pass || rep.SMP == nil {
					t.Fatalf("outcome %s: %s\n%s", res.Outcome, res.Reason, tail(console, 20))
				}
				s := rep.SMP
				var want []uint32
				for id := 1; id < n; id++ {
					want = append(want, uint32(id))
				}
				if got := slices.Sorted(slices.Values(s.APs)); s.CPUs != n || s.BSP != 0 || s.Arrived != n-1 || s.Expected != n-1 || !slices.Equal(got, want) {
					t.Errorf("SMP report %+v (APs %v): want APs 1 to %d, each once", s, got, n-1)
				}
				if s.Trampoline == 0 || s.Trampoline >= 0xA0000 || s.Trampoline%4096 != 0 {
					t.Errorf("start-up code at %#x: want a page below 640 KiB", s.Trampoline)
				}
				if res.LoadAddress != 32*mib || res.CPUs != n {
					t.Errorf("kernel at %#x, %d CPUs in the result", res.LoadAddress, res.CPUs)
				}
			})
		}
	}
}
