package e2e

import (
	"strings"
	"testing"

	"kvmboot/boot"
	"kvmboot/e2e/hosttest"
	"kvmboot/loader"
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
		t.Skip("this host's KVM runs paged guests: the Debian boot tests on the QEMU backend cover it")
	}
	bad := []loader.Range{{Start: 16 * mib, End: 48 * mib}}
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
