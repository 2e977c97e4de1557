package e2e

import (
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

// kvmDebugfs is KVM's debugfs folder: one folder per VM (PID-FD) whose
// "exits" counts every VM exit, in the kernel or to user space: the one
// measure of VMM work that compares VMMs fairly on a nested KVM, where
// times say little about hardware (DESIGN.md §7). A VM's folder goes with
// the VM, so exitCounter samples them while VMs run.
const kvmDebugfs = "/sys/kernel/debug/kvm"

// exitCounter follows every VM's exit count until stop, which returns the
// sum of the last counts seen (those of VMs that lived under 20 ms may be
// missed).
func exitCounter(b *testing.B) (stop func() uint64) {
	if _, err := os.Stat(filepath.Join(kvmDebugfs, "exits")); err != nil {
		b.Skipf("skipped: KVM's exit counters: %v (mount debugfs)", err)
	}
	last := map[string]uint64{}
	done, finished := make(chan struct{}), make(chan struct{})
	sample := func() {
		dirs, _ := filepath.Glob(filepath.Join(kvmDebugfs, "*-*", "exits"))
		for _, d := range dirs {
			if raw, err := os.ReadFile(d); err == nil {
				if n, err := strconv.ParseUint(strings.TrimSpace(string(raw)), 10, 64); err == nil {
					last[d] = n
				}
			}
		}
	}
	go func() {
		defer close(finished)
		for {
			sample()
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return func() uint64 {
		close(done)
		<-finished
		var sum uint64
		for _, n := range last {
			sum += n
		}
		return sum
	}
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
		d, exits := time.Since(start), count()
		if status != 0 {
			b.Fatalf("--vmm=%s: status %d: %s", vmm, status, stderr)
		}
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
