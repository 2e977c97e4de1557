package e2e

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kvmboot/boot"
	"kvmboot/loader"
	"kvmboot/machine"
)

// The loader's conformance images (e2e/conformance, built by
// scripts/build-conformance-loader.sh): images people boot that are not
// kvmboot's test kernel nor Linux. Each boots on every backend: our
// firmware and plan on KVM and under QEMU, and QEMU's own -kernel as the
// reference, which must reach the same verdict, except where kvmboot
// does better.

// conformanceVMMs are the backends each image boots on.
var conformanceVMMs = []boot.VMM{boot.VMMQEMU, boot.VMMKVM, boot.VMMQEMUKernel}

// conformanceImage is the path of a committed conformance image.
func conformanceImage(name string) string {
	return filepath.Join(repoRoot(), "e2e", "conformance", name)
}

// bootImage boots image on vmm (QEMU with TCG: no i386 paging needed, but
// this host's KVM is slow) and returns the result and the console.
func bootImage(t *testing.T, vmm boot.VMM, cfg boot.Config) (*boot.Result, string) {
	t.Helper()
	requireBackend(t, vmm)
	cfg.VMM = vmm
	if vmm != boot.VMMKVM {
		cfg.Accel = "tcg"
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 60 * time.Second
	}
	res, _, console := bootTestKernel(t, cfg)
	return res, console
}

// verdict is what a run comes to, for comparing backends.
func verdict(res *boot.Result) string {
	return fmt.Sprintf("%s (status %d)", res.Outcome, res.ExitCode)
}

// TestConformanceLoader boots each image on each backend: Linux-boot-
// protocol images of 2.03, 2.07 and 2.12 with a raw 32-bit part (linux16
// by default), a Multiboot program that reads argv[0], and a Multiboot ELF
// with segments below 640K and at 1M, which QEMU's -kernel breaks and
// kvmboot boots.
func TestConformanceLoader(t *testing.T) {
	const cmdline = "conformance x=1"
	for _, tc := range []struct {
		image string
		want  []string // console lines every run that passes prints
		// qemuBreaks: QEMU's -kernel is known to fail it.
		qemuBreaks bool
	}{
		{image: "linux-raw-203.bin", want: []string{`linux-raw: command line "` + cmdline + `"`, "linux-raw: pass"}},
		{image: "linux-raw-207.bin", want: []string{`linux-raw: command line "` + cmdline + `"`, "linux-raw: pass"}},
		{image: "linux-raw-212.bin", want: []string{`linux-raw: command line "` + cmdline + `"`, "linux-raw: pass"}},
		{image: "multiboot-argv0.elf", want: []string{`multiboot-argv0: argv[0] "` + conformanceImage("multiboot-argv0.elf") + `"`, "multiboot-argv0: pass"}},
		{image: "multiboot-twoseg.elf", want: []string{"multiboot-twoseg: pass"}, qemuBreaks: true},
	} {
		t.Run(tc.image, func(t *testing.T) {
			verdicts := map[boot.VMM]string{}
			for _, vmm := range conformanceVMMs {
				t.Run(vmm.String(), func(t *testing.T) {
					res, console := bootImage(t, vmm, boot.Config{Kernel: conformanceImage(tc.image), Cmdline: cmdline})
					verdicts[vmm] = verdict(res)
					if vmm == boot.VMMQEMUKernel && tc.qemuBreaks {
						if res.Outcome == machine.Pass {
							t.Errorf("QEMU's -kernel passes %s: the README says it breaks it", tc.image)
						}
						t.Logf("QEMU's -kernel: %s: %s\n%s", verdict(res), res.Reason, tail(console, 5))
						return
					}
					if res.Outcome != machine.Pass || res.ExitCode != 0 {
						t.Fatalf("%s: %s\n%s", verdict(res), res.Reason, tail(console, 20))
					}
					for _, w := range tc.want {
						if !strings.Contains(console, w+"\r\n") {
							t.Errorf("console lacks %q:\n%s", w, tail(console, 20))
						}
					}
					if strings.HasPrefix(tc.image, "linux-raw") && res.Kernel.Protocol != loader.ProtocolLinux16 {
						t.Errorf("protocol %s, want linux16 (the image has no compressed ELF)", res.Kernel.Protocol)
					}
					if vmm != boot.VMMQEMUKernel && strings.HasPrefix(tc.image, "linux-raw") {
						if at := fmt.Sprintf(", at %#08x\r\n", res.LoadAddress); !strings.Contains(console, at) {
							t.Errorf("the 32-bit part does not say it runs at the plan's %#x:\n%s", res.LoadAddress, tail(console, 20))
						}
					}
				})
			}
			if !tc.qemuBreaks && len(verdicts) > 1 {
				for vmm, v := range verdicts {
					if v != verdicts[boot.VMMQEMUKernel] && verdicts[boot.VMMQEMUKernel] != "" {
						t.Errorf("%s: %s, QEMU's -kernel: %s", vmm, v, verdicts[boot.VMMQEMUKernel])
					}
				}
			}
		})
	}
}

// TestConformanceLoaderBadRAM: with bad RAM where the protocol loads the
// 32-bit part (1M-2M), kvmboot moves a relocatable image to the next
// kernel_alignment boundary, where its code finds itself, and refuses the
// 2.03 image, which cannot move, before the guest starts; QEMU's -kernel
// loads both into the bad range.
func TestConformanceLoaderBadRAM(t *testing.T) {
	bad := badRanges(t, "1M-2M")
	for _, image := range []string{"linux-raw-207.bin", "linux-raw-212.bin"} {
		t.Run(image, func(t *testing.T) {
			res, console := bootImage(t, boot.VMMQEMU, boot.Config{Kernel: conformanceImage(image), BadRAM: bad})
			if res.Outcome != machine.Pass || res.LoadAddress != 2<<20 || len(res.BadRAMAccesses) != 0 || !strings.Contains(console, ", at 0x00200000\r\n") {
				t.Errorf("%s at %#x, %d bad-RAM accesses: %s\n%s", verdict(res), res.LoadAddress, len(res.BadRAMAccesses), res.Reason, tail(console, 10))
			}
			res, _ = bootImage(t, boot.VMMQEMUKernel, boot.Config{Kernel: conformanceImage(image), BadRAM: bad})
			if res.Outcome != machine.Crash || len(res.BadRAMAccesses) == 0 {
				t.Errorf("QEMU's -kernel: %s, %+v: want its loader caught writing bad RAM", verdict(res), res.BadRAMAccesses)
			}
		})
	}
	t.Run("linux-raw-203.bin", func(t *testing.T) {
		requireQEMU(t)
		res, err := boot.Run(t.Context(), boot.Config{Kernel: conformanceImage("linux-raw-203.bin"), BadRAM: bad, VMM: boot.VMMQEMU, Accel: "tcg"})
		// Why it cannot move, in the header's own terms, is the message's contract.
		if !errors.Is(err, loader.ErrCannotMove) || res.ExitCode != machine.StatusError || !strings.Contains(err.Error(), "the kernel cannot move: boot protocol 2.03, relocatable_kernel 0") {
			t.Errorf("%v, status %d: want a refusal saying the image cannot move", err, res.ExitCode)
		}
	})
}
