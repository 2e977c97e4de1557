package e2e

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kvmboot/boot"
	"kvmboot/machine"
)

// The PC conformance programs (e2e/conformance/pc, built by
// scripts/build-conformance-pc.sh): Multiboot ELFs that check what a PC's
// firmware hands over and end with a verdict on the debug-exit port, 0
// for pass. Each boots on our two backends and under QEMU's own -kernel
// (SeaBIOS), which must agree.

// pcBackends are the backends every conformance program boots on.
var pcBackends = []string{"kvm", "qemu", "qemu-kernel"}

// pcProgram is a conformance program's path.
func pcProgram(name string) string {
	return filepath.Join(repoRoot(), "e2e", "conformance", "pc", name)
}

// bootPC boots a conformance program on vmm and returns the result and
// its "pc: " lines.
func bootPC(t *testing.T, vmm, program string, cfg boot.Config) (*boot.Result, []string, string) {
	t.Helper()
	requireBackend(t, vmm)
	cfg.Kernel, cfg.VMM = pcProgram(program), vmm
	if vmm != "kvm" {
		cfg.Accel = "tcg"
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 60 * time.Second
	}
	res, _, console := bootTestKernel(t, cfg)
	return res, prefixedLines(console, "pc: "), console
}

// TestConformancePCTicks: a Multiboot kernel that drops to real mode and
// waits with sti; hlt sees the timer a PC hands over: IRQ 0 unmasked, PIT
// channel 0 at 18.2 Hz, int 08h counting ticks in the BDA and chaining
// int 1Ch, int 1Ah reading and setting the count, the midnight flag.
func TestConformancePCTicks(t *testing.T) {
	for _, vmm := range pcBackends {
		t.Run(vmm, func(t *testing.T) {
			res, lines, console := bootPC(t, vmm, "ticks.elf", boot.Config{})
			if res.Outcome != machine.Pass || res.ExitCode != 0 {
				t.Fatalf("%s (%d): %s\n%s", res.Outcome, res.ExitCode, res.Reason, console)
			}
			if len(lines) == 0 || lines[len(lines)-1] != "pc: verdict pass" {
				t.Fatalf("no pass verdict:\n%s", console)
			}
			for _, l := range lines {
				if strings.HasPrefix(l, "pc: pic-mask") || strings.HasPrefix(l, "pc: waited") {
					t.Log(l)
				}
			}
		})
	}
}
