package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/arch/x86/x86asm"

	"kvmboot/boot"
	"kvmboot/boot/testkernel"
	"kvmboot/e2e/hosttest"
	"kvmboot/loader"
	"kvmboot/loader/memmap"
	"kvmboot/machine"
	"kvmboot/realmode"
)

const (
	mib      = 1 << 20
	linkBase = 0x1000000 // the test kernel's link address
)

func kvmConfig(cfg boot.Config) boot.Config {
	cfg.VMM = "kvm"
	return cfg
}

// checkPass asserts a run passed and the kernel's self-checks all held.
func checkPass(t *testing.T, res *boot.Result, rep *testkernel.Report, console string) {
	t.Helper()
	if res.Outcome != machine.Pass || res.ExitCode != 0 {
		t.Fatalf("outcome %s status %d: %s\nconsole:\n%s", res.Outcome, res.ExitCode, res.Reason, console)
	}
	if rep == nil || !rep.Pass || rep.RelocsOK != rep.RelocsChecked || rep.AbsOK != rep.AbsChecked || !rep.BSSZero {
		t.Fatalf("kernel self-check failed: %+v\nconsole:\n%s", rep, console)
	}
	if rep.RelocsChecked == 0 || rep.AbsChecked == 0 {
		t.Fatalf("kernel checked %d pointers and %d absolute symbols, want some of each", rep.RelocsChecked, rep.AbsChecked)
	}
	if len(res.BadRAMAccesses) != 0 {
		t.Fatalf("bad RAM touched: %+v", res.BadRAMAccesses)
	}
}

func TestKVMBootBuiltin(t *testing.T) {
	requireKVM(t)
	res, rep, console := bootTestKernel(t, kvmConfig(boot.Config{Cmdline: "hello world"}))
	checkPass(t, res, rep, console)
	if rep.Base != linkBase || rep.Delta != 0 || res.LoadAddress != linkBase {
		t.Errorf("base %#x delta %#x load %#x, want the link address", rep.Base, rep.Delta, res.LoadAddress)
	}
	if rep.Cmdline != testkernel.FileName+" hello world" || rep.BootLoader != loader.LoaderName {
		t.Errorf("cmdline %q bootloader %q", rep.Cmdline, rep.BootLoader)
	}
	// The EBDA takes the top KiB below 640K, the ACPI tables the top 4 KiB of RAM.
	if rep.MemLower != 639 || rep.MemUpper != (256-1)*1024-4 {
		t.Errorf("mem lower %d upper %d", rep.MemLower, rep.MemUpper)
	}
}

// mmapOf turns the kernel's view of the memory map into ranges by type.
func mmapOf(rep *testkernel.Report, typ uint32) []memmap.Range {
	var rs []memmap.Range
	for _, e := range rep.Mmap {
		if e.Type == typ {
			rs = append(rs, memmap.Range{Start: e.Base, End: e.Base + e.Len})
		}
	}
	return rs
}

func TestKVMBadRAMMovesKernel(t *testing.T) {
	requireKVM(t)
	for _, tc := range []struct {
		name     string
		specs    []string
		wantBase uint32
		wantBad  []memmap.Range
	}{
		{"range", []string{"16M-32M"}, 0x2000000, []memmap.Range{{Start: 16 * mib, End: 32 * mib}}},
		{"plus", []string{"0x1000000+0x800000"}, 0x1800000, []memmap.Range{{Start: 16 * mib, End: 24 * mib}}},
		{"several", []string{"16M-17M", "memmap=1M$17M,2M$20M", "1M-2M"}, 0x1200000,
			[]memmap.Range{{Start: 1 * mib, End: 2 * mib}, {Start: 16 * mib, End: 18 * mib}, {Start: 20 * mib, End: 22 * mib}}},
		// A GRUB pattern that hits many pages: the upper 32 KiB of every
		// 64 KiB block between 16 and 20 MiB (64 holes). The kernel
		// needs 93 KiB (its bss holds the APs' stacks), more than any
		// good half: it goes to the first fit above the pattern.
		{"grub-pattern", []string{"badram=0x01008000,0xffc08000"}, 0x1400000, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := badRanges(t, tc.specs...)
			res, rep, console := bootTestKernel(t, kvmConfig(boot.Config{BadRAM: bad}))
			checkPass(t, res, rep, console)
			if rep.Base != tc.wantBase || res.LoadAddress != uint64(tc.wantBase) {
				t.Errorf("kernel at %#x (plan %#x), want %#x", rep.Base, res.LoadAddress, tc.wantBase)
			}
			if rep.Delta != tc.wantBase-linkBase {
				t.Errorf("delta %#x", rep.Delta)
			}
			got := memmap.Merge(mmapOf(rep, uint32(memmap.KindBad)))
			want := tc.wantBad
			if want == nil {
				want = memmap.Merge(bad)
			}
			if !slices.Equal(got, want) {
				t.Errorf("kernel saw bad RAM %v, want %v", got, want)
			}
		})
	}
}

// compressed returns the test kernel packed by each compressor kvmboot
// reads, made here: Go for gzip and zstd, the xz tool for xz with and
// without the x86 BCJ filter (as Linux packs its payloads).
func compressed(t *testing.T) map[string][]byte {
	out := map[string][]byte{}
	var gz bytes.Buffer
	w, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	w.Write(testkernel.ELF)
	w.Close()
	out["gzip"] = gz.Bytes()
	enc, _ := zstd.NewWriter(nil)
	out["zstd"] = enc.EncodeAll(testkernel.ELF, nil)
	if _, err := exec.LookPath("xz"); err != nil {
		t.Logf("xz not installed: xz cases skipped")
		return out
	}
	for name, args := range map[string][]string{"xz": {"-c", "-9"}, "xz-bcj": {"-c", "--x86", "--lzma2"}} {
		cmd := exec.Command("xz", args...)
		cmd.Stdin = bytes.NewReader(testkernel.ELF)
		b, err := cmd.Output()
		if err != nil {
			t.Fatalf("xz %v: %v", args, err)
		}
		out[name] = b
	}
	return out
}

func TestKVMCompressedKernels(t *testing.T) {
	requireKVM(t)
	dir := t.TempDir()
	for name, data := range compressed(t) {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, "testkernel."+name)
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			res, rep, console := bootTestKernel(t, kvmConfig(boot.Config{Kernel: path, BadRAM: []memmap.Range{{Start: 16 * mib, End: 32 * mib}}}))
			checkPass(t, res, rep, console)
			if rep.Base != 0x2000000 {
				t.Errorf("kernel at %#x, want 0x2000000", rep.Base)
			}
			if !strings.HasSuffix(res.Kernel.Format, "+elf32") {
				t.Errorf("format %q", res.Kernel.Format)
			}
		})
	}
}

func TestKVMPlacementControls(t *testing.T) {
	requireKVM(t)
	at := func(a uint64) *uint64 { return &a }
	t.Run("load-address", func(t *testing.T) {
		res, rep, console := bootTestKernel(t, kvmConfig(boot.Config{LoadAddress: at(0x3000000)}))
		checkPass(t, res, rep, console)
		if rep.Base != 0x3000000 {
			t.Errorf("kernel at %#x", rep.Base)
		}
	})
	t.Run("region", func(t *testing.T) {
		res, rep, console := bootTestKernel(t, kvmConfig(boot.Config{Region: &memmap.Range{Start: 0x4000800, End: 0x5000000}}))
		checkPass(t, res, rep, console)
		if rep.Base != 0x4001000 {
			t.Errorf("kernel at %#x, want the region's first 4K-aligned address", rep.Base)
		}
	})
	t.Run("highest", func(t *testing.T) {
		res, rep, console := bootTestKernel(t, kvmConfig(boot.Config{Policy: loader.PolicyHighest, MemSize: 64 * mib}))
		checkPass(t, res, rep, console)
		if uint64(rep.Base)+uint64(rep.Size) > 64*mib || rep.Base < 63*mib {
			t.Errorf("kernel at %#x, want the top of 64M", rep.Base)
		}
	})
}

func TestKVMModules(t *testing.T) {
	requireKVM(t)
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.bin"), filepath.Join(dir, "b.bin")
	os.WriteFile(a, bytes.Repeat([]byte("A"), 5000), 0o644)
	os.WriteFile(b, []byte("second module"), 0o644)
	res, rep, console := bootTestKernel(t, kvmConfig(boot.Config{
		Modules: []boot.ModuleSpec{{Path: a, Args: a + " arg1 arg2"}, {Path: b}},
		BadRAM:  []memmap.Range{{Start: 1 * mib, End: 2 * mib}},
	}))
	checkPass(t, res, rep, console)
	if len(rep.Modules) != 2 {
		t.Fatalf("kernel saw %d modules: %+v", len(rep.Modules), rep.Modules)
	}
	if rep.Modules[0].String != a+" arg1 arg2" || rep.Modules[1].String != b {
		t.Errorf("module strings %q, %q", rep.Modules[0].String, rep.Modules[1].String)
	}
	for _, m := range rep.Modules {
		if m.Start < 2*mib && m.End > 1*mib {
			t.Errorf("module %+v overlaps bad RAM [1M,2M)", m)
		}
		if m.Start%4096 != 0 {
			t.Errorf("module at %#x not page aligned", m.Start)
		}
	}
}

// TestChecksumCatchesCorruption flips a byte of the kernel after it is
// placed: the stub's XXH32 check must refuse to jump, on our KVM machine
// and under QEMU.
func TestChecksumCatchesCorruption(t *testing.T) {
	for _, b := range []struct {
		name string
		cfg  func(boot.Config) boot.Config
		need func(testing.TB)
	}{{"kvm", kvmConfig, requireKVM}, {"qemu", qemuConfig, requireQEMU}} {
		t.Run(b.name, func(t *testing.T) {
			b.need(t)
			// The byte lies in the zero gap between the kernel's two
			// segments, so the kernel runs unharmed when the check is skipped.
			flip := func(ram []byte) { ram[linkBase+0x1f00] ^= 0x40 }
			res, _, console := bootTestKernel(t, b.cfg(boot.Config{AfterPlace: flip}))
			if res.Outcome != machine.Crash || res.ExitCode != machine.StatusCrash {
				t.Fatalf("outcome %s status %d, want crash 125: %s", res.Outcome, res.ExitCode, res.Reason)
			}
			if !strings.Contains(res.Reason, "checksum mismatch in kernel at 0x1000000") {
				t.Errorf("reason %q does not name the kernel piece", res.Reason)
			}
			if !strings.Contains(console, "kvmboot stub: checksum mismatch") {
				t.Errorf("stub did not report on the console: %q", console)
			}
			// --no-verify skips the check, and the corrupted kernel runs.
			res, _, _ = bootTestKernel(t, b.cfg(boot.Config{NoVerify: true, AfterPlace: flip}))
			if res.Outcome != machine.Pass {
				t.Errorf("--no-verify: outcome %s: %s", res.Outcome, res.Reason)
			}
		})
	}
}

// TestKVMGuestFailures covers guests that end badly: each must give its
// outcome and status, and the console up to the end must be complete.
func TestKVMGuestFailures(t *testing.T) {
	requireKVM(t)
	for _, tc := range []struct {
		cmdline string
		timeout time.Duration
		outcome machine.Outcome
		status  int
		reason  string
	}{
		{"kt.exit=7", 0, machine.Fail, 7, "wrote 7"},
		{"kt.triple", 0, machine.Crash, 125, "triple fault"},
		{"kt.panic", 0, machine.Crash, 125, "Kernel panic"},
		{"kt.reset", 0, machine.Crash, 125, "reset"},
		{"kt.hang", 2 * time.Second, machine.Timeout, 124, "no result within"},
		{"kt.spin", 2 * time.Second, machine.Timeout, 124, "no result within"},
		{"kt.ports", 0, machine.Pass, 0, ""},
	} {
		t.Run(tc.cmdline, func(t *testing.T) {
			res, rep, console := bootTestKernel(t, kvmConfig(boot.Config{Cmdline: tc.cmdline, Timeout: tc.timeout}))
			if res.Outcome != tc.outcome || res.ExitCode != tc.status || !strings.Contains(res.Reason, tc.reason) {
				t.Fatalf("got %s %d %q, want %s %d containing %q", res.Outcome, res.ExitCode, res.Reason, tc.outcome, tc.status, tc.reason)
			}
			if rep == nil || !strings.Contains(console, "kt: result pass") {
				t.Fatalf("console incomplete:\n%s", console)
			}
		})
	}
}

func TestKVMExpect(t *testing.T) {
	requireKVM(t)
	stdout, stderr, status := runCLI(t, "run", "--vmm=kvm", "--json", "--expect", "^kt: bss zero=yes", "--cmdline", "kt.hang")
	if status != 0 {
		t.Fatalf("status %d\n%s\n%s", status, stdout, stderr)
	}
	var res boot.Result
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("JSON: %v\n%s", err, stdout)
	}
	if res.Outcome != machine.Pass || !strings.Contains(res.Reason, "kt: bss zero=yes") {
		t.Errorf("outcome %s reason %q", res.Outcome, res.Reason)
	}
}

// TestKVMJSONContract checks the result object's fields (DESIGN.md §3).
func TestKVMJSONContract(t *testing.T) {
	requireKVM(t)
	stdout, stderr, status := runCLI(t, "run", "--vmm=kvm", "--json", "--bad-ram", "16M-32M")
	if status != 0 {
		t.Fatalf("status %d\n%s", status, stderr)
	}
	var obj map[string]any
	if err := json.Unmarshal([]byte(stdout), &obj); err != nil {
		t.Fatalf("JSON: %v\n%s", err, stdout)
	}
	for _, k := range []string{"outcome", "exit_code", "reason", "kernel", "load_address", "entry", "relocations", "placements", "memory_map", "bad_ram_accesses", "timings_ms"} {
		if _, ok := obj[k]; !ok {
			t.Errorf("result lacks %q", k)
		}
	}
	if obj["load_address"].(float64) != 0x2000000 {
		t.Errorf("load_address %v", obj["load_address"])
	}
	if !strings.Contains(stderr, "kt: result pass") {
		t.Errorf("console not on stderr under --json: %q", stderr)
	}
	// --exit-code=qemu maps debug-exit v to (v<<1)|1.
	if _, _, status := runCLI(t, "run", "--vmm=kvm", "--exit-code=qemu", "--console", filepath.Join(t.TempDir(), "c"), "--cmdline", "kt.exit=3"); status != 7 {
		t.Errorf("--exit-code=qemu: status %d, want 7", status)
	}
}

// TestKVMStubCost counts, by single-stepping, what our entry stub costs
// from the reset vector to the kernel's first instruction. Most exits are
// the BIOS's POST: the RTC read for the tick count (4 registers, 6 when a
// second passes in between, 2 exits each), the PCI probe for a PIIX4 (2)
// and the A20 gate (2).
func TestKVMStubCost(t *testing.T) {
	requireKVM(t)
	res, rep, console := bootTestKernel(t, kvmConfig(boot.Config{CountStub: true, NoVerify: true}))
	checkPass(t, res, rep, console)
	if res.Stub == nil {
		t.Fatal("no stub count")
	}
	skipIfSteppingLost(t, res)
	t.Logf("stub: %d instructions, %d VM exits from reset to the kernel's entry", res.Stub.Instructions, res.Stub.Exits)
	if res.Stub.Instructions > 300 || res.Stub.Exits > 16 {
		t.Errorf("stub costs %d instructions and %d exits; budget 300 and 16", res.Stub.Instructions, res.Stub.Exits)
	}
}

// skipIfSteppingLost skips a test whose run single-stepped the stub but did
// not reach the kernel's entry: the host's KVM lost the single-step trap
// (the nested lab's emulated SVM does, after some port I/O), so nothing
// stepped measures the stub.
func skipIfSteppingLost(t *testing.T, res *boot.Result) {
	t.Helper()
	if res.Stub == nil || !res.Stub.Complete {
		hosttest.Skip(t, hosttest.KVM, fmt.Sprintf("single-stepping stopped before the kernel's entry (%+v): this host's KVM lost the single-step trap", res.Stub))
	}
}

// TestTraceMatchesStub: --trace=real shows our stub instruction by
// instruction from the reset vector, exactly as the firmware image
// disassembles, and stops before 32-bit code: the same lines on our KVM
// machine (single-stepping) and under QEMU (kvmboot's TCG plugin).
func TestTraceMatchesStub(t *testing.T) {
	lay, err := realmode.ReadLayout(realmode.Firmware)
	if err != nil {
		t.Fatal(err)
	}
	// The reset vector, then the start of the 16-bit code, following its
	// first calls (into the BIOS's initialisation).
	want := []string{disasm16(t, realmode.Firmware, int(lay.Reset[0]))}
	for pc, i := int(lay.Code16[0]), 0; i < 20; i++ {
		want = append(want, disasm16(t, realmode.Firmware, pc))
		inst, _ := x86asm.Decode(realmode.Firmware[pc:], 16)
		pc += inst.Len
		if rel, ok := inst.Args[0].(x86asm.Rel); ok && inst.Op == x86asm.CALL {
			pc = int(uint16(pc + int(rel)))
		}
	}
	for _, vmm := range backends {
		t.Run(vmm.String(), func(t *testing.T) {
			requireBackend(t, vmm)
			var lines []string
			res, _, _ := bootTestKernel(t, onBackend(vmm, boot.Config{Trace: func(l string) { lines = append(lines, l) }, TraceLimit: 1000}))
			if res.Outcome != machine.Pass {
				t.Fatalf("outcome %s: %s", res.Outcome, res.Reason)
			}
			if vmm == boot.VMMKVM {
				skipIfSteppingLost(t, res)
			}
			// A rep string instruction shows once per iteration (or, on
			// kvm_pvm, in chunks): the same line repeats.
			lines = slices.Compact(lines)
			if len(lines) < len(want) {
				t.Fatalf("trace has %d lines", len(lines))
			}
			for i, w := range want {
				if !strings.HasSuffix(lines[i], w) {
					t.Errorf("trace line %d = %q, want it to end with %q", i, lines[i], w)
				}
			}
			if !strings.HasPrefix(lines[0], "16 f000:fff0") {
				t.Errorf("trace starts at %q, want the reset vector f000:fff0", lines[0])
			}
			for _, l := range lines {
				if strings.HasPrefix(l, "32 ") {
					t.Fatalf("--trace=real went on into 32-bit code: %q", l)
				}
			}
		})
	}
}

func disasm16(t *testing.T, img []byte, pc int) string {
	inst, err := x86asm.Decode(img[pc:], 16)
	if err != nil {
		t.Fatalf("decode at %#x: %v", pc, err)
	}
	return x86asm.IntelSyntax(inst, uint64(pc), nil)
}
