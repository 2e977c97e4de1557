package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/pflag"

	"kvmboot/boot"
	"kvmboot/loader/memmap"
	"kvmboot/machine/faults"
	"kvmboot/machine/memtest"
)

// memtestFlags are `kvmboot run`'s fault-injection and memory-test flags.
type memtestFlags struct {
	faulty  []string
	seed    uint64
	memtest string
	ranges  []string
	count   bool
}

func (f *memtestFlags) bind(fs *pflag.FlagSet) {
	fs.StringArrayVar(&f.faulty, "faulty-ram", nil, "RAM that misbehaves without being declared, SPEC[:MODEL]: SPEC as --bad-ram, MODEL stuck0[@BITS] (default, bit 31), stuck1[@BITS], flip[@P], alias[@LINE] or dead (BITS: 0..31 joined by '+'; our KVM machine or QEMU with TCG; repeatable)")
	fs.Uint64Var(&f.seed, "seed", 0, "seed of the memtest patterns and of the flip fault model")
	fs.StringVar(&f.memtest, "memtest", "", "first test the guest's RAM in the guest, quick or thorough (--memtest alone: quick), then boot around what fails")
	fs.Lookup("memtest").NoOptDefVal = memtest.Quick
	fs.StringArrayVar(&f.ranges, "memtest-range", nil, "test only START-END (or START+SIZE) with --memtest (repeatable; default: all usable RAM)")
	fs.BoolVar(&f.count, "memtest-count", false, "with --memtest: single-step a few pages to report guest instructions per page (our KVM machine)")
}

// apply puts the flags into cfg (after planFlags.config, which sets
// MemSize); boot.Run validates them with the rest.
func (f *memtestFlags) apply(cfg *boot.Config) error {
	for _, spec := range f.faulty {
		rs, err := faults.Parse(spec, cfg.MemSize)
		if err != nil {
			return fmt.Errorf("--faulty-ram %q: %w", spec, err)
		}
		cfg.Faulty = append(cfg.Faulty, rs...)
	}
	if f.memtest != "" {
		mode, err := memtest.ParseMode(f.memtest)
		if err != nil {
			return err
		}
		cfg.Memtest = mode
	}
	for _, s := range f.ranges {
		r, err := memmap.ParseRange(s)
		if err != nil {
			return fmt.Errorf("--memtest-range %q: %w", s, err)
		}
		cfg.MemtestRanges = append(cfg.MemtestRanges, r)
	}
	cfg.Seed, cfg.MemtestCount = f.seed, f.count
	return nil
}

// report prints what the memtest found on w: a summary, then the failing
// ranges as a GRUB/memtest86+ badram= line and a Linux memmap= line, both
// of which --bad-ram takes back.
func (f *memtestFlags) report(w io.Writer, res *boot.Result) {
	if res == nil || res.Memtest == nil || !res.Memtest.Complete {
		return // the run's reason says what went wrong
	}
	m := res.Memtest
	var b strings.Builder
	fmt.Fprintf(&b, "kvmboot: memtest (%s, seed %d, %s): %d pages tested in %.2f s", m.Mode, m.Seed, m.Backend, m.PagesTested, m.TimeMS/1000)
	if m.InstructionsPerPage > 0 {
		fmt.Fprintf(&b, ", %.0f guest instructions per page", m.InstructionsPerPage)
	}
	if m.FailingPages == 0 {
		b.WriteString(", no failures\n")
		io.WriteString(w, b.String())
		return
	}
	fmt.Fprintf(&b, ", %d failing in %d range(s):\n", m.FailingPages, len(m.Failing))
	for _, r := range m.Failing {
		fmt.Fprintf(&b, "kvmboot: memtest:   %v  %s\n", memmap.Range{Start: r.Start, End: r.End}, memmap.FormatSize(r.End-r.Start))
	}
	for _, fl := range m.Failures[:min(len(m.Failures), 4)] {
		fmt.Fprintf(&b, "kvmboot: memtest:   %s at %#x: wrote %#08x, read %#08x (%d page(s) in a row)\n", fl.TestName, fl.Addr, fl.Expected, fl.Got, fl.Pages)
	}
	fmt.Fprintf(&b, "kvmboot: memtest: for GRUB (badram) or memtest86+, and for Linux (memmap=, quote the $ in grub.cfg); --bad-ram takes either:\n%s\n%s\n", m.BadRAM, m.Memmap)
	io.WriteString(w, b.String())
}
