package e2e

import (
	"strings"
	"testing"

	"kvmboot/boot"
	"kvmboot/loader/memmap"
	"kvmboot/machine"
)

// backends are the two that run our plan: our KVM machine, and QEMU (with
// TCG, where kvmboot's plugin watches bad and faulty RAM and traces).
var backends = []boot.VMM{boot.VMMKVM, boot.VMMQEMU}

// onBackend runs cfg on vmm.
func onBackend(vmm boot.VMM, cfg boot.Config) boot.Config {
	cfg.VMM = vmm
	if vmm == "qemu" {
		cfg.Accel = "tcg"
	}
	return cfg
}

// TestBadRAMCaught: with 16M-32M bad (the test kernel runs at 32M), a
// store to and a load from 0x1800010 each end the run at that access, as
// a crash naming the instruction; under the record policy both are
// recorded and the guest goes on, the store lost and the load seeing every
// bit of what bad RAM held flipped. The same on both backends.
func TestBadRAMCaught(t *testing.T) {
	bad := []memmap.Range{{Start: 16 * mib, End: 32 * mib}}
	for _, vmm := range backends {
		t.Run(vmm.String(), func(t *testing.T) {
			requireBackend(t, vmm)
			t.Parallel()
			for _, tc := range []struct {
				cmdline, insn string
				write         bool
			}{
				{"kt.poke=0x1800010", "mov dword ptr [", true},
				{"kt.peek=0x1800010", ", dword ptr [", false},
			} {
				res, rep, console := bootTestKernel(t, onBackend(vmm, boot.Config{BadRAM: bad, Cmdline: tc.cmdline}))
				if res.Outcome != machine.Crash || res.ExitCode != machine.StatusCrash || len(res.BadRAMAccesses) != 1 {
					t.Fatalf("%s: outcome %s status %d, accesses %+v: %s", tc.cmdline, res.Outcome, res.ExitCode, res.BadRAMAccesses, res.Reason)
				}
				acc := res.BadRAMAccesses[0]
				if acc.Addr != 0x1800010 || acc.Size != 4 || acc.Write != tc.write || !strings.HasPrefix(acc.Insn, "mov ") || !strings.Contains(acc.Insn, tc.insn) {
					t.Errorf("%s: access %+v, want a 4-byte mov at 0x1800010 (write %v)", tc.cmdline, acc, tc.write)
				}
				if rep == nil || acc.IP < uint64(rep.Base) || acc.IP >= uint64(rep.Base+rep.Size) {
					t.Errorf("%s: instruction at %#x, outside the kernel (report %+v)", tc.cmdline, acc.IP, rep)
				}
				if !strings.Contains(res.Reason, acc.Insn) || strings.Contains(console, "kt: poke 0x01800010 done") || strings.Contains(console, "kt: peek 0x01800010=") {
					t.Errorf("%s: reason %q; the run must end at the access:\n%s", tc.cmdline, res.Reason, console)
				}
			}

			res, _, console := bootTestKernel(t, onBackend(vmm, boot.Config{BadRAM: bad, BadRAMPolicy: machine.BadRAMRecord, Cmdline: "kt.poke=0x1800010 kt.peek=0x1800010"}))
			if res.Outcome != machine.Pass || len(res.BadRAMAccesses) != 2 || !res.BadRAMAccesses[0].Write || res.BadRAMAccesses[1].Write {
				t.Fatalf("record policy: outcome %s, accesses %+v: %s", res.Outcome, res.BadRAMAccesses, res.Reason)
			}
			if !strings.Contains(console, "kt: peek 0x01800010=0xffffffff") {
				t.Errorf("a read of bad RAM should see every bit flipped from the zeros it held:\n%s", console)
			}
		})
	}
}
