package e2e

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"kvmboot/boot"
	"kvmboot/loader"
	"kvmboot/machine"
	"kvmboot/machine/kvm"
	"kvmboot/machine/qemu"
)

// The PC conformance programs (e2e/conformance/pc, built by
// scripts/build-conformance-pc.sh): Multiboot ELFs that check what a PC's
// firmware hands over and end with a verdict on the debug-exit port, 0
// for pass. Each boots on our two backends and under QEMU's own -kernel
// (SeaBIOS), which must agree.

// bootPC boots a conformance program of e2e/conformance/pc on vmm and
// returns the result and its "pc: " lines.
func bootPC(t *testing.T, vmm boot.VMM, program string, cfg boot.Config) (*boot.Result, []string, string) {
	t.Helper()
	cfg.Kernel = conformanceImage(filepath.Join("pc", program))
	res, console := bootImage(t, vmm, cfg)
	return res, prefixedLines(console, "pc: "), console
}

// TestConformancePCTicks: a Multiboot kernel that drops to real mode and
// waits with sti; hlt sees the timer a PC hands over: IRQ 0 unmasked, PIT
// channel 0 at 18.2 Hz, int 08h counting ticks in the BDA and chaining
// int 1Ch, int 1Ah reading and setting the count, the midnight flag; on
// the PC and on the minimal machine alike.
func TestConformancePCTicks(t *testing.T) {
	for _, vmm := range conformanceVMMs {
		for _, mach := range []boot.Machine{boot.MachinePC, boot.MachineMinimal} {
			t.Run(vmm.String()+"/"+mach.String(), func(t *testing.T) {
				res, lines, console := bootPC(t, vmm, "ticks.elf", boot.Config{Machine: mach})
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
}

// TestConformancePCACPI: the ACPI table reader finds the RSDP by the
// standard search, walks the RSDT and XSDT with every checksum right, and
// finds the devices the tables describe (PM timer, local and I/O APIC,
// HPET) where they say; our backends list exactly their machine's tables
// (the HPET under QEMU only), QEMU's -kernel (SeaBIOS) passes the same
// checks with QEMU's own tables. The minimal machine has no ACPI, with
// SeaBIOS on the ISA PC as with our firmware.
func TestConformancePCACPI(t *testing.T) {
	listed := map[boot.VMM]*loader.Platform{boot.VMMKVM: &kvm.Platform, boot.VMMQEMU: &qemu.PCPlatform}
	for _, vmm := range conformanceVMMs {
		t.Run(vmm.String(), func(t *testing.T) {
			res, lines, console := bootPC(t, vmm, "acpi.elf", boot.Config{})
			if res.Outcome != machine.Pass || res.ExitCode != 0 || len(lines) == 0 || lines[len(lines)-1] != "pc: verdict pass" {
				t.Fatalf("%s (%d): %s\n%s", res.Outcome, res.ExitCode, res.Reason, console)
			}
			var tables []string
			for _, l := range lines {
				if rest, ok := strings.CutPrefix(l, "pc: tables "); ok {
					tables = strings.Fields(rest)
				}
			}
			want := []string{"FACP", "APIC", "HPET"}
			if p := listed[vmm]; p != nil {
				want = slices.DeleteFunc(loader.ACPISignatures(*p), func(s string) bool { return s == "DSDT" || s == "FACS" })
				if !slices.Equal(tables, want) {
					t.Errorf("tables %q, want %q\n%s", tables, want, console)
				}
			}
			for _, w := range want {
				if !slices.Contains(tables, w) {
					t.Errorf("no %s table among %q", w, tables)
				}
			}
		})
		t.Run(vmm.String()+"/minimal", func(t *testing.T) {
			res, lines, console := bootPC(t, vmm, "acpi.elf", boot.Config{Machine: boot.MachineMinimal})
			if res.ExitCode != 2 || len(lines) == 0 || lines[len(lines)-1] != "pc: verdict fail no RSDP" {
				t.Fatalf("%s (%d): %s; want the verdict \"no RSDP\" (2)\n%s", res.Outcome, res.ExitCode, res.Reason, console)
			}
		})
	}
}
