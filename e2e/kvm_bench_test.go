package e2e

import (
	"context"
	"testing"
	"time"

	"kvmboot/boot"
	"kvmboot/machine"
)

// BenchmarkKVMBootTestKernel times a whole boot of the built-in test kernel
// on our KVM machine, from boot.Run to the guest's debug-exit write, with
// and without the stub's in-guest checksum. Metrics per op: setup (VM
// creation to the first instruction), boot (first instruction to the
// debug-exit write) and total (including planning and VM teardown).
func BenchmarkKVMBootTestKernel(b *testing.B) {
	requireKVM(b)
	for _, verify := range []bool{true, false} {
		name := "verify"
		if !verify {
			name = "no-verify"
		}
		b.Run(name, func(b *testing.B) {
			benchBoot(b, boot.Config{VMM: "kvm", NoVerify: !verify})
		})
	}
}

// benchBoot boots cfg b.N times, each within a minute, and reports the
// mean setup, boot and total milliseconds per boot.
func benchBoot(b *testing.B, cfg boot.Config) {
	cfg.Timeout = time.Minute
	var setup, run float64
	start := time.Now()
	for i := 0; i < b.N; i++ {
		res, err := boot.Run(context.Background(), cfg)
		if err != nil || res.Outcome != machine.Pass {
			b.Fatalf("%v %+v", err, res)
		}
		setup += res.Timings.Setup
		run += res.Timings.Boot
	}
	n := float64(b.N)
	b.ReportMetric(setup/n, "setup-ms/op")
	b.ReportMetric(run/n, "boot-ms/op")
	b.ReportMetric(float64(time.Since(start).Microseconds())/1000/n, "total-ms/op")
}
