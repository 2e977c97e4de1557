package qemu

import (
	"context"
	"fmt"
	"testing"
	"time"

	"kvmboot/loader"
	"kvmboot/loader/memmap"
	"kvmboot/machine"
)

// exitCode writes 0 to the debug-exit port at once: xor eax,eax; out 0xf4,eax; hlt.
var exitCode = []byte{0x31, 0xc0, 0xe7, 0xf4, 0xf4}

// BenchmarkQEMUExitAtEntry times runs whose guest exits at its first
// instruction: the floor of any boot through this backend (QEMU's start,
// our firmware, QEMU's exit), on the PC every plan gets (ACPI PM block and
// HPET included) and on the ISA PC of --machine minimal, with 16 MiB,
// 128 MiB and 1 GiB of guest RAM: QEMU's start must not grow with it.
// exec-ms is the backend's start to QEMU's process started, ready-ms
// QEMU's start-up to its first QMP answer, setup-ms the backend's start
// to the guest's first instruction, guest-ms the guest until its exit
// write, boot-ms until QEMU has exited.
func BenchmarkQEMUExitAtEntry(b *testing.B) {
	requireQEMU(b)
	for _, tc := range []struct {
		machine string
		backend Backend
	}{
		{"pc", Backend{}},
		{"isapc", Backend{Minimal: true}},
	} {
		for _, mib := range []uint64{16, 128, 1024} {
			b.Run(fmt.Sprintf("%s/%dMiB", tc.machine, mib), func(b *testing.B) {
				plan := codePlan(b, exitCode)
				plan.MemSize, plan.Map = mib<<20, memmap.New(mib<<20, loader.FirmwareHigh)
				var sum machine.Result
				for b.Loop() {
					res, err := tc.backend.Run(context.Background(), plan, machine.Options{Timeout: 20 * time.Second})
					if err != nil || res.Outcome != machine.Pass {
						b.Fatalf("%v %+v", err, res)
					}
					sum.Exec += res.Exec
					sum.Ready += res.Ready
					sum.Setup += res.Setup
					sum.Guest += res.Guest
					sum.Boot += res.Boot
				}
				for _, m := range []struct {
					d    time.Duration
					unit string
				}{{sum.Exec, "exec-ms/op"}, {sum.Ready, "ready-ms/op"}, {sum.Setup, "setup-ms/op"}, {sum.Guest, "guest-ms/op"}, {sum.Boot, "boot-ms/op"}} {
					b.ReportMetric(machine.Millis(m.d)/float64(b.N), m.unit)
				}
			})
		}
	}
}

// BenchmarkQEMUChecksum is the guest's share that grows with the plan: our
// firmware sums every placed piece (XXH32) before the jump. A guest that
// exits at once, with a verified piece of 1, 4 and 16 MiB beside it:
// guest-ms/MiB must not grow with the piece.
func BenchmarkQEMUChecksum(b *testing.B) {
	requireQEMU(b)
	for _, mib := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("%dMiB", mib), func(b *testing.B) {
			plan := codePlan(b, exitCode)
			plan.MemSize, plan.Map = 64<<20, memmap.New(64<<20, loader.FirmwareHigh)
			piece := make([]byte, mib<<20)
			for i := range piece {
				piece[i] = byte(i * 7)
			}
			plan.Placements = append(plan.Placements[:1], loader.Placement{What: "module", Start: 8 << 20, Data: piece, Size: uint64(len(piece)), Verify: true})
			plan.Verify = true
			if err := plan.Finish(); err != nil {
				b.Fatal(err)
			}
			var guest time.Duration
			for b.Loop() {
				res, err := Backend{}.Run(context.Background(), plan, machine.Options{Timeout: 20 * time.Second})
				if err != nil || res.Outcome != machine.Pass {
					b.Fatalf("%v %+v", err, res)
				}
				guest += res.Guest
			}
			b.ReportMetric(machine.Millis(guest)/float64(b.N)/float64(mib), "guest-ms/MiB")
		})
	}
}

// BenchmarkPlace is the guest-RAM stage of a boot: the plan written into
// the shared RAM file (no QEMU: the write alone), for a kernel of 1, 4
// and 16 MiB. MB/s must not fall as it grows.
func BenchmarkPlace(b *testing.B) {
	for _, mib := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("%dMiB", mib), func(b *testing.B) {
			plan := codePlan(b, make([]byte, mib<<20))
			plan.MemSize, plan.Map = 64<<20, memmap.New(64<<20, loader.FirmwareHigh)
			b.SetBytes(int64(mib << 20))
			for b.Loop() {
				r := &run{shape: machine.ShapeOf(plan), memSize: plan.MemSize, plan: plan, log: func(string) {}}
				if err := r.makeRAM(); err != nil {
					b.Fatal(err)
				}
				err := r.place()
				r.cleanup()
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
