package boot

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"kvmboot/loader/memmap"
	"kvmboot/machine/faults"
	"kvmboot/machine/kvm"
	"kvmboot/machine/qemu"
)

// Probe results of the hosts kvmboot meets.
func hardwareKVM() *kvm.ProbeResult {
	return &kvm.ProbeResult{Usable: true, Module: "kvm_intel", RealMode: true, ProtectedMode: true, Paging32: true, InstructionsPerSecond: 2e9}
}

func emulatingKVM() *kvm.ProbeResult {
	return &kvm.ProbeResult{Usable: true, Module: "kvm_pvm", RealMode: true, ProtectedMode: true, PagingDetail: "error: paging refused", InstructionsPerSecond: 2e6}
}

func noKVM() *kvm.ProbeResult {
	return &kvm.ProbeResult{Module: "none", Error: "open /dev/kvm: no such file or directory"}
}

func qemuFull() *qemu.ProbeResult {
	return &qemu.ProbeResult{Found: true, Version: "7.2", TCG: true, KVM: true, KVMPaging: true}
}

func qemuTCGOnly() *qemu.ProbeResult {
	return &qemu.ProbeResult{Found: true, Version: "7.2", TCG: true, KVM: true, KVMPagingDetail: "crash: triple fault"}
}

func noQEMU() *qemu.ProbeResult {
	return &qemu.ProbeResult{Error: "qemu-system-i386 not found"}
}

func TestAutoChoice(t *testing.T) {
	for _, tc := range []struct {
		name  string
		k     *kvm.ProbeResult
		q     *qemu.ProbeResult
		want  Choice
		why   string
		error bool
	}{
		{"hardware KVM", hardwareKVM(), qemuFull(), Choice{VMM: "kvm"}, "runs 32-bit paging (the probe's guest loop ran 2e+09 instructions/s)", false},
		{"nested KVM without paging, QEMU+KVM pages", emulatingKVM(), qemuFull(), Choice{VMM: "qemu", Accel: "kvm"}, "cannot run 32-bit paging", false},
		{"this host", emulatingKVM(), qemuTCGOnly(), Choice{VMM: "qemu", Accel: "tcg"}, "QEMU with TCG", false},
		{"slow KVM that pages", &kvm.ProbeResult{Usable: true, Module: "kvm_pvm", ProtectedMode: true, Paging32: true, InstructionsPerSecond: 2e6}, qemuTCGOnly(), Choice{VMM: "qemu", Accel: "tcg"}, "ran only 2e+06 instructions/s (below 1e+08: it emulates guest code)", false},
		{"no KVM", noKVM(), qemuTCGOnly(), Choice{VMM: "qemu", Accel: "tcg"}, "no usable /dev/kvm", false},
		{"no QEMU", emulatingKVM(), noQEMU(), Choice{VMM: "kvm"}, "do not turn on paging", false},
		{"nothing", noKVM(), noQEMU(), Choice{}, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &HostProbe{KVM: tc.k, QEMU: tc.q}
			c, err := h.AutoChoice()
			if (err != nil) != tc.error {
				t.Fatalf("error %v", err)
			}
			if c.VMM != tc.want.VMM || c.Accel != tc.want.Accel || !strings.Contains(c.Why, tc.why) {
				t.Errorf("got %+v, want %+v with why containing %q", c, tc.want, tc.why)
			}
			h.decide()
			if (h.AutoError != "") != tc.error || h.Auto.VMM != tc.want.VMM {
				t.Errorf("decide: %+v %q", h.Auto, h.AutoError)
			}
		})
	}
}

func TestQEMUChoice(t *testing.T) {
	c, err := (&HostProbe{KVM: emulatingKVM(), QEMU: qemuTCGOnly()}).QEMUChoice()
	if err != nil || c.Accel != "tcg" {
		t.Errorf("got %+v %v", c, err)
	}
	c, err = (&HostProbe{KVM: hardwareKVM(), QEMU: qemuFull()}).QEMUChoice()
	if err != nil || c.Accel != "kvm" {
		t.Errorf("got %+v %v", c, err)
	}
	if _, err := (&HostProbe{KVM: hardwareKVM(), QEMU: noQEMU()}).QEMUChoice(); err == nil {
		t.Error("no QEMU: no error")
	}
}

// TestChooseExplicit: named backends need no probe.
func TestChooseExplicit(t *testing.T) {
	for _, tc := range []struct {
		vmm   VMM
		accel string
		want  Choice
	}{
		{"kvm", "", Choice{VMM: "kvm"}},
		{"kvm", "auto", Choice{VMM: "kvm"}},
		{"qemu", "tcg", Choice{VMM: "qemu", Accel: "tcg"}},
		{"qemu-kernel", "kvm", Choice{VMM: "qemu-kernel", Accel: "kvm"}},
		{"auto", "tcg", Choice{VMM: "qemu", Accel: "tcg"}},
	} {
		cfg := Config{VMM: tc.vmm, Accel: tc.accel}
		if err := cfg.Validate(); err != nil {
			t.Errorf("%s/%s: %v", tc.vmm, tc.accel, err)
			continue
		}
		c, err := choose(context.Background(), cfg)
		if err != nil || c.VMM != tc.want.VMM || c.Accel != tc.want.Accel || c.Why == "" {
			t.Errorf("%s/%s: got %+v %v, want %+v", tc.vmm, tc.accel, c, err, tc.want)
		}
	}
	// Single-stepping needs our KVM machine, whatever the probe says.
	c, err := choose(context.Background(), Config{CountStub: true})
	if err != nil || c.VMM != "kvm" {
		t.Errorf("--count-stub: %+v %v", c, err)
	}
}

// TestPreferTCG: faulty RAM and tracing keep whatever backend the probe
// picks, except QEMU's KVM accelerator, which runs no plugin.
func TestPreferTCG(t *testing.T) {
	faulty := Config{Faulty: []faults.Range{{Range: memmap.Range{Start: 20 << 20, End: 21 << 20}}}}
	trace := Config{Trace: func(string) {}}
	for _, tc := range []struct {
		c         Choice
		cfg       Config
		wantAccel string
	}{
		{Choice{VMM: "qemu", Accel: "kvm", Why: "probe"}, faulty, "tcg"},
		{Choice{VMM: "qemu", Accel: "kvm", Why: "probe"}, trace, "tcg"},
		{Choice{VMM: "qemu", Accel: "kvm", Why: "probe"}, Config{}, "kvm"},
		{Choice{VMM: "qemu", Accel: "tcg", Why: "probe"}, faulty, "tcg"},
		{Choice{VMM: "kvm", Why: "probe"}, faulty, ""},
	} {
		got := preferTCG(tc.c, tc.cfg)
		if got.VMM != tc.c.VMM || got.Accel != tc.wantAccel || !strings.HasPrefix(got.Why, "probe") ||
			(got.Accel != tc.c.Accel) != strings.Contains(got.Why, "need TCG") {
			t.Errorf("%+v with faulty %v trace %v: %+v", tc.c, tc.cfg.Faulty != nil, tc.cfg.Trace != nil, got)
		}
	}
}

func TestBackendNames(t *testing.T) {
	for _, tc := range []struct {
		vmm         VMM
		accel, name string
	}{
		{"kvm", "", "kvm"}, {"qemu", "tcg", "qemu"}, {"qemu-kernel", "tcg", "qemu-kernel"},
	} {
		b, err := newBackend(context.Background(), Config{VMM: tc.vmm, Accel: tc.accel})
		if err != nil {
			t.Fatal(err)
		}
		accel, why := choiceOf(b)
		if b.Name() != tc.name || accel != tc.accel || why == "" {
			t.Errorf("%s: name %q accel %q why %q", tc.vmm, b.Name(), accel, why)
		}
	}
	b, _ := newBackend(context.Background(), Config{VMM: "qemu-kernel", Accel: "tcg"})
	if qb := b.(*chosen).Backend.(qemu.Backend); !qb.Kernel || qb.KernelImage == nil {
		t.Errorf("the reference run of the built-in kernel needs its image: %+v", qb)
	}
}

func testKey() probeKey {
	return probeKey{Format: ProbeFormat, Version: "v1 abc", BootID: "boot-1", QEMUBinary: "/usr/bin/qemu 1 2"}
}

func testProbe(k probeKey) *HostProbe {
	h := &HostProbe{Format: k.Format, Version: k.Version, BootID: k.BootID, QEMUBinary: k.QEMUBinary, KVM: emulatingKVM(), QEMU: qemuTCGOnly()}
	h.decide()
	return h
}

func TestProbeCache(t *testing.T) {
	dir := t.TempDir()
	key := testKey()
	path := filepath.Join(dir, "kvmboot", "probe-"+key.BootID+".json")
	// An earlier host boot's cache is removed when this one is written.
	os.MkdirAll(filepath.Dir(path), 0o755)
	old := filepath.Join(dir, "kvmboot", "probe-boot-0.json")
	os.WriteFile(old, []byte("{}"), 0o644)

	if err := saveProbe(path, testProbe(key)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Errorf("the cache of an earlier boot is still there: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "kvmboot", ".probe-*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
	h, ok := loadProbe(path, key)
	if !ok || !h.Cached || h.CacheFile != path || h.Auto.VMM != "qemu" || h.Auto.Accel != "tcg" || h.KVM.Module != "kvm_pvm" {
		t.Fatalf("load: %v %+v", ok, h)
	}

	for name, k := range map[string]probeKey{
		"other kvmboot version": {key.Format, "v2 def", key.BootID, key.QEMUBinary},
		"other probe format":    {key.Format + 1, key.Version, key.BootID, key.QEMUBinary},
		"other host boot":       {key.Format, key.Version, "boot-2", key.QEMUBinary},
		"QEMU upgraded":         {key.Format, key.Version, key.BootID, "/usr/bin/qemu 1 3"},
	} {
		if _, ok := loadProbe(path, k); ok {
			t.Errorf("%s: cache accepted", name)
		}
	}
	for name, content := range map[string]string{
		"corrupt":   `{"format": 1, "kvm": {`,
		"empty":     ``,
		"no probes": `{"format":1,"kvmboot_version":"v1 abc","boot_id":"boot-1","qemu_binary":"/usr/bin/qemu 1 2"}`,
	} {
		os.WriteFile(path, []byte(content), 0o644)
		if _, ok := loadProbe(path, key); ok {
			t.Errorf("%s file accepted", name)
		}
	}
	if _, ok := loadProbe(filepath.Join(dir, "missing.json"), key); ok {
		t.Error("missing file accepted")
	}
}

// TestProbeHostUsesCache: a current cache answers without probing.
func TestProbeHostUsesCache(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	key := currentProbeKey()
	path := probeCachePath(key.BootID)
	if path == "" {
		t.Skip("no boot id or cache directory here")
	}
	// A probe no real host gives: had ProbeHost probed, it would differ.
	h := testProbe(key)
	h.KVM.Module = "kvm_fake"
	if err := saveProbe(path, h); err != nil {
		t.Fatal(err)
	}
	got, err := ProbeHost(context.Background(), false)
	if err != nil || !got.Cached || got.KVM.Module != "kvm_fake" {
		t.Fatalf("got %+v, %v", got, err)
	}
	b, _ := os.ReadFile(path)
	var saved map[string]any
	if err := json.Unmarshal(b, &saved); err != nil || saved["cached"] != false {
		t.Errorf("the file should not say it was cached: %s", b)
	}
}

// TestMachineOption: --machine takes pc (the default) and minimal, and
// Validate refuses anything else before any backend is chosen.
func TestMachineOption(t *testing.T) {
	for _, tc := range []struct {
		in Machine
		ok bool
	}{{"", true}, {MachinePC, true}, {MachineMinimal, true}, {"q35", false}} {
		err := (&Config{VMM: VMMKVM, Machine: tc.in}).Validate()
		// The CLI line, flag and choices, is the contract.
		if (err == nil) != tc.ok || err != nil && !strings.Contains(err.Error(), "--machine=q35: want pc or minimal") {
			t.Errorf("%q: %v", tc.in, err)
		}
	}
}
