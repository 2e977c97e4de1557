package loader

import (
	"fmt"

	"kvmboot/realmode"
)

// LoaderName is what kvmboot calls itself in boot information.
const LoaderName = "kvmboot"

// Module is a Multiboot module: a file and its command line.
type Module struct {
	Path string
	Args string // the module's string; Path when empty
	Data []byte
}

// Config is everything Build needs to plan a boot.
type Config struct {
	Path    string // for reports only
	Kernel  []byte // the file as read
	MemSize uint64
	BadRAM  []Range
	Cmdline string
	Modules []Module

	Policy      Policy  // where the kernel goes (default preferred)
	LoadAddress *uint64 // force the kernel here
	Region      *Range  // confine the kernel to this range (kexec style)
	Verify      bool    // the stub checks every piece before the jump
	// Limit caps decompressed sizes (DefaultLimit when 0).
	Limit int64
}

// Low-memory window for boot information: above the stub, below the
// EBDA/VGA hole, where a BIOS-era kernel can reach it.
const (
	lowInfoMin = realmode.StubHigh
	lowInfoMax = 0xA0000
	oneMiB     = 1 << 20
)

// Build reads the kernel, plans where every piece goes and returns the
// plan: relocated image, boot information, stub parameters.
func Build(cfg Config) (*Plan, error) {
	k, err := OpenKernel(cfg.Kernel, cfg.Limit)
	if err != nil {
		return nil, err
	}
	if k.Multiboot == nil {
		return nil, &FormatError{Context: "kernel", Msg: "no Multiboot header in the first 8 KiB (kvmboot boots Multiboot ELF kernels)"}
	}
	m := NewMemoryMap(cfg.MemSize)
	for _, b := range cfg.BadRAM {
		m.Set(b, KindBad)
	}
	plan := &Plan{
		Kernel:  KernelInfo{Path: cfg.Path, Format: k.Format, Protocol: ProtocolMultiboot},
		Cmdline: cfg.Cmdline,
		MemSize: cfg.MemSize,
		Map:     m,
		Verify:  cfg.Verify,
	}
	a := NewAllocator(m)
	if err := a.Claim("entry stub", Range{realmode.StubLow, realmode.StubHigh}); err != nil {
		return nil, err
	}
	plan.add(Placement{What: "stub", Name: "GDT, TSS, stack", Start: realmode.StubLow, Size: realmode.ParamsAddr - realmode.StubLow})

	if err := placeMultibootKernel(plan, a, k, cfg); err != nil {
		return nil, err
	}
	mods := make([]MultibootModule, 0, len(cfg.Modules))
	for _, mod := range cfg.Modules {
		align := uint64(4)
		if k.Multiboot.Flags&MBPageAlignModules != 0 {
			align = 4096
		}
		at, _, err := a.Find(Request{What: "module " + mod.Path, Size: max(uint64(len(mod.Data)), 1), Align: align, Min: oneMiB, Policy: PolicyLowest})
		if err != nil {
			return nil, err
		}
		plan.add(Placement{What: "module", Name: mod.Path, Start: at, Data: mod.Data, Size: uint64(len(mod.Data)), Verify: true})
		args := mod.Args
		if args == "" {
			args = mod.Path
		}
		mods = append(mods, MultibootModule{Start: uint32(at), End: uint32(at) + uint32(len(mod.Data)), String: args})
		plan.ModuleArgs = append(plan.ModuleArgs, args)
	}

	info := &MultibootInfo{Map: m, Cmdline: cfg.Cmdline, LoaderName: LoaderName, Modules: mods}
	at, _, err := a.Find(Request{What: "Multiboot info", Size: info.Size(), Align: 8, Min: lowInfoMin, Max: lowInfoMax, Policy: PolicyLowest})
	if err != nil {
		return nil, err
	}
	plan.add(Placement{What: "boot_info", Name: "Multiboot info, mmap, strings", Start: at, Data: info.Encode(uint32(at)), Size: info.Size(), Verify: true})
	plan.Entry.EAX = MultibootBootMagic
	plan.Entry.EBX = uint32(at)
	return plan, plan.Finish()
}

// placeMultibootKernel chooses the kernel's address, relocates it there and
// adds it to the plan.
func placeMultibootKernel(plan *Plan, a *Allocator, k *Kernel, cfg Config) error {
	var (
		mem      []byte
		fileEnd  uint64
		base     uint64
		entry    uint64
		align    uint64 = 4096
		relocs   *Relocs
		noRelocs string
	)
	if h := k.Multiboot; h.Flags&MBAddressFields != 0 {
		data, load, size, err := h.KludgeImage(k.Raw)
		if err != nil {
			return err
		}
		mem = make([]byte, size)
		fileEnd = uint64(copy(mem, data))
		base, entry = load, uint64(h.EntryAddr)
		noRelocs = "it is loaded through Multiboot address fields, which carry no relocation info"
	} else {
		img := k.ELF
		mem, fileEnd, base, entry = img.Memory(), img.FileEnd(), img.Base, img.Entry
		align = max(align, img.MaxAlign)
		if img.Relocs != nil && img.Relocs.Source != "none" {
			relocs = img.Relocs
		} else {
			noRelocs = "it has no relocation info (link it with --emit-relocs)"
		}
	}
	size := uint64(len(mem))
	plan.LinkAddress = base

	var load uint64
	switch {
	case cfg.LoadAddress != nil:
		load = *cfg.LoadAddress
		if relocs == nil && load != base {
			return &PlaceError{What: "kernel", Msg: fmt.Sprintf("--load-address %#x refused: the kernel can only run at its link address %#x: %s", load, base, noRelocs)}
		}
		if load%align != 0 {
			return &PlaceError{What: "kernel", Msg: fmt.Sprintf("--load-address %#x refused: the kernel needs %s alignment", load, FormatSize(align))}
		}
		if err := a.Claim("kernel", Range{load, load + size}); err != nil {
			return &PlaceError{What: "kernel", Msg: "--load-address refused: " + err.Error()}
		}
		plan.Why = "forced by --load-address"
	case relocs == nil:
		if err := a.Claim("kernel", Range{base, base + size}); err != nil {
			return &PlaceError{What: "kernel", Msg: fmt.Sprintf("the kernel cannot move: %s; at its link address: %v", noRelocs, err)}
		}
		load = base
		plan.Why = "link address (not relocatable: " + noRelocs + ")"
	default:
		var err error
		load, plan.Why, err = a.Find(Request{What: "kernel", Size: size, Align: align, Min: oneMiB, Policy: cfg.Policy, Preferred: base, Region: cfg.Region})
		if err != nil {
			return err
		}
	}
	delta := uint32(load - base)
	if relocs != nil {
		if err := relocs.Apply(mem, base, delta); err != nil {
			return err
		}
		plan.Relocations = len(relocs.Sites)
		plan.SkippedAbsolute = relocs.Absolute
	}
	plan.LoadAddress = load
	plan.Entry.EIP = uint32(entry) + delta
	plan.add(Placement{What: "kernel", Start: load, Data: mem[:fileEnd], Size: size, Verify: true})
	return nil
}

func (p *Plan) add(pl Placement) { p.Placements = append(p.Placements, pl) }

// Finish computes the checksums the stub verifies and adds the parameter
// block that carries them and the entry state.
func (p *Plan) Finish() error {
	p.checks = nil
	for _, pl := range p.Placements {
		if p.Verify && pl.Verify && len(pl.Data) > 0 {
			p.checks = append(p.checks, PieceCheck{What: pl.What, Check: realmode.NewCheck(uint32(pl.Start), pl.Data)})
		}
	}
	params := realmode.Params{EIP: p.Entry.EIP, EAX: p.Entry.EAX, EBX: p.Entry.EBX, ESI: p.Entry.ESI, ESP: p.Entry.ESP, Verify: p.Verify}
	for _, c := range p.checks {
		params.Checks = append(params.Checks, c.Check)
	}
	block, err := params.Encode()
	if err != nil {
		return err
	}
	p.add(Placement{What: "params", Name: "stub parameter block", Start: realmode.ParamsAddr, Data: block, Size: realmode.ParamsSize})
	return nil
}
