package e2e

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"kvmboot/boot"
	"kvmboot/e2e/hosttest"
	"kvmboot/e2e/initramfs"
	"kvmboot/loader"
	"kvmboot/loader/memmap"
	"kvmboot/machine"
	"kvmboot/machine/kvm"
)

// linuxCmdline is the command line of every Debian boot here: a serial
// console, and no crypto self-tests or ISA PnP probing, which cost 1.5-2.5 s
// and 0.15-0.35 s under TCG and test nothing of ours (DESIGN.md §7).
const linuxCmdline = "console=ttyS0 quiet cryptomgr.notests noisapnp panic=-1"

var (
	initrdOnce sync.Once
	initrdPath string
	initrdErr  error
)

// guestInitrd builds the initramfs with our guest init once per test
// binary, or returns $KVMBOOT_GUEST_INITRD, one built already (the nested
// KVM lab has no Go toolchain).
func guestInitrd(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("KVMBOOT_GUEST_INITRD"); p != "" {
		return p
	}
	initrdOnce.Do(func() {
		dir, err := os.MkdirTemp("", "kvmboot-initrd-")
		if err != nil {
			initrdErr = err
			return
		}
		initrdPath, initrdErr = initramfs.WriteGuestInitramfs(dir)
	})
	if initrdErr != nil {
		t.Fatalf("building the guest initramfs: %v", initrdErr)
	}
	return initrdPath
}

// bootLinux boots Debian's kernel (or cfg.Kernel) with our guest init and
// parses the init's report: on the QEMU backend with TCG unless cfg.VMM
// says kvm, which needs a KVM that runs 32-bit paging (requireKVMPaging).
func bootLinux(t *testing.T, cfg boot.Config) (*boot.Result, *initramfs.GuestReport, string) {
	t.Helper()
	if cfg.VMM == "kvm" {
		requireKVMPaging(t)
	} else {
		requireQEMU(t)
	}
	if cfg.Kernel == "" {
		cfg.Kernel = hosttest.DebianKernel(t)
	}
	if cfg.Initrd == "" {
		cfg.Initrd = guestInitrd(t)
	}
	if cfg.VMM == "" {
		cfg.VMM, cfg.Accel = "qemu", "tcg"
	}
	if cfg.Cmdline == "" {
		cfg.Cmdline = linuxCmdline
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 120 * time.Second
	}
	res, _, console := bootTestKernel(t, cfg)
	for attempt := 2; attempt <= 3 && cfg.VMM == "kvm" && strings.HasPrefix(res.Reason, kvm.LostInterrupts); attempt++ {
		// The host's KVM, not kvmboot: QEMU's emulated SVM under the
		// nested lab (README, "The nested KVM lab").
		t.Logf("boot %d of 3: %s; booting again", attempt-1, res.Reason)
		res, _, console = bootTestKernel(t, cfg)
	}
	rep, _ := initramfs.ParseGuestReport(console) // partial or nil when the run ended early
	return res, rep, console
}

// checkLinux asserts what every good Linux boot must show, on every
// backend: the init's checks passed, the kernel's code lies where the plan
// put it, no System RAM overlaps bad RAM, above 1 MiB the guest's
// /proc/iomem is the plan's memory map (System RAM where it has RAM,
// Unusable memory where it has bad RAM), the kernel took our ACPI
// tables (FACP and APIC among them) without an ACPI error, warning or
// firmware bug, and runs every processor the machine has, untainted.
func checkLinux(t *testing.T, res *boot.Result, rep *initramfs.GuestReport, console string, bad []memmap.Range) {
	t.Helper()
	checkLinuxRuns(t, res, rep, console)
	checkACPI(t, rep)
	if rep.MemtestErrors != 0 || (!rep.MemtestSkipped && rep.MemtestBytes < 32<<20) {
		t.Errorf("guest memtest: %d bytes, %d errors", rep.MemtestBytes, rep.MemtestErrors)
	}
	if len(res.BadRAMAccesses) != 0 {
		t.Errorf("bad RAM touched: %+v", res.BadRAMAccesses)
	}
	if res.Kernel.Protocol == loader.ProtocolLinux32 {
		if rep.KernelCode.Start != res.LoadAddress || rep.KernelCode.Start%(16*mib) != 0 {
			t.Errorf("Kernel code at %v, plan put the kernel at %#x", rep.KernelCode, res.LoadAddress)
		}
	}
	for _, b := range bad {
		r := initramfs.Range{Start: b.Start, End: b.End}
		if over := rep.RAMOverlapping(r); len(over) != 0 {
			t.Errorf("System RAM %v overlaps bad RAM %v", over, r)
		}
		if rep.KernelCode.Overlaps(r) || rep.KernelData.Overlaps(r) || rep.KernelBss.Overlaps(r) {
			t.Errorf("the kernel (%v %v %v) overlaps bad RAM %v", rep.KernelCode, rep.KernelData, rep.KernelBss, r)
		}
	}
	for typ, guest := range map[memmap.Kind][]initramfs.Range{memmap.KindRAM: rep.SystemRAM, memmap.KindBad: rep.Unusable} {
		if want, got := planRanges(res, typ), aboveOneMiB(guest); !slices.Equal(got, want) {
			t.Errorf("/proc/iomem above 1 MiB has %s %v, the plan %v", typ, got, want)
		}
	}
}

// checkLinuxRuns asserts that the init's checks passed and that Linux
// runs every processor of the machine (res.CPUs), with no warning or unfit
// CPU tainting the kernel.
func checkLinuxRuns(t *testing.T, res *boot.Result, rep *initramfs.GuestReport, console string) {
	t.Helper()
	if res.Outcome != machine.Pass || rep == nil || !rep.Pass {
		t.Fatalf("outcome %s (%d): %s\n%s", res.Outcome, res.ExitCode, res.Reason, tail(console, 40))
	}
	if want := cpuRange(res.CPUs); !slices.Equal(rep.CPUsOnline, want) {
		t.Errorf("CPUs online %v, want %v", rep.CPUsOnline, want)
	}
	if rep.Tainted != 0 {
		t.Errorf("the kernel is tainted (%d)", rep.Tainted)
	}
}

// cpuRange is 0 to n-1.
func cpuRange(n int) []int {
	cpus := make([]int, n)
	for i := range cpus {
		cpus[i] = i
	}
	return cpus
}

// planRanges are the plan's memory-map ranges of type typ above 1 MiB,
// merged, as /proc/iomem shows them.
func planRanges(res *boot.Result, typ memmap.Kind) []initramfs.Range {
	var out []initramfs.Range
	for _, m := range res.MemoryMap {
		if m.Type != typ || m.End <= mib {
			continue
		}
		r := initramfs.Range{Start: max(m.Start, mib), End: m.End}
		if n := len(out); n > 0 && out[n-1].End == r.Start {
			out[n-1].End = r.End
			continue
		}
		out = append(out, r)
	}
	return out
}

// aboveOneMiB is rs cut to what lies at or above 1 MiB, neighbours merged.
func aboveOneMiB(rs []initramfs.Range) []initramfs.Range {
	var out []initramfs.Range
	for _, r := range rs {
		if r.End <= mib {
			continue
		}
		r.Start = max(r.Start, mib)
		if n := len(out); n > 0 && out[n-1].End == r.Start {
			out[n-1].End = r.End
			continue
		}
		out = append(out, r)
	}
	return out
}

// checkACPI asserts that Linux found our ACPI tables, FACP and APIC among
// them, and had nothing to say against them.
func checkACPI(t *testing.T, rep *initramfs.GuestReport) {
	t.Helper()
	for _, want := range []string{"FACP", "APIC"} {
		if !slices.Contains(rep.ACPITables, want) {
			t.Errorf("the kernel's ACPI tables %q lack %s", rep.ACPITables, want)
		}
	}
	if rep.ACPIProblemCount != 0 {
		t.Errorf("%d ACPI problems in the kernel log: %q", rep.ACPIProblemCount, rep.ACPIProblems)
	}
}

func badRanges(t testing.TB, specs ...string) []memmap.Range {
	t.Helper()
	return parseSpecs(t, memmap.ParseBadRAM, specs)
}

// TestLinuxBoot boots Debian's stock i386 kernel to our guest init through
// the compressed-ELF path around several bad-RAM layouts, under QEMU.
func TestLinuxBoot(t *testing.T) { testLinuxBoot(t, "") }

// TestKVMLinuxBoot makes the same boots on our own VMM, where the KVM runs
// 32-bit paging: the same placements, memory maps and guest /proc/iomem.
// Linux there finds KVM (CPUID), uses kvmclock and calibrates its TSC.
func TestKVMLinuxBoot(t *testing.T) { testLinuxBoot(t, "kvm") }

func testLinuxBoot(t *testing.T, vmm boot.VMM) {
	for _, tc := range []struct {
		name     string
		bad      []string
		wantLoad uint64
	}{
		{"clean", nil, 16 * mib},
		{"bad-16M-48M", []string{"16M-48M"}, 48 * mib},
		// -short on our VMM stops here: the nested KVM lab's CI
		// selection (each boot there takes about 40 s).
		{"two-ranges", []string{"16M-20M", "memmap=2M$50M"}, 32 * mib},
		{"grub-pattern", []string{"badram=0x01000000,0xff000000", "badram=0x02000000,0xff000000"}, 48 * mib},
		// The initrd goes to the highest good RAM below initrd_addr_max:
		// bad RAM at the top pushes it down.
		{"initrd-around-bad", []string{"200M-256M"}, 16 * mib},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if vmm == "kvm" && testing.Short() && tc.name != "clean" && tc.name != "bad-16M-48M" {
				hosttest.Skip(t, hosttest.KVMPaging, "left out in -short: the lab's CI selection boots Debian on our VMM clean and with 16M-48M bad")
			}
			bad := badRanges(t, tc.bad...)
			cfg := boot.Config{VMM: vmm, BadRAM: bad}
			if vmm == "kvm" && tc.name == "clean" {
				cfg.Cmdline = strings.Replace(linuxCmdline, " quiet", "", 1) // the clock lines are informational
			}
			res, rep, console := bootLinux(t, cfg)
			checkLinux(t, res, rep, console, bad)
			if cfg.Cmdline != "" {
				checkKVMClock(t, console)
			}
			if res.LoadAddress != tc.wantLoad {
				t.Errorf("kernel loaded at %#x, want %#x", res.LoadAddress, tc.wantLoad)
			}
			for _, p := range res.Placements {
				for _, b := range bad {
					if (memmap.Range{Start: p.Start, End: p.End}).Overlaps(b) {
						t.Errorf("%s %#x-%#x overlaps bad RAM %v", p.What, p.Start, p.End, b)
					}
				}
			}
		})
	}
}

// TestLinuxSMP boots Debian's kernel with --smp 4 to our init under QEMU:
// CPUs 0-3 online, found through the ACPI MADT and, with acpi=off, through
// the MP table (Linux reads no ACPI table then), no firmware bug or
// warning either way.
func TestLinuxSMP(t *testing.T) { testLinuxSMP(t, "") }

// TestKVMLinuxSMP makes the same boots on our own VMM, a thread per vCPU.
func TestKVMLinuxSMP(t *testing.T) { testLinuxSMP(t, "kvm") }

func testLinuxSMP(t *testing.T, vmm boot.VMM) {
	for _, tc := range []struct {
		name string
		acpi bool
	}{{"acpi", true}, {"acpi-off", false}} {
		t.Run(tc.name, func(t *testing.T) {
			if vmm == boot.VMMKVM && testing.Short() {
				hosttest.Skip(t, hosttest.KVMPaging, "left out in -short: the lab's CI selection boots Debian on our VMM with one processor (an outer VM freezes most often under several)")
			}
			cfg := boot.Config{VMM: vmm, CPUs: 4, Cmdline: linuxCmdline, Timeout: 300 * time.Second}
			if !tc.acpi {
				cfg.Cmdline += " acpi=off"
			}
			if vmm == boot.VMMKVM {
				// Native spinlocks: with KVM's paravirtual ones a waiter
				// halts with interrupts off until the holder's kick
				// hypercall, which the nested lab's KVM lost (README,
				// "The nested KVM lab"). How Linux finds and starts the
				// processors, which this test checks, is the same.
				cfg.Cmdline += " nopvspin"
			}
			res, rep, console := bootLinux(t, cfg)
			checkLinuxRuns(t, res, rep, console)
			if tc.acpi {
				checkACPI(t, rep)
			} else if len(rep.ACPITables) != 0 || rep.ACPIProblemCount != 0 {
				t.Errorf("acpi=off, yet the kernel has ACPI tables %q (problems: %q)", rep.ACPITables, rep.ACPIProblems)
			}
			if res.CPUs != 4 {
				t.Errorf("the result says %d CPUs", res.CPUs)
			}
		})
	}
}

// checkKVMClock asserts that Linux on our VMM found KVM and took its
// clocks from it: kvmclock, and a TSC frequency without PIT calibration
// failing (the in-kernel PIT answers port 0x61).
func checkKVMClock(t *testing.T, console string) {
	t.Helper()
	for _, want := range []string{"Hypervisor detected: KVM", "kvm-clock: Using msrs", "tsc: Detected", "Switched to clocksource kvm-clock"} {
		if !strings.Contains(console, want) {
			t.Errorf("the console lacks %q", want)
		}
	}
	for _, bad := range []string{"Fast TSC calibration failed", "Unable to calibrate against PIT", "Marking TSC unstable"} {
		if strings.Contains(console, bad) {
			t.Errorf("the console says %q", bad)
		}
	}
}

// TestLinuxPanicEndsRunAtOnce: a kernel that panics ends the run with 125
// and the panic line in the reason, long before the timeout, under QEMU
// and on our VMM.
func TestLinuxPanicEndsRunAtOnce(t *testing.T) { testLinuxPanic(t, "") }

func TestKVMLinuxPanicEndsRunAtOnce(t *testing.T) { testLinuxPanic(t, "kvm") }

func testLinuxPanic(t *testing.T, vmm boot.VMM) {
	start := time.Now()
	// rdinit: our initramfs has an /init, which init= alone would not replace.
	res, _, console := bootLinux(t, boot.Config{VMM: vmm, Cmdline: "console=ttyS0 cryptomgr.notests noisapnp panic=-1 rdinit=/nonexistent init=/nonexistent", Timeout: 100 * time.Second})
	if res.Outcome != machine.Crash || res.ExitCode != 125 || !strings.Contains(res.Reason, "Kernel panic") {
		t.Fatalf("outcome %s (%d): %s\n%s", res.Outcome, res.ExitCode, res.Reason, tail(console, 20))
	}
	if d := time.Since(start); d > 60*time.Second {
		t.Errorf("the run took %v: it did not stop at the panic", d)
	}
	panicAt := strings.Index(console, "Kernel panic")
	if after := console[panicAt:]; strings.Count(after, "\n") > 40 {
		t.Errorf("%d console lines after the panic line: the run went on", strings.Count(after, "\n"))
	}
}

// TestLinuxExpect: --expect ends the run at the first matching line.
func TestLinuxExpect(t *testing.T) {
	res, _, console := bootLinux(t, boot.Config{Expect: regexp.MustCompile(`gi: hello`)})
	if res.Outcome != machine.Pass || res.ExitCode != 0 || res.GuestExit != nil {
		t.Fatalf("outcome %s (%d): %s\n%s", res.Outcome, res.ExitCode, res.Reason, tail(console, 20))
	}
	if strings.Contains(console, "gi: result") {
		t.Error("the run went on after the expected line")
	}
}

// TestLinux16 boots Debian's kernel through its own setup code on our BIOS
// (the 16-bit boot protocol): the kernel learns the memory map only from
// our BIOS's int 15h E820, so bad RAM missing from System RAM proves the
// BIOS right. Its own decompressor then unpacks it where kvmboot put the
// protected-mode part, which had room for the whole init_size in good RAM
// at a kernel_alignment boundary: it writes nothing into the bad range
// (QEMU sees writes through canaries in bad RAM), and with nokaslr the
// kernel runs right there; with KASLR it picks a place among the E820 RAM.
func TestLinux16(t *testing.T) {
	bad := badRanges(t, "16M-48M")
	for _, tc := range []struct {
		name    string
		cmdline string
	}{
		{"kaslr", linuxCmdline},
		{"nokaslr", linuxCmdline + " nokaslr"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, rep, console := bootLinux(t, boot.Config{Protocol: loader.ProtocolLinux16, BadRAM: bad, BadRAMPolicy: machine.BadRAMRecord, Cmdline: tc.cmdline})
			checkLinux(t, res, rep, console, bad)
			if res.Kernel.Protocol != loader.ProtocolLinux16 || res.LoadAddress != 48*mib {
				t.Errorf("protocol %s, protected-mode part at %#x: want linux16 at 48M, the first 16M boundary past the bad range", res.Kernel.Protocol, res.LoadAddress)
			}
			if tc.name == "nokaslr" && rep.KernelCode.Start != res.LoadAddress {
				t.Errorf("Kernel code at %v: with nokaslr it runs where its protected-mode part was put, %#x", rep.KernelCode, res.LoadAddress)
			}
			if strings.Contains(console, "not marked as E820_TYPE_RAM") {
				t.Errorf("the kernel runs from memory E820 does not call RAM:\n%s", tail(console, 20))
			}
			t.Logf("linux16 %s with bad RAM %v: protected-mode part at %#x, kernel code at %v, %d bad-RAM accesses", tc.name, bad, res.LoadAddress, rep.KernelCode, len(res.BadRAMAccesses))
		})
	}
}

// TestLinuxBadRAMReadCaught: Debian's kernel reading bad RAM for our init
// (/dev/mem, which the kernel maps with paging on; iomem=relaxed lets it
// map memory the E820 map reserves) ends the run at that
// load, named in the kernel's code: the bad-RAM read, with paging.
func TestLinuxBadRAMReadCaught(t *testing.T) {
	bad := badRanges(t, "64M-80M")
	res, _, console := bootLinux(t, boot.Config{BadRAM: bad, Cmdline: linuxCmdline + " iomem=relaxed gi.peek=0x4800000"})
	if res.Outcome != machine.Crash || len(res.BadRAMAccesses) != 1 {
		t.Fatalf("outcome %s, accesses %+v: %s\n%s", res.Outcome, res.BadRAMAccesses, res.Reason, tail(console, 20))
	}
	acc := res.BadRAMAccesses[0]
	if acc.Write || acc.Addr != 0x4800000 || acc.IP < 0xC0000000 || !strings.HasPrefix(acc.Insn, "mov") || !strings.Contains(acc.Insn, "ptr [") {
		t.Errorf("access %+v, want a load at 0x4800000 by a mov in the kernel (above 0xc0000000)", acc)
	}
	if strings.Contains(console, "gi: peek") {
		t.Errorf("the read completed:\n%s", tail(console, 20))
	}
	t.Logf("%d-byte read at %#x by %q at %#x", acc.Size, acc.Addr, acc.Insn, acc.IP)
}

// TestLinuxMemtestWitness: Linux's own early memory test, code nobody here
// wrote, finds the faulty RAM kvmboot injects, exactly: with 40M+64K stuck
// at 0 in a 64 MiB guest and memtest=2 (all-ones first, which a stuck-at-0
// bit fails; memtest=1 writes only zeros), Debian's kernel reserves
// 0x02800000-0x02810000 and reaches init, where our init's own memory test
// of all free memory finds nothing more.
func TestLinuxMemtestWitness(t *testing.T) {
	for _, vmm := range backends {
		t.Run(vmm.String(), func(t *testing.T) {
			if vmm == "kvm" {
				requireKVMPaging(t)
			}
			start := time.Now()
			res, rep, console := bootLinux(t, onBackend(vmm, boot.Config{
				MemSize: 64 * mib, Faulty: faultyRanges(t, "40M+64K:stuck0"),
				Cmdline: "console=ttyS0 memtest=2 cryptomgr.notests noisapnp panic=-1",
			}))
			// Only 64 MiB: checkLinux's guest memtest size does not hold.
			if res.Outcome != machine.Pass || rep == nil || !rep.Pass || rep.MemtestErrors != 0 || rep.MemtestBytes == 0 || len(res.BadRAMAccesses) != 0 {
				t.Fatalf("outcome %s (%d): %s; init's report %+v\n%s", res.Outcome, res.ExitCode, res.Reason, rep, tail(console, 40))
			}
			if !strings.Contains(console, "bad mem addr 0x02800000 - 0x02810000 reserved") {
				t.Errorf("Linux's memtest did not report exactly the faulty range:\n%s", tail(console, 60))
			}
			if f := res.FaultyRAM; f == nil || f.Writes == 0 {
				t.Errorf("faulty RAM stats %+v", f)
			}
			t.Logf("%s: init reached in %.1f s; init's memtest %d bytes, no errors; %d writes to faulty RAM, %d of them corrupted",
				vmm, time.Since(start).Seconds(), rep.MemtestBytes, res.FaultyRAM.Writes, res.FaultyRAM.CorruptedWrites)
		})
	}
}
