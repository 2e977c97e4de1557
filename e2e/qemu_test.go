package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"kvmboot/boot"
	"kvmboot/boot/testkernel"
	"kvmboot/loader"
	"kvmboot/loader/memmap"
	"kvmboot/machine"
)

// qemuConfig runs cfg under QEMU with TCG.
func qemuConfig(cfg boot.Config) boot.Config {
	cfg.VMM, cfg.Accel = "qemu", "tcg"
	return cfg
}

func TestQEMUBootBuiltin(t *testing.T) {
	requireQEMU(t)
	t.Parallel()
	res, rep, console := bootTestKernel(t, qemuConfig(boot.Config{Cmdline: "hello world"}))
	checkPass(t, res, rep, console)
	if rep.Base != linkBase || res.LoadAddress != linkBase || rep.BootLoader != loader.LoaderName || rep.Cmdline != testkernel.FileName+" hello world" {
		t.Errorf("base %#x load %#x bootloader %q cmdline %q", rep.Base, res.LoadAddress, rep.BootLoader, rep.Cmdline)
	}
	if res.VMM != "qemu" || res.Accel != "tcg" || res.VMMWhy == "" {
		t.Errorf("vmm %q accel %q why %q", res.VMM, res.Accel, res.VMMWhy)
	}
	// QEMU starts before the plan is made: every stage is reported, in
	// order, and the stages of the setup fit in it.
	tm := res.Timings
	if tm.Setup <= 0 || tm.Boot <= 0 || tm.Plan <= 0 || tm.QEMUExec <= 0 || tm.QEMUReady <= 0 || tm.RAMWrite <= 0 || tm.Guest <= 0 ||
		tm.FirstInstruction < tm.QEMUExec+tm.QEMUReady || tm.FirstInstruction < tm.Setup || tm.Boot < tm.Guest || tm.Total < tm.FirstInstruction+tm.Guest {
		t.Errorf("timings %+v", tm)
	}
}

// TestQEMUBadRAMSameReport: with bad RAM at the kernel's link address the
// kernel runs at 32 MiB and sees the same memory map and relocation checks
// under QEMU (TCG, and KVM where /dev/kvm opens) as under our KVM machine.
func TestQEMUBadRAMSameReport(t *testing.T) {
	requireQEMU(t)
	t.Parallel()
	bad := badRanges(t, "16M-32M")
	res, rep, console := bootTestKernel(t, qemuConfig(boot.Config{BadRAM: bad}))
	checkPass(t, res, rep, console)
	if rep.Base != 0x2000000 || res.LoadAddress != 0x2000000 || rep.Delta != 0x2000000-linkBase {
		t.Errorf("kernel at %#x (plan %#x, delta %#x), want 0x2000000", rep.Base, res.LoadAddress, rep.Delta)
	}
	if got := mmapOf(rep, uint32(memmap.KindBad)); !slices.Equal(got, bad) {
		t.Errorf("kernel saw bad RAM %v, want %v", got, bad)
	}
	if !kvmPart(t) {
		return
	}
	// The report minus what names the boot: every field must agree.
	same := func(r *testkernel.Report) testkernel.Report {
		c := *r
		c.Lines = nil
		return c
	}
	for _, cfg := range []boot.Config{
		{VMM: "kvm", BadRAM: bad},
		{VMM: "qemu", Accel: "kvm", BadRAM: bad},
	} {
		r2, rep2, console2 := bootTestKernel(t, cfg)
		checkPass(t, r2, rep2, console2)
		if !reflect.DeepEqual(same(rep), same(rep2)) {
			t.Errorf("--vmm=%s --accel=%s: report differs from QEMU/TCG's\n got %+v\nwant %+v", cfg.VMM, cfg.Accel, same(rep2), same(rep))
		}
		if !reflect.DeepEqual(r2.MemoryMap, res.MemoryMap) || r2.LoadAddress != res.LoadAddress {
			t.Errorf("--vmm=%s: plan differs", cfg.VMM)
		}
	}
}

// TestQEMUBadRAMWriteCaught: kvmboot's plugin stops the guest at its store
// into bad RAM, before it lands, and names the instruction; under the
// record policy stores to two pages are both recorded, each with its
// instruction, and the guest goes on. (TestBadRAMCaught compares loads and
// stores with our KVM machine.)
func TestQEMUBadRAMWriteCaught(t *testing.T) {
	requireQEMU(t)
	t.Parallel()
	bad := []memmap.Range{{Start: 16 * mib, End: 32 * mib}}
	res, rep, console := bootTestKernel(t, qemuConfig(boot.Config{BadRAM: bad, Cmdline: "kt.poke=0x1800000"}))
	if res.Outcome != machine.Crash || res.ExitCode != machine.StatusCrash {
		t.Fatalf("outcome %s status %d, want crash 125: %s", res.Outcome, res.ExitCode, res.Reason)
	}
	if len(res.BadRAMAccesses) != 1 {
		t.Fatalf("accesses %+v, want one", res.BadRAMAccesses)
	}
	acc := res.BadRAMAccesses[0]
	if acc.Addr != 0x1800000 || acc.Size != 4 || !acc.Write || acc.Insn != "mov dword ptr [eax], edx" {
		t.Errorf("access %+v, want the 4-byte store mov dword ptr [eax], edx at 0x1800000", acc)
	}
	if rep == nil || acc.IP < uint64(rep.Base) || acc.IP >= uint64(rep.Base+rep.Size) {
		t.Errorf("instruction at %#x, outside the kernel (report %+v)", acc.IP, rep)
	}
	if !strings.Contains(res.Reason, `4-byte write at 0x1800000 by "mov dword ptr [eax], edx"`) {
		t.Errorf("reason %q does not name the write and its instruction", res.Reason)
	}
	if strings.Contains(console, "kt: poke 0x01800000 done") {
		t.Errorf("the guest went on after the store:\n%s", console)
	}

	res, _, console = bootTestKernel(t, qemuConfig(boot.Config{BadRAM: bad, BadRAMPolicy: machine.BadRAMRecord, Cmdline: "kt.poke=0x1800000 kt.poke=0x1c00000"}))
	if res.Outcome != machine.Pass || len(res.BadRAMAccesses) != 2 {
		t.Fatalf("record policy: outcome %s, accesses %+v: %s", res.Outcome, res.BadRAMAccesses, res.Reason)
	}
	for i, addr := range []uint64{0x1800000, 0x1c00000} {
		if a := res.BadRAMAccesses[i]; a.Addr != addr || a.Insn != acc.Insn || a.IP != acc.IP {
			t.Errorf("access %d: %+v, want %#x by %q at %#x", i, a, addr, acc.Insn, acc.IP)
		}
	}
	if !strings.Contains(console, "kt: poke 0x01c00000 done") {
		t.Errorf("record policy: the guest did not go on:\n%s", console)
	}
}

// TestQEMUGuestFailuresMatchKVM: misbehaving guests get the same outcome
// and status under QEMU as under our KVM machine, and the console up to
// the end is complete in each.
func TestQEMUGuestFailuresMatchKVM(t *testing.T) {
	requireQEMU(t)
	withKVM := kvmPart(t)
	for _, tc := range []struct {
		cmdline string
		timeout time.Duration
		outcome machine.Outcome
		status  int
		reason  string // under QEMU
	}{
		{"kt.exit=7", 0, machine.Fail, 7, "wrote 7"},
		{"kt.triple", 0, machine.Crash, 125, "triple fault"},
		{"kt.reset", 0, machine.Crash, 125, "keyboard controller"},
		{"kt.panic", 0, machine.Crash, 125, testkernel.PanicMessage},
		{"kt.hang", 2 * time.Second, machine.Timeout, 124, "no result within 2s"},
		{"kt.spin", 2 * time.Second, machine.Timeout, 124, "no result within 2s"},
	} {
		t.Run(tc.cmdline, func(t *testing.T) {
			t.Parallel()
			res, rep, console := bootTestKernel(t, qemuConfig(boot.Config{Cmdline: tc.cmdline, Timeout: tc.timeout}))
			if res.Outcome != tc.outcome || res.ExitCode != tc.status || !strings.Contains(res.Reason, tc.reason) {
				t.Fatalf("qemu: got %s %d %q, want %s %d containing %q", res.Outcome, res.ExitCode, res.Reason, tc.outcome, tc.status, tc.reason)
			}
			if rep == nil || !rep.Pass || !strings.Contains(console, "kt: result pass") {
				t.Fatalf("qemu: console incomplete:\n%s", console)
			}
			if res.Outcome == machine.Crash && tc.cmdline != "kt.panic" && (res.CPU == nil || res.CPU.Mode != "32-bit protected mode") {
				t.Errorf("qemu: crash without the CPU state: %+v", res.CPU)
			}
			if !withKVM {
				return
			}
			// Our KVM machine emulates every instruction on hosts like
			// this one: no checksums (the kt: lines do not depend on
			// them), and time to print the report before a timeout.
			ktimeout := tc.timeout
			if ktimeout != 0 {
				ktimeout = max(ktimeout, 10*time.Second)
			}
			kres, _, kconsole := bootTestKernel(t, kvmConfig(boot.Config{Cmdline: tc.cmdline, Timeout: ktimeout, NoVerify: true}))
			if kres.Outcome != res.Outcome || kres.ExitCode != res.ExitCode {
				t.Errorf("kvm: %s %d (%s), qemu: %s %d (%s)", kres.Outcome, kres.ExitCode, kres.Reason, res.Outcome, res.ExitCode, res.Reason)
			}
			// The kt: lines are what both backends must print alike.
			if k, q := prefixedLines(kconsole, "kt: "), prefixedLines(console, "kt: "); !reflect.DeepEqual(k, q) {
				t.Errorf("kt: lines differ\nkvm:\n%s\nqemu:\n%s", strings.Join(k, "\n"), strings.Join(q, "\n"))
			}
		})
	}
}

// TestQEMUKernelReference: --vmm=qemu-kernel boots the test kernel with
// SeaBIOS and QEMU's own Multiboot loader, at its link address.
func TestQEMUKernelReference(t *testing.T) {
	requireQEMU(t)
	t.Parallel()
	res, rep, console := bootTestKernel(t, boot.Config{VMM: "qemu-kernel", Accel: "tcg", Cmdline: "kt.exit=0"})
	if res.Outcome != machine.Pass || res.ExitCode != 0 {
		t.Fatalf("%s %d: %s\n%s", res.Outcome, res.ExitCode, res.Reason, console)
	}
	if rep == nil || !rep.Pass || rep.Base != linkBase || rep.Delta != 0 || rep.BootLoader != "qemu" {
		t.Errorf("report %+v", rep)
	}
	if res.VMM != "qemu-kernel" || res.Accel != "tcg" {
		t.Errorf("vmm %q accel %q", res.VMM, res.Accel)
	}
	// A Multiboot kernel cannot learn about bad RAM from QEMU: the run
	// says so, and QEMU's loader writing the kernel there is caught.
	bad := []memmap.Range{{Start: 16 * mib, End: 32 * mib}}
	res, _, _ = bootTestKernel(t, boot.Config{VMM: "qemu-kernel", Accel: "tcg", BadRAM: bad})
	if res.Outcome != machine.Crash || !strings.Contains(res.Reason, "cannot pass bad RAM") || len(res.BadRAMAccesses) == 0 || res.BadRAMAccesses[0].Addr != linkBase {
		t.Errorf("bad RAM under the reference run: %s %q %+v", res.Outcome, res.Reason, res.BadRAMAccesses)
	}
}

// TestQEMUAuto: auto picks what the host probe says, and says why.
func TestQEMUAuto(t *testing.T) {
	requireQEMU(t)
	h, err := boot.ProbeHost(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	if h.AutoError != "" {
		t.Fatalf("auto: %s", h.AutoError)
	}
	res, rep, console := bootTestKernel(t, boot.Config{})
	checkPass(t, res, rep, console)
	if res.VMM != h.Auto.VMM || res.Accel != h.Auto.Accel || res.VMMWhy != h.Auto.Why || res.VMMWhy == "" {
		t.Errorf("ran %s/%s (%q), the probe picks %+v", res.VMM, res.Accel, res.VMMWhy, h.Auto)
	}
	if h.KVM.Module == "kvm_pvm" && (h.Auto.VMM != "qemu" || h.Auto.Accel != "tcg") {
		t.Errorf("on kvm_pvm auto must pick QEMU with TCG, picked %+v", h.Auto)
	}
}

// TestQEMUCLI runs the command: exit statuses, --json, probe, and a
// missing QEMU.
func TestQEMUCLI(t *testing.T) {
	requireQEMU(t)
	stdout, stderr, status := runCLI(t, "run", "--vmm=qemu", "--accel=tcg", "--json", "--bad-ram", "16M-32M")
	if status != 0 {
		t.Fatalf("status %d\n%s\n%s", status, stdout, stderr)
	}
	var obj map[string]any
	if err := json.Unmarshal([]byte(stdout), &obj); err != nil {
		t.Fatalf("JSON: %v\n%s", err, stdout)
	}
	if obj["vmm"] != "qemu" || obj["accel"] != "tcg" || obj["why"] == "" || obj["load_address"].(float64) != 0x2000000 || obj["outcome"] != "pass" {
		t.Errorf("JSON %v", obj)
	}
	if !strings.Contains(stderr, "kt: result pass") {
		t.Errorf("console not on stderr under --json: %q", stderr)
	}
	console := filepath.Join(t.TempDir(), "console")
	for _, tc := range []struct {
		args   []string
		status int
	}{
		{[]string{"--cmdline", "kt.exit=3"}, 3},
		{[]string{"--exit-code=qemu", "--cmdline", "kt.exit=3"}, 7},
		{[]string{"--cmdline", "kt.triple"}, 125},
		{[]string{"--timeout", "1s", "--cmdline", "kt.hang"}, 124},
		{[]string{"--vmm=qemu-kernel", "--cmdline", "kt.exit=5"}, 5},
	} {
		args := append([]string{"run", "--vmm=qemu", "--accel=tcg", "--console", console}, tc.args...)
		if _, stderr, status := runCLI(t, args...); status != tc.status {
			t.Errorf("%q: status %d, want %d\n%s", args, status, tc.status, stderr)
		}
	}

	stdout, _, status = runCLI(t, "probe", "--json")
	var h boot.HostProbe
	if err := json.Unmarshal([]byte(stdout), &h); status != 0 || err != nil || h.QEMU == nil || !h.QEMU.Found || h.Auto.VMM == "" {
		t.Errorf("probe --json: status %d, %v\n%s", status, err, stdout)
	}
	stdout, _, status = runCLI(t, "probe")
	if status != 0 || !strings.Contains(stdout, "auto picks --vmm=") || !strings.Contains(stdout, "QEMU, TCG") {
		t.Errorf("probe: status %d\n%s", status, stdout)
	}

	// Without QEMU in PATH: status 126 and a line that says so.
	cmd := exec.Command(cli(t), "run", "--vmm=qemu", "--accel=tcg")
	cmd.Env = append(os.Environ(), "PATH="+t.TempDir())
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != machine.StatusError || !strings.Contains(string(out), "qemu-system-i386 not found") {
		t.Errorf("no QEMU: %v\n%s", err, out)
	}
}

// BenchmarkQEMUBoot times a whole boot of the built-in test kernel under
// QEMU with TCG, through our firmware (qemu) and through SeaBIOS and QEMU's
// Multiboot loader (qemu-kernel), from boot.Run to QEMU's exit, and plain
// qemu-system-i386 -kernel as a user types it (plain: the yardstick),
// from its start to its exit, all with 128 MiB. scripts/bench-qemu.sh
// measures the same from process start.
func BenchmarkQEMUBoot(b *testing.B) {
	requireQEMU(b)
	for _, vmm := range []boot.VMM{boot.VMMQEMU, boot.VMMQEMUKernel} {
		b.Run(vmm.String(), func(b *testing.B) {
			benchBoot(b, boot.Config{VMM: vmm, Accel: "tcg", MemSize: 128 << 20})
		})
	}
	b.Run("plain", func(b *testing.B) {
		k := filepath.Join(b.TempDir(), testkernel.FileName)
		if err := os.WriteFile(k, testkernel.ELF, 0o644); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			cmd := exec.Command("qemu-system-i386", "-nodefaults", "-machine", "pc,accel=tcg", "-m", "128",
				"-device", "isa-debug-exit,iobase=0xf4,iosize=0x4", "-serial", "null", "-vnc", "none", "-kernel", k)
			if err := cmd.Run(); cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 1 { // the guest wrote 0
				b.Fatalf("plain QEMU: %v", err)
			}
		}
	})
}
