package memtest_test

import (
	"context"
	"testing"
	"time"

	"kvmboot/e2e/hosttest"
	"kvmboot/loader/memmap"
	"kvmboot/machine"
	"kvmboot/machine/faults"
	"kvmboot/machine/kvm"
	"kvmboot/machine/memtest"
)

const mib = 1 << 20

func requireKVM(t testing.TB) {
	t.Helper()
	hosttest.Require(t, hosttest.KVM, kvm.Available())
}

func faulty(t testing.TB, specs ...string) []faults.Range {
	var out []faults.Range
	for _, s := range specs {
		rs, err := faults.Parse(s, 256*mib)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, rs...)
	}
	return out
}

func runKVM(t testing.TB, cfg memtest.Config, f []faults.Range) *memtest.Report {
	t.Helper()
	if cfg.MemSize == 0 {
		cfg.MemSize = 256 * mib
	}
	rep, mr, err := memtest.Run(context.Background(), kvm.Backend{}, cfg, machine.Options{Timeout: 5 * time.Minute, Faulty: f, FaultSeed: cfg.Seed})
	if err != nil {
		t.Fatalf("memtest: %v", err)
	}
	if mr.Outcome != machine.Pass {
		t.Fatalf("outcome %s: %s", mr.Outcome, mr.Reason)
	}
	return rep
}

func TestKVMMemtestStuck0(t *testing.T) {
	requireKVM(t)
	rep := runKVM(t, memtest.Config{Ranges: []memmap.Range{{Start: 16 * mib, End: 24 * mib}}}, faulty(t, "20M-21M:stuck0"))
	got := rep.FailingRanges()
	if len(got) != 1 || got[0] != (memmap.Range{Start: 20 * mib, End: 21 * mib}) {
		t.Errorf("failing %v", got)
	}
	t.Logf("%d pages in %.0f ms (guest %.0f ms, %.0f ns/page), %d exits, frames %+v, failures %+v, faulty %+v",
		rep.PagesTested, rep.TimeMS, rep.GuestMS, rep.NsPerPage, rep.Exits, rep.Frames, rep.Failures, rep.Faulty)
}

// BenchmarkMemtestKVM: the memtest guest on our KVM machine over a limited
// span of a 256 MiB guest (the emulating KVM of DESIGN.md section 7 runs it
// at about 1-2.5 million instructions a second), with the guest
// instructions per page counted by single-stepping, and the time
// extrapolated to all of the 256 MiB guest's usable RAM.
func BenchmarkMemtestKVM(b *testing.B) {
	requireKVM(b)
	for _, tc := range []struct {
		mode string
		span memmap.Range
	}{
		{memtest.Quick, memmap.Range{Start: 16 * mib, End: 32 * mib}},
		{memtest.Thorough, memmap.Range{Start: 16 * mib, End: 17 * mib}},
	} {
		b.Run(tc.mode, func(b *testing.B) {
			cfg := memtest.Config{Mode: tc.mode, MemSize: 256 * mib, Ranges: []memmap.Range{tc.span}}
			ipp, err := memtest.CountInstructions(context.Background(), kvm.Backend{}, cfg, machine.Options{Timeout: 5 * time.Minute})
			if err != nil {
				b.Fatal(err)
			}
			all, _ := memtest.TestRanges(memtest.Config{MemSize: 256 * mib})
			var guest, total time.Duration
			var pages uint64
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				rep := runKVM(b, cfg, nil)
				guest += time.Duration(rep.GuestMS * 1e6)
				total += time.Duration(rep.TimeMS * 1e6)
				pages = rep.PagesTested
			}
			perPage := float64(guest.Nanoseconds()) / float64(b.N) / float64(pages)
			b.ReportMetric(ipp, "insn/page")
			b.ReportMetric(perPage, "ns/page")
			b.ReportMetric(ipp/perPage*1e3, "Minsn/s")
			b.ReportMetric(perPage*float64(memtest.Pages(all))/1e9, "s/256MiB")
		})
	}
}
