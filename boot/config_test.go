package boot

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"kvmboot/loader"
	"kvmboot/loader/memmap"
	"kvmboot/machine"
	"kvmboot/machine/faults"
)

// TestValidate: every setting a configuration can get wrong is refused in
// one line that names it, and the good ones pass.
func TestValidate(t *testing.T) {
	faulty := []faults.Range{{Range: memmap.Range{Start: 20 << 20, End: 21 << 20}}}
	for _, tc := range []struct {
		name string
		cfg  Config
		want string // "" = valid; else what the one line names: the setting and its value, the contract here
	}{
		{"zero value", Config{}, ""},
		{"all set", Config{VMM: VMMQEMU, Accel: "tcg", MemSize: 64 << 20, Protocol: loader.ProtocolMultiboot, Policy: loader.PolicyLowest,
			BadRAMPolicy: machine.BadRAMRecord, Timeout: time.Second, TraceLimit: 10, Modules: []ModuleSpec{{Path: "m", Args: "m a"}}}, ""},
		{"faulty RAM on auto", Config{Faulty: faulty}, ""},
		{"unknown vmm", Config{VMM: "bochs"}, `vmm "bochs": unknown backend`},
		{"unknown accel", Config{VMM: VMMQEMU, Accel: "hvf"}, `accel "hvf": want auto, kvm or tcg`},
		{"accel with kvm", Config{VMM: VMMKVM, Accel: "tcg"}, "QEMU's accelerator"},
		{"memory too large", Config{MemSize: 100 << 30}, "guest memory 100G"},
		{"memory too small", Config{MemSize: 1 << 20}, "guest memory 1M"},
		{"memory unaligned", Config{MemSize: 64<<20 + 1}, "multiple of 4K"},
		{"64 processors", Config{CPUs: 64}, ""},
		{"65 processors", Config{CPUs: 65}, "--smp: 65 processors: want 1 to 64"},
		{"negative processors", Config{CPUs: -1}, "--smp: -1 processors"},
		{"processors on the minimal machine", Config{CPUs: 2, Machine: MachineMinimal}, "--smp 2 needs --machine pc"},
		{"one processor on the minimal machine", Config{CPUs: 1, Machine: MachineMinimal}, ""},
		{"protocol", Config{Protocol: "pxe"}, `"pxe"`},
		{"placement", Config{Policy: "middle"}, `"middle"`},
		{"bad-RAM policy", Config{BadRAMPolicy: "ignore"}, `bad-RAM policy "ignore"`},
		{"module without a file", Config{Modules: []ModuleSpec{{Args: " "}}}, "no file name"},
		{"negative timeout", Config{Timeout: -time.Second}, "timeout -1s"},
		{"negative trace limit", Config{TraceLimit: -1}, "trace limit -1"},
		{"faulty RAM on QEMU's own loader", Config{VMM: VMMQEMUKernel, Faulty: faulty}, "--vmm=qemu-kernel (QEMU's own loader"},
		{"faulty RAM with QEMU's KVM accelerator", Config{VMM: VMMQEMU, Accel: "kvm", Faulty: faulty}, "--accel=kvm cannot inject faults"},
		{"memtest mode", Config{Memtest: "slow"}, "quick or thorough"},
		{"memtest range alone", Config{MemtestRanges: []memmap.Range{{Start: 0, End: 1 << 20}}}, "need --memtest"},
	} {
		err := tc.cfg.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.want)
		case err != nil && strings.Contains(err.Error(), "\n"):
			t.Errorf("%s: not one line: %q", tc.name, err)
		}
	}
}

// TestPlanAndRunValidate: the Go API refuses what the backends would,
// before reading anything: a plan for 100G used to succeed.
func TestPlanAndRunValidate(t *testing.T) {
	bad := Config{Kernel: "/nonexistent/kernel", MemSize: 100 << 30}
	if _, err := Plan(bad); !errors.Is(err, machine.ErrMemSize) {
		t.Errorf("Plan: %v, want the memory size refused", err)
	}
	res, err := Run(context.Background(), bad)
	if !errors.Is(err, machine.ErrMemSize) {
		t.Errorf("Run: %v, want the memory size refused", err)
	}
	if res == nil || res.Outcome != machine.Error || res.ExitCode != machine.StatusError || res.Reason != err.Error() || res.Kernel.Path != bad.Kernel {
		t.Errorf("Run's result %+v", res)
	}
}

func TestParseModule(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want ModuleSpec
	}{
		{"mod.bin", ModuleSpec{Path: "mod.bin", Args: "mod.bin"}},
		{"  mod.bin arg1  arg2 ", ModuleSpec{Path: "mod.bin", Args: "mod.bin arg1  arg2"}},
	} {
		got, err := ParseModule(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseModule(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "   "} {
		if _, err := ParseModule(bad); !errors.Is(err, ErrNoModuleFile) {
			t.Errorf("ParseModule(%q): %v", bad, err)
		}
	}
}
