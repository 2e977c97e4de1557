package kvm

import (
	"context"
	"testing"
	"time"

	"kvmboot/e2e/hosttest"
	"kvmboot/machine"
	"kvmboot/realmode"
)

func needKVM(b *testing.B) {
	b.Helper()
	hosttest.Require(b, hosttest.KVM, Available())
}

// BenchmarkVMSetup measures what a boot pays before the guest's first
// instruction: open /dev/kvm, create the VM, irqchip, PIT, 256 MiB of RAM
// in slots, the firmware image, the vCPU and its CPUID. Tearing the VM
// down (10-20 ms on kvm_pvm, after the run) is not counted.
func BenchmarkVMSetup(b *testing.B) {
	needKVM(b)
	for i := 0; i < b.N; i++ {
		vm, err := New(256<<20, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		vm.Close()
		b.StartTimer()
	}
}

// BenchmarkProbeGuest boots the probe guest (stub, then a 32-bit loop of
// one iteration): a whole minimal boot from reset to a debug-exit write.
func BenchmarkProbeGuest(b *testing.B) {
	needKVM(b)
	var setup, boot time.Duration
	for b.Loop() {
		res, err := probeRun(context.Background(), realmode.ProbeSpin, 1)
		if err != nil || res.Outcome != machine.Pass {
			b.Fatalf("%v %+v", err, res)
		}
		setup += res.Setup
		boot += res.Boot
	}
	b.ReportMetric(float64(setup.Microseconds())/1000/float64(b.N), "setup-ms/op")
	b.ReportMetric(float64(boot.Microseconds())/1000/float64(b.N), "boot-ms/op")
}
