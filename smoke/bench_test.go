package smoke

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"kvmboot/boot"
	"kvmboot/machine"
)

// testKernelConsole is what the built-in test kernel prints on a pass
// (14 lines, about 520 bytes).
var testKernelConsole = strings.Repeat("kt: mmap base=0x0000000000100000 len=0x000000000ff00000 type=1\n", 8)

// instantRunner boots nothing: it prints a test kernel's console and
// passes at once, so that a benchmark measures the harness alone.
func instantRunner(_ context.Context, cfg boot.Config) (*boot.Result, error) {
	io.WriteString(cfg.Console, testKernelConsole)
	return &boot.Result{Outcome: machine.Pass, Reason: "guest wrote 0 to the debug-exit port", VMM: "kvm",
		BadRAMAccesses: []machine.BadAccess{}, ConsoleBytes: int64(len(testKernelConsole))}, nil
}

// benchMatrix is a test-kernel matrix of 4 kernels x 6 scenarios.
const benchMatrix = `
kernels:
  - {name: tk1}
  - {name: tk2, cmdline: a=1}
  - {name: tk3, cmdline: b=2}
  - {name: tk4, cmdline: c=3}
scenarios:
  - {name: plain}
  - {name: bad-16M, bad_ram: [16M-32M]}
  - {name: memmap, bad_ram: ["memmap=32M$16M"]}
  - {name: pattern, bad_ram: ["badram=0x01000000,0xff000000"]}
  - {name: lowest, placement: lowest, bad_ram: [1M-8M]}
  - {name: load, load_address: 0x3000000}
defaults: {vmm: kvm}
`

// BenchmarkSmokeOverhead measures the harness per case, with a runner
// that boots nothing: parsing and expanding the matrix, -j 2 workers, a
// console file per case, judging, JSON lines, JUnit and the summary.
// The ms/case figure is what kvmboot smoke adds to each boot.
func BenchmarkSmokeOverhead(b *testing.B) {
	out := b.TempDir()
	var cases int
	var overhead time.Duration
	b.ResetTimer()
	for b.Loop() {
		m, err := Parse([]byte(benchMatrix), "bench.yaml")
		if err != nil {
			b.Fatal(err)
		}
		r, err := Run(context.Background(), m, m.Cases, Options{
			Jobs: 2, OutDir: out, Runner: instantRunner,
			Observers: []Observer{NewJSONL(io.Discard), &Lines{W: io.Discard}},
		})
		if err != nil || !r.OK() {
			b.Fatalf("%v %v", err, r.Counts())
		}
		if err := WriteJUnit(io.Discard, r); err != nil {
			b.Fatal(err)
		}
		WriteSummary(io.Discard, r)
		cases += len(r.Cases)
		overhead += r.Overhead() * time.Duration(len(r.Cases))
	}
	perCase := b.Elapsed().Seconds() / float64(cases)
	b.ReportMetric(perCase*1000, "ms/case")
	b.ReportMetric(60/perCase, "cases/min")
	b.ReportMetric(float64(overhead.Microseconds())/1000/float64(cases), "ms/case-in-worker")
}

func ExampleShard_Select() {
	m, _ := Parse([]byte("kernels: [{name: k}]\nscenarios: [{name: a}, {name: b}, {name: c}, {name: d}, {name: e}]\n"), "m.yaml")
	for k := 1; k <= 2; k++ {
		var names []string
		for _, c := range (Shard{K: k, N: 2}).Select(m.Cases) {
			names = append(names, c.Name)
		}
		fmt.Printf("shard %d/2: %s\n", k, strings.Join(names, " "))
	}
	// Output:
	// shard 1/2: k/a k/c k/e
	// shard 2/2: k/b k/d
}
