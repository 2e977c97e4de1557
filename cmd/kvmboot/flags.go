package main

import (
	"fmt"

	"github.com/spf13/pflag"

	"kvmboot/boot"
	"kvmboot/loader"
	"kvmboot/loader/memmap"
	"kvmboot/machine"
)

// sizeFlag is a size that takes K/M/G suffixes and 0x hex.
type sizeFlag struct {
	v   uint64
	set bool
}

func (s *sizeFlag) String() string {
	if !s.set && s.v == 0 {
		return ""
	}
	return memmap.FormatSize(s.v)
}
func (s *sizeFlag) Type() string { return "size" }
func (s *sizeFlag) Set(v string) error {
	n, err := memmap.ParseSize(v)
	if err != nil {
		return err
	}
	s.v, s.set = n, true
	return nil
}

// rangeFlag is START-END or START+SIZE.
type rangeFlag struct{ r *memmap.Range }

func (f *rangeFlag) String() string {
	if f.r == nil {
		return ""
	}
	return f.r.String()
}
func (f *rangeFlag) Type() string { return "range" }
func (f *rangeFlag) Set(v string) error {
	r, err := memmap.ParseRange(v)
	if err != nil {
		return err
	}
	f.r = &r
	return nil
}

// planFlags are the flags that shape a plan, shared by run and plan.
type planFlags struct {
	mem         sizeFlag
	cpus        int
	cmdline     string
	modules     []string
	initrd      string
	disk        string
	badRAM      []string
	placement   string
	protocol    string
	loadAddress sizeFlag
	region      rangeFlag
	noVerify    bool
	noCache     bool
}

func (f *planFlags) bind(fs *pflag.FlagSet) {
	f.mem = sizeFlag{v: boot.DefaultMemSize}
	fs.Var(&f.mem, "mem", "guest RAM size (K/M/G suffixes or 0x hex)")
	fs.IntVar(&f.cpus, "smp", 1, "number of processors `N` (1 to 64); the firmware's MP and ACPI tables list them")
	fs.StringVar(&f.cmdline, "cmdline", "", "kernel command line `TEXT`")
	fs.StringArrayVar(&f.modules, "module", nil, "Multiboot module `'FILE[ ARGS]'` (repeatable)")
	fs.StringVar(&f.disk, "disk", "", "disk image `FILE` the in-guest BIOS serves as drive 80h (int 13h reads)")
	fs.StringVar(&f.initrd, "initrd", "", "Linux initrd `FILE` (placed in good RAM below the kernel's initrd_addr_max)")
	fs.StringArrayVar(&f.badRAM, "bad-ram", nil, "bad RAM `SPEC`: START-END, START+SIZE, memmap=SIZE$START[,...], badram=ADDR,MASK[,...], cutmem FROM TO (repeatable)")
	fs.StringVar(&f.placement, "placement", "preferred", "kernel placement `POLICY`: preferred, lowest or highest")
	fs.StringVar(&f.protocol, "protocol", "auto", "boot `PROTOCOL`: auto, multiboot, linux32 (kvmboot decompresses and relocates) or linux16 (the kernel's own setup code)")
	fs.Var(&f.loadAddress, "load-address", "force the kernel's load address (refused when unaligned, bad or too small)")
	fs.Var(&f.region, "region", "confine the kernel to START-END and load it at its aligned start (kexec/kdump style)")
	fs.BoolVar(&f.noVerify, "no-verify", false, "skip the in-guest checksum of every placed piece before the jump")
	fs.BoolVar(&f.noCache, "no-cache", false, "decompress the kernel even if an earlier run cached it")
}

// parseBadRAMFlag reads the specs of a repeatable bad-RAM-syntax flag for
// a guest of mem bytes.
func parseBadRAMFlag(flag string, specs []string, mem uint64) ([]memmap.Range, error) {
	var out []memmap.Range
	for _, spec := range specs {
		rs, err := memmap.ParseBadRAM(spec, mem)
		if err != nil {
			return nil, fmt.Errorf("%s %q: %w", flag, spec, err)
		}
		out = append(out, rs...)
	}
	return out, nil
}

// config turns the flags into a boot configuration.
func (f *planFlags) config(kernel string) (boot.Config, error) {
	cfg := boot.Config{Kernel: kernel, MemSize: f.mem.v, CPUs: f.cpus, Cmdline: f.cmdline, Initrd: f.initrd, Disk: f.disk, Region: f.region.r, NoVerify: f.noVerify, NoCache: f.noCache}
	if err := machine.CheckCPUs(f.cpus); err != nil { // Config takes 0 for the default
		return cfg, fmt.Errorf("--smp: %w", err)
	}
	policy, err := loader.ParsePolicy(f.placement)
	if err != nil {
		return cfg, err
	}
	cfg.Policy = policy
	if cfg.Protocol, err = loader.ParseProtocol(f.protocol); err != nil {
		return cfg, err
	}
	if f.loadAddress.set {
		a := f.loadAddress.v
		cfg.LoadAddress = &a
	}
	if cfg.BadRAM, err = parseBadRAMFlag("--bad-ram", f.badRAM, cfg.MemSize); err != nil {
		return cfg, err
	}
	for _, m := range f.modules {
		spec, err := boot.ParseModule(m)
		if err != nil {
			return cfg, fmt.Errorf("--module: %w", err)
		}
		cfg.Modules = append(cfg.Modules, spec)
	}
	return cfg, nil
}
