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
	"os"
	"syscall"
	"time"

	"kvmboot/boot/testkernel"
	"kvmboot/internal/hugemem"
	"kvmboot/loader"
	"kvmboot/loader/kcache"
	"kvmboot/loader/memmap"
	"kvmboot/machine"
	"kvmboot/machine/kvm"
)

// BuiltinKernelName is how reports name the embedded test kernel.
const BuiltinKernelName = "(built-in test kernel)"

// Plan validates cfg, reads the kernel and modules and plans the boot,
// without running it. For --vmm=qemu-kernel the plan only says what QEMU's
// own loader gets.
func Plan(cfg Config) (*loader.Plan, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cache := cfg.cache()
	defer cache.Wait()
	p, _, err := plan(cfg, cache)
	return p, err
}

// plan is Plan for a validated cfg, through cache (nil: none); read is
// how long reading the files took.
func plan(cfg Config, cache *kcache.Cache) (p *loader.Plan, read time.Duration, err error) {
	start := time.Now()
	data, name := testkernel.ELF, testkernel.FileName
	if cfg.Kernel != "" {
		if data, err = ReadInput(cfg.Kernel); err != nil {
			return nil, 0, err
		}
		name = cfg.Kernel
	}
	mods := make([]loader.Module, 0, len(cfg.Modules))
	for _, m := range cfg.Modules {
		b, err := ReadInput(m.Path)
		if err != nil {
			return nil, 0, err
		}
		mods = append(mods, loader.Module{Path: m.Path, Args: m.Args, Data: b})
	}
	var disk *loader.Module
	if cfg.Disk != "" {
		b, err := ReadInput(cfg.Disk)
		if err != nil {
			return nil, 0, err
		}
		disk = &loader.Module{Path: cfg.Disk, Data: b}
	}
	var initrd *loader.Module
	if cfg.Initrd != "" {
		b, err := ReadInput(cfg.Initrd)
		if err != nil {
			return nil, 0, err
		}
		initrd = &loader.Module{Path: cfg.Initrd, Data: b}
	}
	read = time.Since(start)
	lcfg := loader.Config{
		Path: name, Kernel: data, MemSize: cfg.memSize(), CPUs: cfg.CPUs, BadRAM: cfg.BadRAM, Cmdline: cfg.Cmdline,
		Modules: mods, Initrd: initrd, Disk: disk, Protocol: cfg.Protocol, Policy: cfg.Policy, LoadAddress: cfg.LoadAddress, Region: cfg.Region,
		Verify: !cfg.NoVerify, Cache: cache,
	}
	build := loader.Build
	if cfg.VMM == VMMQEMUKernel {
		build = loader.Reference
	}
	p, err = build(lcfg)
	if err == nil && cfg.Kernel == "" {
		p.Kernel.Path = BuiltinKernelName
	}
	return p, read, err
}

// cache is the decompression cache cfg asks for: nil with NoCache.
func (cfg Config) cache() *kcache.Cache {
	if cfg.NoCache {
		return nil
	}
	return kcache.Default()
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
		return nil, fmt.Errorf("%s: %s is larger than any kernel, module or initrd kvmboot loads (%s)", path, memmap.FormatSize(uint64(st.Size())), memmap.FormatSize(loader.DefaultLimit))
	}
	return hugemem.ReadFile(path)
}

// Run validates cfg, plans the boot and runs it. A non-nil error means
// kvmboot could not boot (bad input, no KVM, no room for the kernel); the
// Result then says so too, with outcome "error" and status 126.
// Everything the guest did is in the Result. cfg.OnPlan sees the plan
// that runs.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return errorResult(cfg, time.Now(), err)
	}
	if cfg.Memtest != "" || len(cfg.Faulty) > 0 {
		return runFaulty(ctx, cfg) // memtest.go: memtest first, and faulty RAM only where it can be injected
	}
	return run(ctx, cfg)
}

// run plans a validated cfg and runs it. A backend that can start its
// machine before the plan exists (QEMU: machine.Starter) starts first, so
// that its start-up overlaps reading and planning the kernel; errors in
// the input still come first.
func run(ctx context.Context, cfg Config) (*Result, error) {
	start := time.Now()
	backend, berr := newBackend(ctx, cfg)
	console := machine.NewConsole(cfg.Console, cfg.Expect)
	opts := machine.Options{
		Timeout: cfg.Timeout, Console: console, BadRAMPolicy: cfg.BadRAMPolicy,
		CountStub: cfg.CountStub, Trace: cfg.Trace, TraceLimit: cfg.TraceLimit, TraceAll: cfg.TraceAll,
		AfterPlace: cfg.AfterPlace, Faulty: cfg.Faulty, FaultSeed: cfg.Seed,
	}
	var (
		started machine.Started
		serr    error
		since   time.Duration // from start to the backend's start
	)
	if st, ok := starterOf(backend); berr == nil && ok {
		if m, acpi, err := loader.BootMap(cfg.memSize(), cfg.BadRAM); err == nil { // else planning fails and says why
			opts.BadRAM = m.Ranges(memmap.KindBad)
			since = time.Since(start)
			started, serr = st.Start(ctx, machine.Shape{MemSize: cfg.memSize(), ACPI: acpi, CPUs: max(cfg.CPUs, 1)}, opts)
		}
	}
	if started != nil {
		defer started.Close()
	}
	cache := cfg.cache()
	defer cache.Wait() // a kernel never seen is stored while it runs
	readStart := time.Now()
	p, read, err := plan(cfg, cache)
	if err != nil {
		return errorResult(cfg, start, err)
	}
	res := newResult(cfg)
	res.fromPlan(p)
	res.Timings.Load = machine.Millis(time.Since(readStart))
	res.Timings.Read = machine.Millis(read)
	if cfg.OnPlan != nil {
		cfg.OnPlan(p)
	}
	fail := func(err error) (*Result, error) {
		res.Outcome, res.ExitCode, res.Reason = machine.Error, machine.StatusError, err.Error()
		res.Timings.Total = machine.Millis(time.Since(start))
		return res, err
	}
	for _, err := range []error{berr, serr} {
		if err != nil {
			return fail(explainNoKVM(err))
		}
	}
	res.VMM = VMM(backend.Name())
	res.Accel, res.VMMWhy = choiceOf(backend)
	var mr *machine.Result
	if started != nil {
		if mr, err = started.Run(ctx, p); mr != nil {
			mr.Backend = backend.Name()
		}
	} else {
		opts.BadRAM = p.Map.Ranges(memmap.KindBad)
		since = time.Since(start)
		mr, err = backend.Run(ctx, p, opts)
	}
	if err != nil {
		return fail(explainNoKVM(err))
	}
	res.fromMachine(mr, cfg.QEMUExitCodes, since)
	res.ConsoleBytes = console.Bytes()
	res.ConsoleTail = console.Tail()
	if err := console.Err(); err != nil {
		res.Reason += fmt.Sprintf(" (console output could not be written: %v)", err)
	}
	res.Timings.Total = machine.Millis(time.Since(start))
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		res.PeakRSSKB = ru.Maxrss
	}
	return res, nil
}

// errorResult is the Result of a run that could not boot for err.
func errorResult(cfg Config, start time.Time, err error) (*Result, error) {
	res := newResult(cfg)
	res.Outcome, res.ExitCode, res.Reason = machine.Error, machine.StatusError, err.Error()
	res.Timings.Total = machine.Millis(time.Since(start))
	return res, err
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
