package boot

import (
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"time"

	"kvmboot/loader"
	"kvmboot/loader/memmap"
	"kvmboot/machine"
	"kvmboot/machine/faults"
	"kvmboot/machine/qemu"
)

// Config describes one boot. Validate checks it; Plan and Run call it.
type Config struct {
	// Kernel is the kernel file; empty boots the built-in test kernel.
	Kernel  string
	MemSize uint64 // default 256 MiB
	// CPUs is the number of processors (--smp), 1 to machine.MaxCPUs;
	// 0 is 1.
	CPUs    int
	Cmdline string
	Modules []ModuleSpec
	// Initrd is a Linux initrd (for a Multiboot kernel: its first module).
	Initrd string
	// Disk is an image the in-guest BIOS serves as drive 80h (int 13h).
	Disk   string
	BadRAM []memmap.Range

	Protocol    loader.Protocol // "" = from the image
	Policy      loader.Policy
	LoadAddress *uint64
	Region      *memmap.Range
	NoVerify    bool
	// NoCache decompresses the kernel even when an earlier run cached it.
	NoCache bool

	VMM          VMM     // "" is VMMAuto
	Accel        string  // QEMU accelerator: "auto", "kvm", "tcg"
	Machine      Machine // "" is MachinePC
	Timeout      time.Duration
	Expect       *regexp.Regexp
	BadRAMPolicy machine.BadRAMPolicy // "" is machine.BadRAMStop
	// QEMUExitCodes maps a guest's debug-exit value v to (v<<1)|1.
	QEMUExitCodes bool

	// Console receives the guest's console output as it comes (may be nil).
	Console io.Writer
	// Log receives notes about the run (unhandled ports and the like).
	Log func(string)
	// OnPlan, when set, receives the plan a run boots as soon as it is
	// made: after a memtest, the plan that avoids what the memtest found.
	OnPlan func(*loader.Plan)

	CountStub  bool
	Trace      func(string)
	TraceLimit int
	TraceAll   bool
	// AfterPlace is a test hook run with guest RAM after the plan is placed.
	AfterPlace func(ram []byte)

	Faulty        []faults.Range // --faulty-ram: RAM that misbehaves undeclared (our KVM machine, QEMU with TCG); memtest.go
	Seed          uint64         // --seed: memtest patterns and the flip fault model
	Memtest       string         // --memtest: "" (none), "quick" or "thorough": test RAM in the guest first; memtest.go
	MemtestRanges []memmap.Range // --memtest-range: what the memtest covers (nil: all usable RAM)
	MemtestCount  bool           // --memtest-count: single-step a few pages for instructions per page (KVM)
}

// ModuleSpec is a Multiboot module: a file and its string.
type ModuleSpec struct {
	Path string
	Args string
}

// ParseModule reads a module as GRUB's `module` line gives it, 'FILE
// ARGS': the file is the first word, and the module's string is the whole
// line, file name included.
func ParseModule(s string) (ModuleSpec, error) {
	line := strings.TrimSpace(s)
	path, _, _ := strings.Cut(line, " ")
	if path == "" {
		return ModuleSpec{}, errNoModuleFile(s)
	}
	return ModuleSpec{Path: path, Args: line}, nil
}

// ErrNoModuleFile is the error of a module spec without a file name, for
// errors.Is.
var ErrNoModuleFile = errors.New("no file name")

func errNoModuleFile(module string) error {
	return fmt.Errorf("module %q: %w", module, ErrNoModuleFile)
}

// DefaultMemSize is the guest RAM when Config.MemSize is 0.
const DefaultMemSize = 256 << 20

// memSize is the guest RAM the config asks for, the default filled in.
func (c *Config) memSize() uint64 {
	if c.MemSize == 0 {
		return DefaultMemSize
	}
	return c.MemSize
}

// checkCPUs checks the processor count, alone and with the machine.
func (c *Config) checkCPUs() error {
	if c.CPUs == 0 {
		return nil
	}
	if err := machine.CheckCPUs(c.CPUs); err != nil {
		return fmt.Errorf("--smp: %w", err)
	}
	if c.CPUs > 1 && c.Machine == MachineMinimal {
		return fmt.Errorf("--smp %d needs --machine pc: the minimal machine has no MP or ACPI tables to list its processors (and under QEMU no I/O APIC)", c.CPUs)
	}
	return nil
}

// Validate checks everything in the configuration that can be checked
// without reading a file or starting a guest: backend and accelerator,
// machine, memory size, processors, protocol, placement and bad-RAM policies, modules,
// timeout, trace limit, faulty RAM and memtest settings. Every error is
// one line. Plan and Run call it, once per call; the command line and the
// smoke matrix build their configurations from the same checks.
func (c *Config) Validate() error {
	if err := CheckBackend(c.VMM, c.Accel); err != nil {
		return err
	}
	if c.Machine != "" && !slices.Contains(Machines, c.Machine) {
		return fmt.Errorf("--machine=%s: want pc or minimal", c.Machine)
	}
	if err := machine.CheckMemSize(c.memSize()); err != nil {
		return err
	}
	if err := c.checkCPUs(); err != nil {
		return err
	}
	if _, err := loader.ParseProtocol(string(c.Protocol)); err != nil {
		return err
	}
	if _, err := loader.ParsePolicy(string(c.Policy)); err != nil {
		return err
	}
	if _, err := machine.ParseBadRAMPolicy(string(c.BadRAMPolicy)); err != nil {
		return err
	}
	for _, m := range c.Modules {
		if m.Path == "" {
			return errNoModuleFile(m.Args)
		}
	}
	if c.Timeout < 0 {
		return fmt.Errorf("timeout %v: want 0 (none) or a positive duration", c.Timeout)
	}
	if c.TraceLimit < 0 {
		return fmt.Errorf("trace limit %d: want 0 or more instructions", c.TraceLimit)
	}
	return checkFaulty(*c)
}

// CheckBackend checks a backend name and a QEMU accelerator, alone and
// together ("" is auto for both).
func CheckBackend(vmm VMM, accel string) error {
	if vmm != "" && !slices.Contains(VMMs, vmm) {
		return fmt.Errorf("vmm %q: unknown backend (kvmboot has: %s)", vmm, vmmList())
	}
	switch accel {
	case "", AccelAuto, qemu.AccelTCG, qemu.AccelKVM:
	default:
		return fmt.Errorf("accel %q: want auto, kvm or tcg", accel)
	}
	if vmm == VMMKVM && accel != "" && accel != AccelAuto {
		return fmt.Errorf("accel %q is QEMU's accelerator: use it with vmm qemu or qemu-kernel", accel)
	}
	return nil
}

func vmmList() string {
	names := make([]string, len(VMMs))
	for i, v := range VMMs {
		names[i] = v.String()
	}
	return strings.Join(names, ", ")
}
