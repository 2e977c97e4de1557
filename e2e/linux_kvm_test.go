package e2e

import (
	"cmp"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"kvmboot/boot"
	"kvmboot/e2e/hosttest"
	"kvmboot/loader"
	"kvmboot/loader/memmap"
	"kvmboot/machine"
)

// TestKVMDebianReachesStartup32 boots Debian's i386 kernel on our KVM
// machine as far as this host allows. kvm_pvm cannot run a paged 32-bit
// guest, so the run must end at head_32's `mov cr0, eax` with status 126
// and a message naming the host's limit, and the CPU state there shows that
// kvmboot did its part: the kernel ran from where the plan put it, with the
// page tables it built from relocated addresses.
func TestKVMDebianReachesStartup32(t *testing.T) {
	requireKVM(t)
	vmlinuz := hosttest.DebianKernel(t)
	if !machine.EmulatingKVM() {
		hosttest.Skip(t, hosttest.KVM, "this host's KVM runs paged guests: TestKVMLinuxBoot boots Debian there")
	}
	bad := []memmap.Range{{Start: 16 * mib, End: 48 * mib}}
	res, _, console := bootTestKernel(t, boot.Config{
		VMM: "kvm", Kernel: vmlinuz, BadRAM: bad, NoVerify: true, // a 16 MiB checksum under emulation takes seconds
		Cmdline: "console=ttyS0",
	})
	if res.Outcome != machine.Error || res.ExitCode != machine.StatusError || !strings.Contains(res.Reason, "cannot run paged 32-bit guests") {
		t.Fatalf("outcome %s %d: %s\n%s", res.Outcome, res.ExitCode, res.Reason, console)
	}
	if res.LoadAddress != 48*mib || res.Kernel.Protocol != loader.ProtocolLinux32 {
		t.Fatalf("kernel at %#x by %s, want 0x3000000 by linux32", res.LoadAddress, res.Kernel.Protocol)
	}
	if res.Relocations < 100_000 {
		t.Errorf("%d relocations applied; Debian's table has about 276,000", res.Relocations)
	}
	kernel := placement(res, "kernel")
	if kernel == nil {
		t.Fatalf("no kernel in the placements %+v", res.Placements)
	}
	kernelEnd := kernel.End
	cpu := res.CPU
	if cpu == nil {
		t.Fatal("no CPU state in the result")
	}
	inKernel := func(a uint32) bool { return uint64(a) >= res.LoadAddress && uint64(a) < kernelEnd }
	if !inKernel(cpu.EIP) || cpu.Insn != "mov cr0, eax" || cpu.EAX&(1<<31) == 0 {
		t.Errorf("stopped at eip %#x (%s, eax %#x), want head_32 turning on paging inside the kernel", cpu.EIP, cpu.Insn, cpu.EAX)
	}
	if !inKernel(cpu.CR3) {
		t.Errorf("cr3 %#x outside the relocated kernel %#x-%#x: the page tables were built from unrelocated addresses", cpu.CR3, res.LoadAddress, kernelEnd)
	}
}

// kvmExitEvents are the places of the trace event KVM records at every VM
// exit, in the kernel or to user space (tracefs, on its own or under
// debugfs). A histogram trigger on it counts a VMM's exits by reason and,
// unlike KVM's per-VM debugfs counters, which go with the VM, keeps them
// after the VM is gone: the one measure of VMM work that compares VMMs
// fairly on a nested KVM, where times say little about hardware (DESIGN.md
// §7).
var kvmExitEvents = []string{"/sys/kernel/tracing/events/kvm/kvm_exit", "/sys/kernel/debug/tracing/events/kvm/kvm_exit"}

const exitHist = "hist:keys=exit_reason:size=256"

// exitCounter counts every VM exit on the host from now until stop, which
// returns the total and the counts by exit reason (the codes of the host's
// vmx or svm). Run it alone on the host, as in the nested lab.
func exitCounter(b *testing.B) (stop func() (uint64, map[uint64]uint64)) {
	var event string
	for _, e := range kvmExitEvents {
		if _, err := os.Stat(filepath.Join(e, "hist")); err == nil {
			event = e
			break
		}
	}
	if event == "" {
		b.Skipf("skipped: no kvm:kvm_exit event with histograms at %s (mount tracefs; CONFIG_HIST_TRIGGERS)", strings.Join(kvmExitEvents, " or "))
	}
	trigger := func(cmd string) error {
		f, err := os.OpenFile(filepath.Join(event, "trigger"), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return err
		}
		_, err = f.WriteString(cmd)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	}
	trigger("!" + exitHist) // a run that was killed may have left one
	if err := trigger(exitHist); err != nil {
		b.Fatalf("counting VM exits: %v", err)
	}
	return func() (uint64, map[uint64]uint64) {
		raw, err := os.ReadFile(filepath.Join(event, "hist"))
		trigger("!" + exitHist)
		if err != nil {
			b.Fatalf("counting VM exits: %v", err)
		}
		total, byReason, err := parseExitHist(string(raw))
		if err != nil {
			b.Fatalf("counting VM exits: %v", err)
		}
		return total, byReason
	}
}

// parseExitHist reads exitHist's output: a line per exit reason,
// "{ exit_reason: 123 } hitcount: 45", and "Dropped: 0" at the end.
func parseExitHist(hist string) (uint64, map[uint64]uint64, error) {
	var total uint64
	byReason := map[uint64]uint64{}
	for _, line := range strings.Split(hist, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 6 && f[0] == "{" && f[1] == "exit_reason:" && f[4] == "hitcount:":
			reason, err1 := strconv.ParseUint(f[2], 10, 64)
			n, err2 := strconv.ParseUint(f[5], 10, 64)
			if err1 != nil || err2 != nil {
				return 0, nil, fmt.Errorf("exit histogram line %q", line)
			}
			byReason[reason] += n
			total += n
		case len(f) == 2 && f[0] == "Dropped:" && f[1] != "0":
			return 0, nil, fmt.Errorf("the exit histogram dropped %s entries", f[1])
		}
	}
	if len(byReason) == 0 {
		return 0, nil, fmt.Errorf("no exit counted: %q", hist)
	}
	return total, byReason, nil
}

// topExits names the most frequent exit reasons, most first.
func topExits(byReason map[uint64]uint64, n int) string {
	reasons := slices.SortedFunc(maps.Keys(byReason), func(a, b uint64) int { return cmp.Compare(byReason[b], byReason[a]) })
	var parts []string
	for _, r := range reasons[:min(n, len(reasons))] {
		parts = append(parts, fmt.Sprintf("%#x: %d", r, byReason[r]))
	}
	return strings.Join(parts, ", ")
}

// BenchmarkKVMLinuxSideBySide boots Debian's kernel until it starts its
// init ("Run /init as init process") on our VMM and on QEMU's own -kernel
// path with KVM (SeaBIOS), in turns, on the same KVM: the same kernel,
// initrd and command line. (Not to the init's first line: in the nested
// lab, the outer QEMU aborts, "qemu: fatal: invalid tss type", once the
// guest QEMU runs reaches user mode.) Per
// backend it reports the medians over b.N rounds of the kvmboot process's
// wall time and of the VM exits KVM counted (exitCounter: run it alone on
// the host, as in the nested lab), and our share of QEMU's. Goal: under half
// QEMU's exits and 0.5x its time. A round of both goes first, untimed, so
// that kvmboot's decompressed-kernel cache is warm for both.
func BenchmarkKVMLinuxSideBySide(b *testing.B) {
	requireKVMPaging(b)
	requireQEMU(b)
	kernel := hosttest.DebianKernel(b)
	initrd := guestInitrd(b)
	backends := []struct{ name, vmm, accel string }{{"kvmboot", "kvm", ""}, {"qemu", "qemu-kernel", "kvm"}}
	boot := func(vmm, accel string) (time.Duration, uint64) {
		args := []string{"run", "--vmm=" + vmm, "--initrd", initrd, "--cmdline", strings.Replace(linuxCmdline, " quiet", "", 1),
			"--expect", "Run /init as init process", "--timeout", "600s", "--console", os.DevNull}
		if accel != "" {
			args = append(args, "--accel="+accel)
		}
		count, start := exitCounter(b), time.Now()
		_, stderr, status := runCLI(b, append(args, kernel)...)
		d := time.Since(start)
		exits, byReason := count()
		if status != 0 {
			b.Fatalf("--vmm=%s: status %d: %s", vmm, status, stderr)
		}
		b.Logf("--vmm=%s: %v, %d exits (by reason: %s)", vmm, d.Round(time.Millisecond), exits, topExits(byReason, 8))
		return d, exits
	}
	for _, be := range backends {
		boot(be.vmm, be.accel)
	}
	b.ResetTimer()
	times := make([][]float64, len(backends))
	exits := make([][]float64, len(backends))
	for i := 0; i < b.N; i++ {
		for k, be := range backends {
			d, n := boot(be.vmm, be.accel)
			times[k] = append(times[k], d.Seconds()*1000)
			exits[k] = append(exits[k], float64(n))
		}
	}
	median := func(v []float64) float64 {
		s := slices.Sorted(slices.Values(v))
		return s[len(s)/2]
	}
	for k, be := range backends {
		b.ReportMetric(median(times[k]), be.name+"-ms")
		b.ReportMetric(median(exits[k]), be.name+"-exits")
	}
	b.ReportMetric(median(times[0])/median(times[1]), "time-ratio")
	b.ReportMetric(median(exits[0])/median(exits[1]), "exit-ratio")
}

func TestParseExitHist(t *testing.T) {
	const hist = `# event histogram
#
# trigger info: hist:keys=exit_reason:vals=hitcount:sort=hitcount:size=256 [active]
#

{ exit_reason:        120 } hitcount:          5
{ exit_reason:       1024 } hitcount:         12
{ exit_reason:        123 } hitcount:         42

Totals:
    Hits: 59
    Entries: 3
    Dropped: 0
`
	total, byReason, err := parseExitHist(hist)
	if err != nil || total != 59 || byReason[0x7b] != 42 || byReason[0x400] != 12 || byReason[0x78] != 5 {
		t.Errorf("parseExitHist: %d %v %v", total, byReason, err)
	}
	if got := topExits(byReason, 2); got != "0x7b: 42, 0x400: 12" {
		t.Errorf("topExits: %q", got)
	}
	for _, bad := range []string{"", strings.Replace(hist, "Dropped: 0", "Dropped: 3", 1), strings.Replace(hist, "hitcount:          5", "hitcount:          x", 1)} {
		if _, _, err := parseExitHist(bad); err == nil {
			t.Errorf("parseExitHist(%q) took it", bad)
		}
	}
}
