package boot

import (
	"context"
	"errors"
	"fmt"
	"time"

	"kvmboot/loader/memmap"
	"kvmboot/machine"
	"kvmboot/machine/faults"
	"kvmboot/machine/memtest"
	"kvmboot/machine/qemu"
	"kvmboot/realmode"
)

// The --memtest flow and --faulty-ram (Config.Memtest, Config.Faulty):
//
//  1. faulty RAM is checked (RAM only, not where the entry stub or the
//     memtest guest lives, one model per byte) and needs a backend that
//     sees every access to it: our KVM machine (which traps them) or QEMU
//     with TCG (kvmboot's plugin); the reference run and QEMU's KVM
//     accelerator are refused;
//  2. with --memtest, a first boot of the same VM configuration (backend,
//     memory size, declared bad RAM, faulty RAM, seed) runs the memtest
//     guest over the RAM the map calls usable (or --memtest-range), and its
//     COM2 report is coalesced into failing ranges;
//  3. the normal boot is planned and run with those ranges added to the
//     declared bad RAM: the guest sees them as E820 type 5 / Multiboot
//     type 5, and the kernel is placed around them.
//
// Result.Memtest carries what the test found, with the failing ranges as
// GRUB badram= and Linux memmap= strings that --bad-ram reads back.

// runFaulty is Run for a validated config with a memtest or faulty RAM.
func runFaulty(ctx context.Context, cfg Config) (*Result, error) {
	start := time.Now()
	var rep *memtest.Report
	if cfg.Memtest != "" {
		var res *Result
		var err error
		rep, res, err = runMemtest(ctx, cfg)
		if res != nil {
			res.Timings.Total = machine.Millis(time.Since(start))
			return res, err
		}
		cfg.BadRAM = append(append([]memmap.Range(nil), cfg.BadRAM...), rep.FailingRanges()...)
		cfg.Memtest = ""
	}
	res, err := run(ctx, cfg)
	res.Memtest = rep
	if rep != nil {
		res.Timings.Total += rep.TimeMS
	}
	return res, err
}

// checkFaulty refuses faulty RAM that no boot could run with, or that the
// chosen backend cannot inject, and memtest settings that make no sense.
func checkFaulty(cfg Config) error {
	mem := cfg.memSize()
	if err := faults.Check(cfg.Faulty); err != nil {
		return fmt.Errorf("--faulty-ram: %w", err)
	}
	// Our KVM machine traps every access to faulty RAM and kvmboot's TCG
	// plugin sees them under QEMU (choose never picks QEMU's KVM
	// accelerator for faulty RAM unless asked): the other two cannot.
	if len(cfg.Faulty) > 0 && (cfg.VMM == VMMQEMUKernel || cfg.Accel == qemu.AccelKVM) {
		backend := "--accel=kvm"
		if cfg.VMM == VMMQEMUKernel {
			backend = "--vmm=qemu-kernel (QEMU's own loader and SeaBIOS)"
		}
		return fmt.Errorf("--faulty-ram needs our KVM machine (--vmm=kvm) or QEMU with TCG (--vmm=qemu --accel=tcg), which see every access to faulty RAM; %s cannot inject faults", backend)
	}
	hole := memmap.Range{Start: memmap.LowRAMEnd, End: memmap.HighRAMStart}
	stub := memmap.Range{Start: realmode.StubLow, End: realmode.StubHigh}
	guest := memmap.Range{Start: realmode.MemtestAddr, End: realmode.MemtestEnd}
	for _, f := range cfg.Faulty {
		switch {
		case f.End > mem:
			return fmt.Errorf("--faulty-ram %s: beyond the guest's %s of RAM", f, memmap.FormatSize(mem))
		case f.Overlaps(hole):
			return fmt.Errorf("--faulty-ram %s: overlaps the legacy hole %v (VGA, ROMs, firmware), which is not RAM", f, hole)
		case f.Overlaps(stub):
			return fmt.Errorf("--faulty-ram %s: overlaps the entry stub's GDT, stack and parameter block %v, which every boot needs", f, stub)
		case cfg.Memtest != "" && f.Overlaps(guest):
			return fmt.Errorf("--faulty-ram %s: overlaps the memtest guest %v (KVM cannot run code from trapped memory)", f, guest)
		}
		if f.Model.Kind != faults.Alias {
			continue
		}
		// An alias's writes also land at addr ^ 1<<line: not where the
		// stub or the memtest guest lives either.
		keep := []memmap.Range{stub}
		if cfg.Memtest != "" {
			keep = append(keep, guest)
		}
		for _, k := range keep {
			for _, img := range xorImage(k, 1<<f.Model.Line) {
				if img.Overlaps(f.Range) {
					return fmt.Errorf("--faulty-ram %s: its aliased writes would land in %v, where kvmboot's own code and data live", f, k)
				}
			}
		}
	}
	if cfg.Memtest == "" {
		if cfg.MemtestRanges != nil || cfg.MemtestCount {
			return errors.New("--memtest-range and --memtest-count need --memtest")
		}
		return nil
	}
	if _, err := memtest.ParseMode(cfg.Memtest); err != nil {
		return err
	}
	_, err := memtest.TestRanges(memtestConfig(cfg))
	return err
}

func memtestConfig(cfg Config) memtest.Config {
	return memtest.Config{Mode: cfg.Memtest, Seed: cfg.Seed, MemSize: cfg.memSize(), BadRAM: cfg.BadRAM, Ranges: cfg.MemtestRanges, Verify: !cfg.NoVerify}
}

// runMemtest runs the memtest boot. A non-nil Result means the flow ends
// there: the memtest could not run (with an error) or the guest did not
// finish (timeout, crash: no error, as for a kernel); otherwise the report
// is complete.
func runMemtest(ctx context.Context, cfg Config) (*memtest.Report, *Result, error) {
	res := newResult(cfg)
	fail := func(err error) (*memtest.Report, *Result, error) {
		err = explainNoKVM(err)
		res.Outcome, res.ExitCode, res.Reason = machine.Error, machine.StatusError, err.Error()
		return nil, res, err
	}
	backend, err := newBackend(ctx, cfg)
	if err != nil {
		return fail(err)
	}
	res.VMM = VMM(backend.Name())
	res.Accel, res.VMMWhy = choiceOf(backend)
	mcfg := memtestConfig(cfg)
	opts := machine.Options{
		Timeout: cfg.Timeout, Console: machine.NewConsole(nil, nil), BadRAMPolicy: cfg.BadRAMPolicy,
		Faulty: cfg.Faulty, FaultSeed: cfg.Seed,
	}
	rep, _, err := memtest.Run(ctx, backend, mcfg, opts)
	if err != nil {
		var me *memtest.Error
		if errors.As(err, &me) && me.Result != nil && me.Result.Outcome != machine.Pass && !me.Result.GuestRan {
			// The guest timed out, crashed or was interrupted: that is
			// the run's outcome and status, as for a kernel (no error:
			// kvmboot did boot).
			res.fromMachine(me.Result, cfg.QEMUExitCodes, 0)
			res.Reason = "memtest: " + me.Result.Reason
			res.Memtest = rep
			return rep, res, nil
		}
		r, res, err := fail(err)
		res.Memtest = rep
		return r, res, err
	}
	if cfg.MemtestCount {
		n, err := memtest.CountInstructions(ctx, backend, mcfg, opts)
		if err != nil {
			return fail(fmt.Errorf("--memtest-count: %w", err))
		}
		rep.InstructionsPerPage = n
	}
	return rep, nil, nil
}

// xorImage returns the addresses a^bit for a in r (bit a power of two), as
// ranges: r split where the bit changes, each piece moved by bit.
func xorImage(r memmap.Range, bit uint64) []memmap.Range {
	var out []memmap.Range
	for a := r.Start; a < r.End; {
		end := min(r.End, (a|(bit-1))+1) // the end of a's run of equal bit
		if end <= a {                    // wrapped at 2^64
			end = r.End
		}
		out = append(out, memmap.Range{Start: a ^ bit, End: (end - 1) ^ bit + 1})
		a = end
	}
	return out
}
