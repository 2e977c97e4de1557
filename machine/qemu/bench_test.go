package qemu

import (
	"context"
	"testing"
	"time"

	"kvmboot/machine"
)

// exitCode writes 0 to the debug-exit port at once: xor eax,eax; out 0xf4,eax; hlt.
var exitCode = []byte{0x31, 0xc0, 0xe7, 0xf4, 0xf4}

// BenchmarkQEMUExitAtEntry times runs whose guest exits at its first
// instruction: the floor of any boot through this backend (QEMU's start,
// our firmware, QEMU's exit), on the PC every plan gets (ACPI PM block and
// HPET included) and on the ISA PC of --machine minimal. setup-ms is
// QEMU's start until it answers QMP, boot-ms the guest until QEMU has
// exited.
func BenchmarkQEMUExitAtEntry(b *testing.B) {
	requireQEMU(b)
	for _, tc := range []struct {
		machine string
		backend Backend
	}{
		{"pc", Backend{}},
		{"isapc", Backend{Minimal: true}},
	} {
		b.Run(tc.machine, func(b *testing.B) {
			plan := codePlan(b, exitCode)
			var setup, boot time.Duration
			for b.Loop() {
				res, err := tc.backend.Run(context.Background(), plan, machine.Options{Timeout: 20 * time.Second})
				if err != nil || res.Outcome != machine.Pass {
					b.Fatalf("%v %+v", err, res)
				}
				setup += res.Setup
				boot += res.Boot
			}
			b.ReportMetric(machine.Millis(setup)/float64(b.N), "setup-ms/op")
			b.ReportMetric(machine.Millis(boot)/float64(b.N), "boot-ms/op")
		})
	}
}
