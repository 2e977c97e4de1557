package smoke

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kvmboot/boot"
	"kvmboot/loader"
	"kvmboot/loader/memmap"
	"kvmboot/machine"
)

const goodMatrix = `
name: nightly
defaults:
  timeout: 30s
  mem: 128M
  smp: 2
  expectation:
    must_not_touch_bad_ram: true
vmms:
  - kvm
  - {vmm: qemu, accel: tcg}
kernels:
  - name: tk
    path: ""
    cmdline: "a=1"
  - name: linux
    path: kernels/vmlinuz          # relative to the matrix file
    initrd: ${SMOKE_TEST_DIR}/initrd.gz
    protocol: linux32
    modules: ["mod.bin arg1 arg2"]
    vmm: qemu
    accel: tcg
    mem: 256M
    smp: 4
    timeout: 2m
    expectation: {expect: "gi: hello"}
scenarios:
  - name: plain
  - name: bad
    bad_ram: ["16M-32M", "memmap=16M$64M", "badram=0x08000000,0xff000000"]
    placement: lowest
    load_address: 0x3000000
    region: 32M-96M
    cmdline: "kt.exit=3"
    bad_ram_policy: record
    timeout: 5s
    expectation: {status: 3}
  - name: crashy
    mem: 64M
    smp: 3
    expectation: {outcome: crash, must_not_touch_bad_ram: false}
exclude:
  - {kernel: linux, scenario: "c*"}
  - {kernel: tk, vmm: qemu-tcg}
include:
  - {kernel: tk, scenario: plain, vmm: qemu-tcg}
overrides:
  - {kernel: tk, scenario: bad, vmm: kvm, timeout: 7s, expectation: {outcome: fail}}
`

func writeMatrix(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "m.yaml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func caseByName(t *testing.T, m *Matrix, name string) *Case {
	t.Helper()
	for _, c := range m.Cases {
		if c.Name == name {
			return c
		}
	}
	var names []string
	for _, c := range m.Cases {
		names = append(names, c.Name)
	}
	t.Fatalf("no case %s in %v", name, names)
	return nil
}

func TestParseGood(t *testing.T) {
	t.Setenv("SMOKE_TEST_DIR", "/srv/boot")
	file := writeMatrix(t, goodMatrix)
	m, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "nightly" || !m.Axis {
		t.Errorf("name %q axis %v", m.Name, m.Axis)
	}
	var names []string
	for _, c := range m.Cases {
		names = append(names, c.Name)
	}
	want := []string{
		"linux/bad/qemu-tcg", "linux/plain/qemu-tcg",
		"tk/bad/kvm", "tk/crashy/kvm", "tk/plain/kvm", "tk/plain/qemu-tcg",
	}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Fatalf("cases\n got %v\nwant %v", names, want)
	}
	if strings.Join(m.Backends, " ") != "kvm qemu-tcg" {
		t.Errorf("backends %v", m.Backends)
	}

	dir := filepath.Dir(file)
	lin := caseByName(t, m, "linux/bad/qemu-tcg")
	cfg := lin.Config
	if cfg.Kernel != filepath.Join(dir, "kernels/vmlinuz") || cfg.Initrd != "/srv/boot/initrd.gz" {
		t.Errorf("paths %q %q", cfg.Kernel, cfg.Initrd)
	}
	if len(cfg.Modules) != 1 || cfg.Modules[0].Path != filepath.Join(dir, "mod.bin") || cfg.Modules[0].Args != "mod.bin arg1 arg2" {
		t.Errorf("modules %+v", cfg.Modules)
	}
	if cfg.VMM != boot.VMMQEMU || cfg.Accel != "tcg" || lin.VMM != "qemu-tcg" || cfg.Protocol != loader.ProtocolLinux32 {
		t.Errorf("vmm %q accel %q label %q protocol %q", cfg.VMM, cfg.Accel, lin.VMM, cfg.Protocol)
	}
	if cfg.MemSize != 256<<20 || cfg.CPUs != 4 || cfg.Cmdline != "kt.exit=3" || cfg.Policy != loader.PolicyLowest {
		t.Errorf("mem %d smp %d cmdline %q policy %q", cfg.MemSize, cfg.CPUs, cfg.Cmdline, cfg.Policy)
	}
	if cfg.LoadAddress == nil || *cfg.LoadAddress != 0x3000000 || cfg.Region == nil || *cfg.Region != (memmap.Range{Start: 32 << 20, End: 96 << 20}) {
		t.Errorf("load address %v region %v", cfg.LoadAddress, cfg.Region)
	}
	wantBad := []memmap.Range{{Start: 16 << 20, End: 32 << 20}, {Start: 64 << 20, End: 80 << 20}, {Start: 0x08000000, End: 0x09000000}}
	if len(cfg.BadRAM) != len(wantBad) {
		t.Fatalf("bad RAM %v", cfg.BadRAM)
	}
	for i := range wantBad {
		if cfg.BadRAM[i] != wantBad[i] {
			t.Errorf("bad RAM %d: %v, want %v", i, cfg.BadRAM[i], wantBad[i])
		}
	}
	if cfg.BadRAMPolicy != machine.BadRAMRecord {
		t.Errorf("policy %q", cfg.BadRAMPolicy)
	}
	// Timeouts: scenario 5s beats the kernel's 2m.
	if lin.Timeout != 5*time.Second || cfg.Timeout != 5*time.Second {
		t.Errorf("timeout %v", lin.Timeout)
	}
	// Expectations: the scenario's status replaces the default pass; the
	// kernel's expect stays.
	if lin.Want.Status == nil || *lin.Want.Status != 3 || lin.Want.Outcome != "" || lin.Want.Expect != "gi: hello" || !lin.Want.MustNotTouchBadRAM {
		t.Errorf("want %+v", lin.Want)
	}
	if cfg.Expect == nil || cfg.Expect.String() != "gi: hello" {
		t.Errorf("expect regexp %v", cfg.Expect)
	}

	tk := caseByName(t, m, "tk/bad/kvm")
	if tk.Config.Kernel != "" || tk.Config.MemSize != 128<<20 || tk.Config.CPUs != 2 || tk.Config.Cmdline != "a=1 kt.exit=3" || tk.Config.VMM != "kvm" {
		t.Errorf("tk/bad/kvm config %+v", tk.Config)
	}
	// The override: timeout 7s, outcome fail replaces status 3.
	if tk.Timeout != 7*time.Second || tk.Want.Status != nil || tk.Want.Outcome != machine.Fail {
		t.Errorf("override: timeout %v want %+v", tk.Timeout, tk.Want)
	}
	plain := caseByName(t, m, "tk/plain/qemu-tcg")
	if plain.Want.Status == nil || *plain.Want.Status != 0 || plain.Want.Outcome != machine.Pass || plain.Timeout != 30*time.Second {
		t.Errorf("plain want %+v timeout %v", plain.Want, plain.Timeout)
	}
	for _, c := range m.Cases {
		if err := c.Config.Validate(); err != nil {
			t.Errorf("%s: the case's configuration does not validate: %v", c.Name, err)
		}
	}
	crashy := caseByName(t, m, "tk/crashy/kvm")
	if crashy.Want.Outcome != machine.Crash || crashy.Want.Status != nil || crashy.Want.MustNotTouchBadRAM || crashy.Config.MemSize != 64<<20 || crashy.Config.CPUs != 3 {
		t.Errorf("crashy %+v mem %d smp %d", crashy.Want, crashy.Config.MemSize, crashy.Config.CPUs)
	}
}

func TestParseMinimal(t *testing.T) {
	m, err := Parse([]byte("kernels: [{name: k}]\nscenarios: [{name: s}]\n"), "dir/min.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "min" || m.Axis || len(m.Cases) != 1 {
		t.Fatalf("%+v", m)
	}
	c := m.Cases[0]
	if c.Name != "k/s" || c.VMM != "auto" || c.Config.VMM != "auto" || c.Timeout != DefaultTimeout || c.Config.MemSize != boot.DefaultMemSize {
		t.Errorf("%+v", c)
	}
	if c.Want.String() != "pass (0)" || !c.Want.MustNotTouchBadRAM {
		t.Errorf("want %v", c.Want)
	}
}

// TestParseErrors: each kind of problem is one line naming the file, the
// line and what is wrong.
func TestParseErrors(t *testing.T) {
	const ks = "kernels: [{name: k}]\nscenarios: [{name: s}]\n"
	cases := []struct {
		name, text string
		line       int
		want       string
	}{
		{"empty", "", 1, "empty matrix"},
		{"comment only", "# nothing\n", 1, "empty matrix"},
		{"not a mapping", "- a\n- b\n", 1, "want a mapping"},
		{"syntax", "kernels: [{name: k}\nscenarios: []\n", 1, "did not find expected"},
		{"tab", "kernels:\n\t- name: k\n", 2, "YAML indents with spaces, not tabs"},
		{"unknown top", ks + "scenarioz: []\n", 3, `unknown field "scenarioz" in the matrix`},
		{"unknown kernel field", "kernels:\n  - name: k\n    pth: x\nscenarios: [{name: s}]\n", 3, `unknown field "pth" in a kernel (known: name, path,`},
		{"unknown scenario field", "kernels: [{name: k}]\nscenarios:\n  - name: s\n    badram: [1M-2M]\n", 4, `unknown field "badram" in a scenario`},
		{"unknown expectation field", "kernels: [{name: k}]\nscenarios:\n  - name: s\n    expectation:\n      exit: 3\n", 5, `unknown field "exit" in an expectation`},
		{"unknown vmms field", ks + "vmms:\n  - {vmm: qemu, acel: tcg}\n", 4, `unknown field "acel" in a vmms entry`},
		{"duplicate key", "kernels: [{name: k}]\nscenarios: [{name: s}]\nkernels: []\n", 3, "already defined"},
		{"wrong type", "kernels: [{name: k}]\nscenarios:\n  - name: s\n    expectation: {status: three}\n", 4, `want a whole number, got the string "three"`},
		{"list wanted", "kernels: [{name: k}]\nscenarios:\n  - name: s\n    bad_ram: 16M-32M\n", 4, "want a list"},
		{"two documents", ks + "---\nkernels: []\n", 3, "second YAML document"},
		{"no kernels", "scenarios: [{name: s}]\n", 1, "no kernels"},
		{"no scenarios", "kernels: [{name: k}]\nscenarios: []\n", 2, "no scenarios"},
		{"kernel without name", "kernels:\n  - path: x\nscenarios: [{name: s}]\n", 2, "kernel without a name"},
		{"bad name", "kernels:\n  - name: my kernel\nscenarios: [{name: s}]\n", 2, `kernel name "my kernel"`},
		{"duplicate name", "kernels:\n  - name: k\n  - name: k\nscenarios: [{name: s}]\n", 3, `kernel "k" is already defined at line 2`},
		{"bad mem", "kernels: [{name: k}]\nscenarios:\n  - name: s\n    mem: lots\n", 4, `mem "lots"`},
		{"mem beyond every backend", "defaults:\n  mem: 100G\n" + ks, 2, "guest memory 100G"},
		{"smp 0", "kernels: [{name: k}]\nscenarios:\n  - name: s\n    smp: 0\n", 4, "smp: 0 processors: want 1 to 64"},
		{"smp beyond every backend", "defaults:\n  smp: 65\n" + ks, 2, "smp: 65 processors"},
		{"smp not a number", "kernels:\n  - name: k\n    smp: four\n" + "scenarios: [{name: s}]\n", 3, `want a whole number, got the string "four"`},
		{"module without file", "kernels:\n  - name: k\n    modules: [\"  \"]\nscenarios: [{name: s}]\n", 3, "no file name"},
		{"bad timeout", "defaults:\n  timeout: soon\n" + ks, 2, `timeout "soon"`},
		{"negative timeout", "kernels: [{name: k, timeout: -1s}]\nscenarios: [{name: s}]\n", 1, `timeout "-1s"`},
		{"bad bad_ram", "kernels: [{name: k}]\nscenarios:\n  - name: s\n    bad_ram:\n      - 1M-2M\n      - 32M-16M\n", 6, `bad_ram "32M-16M"`},
		{"bad placement", "kernels: [{name: k}]\nscenarios:\n  - name: s\n    placement: middle\n", 4, "placement"},
		{"bad load address", "kernels: [{name: k}]\nscenarios:\n  - name: s\n    load_address: here\n", 4, "load_address"},
		{"bad region", "kernels: [{name: k}]\nscenarios:\n  - name: s\n    region: 64M\n", 4, "region"},
		{"bad protocol", "kernels:\n  - name: k\n    protocol: pxe\nscenarios: [{name: s}]\n", 3, `protocol "pxe"`},
		{"bad policy", "kernels: [{name: k}]\nscenarios:\n  - name: s\n    bad_ram_policy: ignore\n", 4, "bad_ram_policy"},
		{"bad vmm", "kernels:\n  - name: k\n    vmm: xen\nscenarios: [{name: s}]\n", 3, `vmm "xen"`},
		{"bad accel", "kernels:\n  - name: k\n    vmm: qemu\n    accel: hvf\nscenarios: [{name: s}]\n", 4, `accel "hvf"`},
		{"accel without vmm", "kernels:\n  - name: k\n    accel: tcg\nscenarios: [{name: s}]\n", 3, "without vmm"},
		{"accel with kvm", "kernels:\n  - name: k\n    vmm: kvm\n    accel: tcg\nscenarios: [{name: s}]\n", 4, "QEMU's accelerator"},
		{"defaults vmm and axis", "defaults:\n  vmm: kvm\nvmms: [kvm]\n" + ks, 2, "defaults.vmm and a vmms axis"},
		{"duplicate axis", ks + "vmms: [kvm, kvm]\n", 3, "already defined"},
		{"bad outcome", "kernels: [{name: k}]\nscenarios:\n  - name: s\n    expectation:\n      outcome: passed\n", 5, `outcome "passed"`},
		{"bad status", "kernels: [{name: k}]\nscenarios:\n  - name: s\n    expectation:\n      status: 300\n", 5, "status 300"},
		{"bad expect", "kernels: [{name: k}]\nscenarios:\n  - name: s\n    expectation:\n      expect: \"a(b\"\n", 5, "expect"},
		{"unset variable", "kernels:\n  - name: k\n    path: ${SMOKE_NO_SUCH_VAR}/vmlinuz\nscenarios: [{name: s}]\n", 3, "SMOKE_NO_SUCH_VAR is not set"},
		{"empty filter", ks + "exclude:\n  - {}\n", 4, "names no kernel"},
		{"filter typo", ks + "exclude:\n  - kernel: kk\n", 4, `kernel "kk" matches no kernel (have: k)`},
		{"bad glob", ks + "exclude:\n  - kernel: \"[\"\n", 4, "bad pattern"},
		{"exclude matches nothing", "kernels: [{name: k}, {name: j}]\nscenarios: [{name: s}, {name: t}]\nexclude:\n  - {kernel: k, scenario: s}\n  - {kernel: k, scenario: s, vmm: kvm}\n", 5, "exclude entry matches no case"},
		{"include adds nothing", ks + "include:\n  - {kernel: k}\n", 4, "include entry adds nothing"},
		{"all excluded", ks + "exclude:\n  - {kernel: k}\n", 4, "every case is excluded"},
		{"override matches nothing", "kernels: [{name: k}, {name: j}]\nscenarios: [{name: s}]\nexclude: [{kernel: j}]\noverrides:\n  - {kernel: j, timeout: 1s}\n", 5, "override matches no case"},
		{"override changes nothing", ks + "overrides:\n  - {kernel: k}\n", 4, "override changes nothing"},
		{"pinned conflict", "kernels:\n  - name: k\n    vmm: qemu\nscenarios:\n  - name: s\n    vmm: kvm\n", 6, "kernel k (line 3) runs on qemu and scenario s on kvm"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.text), "dir/m.yaml")
			if err == nil {
				t.Fatal("no error")
			}
			var me *MatrixError
			if !errors.As(err, &me) {
				t.Fatalf("%T %v, want a *MatrixError", err, err)
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("not one line: %q", msg)
			}
			if me.File != "dir/m.yaml" || me.Line != tc.line {
				t.Errorf("%s: at %s:%d, want line %d", msg, me.File, me.Line, tc.line)
			}
			if !strings.HasPrefix(msg, "dir/m.yaml:") || !strings.Contains(msg, tc.want) {
				t.Errorf("%s\nwant it to contain %q", msg, tc.want)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "nope.yaml")
	_, err := Load(file)
	// The message must start with the file's name: that is its contract.
	if !errors.Is(err, fs.ErrNotExist) || !strings.HasPrefix(err.Error(), file+": ") {
		t.Fatalf("%v", err)
	}
}

// TestExpand: the cross product with exclude, include and pinned vmms.
func TestExpand(t *testing.T) {
	text := `
kernels: [{name: a}, {name: b}, {name: c, vmm: qemu}]
scenarios: [{name: s1}, {name: s2}, {name: s3, vmm: kvm}]
vmms: [kvm, qemu-kernel]
exclude:
  - {kernel: c, scenario: s3}       # the pinned backends differ
  - {scenario: s2}
  - {kernel: b, vmm: qemu-kernel}
include:
  - {kernel: a, scenario: s2, vmm: kvm}
`
	m, err := Parse([]byte(text), "m.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range m.Cases {
		got = append(got, c.Name+"="+c.Config.VMM.String())
	}
	want := []string{
		"a/s1/kvm=kvm", "a/s1/qemu-kernel=qemu-kernel", "a/s2/kvm=kvm", "a/s3/kvm=kvm",
		"b/s1/kvm=kvm", "b/s3/kvm=kvm",
		"c/s1/qemu=qemu",
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("got  %v\nwant %v", got, want)
	}
	if strings.Join(m.Backends, ",") != "kvm,qemu-kernel,qemu" {
		t.Errorf("backends %v", m.Backends)
	}
}

func TestExpandNoAxisNames(t *testing.T) {
	m, err := Parse([]byte("defaults: {vmm: kvm}\nkernels: [{name: a}, {name: b}]\nscenarios: [{name: x}, {name: y, vmm: qemu, accel: tcg}]\n"), "m.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range m.Cases {
		got = append(got, c.Name+"@"+c.VMM)
	}
	if strings.Join(got, " ") != "a/x@kvm a/y@qemu-tcg b/x@kvm b/y@qemu-tcg" {
		t.Errorf("%v", got)
	}
}
