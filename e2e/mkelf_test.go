package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"kvmboot/boot"
	"kvmboot/e2e/hosttest"
	"kvmboot/loader"
)

// inspectJSON runs `kvmboot inspect --json` and decodes the object.
func inspectJSON(t *testing.T, args ...string) map[string]any {
	t.Helper()
	stdout, stderr, status := runCLI(t, append([]string{"inspect", "--json"}, args...)...)
	if status != 0 {
		t.Fatalf("inspect %v: status %d: %s", args, status, stderr)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(stdout), &m); err != nil {
		t.Fatalf("inspect %v: %v\n%s", args, err, stdout)
	}
	return m
}

// planJSON runs `kvmboot plan --json` and decodes the result object.
func planJSON(t *testing.T, args ...string) *boot.Result {
	t.Helper()
	stdout, stderr, status := runCLI(t, append([]string{"plan", "--json"}, args...)...)
	if status != 0 {
		t.Fatalf("plan %v: status %d: %s", args, status, stderr)
	}
	var r boot.Result
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("plan %v: %v\n%s", args, err, stdout)
	}
	return &r
}

// TestMkELFDebian: `kvmboot mkelf` turns Debian's bzImage into compressed
// ELFs that inspect reads back with the note and relocation counts of the
// source, that plan exactly as the source does around bad RAM (the same
// placements, relocated kernel bytes and zero page), and that boot.
func TestMkELFDebian(t *testing.T) {
	vmlinuz := hosttest.DebianKernel(t)
	dir := t.TempDir()
	src := inspectJSON(t, vmlinuz)
	srcRelocs := src["relocations"].(map[string]any)
	srcSetup := src["setup_header"].(map[string]any)
	srcPlan := planJSON(t, "--bad-ram", "16M-48M", vmlinuz)

	outs := map[string]string{}
	for _, c := range []string{"gzip", "xz", "zstd"} {
		t.Run(c, func(t *testing.T) {
			out := filepath.Join(dir, "vmlinux."+c)
			start := time.Now()
			stdout, stderr, status := runCLI(t, "mkelf", "--compress", c, vmlinuz, "-o", out)
			if status != 0 {
				t.Fatalf("mkelf: status %d\n%s%s", status, stdout, stderr)
			}
			st, err := os.Stat(out)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("mkelf --compress %s: %.1f s, %d bytes", c, time.Since(start).Seconds(), st.Size())
			outs[c] = out

			in := inspectJSON(t, out)
			if in["format"] != c+"+elf32" || in["compression"] != c {
				t.Errorf("format %v, compression %v", in["format"], in["compression"])
			}
			relocs := in["relocations"].(map[string]any)
			for _, k := range []string{"source", "sites", "by_type", "skipped_absolute"} {
				if !reflect.DeepEqual(relocs[k], srcRelocs[k]) {
					t.Errorf("relocations %s: %v, source %v", k, relocs[k], srcRelocs[k])
				}
			}
			note, ok := in["kvmboot_note"].(map[string]any)
			if !ok {
				t.Fatalf("no kvmboot note in inspect output")
			}
			nr := note["relocs"].(map[string]any)
			if nr["sites"] != srcRelocs["sites"] || nr["skipped_absolute"] != srcRelocs["skipped_absolute"] || nr["origin"] != "linux" ||
				note["checksum_ok"] != true || note["linux_setup_bytes"].(float64) == 0 {
				t.Errorf("note %v", note)
			}
			setup := in["setup_header"].(map[string]any)
			for k, v := range srcSetup {
				// The version string lives in the setup code, which the
				// image does not carry (BUILD_INFO has it).
				if k != "from_kvmboot_note" && k != "kernel_version_string" && !reflect.DeepEqual(setup[k], v) {
					t.Errorf("setup header %s: %v, source %v", k, setup[k], v)
				}
			}

			p := planJSON(t, "--bad-ram", "16M-48M", out)
			if p.LoadAddress != srcPlan.LoadAddress || p.LoadAddress != 48*mib || p.Relocations != srcPlan.Relocations || p.Kernel.Protocol != loader.ProtocolLinux32 ||
				!reflect.DeepEqual(p.Placements, srcPlan.Placements) || !reflect.DeepEqual(p.MemoryMap, srcPlan.MemoryMap) {
				t.Errorf("plan of the mkelf output:\n%+v\nsource:\n%+v", p, srcPlan)
			}
		})
	}

	// The bytes too, in-process: relocated kernel, zero page, stub checks.
	gz := outs["gzip"]
	if gz == "" {
		t.Fatal("no gzip output")
	}
	bad := badRanges(t, "16M-48M")
	a, err := boot.Plan(boot.Config{Kernel: vmlinuz, BadRAM: bad, Cmdline: linuxCmdline})
	if err != nil {
		t.Fatal(err)
	}
	b, err := boot.Plan(boot.Config{Kernel: gz, BadRAM: bad, Cmdline: linuxCmdline})
	if err != nil {
		t.Fatal(err)
	}
	pa, pb := a.Sorted(), b.Sorted()
	if len(pa) != len(pb) {
		t.Fatalf("%d placements, source %d", len(pb), len(pa))
	}
	for i := range pa {
		if pa[i].What != pb[i].What || pa[i].Start != pb[i].Start || pa[i].Size != pb[i].Size || !bytes.Equal(pa[i].Data, pb[i].Data) {
			t.Errorf("placement %s at %#x differs from the source's %s at %#x", pb[i].What, pb[i].Start, pa[i].What, pa[i].Start)
		}
	}
}

// TestMkELFDebianBoots boots the mkelf'd Debian kernel to our guest init
// under QEMU with bad RAM declared, as TestLinuxBoot boots the bzImage.
func TestMkELFDebianBoots(t *testing.T) {
	vmlinuz := hosttest.DebianKernel(t)
	requireQEMU(t)
	out := filepath.Join(t.TempDir(), "vmlinux.gz")
	if _, stderr, status := runCLI(t, "mkelf", vmlinuz, "-o", out); status != 0 {
		t.Fatalf("mkelf: status %d: %s", status, stderr)
	}
	bad := badRanges(t, "16M-48M")
	// Without an initrd Linux stops at "VFS: Unable to mount root fs"
	// before it frees its init memory, and `quiet` hides that line
	// anyway: our guest init's report is what says the boot got there.
	res, rep, console := bootLinux(t, boot.Config{Kernel: out, BadRAM: bad})
	if res.Kernel.Format != "gzip+elf32" || res.Kernel.Protocol != loader.ProtocolLinux32 || res.LoadAddress != 48*mib {
		t.Errorf("kernel %+v loaded at %#x", res.Kernel, res.LoadAddress)
	}
	checkLinux(t, res, rep, console, bad)
}
