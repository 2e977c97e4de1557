// Package boot is kvmboot's Go API: plan a boot and run it on a backend,
// the same code path as the kvmboot command.
//
//	res, err := boot.Run(ctx, boot.Config{Kernel: "bzImage", MemSize: 256 << 20,
//		Cmdline: "console=ttyS0", Timeout: 30 * time.Second})
//	if err != nil { ... }        // could not boot: res.Outcome == "error", status 126
//	if res.Outcome != "pass" { t.Fatalf("%s: %s", res.Outcome, res.Reason) }
package boot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"syscall"
	"time"

	"kvmboot/boot/testkernel"
	"kvmboot/loader"
	"kvmboot/loader/kcache"
	"kvmboot/machine"
	"kvmboot/machine/faults"
	"kvmboot/machine/kvm"
)

// Config describes one boot.
type Config struct {
	// Kernel is the kernel file; empty boots the built-in test kernel.
	Kernel  string
	MemSize uint64 // default 256 MiB
	Cmdline string
	Modules []ModuleSpec
	// Initrd is a Linux initrd (for a Multiboot kernel: its first module).
	Initrd string
	// Disk is an image the in-guest BIOS serves as drive 80h (int 13h).
	Disk   string
	BadRAM []loader.Range

	Protocol    loader.Protocol // "" = from the image
	Policy      loader.Policy
	LoadAddress *uint64
	Region      *loader.Range
	NoVerify    bool
	// NoCache decompresses the kernel even when an earlier run cached it.
	NoCache bool

	VMM          string // "auto", "kvm", "qemu", "qemu-kernel"
	Accel        string // QEMU accelerator: "auto", "kvm", "tcg"
	Machine      string // "pc" (default: ACPI tables; under QEMU an HPET) or "minimal" (no ACPI; QEMU's ISA PC)
	Timeout      time.Duration
	Expect       *regexp.Regexp
	BadRAMPolicy machine.BadRAMPolicy
	// QEMUExitCodes maps a guest's debug-exit value v to (v<<1)|1.
	QEMUExitCodes bool

	// Console receives the guest's console output as it comes (may be nil).
	Console io.Writer
	// Log receives notes about the run (unhandled ports and the like).
	Log func(string)

	CountStub  bool
	Trace      func(string)
	TraceLimit int
	TraceAll   bool
	// AfterPlace is a test hook run with guest RAM after the plan is placed.
	AfterPlace func(ram []byte)

	Faulty        []faults.Range // --faulty-ram: RAM that misbehaves undeclared (KVM backend only); memtest.go
	Seed          uint64         // --seed: memtest patterns and the flip fault model
	Memtest       string         // --memtest: "" (none), "quick" or "thorough": test RAM in the guest first; memtest.go
	MemtestRanges []loader.Range // --memtest-range: what the memtest covers (nil: all usable RAM)
	MemtestCount  bool           // --memtest-count: single-step a few pages for instructions per page (KVM)
}

// ModuleSpec is a Multiboot module: a file and its string.
type ModuleSpec struct {
	Path string
	Args string
}

// DefaultMemSize is the guest RAM when Config.MemSize is 0.
const DefaultMemSize = 256 << 20

// BuiltinKernelName is how reports name the embedded test kernel.
const BuiltinKernelName = "(built-in test kernel)"

// Plan reads the kernel and modules and plans the boot, without running it.
func Plan(cfg Config) (*loader.Plan, error) {
	data, name := testkernel.ELF, BuiltinKernelName
	if cfg.Kernel != "" {
		var err error
		if data, err = ReadInput(cfg.Kernel); err != nil {
			return nil, err
		}
		name = cfg.Kernel
	}
	mods := make([]loader.Module, 0, len(cfg.Modules))
	for _, m := range cfg.Modules {
		b, err := ReadInput(m.Path)
		if err != nil {
			return nil, err
		}
		mods = append(mods, loader.Module{Path: m.Path, Args: m.Args, Data: b})
	}
	var disk *loader.Module
	if cfg.Disk != "" {
		b, err := ReadInput(cfg.Disk)
		if err != nil {
			return nil, err
		}
		disk = &loader.Module{Path: cfg.Disk, Data: b}
	}
	var initrd *loader.Module
	if cfg.Initrd != "" {
		b, err := ReadInput(cfg.Initrd)
		if err != nil {
			return nil, err
		}
		initrd = &loader.Module{Path: cfg.Initrd, Data: b}
	}
	var cache *kcache.Cache
	if !cfg.NoCache {
		cache = kcache.Default()
	}
	mem := cfg.MemSize
	if mem == 0 {
		mem = DefaultMemSize
	}
	return loader.Build(loader.Config{
		Path: name, Kernel: data, MemSize: mem, BadRAM: cfg.BadRAM, Cmdline: cfg.Cmdline,
		Modules: mods, Initrd: initrd, Disk: disk, Protocol: cfg.Protocol, Policy: cfg.Policy, LoadAddress: cfg.LoadAddress, Region: cfg.Region,
		Verify: !cfg.NoVerify, Cache: cache,
	})
}

// ReadInput reads a kernel, module or initrd the user named, refusing in
// one line what cannot be one (not a regular file, larger than the cap).
func ReadInput(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	if st.Size() > loader.DefaultLimit {
		return nil, fmt.Errorf("%s: %s is larger than any kernel, module or initrd kvmboot loads (%s)", path, loader.FormatSize(uint64(st.Size())), loader.FormatSize(loader.DefaultLimit))
	}
	return os.ReadFile(path)
}

// Run plans the boot and runs it. A non-nil error means kvmboot could not
// boot (bad input, no KVM, no room for the kernel); the Result then says
// so too, with outcome "error" and status 126. Everything the guest did is
// in the Result.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Memtest != "" || len(cfg.Faulty) > 0 {
		return runFaulty(ctx, cfg) // memtest.go: memtest first, and faulty RAM only where it can be injected
	}
	return run(ctx, cfg)
}

func run(ctx context.Context, cfg Config) (*Result, error) {
	start := time.Now()
	res := newResult(cfg)
	fail := func(err error) (*Result, error) {
		res.Outcome, res.ExitCode, res.Reason = machine.Error, machine.StatusError, err.Error()
		res.Timings.Total = ms(time.Since(start))
		return res, err
	}
	plan, err := Plan(cfg)
	if err != nil {
		return fail(err)
	}
	res.fromPlan(plan)
	res.Timings.Load = ms(time.Since(start))

	backend, err := Backend(ctx, cfg)
	if err != nil {
		return fail(err)
	}
	res.VMM = backend.Name()
	res.Accel, res.VMMWhy = ChoiceOf(backend)
	console := machine.NewConsole(cfg.Console, cfg.Expect)
	mr, err := backend.Run(ctx, plan, machine.Options{
		Timeout: cfg.Timeout, Console: console, BadRAMPolicy: cfg.BadRAMPolicy, BadRAM: plan.Map.Ranges(loader.KindBad),
		CountStub: cfg.CountStub, Trace: cfg.Trace, TraceLimit: cfg.TraceLimit, TraceAll: cfg.TraceAll,
		AfterPlace: cfg.AfterPlace, Faulty: cfg.Faulty, FaultSeed: cfg.Seed,
	})
	if err != nil {
		return fail(explainNoKVM(err))
	}
	res.fromMachine(mr, cfg.QEMUExitCodes)
	res.ConsoleBytes = console.Bytes()
	res.ConsoleTail = console.Tail()
	if err := console.Err(); err != nil {
		res.Reason += fmt.Sprintf(" (console output could not be written: %v)", err)
	}
	res.Timings.Total = ms(time.Since(start))
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		res.PeakRSSKB = ru.Maxrss
	}
	return res, nil
}

// newResult is the Result of a run of cfg before anything is known.
func newResult(cfg Config) *Result {
	res := &Result{Kernel: loader.KernelInfo{Path: cfg.Kernel}}
	if cfg.Kernel == "" {
		res.Kernel.Path = BuiltinKernelName
	}
	return res
}

// explainNoKVM says what a missing /dev/kvm needs.
func explainNoKVM(err error) error {
	if errors.Is(err, kvm.ErrNoKVM) {
		return fmt.Errorf("%w (kvmboot needs read/write access to %s)", err, kvm.DevicePath)
	}
	return err
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
