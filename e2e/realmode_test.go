package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"kvmboot/boot"
	"kvmboot/boot/testkernel"
	"kvmboot/e2e/hosttest"
	"kvmboot/loader"
	"kvmboot/loader/memmap"
	"kvmboot/machine"
)

// realModeKernel makes the test kernel with its real-mode part in the
// kvmboot note, as a user would with `kvmboot mkelf --realmode`.
func realModeKernel(t *testing.T) string {
	t.Helper()
	locate, err := loader.SymbolAddress(testkernel.ELF, testkernel.RealModeLocateSymbol)
	if err != nil {
		t.Fatal(err)
	}
	res, err := loader.MkELF(testkernel.ELF, loader.MkELFOptions{Compression: loader.Gzip, RealMode: &loader.RealModePart{
		Code: testkernel.RealMode, MemSize: testkernel.RealModeSize,
		ResultsOff: testkernel.RealModeResults, ResultsSize: testkernel.RealModeSize - testkernel.RealModeResults,
		Locate: locate,
	}})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "testkernel-realmode.elf.gz")
	if err := os.WriteFile(p, res.Output, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// placement is the piece the plan placed as what, or nil.
func placement(res *boot.Result, what string) *boot.PlacementJSON {
	for i := range res.Placements {
		if res.Placements[i].What == what {
			return &res.Placements[i]
		}
	}
	return nil
}

// TestRealModePart: the kernel's real-mode part runs in real mode with our
// BIOS up, asks int 15h E820 for the memory map, and the 32-bit kernel
// finds it identical to the Multiboot map, bad RAM (type 5) included, on
// every backend.
func TestRealModePart(t *testing.T) {
	kernel := realModeKernel(t)
	bad := []memmap.Range{{Start: 16 * mib, End: 32 * mib}}
	for _, vmm := range []string{"kvm", "qemu"} {
		t.Run(vmm, func(t *testing.T) {
			requireBackend(t, boot.VMM(vmm))
			cfg := boot.Config{Kernel: kernel, VMM: boot.VMM(vmm), BadRAM: bad}
			if vmm == "qemu" {
				cfg.Accel = "tcg"
			}
			res, rep, console := bootTestKernel(t, cfg)
			checkPass(t, res, rep, console)
			rm := rep.RealMode
			if rm == nil || !rm.Match || rm.Status != 0 {
				t.Fatalf("real-mode part report %+v\n%s", rm, console)
			}
			if len(rm.E820) != len(rep.Mmap) {
				t.Fatalf("E820 has %d entries, Multiboot %d", len(rm.E820), len(rep.Mmap))
			}
			sawBad := false
			for i, e := range rm.E820 {
				if e != rep.Mmap[i] {
					t.Errorf("entry %d: E820 %+v, Multiboot %+v", i, e, rep.Mmap[i])
				}
				sawBad = sawBad || e.Type == uint32(memmap.KindBad) && e.Base == 16*mib && e.Len == 16*mib
			}
			if !sawBad {
				t.Errorf("int 15h E820 did not report 16M-32M as bad (type 5): %+v", rm.E820)
			}
			if part := placement(res, "realmode"); part == nil || uint64(rm.At) != part.Start || part.End > 0x9FC00 {
				t.Errorf("part reported at %#x, placed %+v", rm.At, part)
			}
		})
	}
}

// TestTraceShowsRealModePart: --trace=real shows the stub and then the
// image's real-mode part, instruction by instruction, at its segment, on
// both backends.
func TestTraceShowsRealModePart(t *testing.T) {
	kernel := realModeKernel(t)
	for _, vmm := range backends {
		t.Run(vmm.String(), func(t *testing.T) {
			requireBackend(t, vmm)
			var lines []string
			res, _, _ := bootTestKernel(t, onBackend(vmm, boot.Config{Kernel: kernel, Trace: func(l string) { lines = append(lines, l) }, TraceLimit: 5000}))
			if res.Outcome != machine.Pass {
				t.Fatalf("outcome %s: %s", res.Outcome, res.Reason)
			}
			if vmm == boot.VMMKVM {
				skipIfSteppingLost(t, res)
			}
			part := placement(res, "realmode")
			if part == nil {
				t.Fatalf("no real-mode part in the placements %+v", res.Placements)
			}
			seg := fmt.Sprintf("%04x", part.Start>>4)
			want := []string{"push ds", "push es", "pushad", "mov ax, cs"}
			found := 0
			for _, l := range lines {
				if found < len(want) && strings.HasPrefix(l, "16 "+seg+":") && strings.HasSuffix(l, want[found]) {
					found++
				}
			}
			if found != len(want) {
				t.Fatalf("the trace does not show the part's first instructions %q at segment %s (found %d)", want, seg, found)
			}
		})
	}
}

// TestKVMLinuxTraceReal traces Debian's kernel's real-mode setup code on
// our own VMM (--protocol linux16 --trace=real), where the KVM runs 32-bit
// paging: the trace starts at the reset vector, shows the setup code's
// first instructions at its segment and nothing in protected mode, and
// the kernel still boots to init.
func TestKVMLinuxTraceReal(t *testing.T) {
	if testing.Short() {
		hosttest.Skip(t, hosttest.KVMPaging, "left out in -short: the lab's CI selection leaves out this Debian boot (single-stepped, the slowest)")
	}
	var lines []string
	res, rep, console := bootLinux(t, boot.Config{VMM: "kvm", Protocol: loader.ProtocolLinux16,
		Trace: func(l string) { lines = append(lines, l) }, TraceLimit: 20000})
	checkLinux(t, res, rep, console, nil)
	setup := placement(res, "setup")
	if setup == nil || len(lines) == 0 {
		t.Fatalf("setup %+v, %d trace lines", setup, len(lines))
	}
	if !strings.HasPrefix(lines[0], "16 f000:fff0 ") {
		t.Errorf("the trace starts with %q, want the reset vector", lines[0])
	}
	seg := fmt.Sprintf("16 %04x:", setup.Start>>4+0x20) // the setup code's entry segment
	if !strings.Contains(strings.Join(lines, "\n"), "\n"+seg) {
		skipIfSteppingLost(t, res) // never got there: no Stub, as the real-mode entry is Linux's
	}
	inSetup := 0
	for _, l := range lines {
		if strings.HasPrefix(l, seg) {
			inSetup++
		}
		if !strings.HasPrefix(l, "16 ") {
			t.Fatalf("a protected-mode line in --trace=real: %q", l)
		}
	}
	if inSetup < 100 {
		t.Errorf("%d of %d trace lines in the setup code's segment %s", inSetup, len(lines), seg)
	}
	t.Logf("%d trace lines, %d in Linux's setup code", len(lines), inSetup)
}
