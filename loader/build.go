package loader

import (
	"fmt"

	"kvmboot/loader/kcache"
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
	Initrd  *Module // Linux initrd; a first module for Multiboot kernels
	// Disk is a disk image the BIOS serves as drive 80h (int 13h).
	Disk *Module

	// Protocol forces a boot protocol; "" picks it from the image.
	Protocol    Protocol
	Policy      Policy  // where the kernel goes (default preferred)
	LoadAddress *uint64 // force the kernel here
	Region      *Range  // confine the kernel to this range (kexec style)
	Verify      bool    // the stub checks every piece before the jump
	// Limit caps decompressed sizes (DefaultLimit when 0).
	Limit int64
	// Cache, when not nil, keeps decompressed kernels between runs.
	Cache *kcache.Cache
}

// Low-memory window for boot information: above the stub, below the
// EBDA/VGA hole, where a BIOS-era kernel can reach it.
const (
	biosDataEnd = 0x500 // the IVT (0x400 bytes) and the BDA (0x100)
	lowInfoMin  = realmode.StubHigh
	lowInfoMax  = 0xA0000
	oneMiB      = 1 << 20
)

// Build reads the kernel, plans where every piece goes and returns the
// plan: relocated image, boot information, stub parameters.
func Build(cfg Config) (*Plan, error) {
	k, err := OpenKernel(cfg.Kernel, cfg.Limit, cfg.Cache)
	if err != nil {
		return nil, err
	}
	// Refuse before laying the image out: a small file can claim gigabytes
	// of bss.
	if need := k.memoryNeed(); need > cfg.MemSize {
		return nil, &PlaceError{What: "kernel", Msg: fmt.Sprintf("no room for kernel: it needs %s of memory from its load address; the guest has %s", FormatSize(need), FormatSize(cfg.MemSize))}
	}
	m := NewBadRAMMap(cfg.MemSize, cfg.BadRAM)
	MarkBIOSAreas(m)
	acpi, err := ReserveACPI(m)
	if err != nil {
		return nil, err
	}
	plan := &Plan{
		Kernel:  KernelInfo{Path: cfg.Path, Format: k.Format},
		Cmdline: cfg.Cmdline,
		MemSize: cfg.MemSize,
		Map:     m,
		Verify:  cfg.Verify,
		ACPI:    acpi,
	}
	a := NewAllocator(m)
	if err := a.Claim("entry stub", Range{realmode.StubLow, realmode.StubHigh}); err != nil {
		return nil, err
	}
	plan.add(Placement{What: "stub", Name: "GDT, TSS, stack", Start: realmode.StubLow, Size: realmode.ParamsAddr - realmode.StubLow})
	// What the in-guest BIOS writes at reset: vectors and BDA, its tables,
	// the EBDA (reserved in the map, so check it is not bad instead).
	if err := a.Claim("interrupt vectors and BIOS data area", Range{0, biosDataEnd}); err != nil {
		return nil, err
	}
	if err := a.Claim("BIOS tables", BIOSTablesRange); err != nil {
		return nil, err
	}
	if !m.IsAll(EBDARange, KindReserved) {
		return nil, &PlaceError{What: "EBDA", Msg: fmt.Sprintf("bad RAM covers the extended BIOS data area %v that the in-guest BIOS writes at reset", EBDARange)}
	}
	plan.add(Placement{What: "bios", Name: "interrupt vectors, BIOS data area", Start: 0, Size: biosDataEnd})
	// The backend fills the page with the tables of its machine (ACPITables).
	plan.add(Placement{What: "acpi", Name: "ACPI tables", Start: acpi.Start, Size: acpi.Size()})
	var disk *Disk
	if cfg.Disk != nil {
		if disk, err = placeDisk(plan, a, cfg.Disk); err != nil {
			return nil, err
		}
	}
	tables, err := BIOSTables(m, cfg.MemSize, disk)
	if err != nil {
		return nil, err
	}
	plan.add(BIOSTablesPlacement(tables))

	switch {
	case k.BzImage != nil && k.BzImage.Setup == nil && cfg.Protocol == ProtocolLinux16:
		err = &FormatError{Context: "kernel", Msg: "this image (kvmboot mkelf) carries Linux's setup header but not its real-mode setup code: it boots with --protocol linux32"}
	case k.BzImage != nil && cfg.Protocol == ProtocolLinux16:
		plan.Kernel.Protocol = ProtocolLinux16
		err = buildLinux16(plan, a, k, cfg)
	case k.BzImage != nil && (cfg.Protocol == "" || cfg.Protocol == ProtocolLinux32):
		plan.Kernel.Protocol = ProtocolLinux32
		err = buildLinux32(plan, a, k, cfg)
	case k.BzImage != nil:
		err = &FormatError{Context: "kernel", Msg: fmt.Sprintf("a Linux bzImage boots with --protocol linux32 or linux16, not %s", cfg.Protocol)}
	case cfg.Protocol != "" && cfg.Protocol != ProtocolMultiboot:
		err = &FormatError{Context: "kernel", Msg: fmt.Sprintf("--protocol %s needs a Linux bzImage; this is a %s", cfg.Protocol, k.Format)}
	case k.Multiboot != nil:
		plan.Kernel.Protocol = ProtocolMultiboot
		err = buildMultiboot(plan, a, k, cfg)
	default:
		err = &FormatError{Context: "kernel", Msg: "no Multiboot header in the first 8 KiB and not a Linux bzImage: kvmboot does not know how to enter it"}
	}
	if err != nil {
		return nil, err
	}
	return plan, plan.Finish()
}

// buildMultiboot places a Multiboot kernel, its modules and the info.
func buildMultiboot(plan *Plan, a *Allocator, k *Kernel, cfg Config) error {
	img, err := multibootImage(k)
	if err != nil {
		return err
	}
	if err := placeKernel(plan, a, img, cfg); err != nil {
		return err
	}
	if k.RealMode != nil {
		if err := placeRealMode(plan, a, k.RealMode, img); err != nil {
			return err
		}
	}
	modules := cfg.Modules
	if cfg.Initrd != nil {
		// As QEMU does: an initrd given to a Multiboot kernel is a module.
		modules = append([]Module{*cfg.Initrd}, modules...)
	}
	mods := make([]MultibootModule, 0, len(modules))
	for _, mod := range modules {
		align := uint64(4)
		if k.Multiboot.Flags&MBPageAlignModules != 0 {
			align = 4096
		}
		at, _, err := a.Find(Request{What: "module " + mod.Path, Size: max(uint64(len(mod.Data)), 1), Align: align, Min: oneMiB, Policy: PolicyLowest})
		if err != nil {
			return err
		}
		plan.add(Placement{What: "module", Name: mod.Path, Start: at, Data: mod.Data, Size: uint64(len(mod.Data)), Verify: true})
		args := mod.Args
		if args == "" {
			args = mod.Path
		}
		mods = append(mods, MultibootModule{Start: uint32(at), End: uint32(at) + uint32(len(mod.Data)), String: args})
		plan.ModuleArgs = append(plan.ModuleArgs, args)
	}

	info := &MultibootInfo{Map: plan.Map, Cmdline: cfg.Cmdline, LoaderName: LoaderName, Modules: mods}
	at, _, err := a.Find(Request{What: "Multiboot info", Size: info.Size(), Align: 8, Min: lowInfoMin, Max: lowInfoMax, Policy: PolicyLowest})
	if err != nil {
		return err
	}
	plan.add(Placement{What: "boot_info", Name: "Multiboot info, mmap, strings", Start: at, Data: info.Encode(uint32(at)), Size: info.Size(), Verify: true})
	plan.Entry.EAX = MultibootBootMagic
	plan.Entry.EBX = uint32(at)
	return nil
}

// kernelImage is a kernel as it must sit in memory, before placement.
type kernelImage struct {
	mem      []byte // from base: file bytes, then zeros (bss)
	fileEnd  uint64 // bytes of mem that come from the file
	size     uint64 // memory the kernel needs from its load address, >= len(mem)
	base     uint64 // link address
	entry    uint64 // physical entry at the link address
	align    uint64
	max      uint64 // the kernel must end at or below this (0: 4 GiB)
	relocs   *Relocs
	noRelocs string // why relocs is nil
}

// multibootImage lays out a Multiboot kernel from its ELF headers or, with
// flag bit 16, from the header's address fields.
func multibootImage(k *Kernel) (*kernelImage, error) {
	if h := k.Multiboot; h.Flags&MBAddressFields != 0 {
		data, load, size, err := h.KludgeImage(k.Raw)
		if err != nil {
			return nil, err
		}
		mem := make([]byte, size)
		return &kernelImage{mem: mem, fileEnd: uint64(copy(mem, data)), size: size, base: load, entry: uint64(h.EntryAddr), align: 4096,
			noRelocs: "it is loaded through Multiboot address fields, which carry no relocation info"}, nil
	}
	img := k.ELF
	ki := &kernelImage{mem: img.Memory(), fileEnd: img.FileEnd(), size: img.End - img.Base, base: img.Base, entry: img.Entry, align: max(4096, img.MaxAlign)}
	if img.Relocs.found() {
		ki.relocs = img.Relocs
	} else {
		ki.noRelocs = "it has no relocation info (link it with --emit-relocs)"
	}
	k.constrainImage(ki)
	return ki, nil
}

// placeKernel chooses the kernel's address (forced, fixed, or found by
// policy), relocates it there and adds it to the plan.
func placeKernel(plan *Plan, a *Allocator, ki *kernelImage, cfg Config) error {
	plan.LinkAddress = ki.base
	var load uint64
	switch {
	case cfg.LoadAddress != nil:
		load = *cfg.LoadAddress
		if ki.relocs == nil && load != ki.base {
			return &PlaceError{What: "kernel", Msg: fmt.Sprintf("--load-address %#x refused: the kernel can only run at its link address %#x: %s", load, ki.base, ki.noRelocs)}
		}
		if load%ki.align != 0 {
			return &PlaceError{What: "kernel", Msg: fmt.Sprintf("--load-address %#x refused: the kernel needs %s alignment", load, FormatSize(ki.align))}
		}
		if ki.max != 0 && load+ki.size > ki.max {
			return &PlaceError{What: "kernel", Msg: fmt.Sprintf("--load-address %#x refused: the kernel (%s) must end below %#x", load, FormatSize(ki.size), ki.max)}
		}
		if err := a.Claim("kernel", Range{load, load + ki.size}); err != nil {
			return &PlaceError{What: "kernel", Msg: "--load-address refused: " + err.Error()}
		}
		plan.Why = "forced by --load-address"
	case ki.relocs == nil:
		if err := a.Claim("kernel", Range{ki.base, ki.base + ki.size}); err != nil {
			return &PlaceError{What: "kernel", Msg: fmt.Sprintf("the kernel cannot move: %s; at its link address: %v", ki.noRelocs, err)}
		}
		load = ki.base
		plan.Why = "link address (not relocatable: " + ki.noRelocs + ")"
	default:
		var err error
		load, plan.Why, err = a.Find(Request{What: "kernel", Size: ki.size, Align: ki.align, Min: oneMiB, Max: ki.max, Policy: cfg.Policy, Preferred: ki.base, Region: cfg.Region})
		if err != nil {
			return err
		}
	}
	delta := uint32(load - ki.base)
	if ki.relocs != nil {
		if err := ki.relocs.Apply(ki.mem, ki.base, delta); err != nil {
			return err
		}
		plan.Relocations = len(ki.relocs.Sites)
		plan.SkippedAbsolute = ki.relocs.Absolute
	}
	plan.LoadAddress = load
	plan.Entry.EIP = uint32(ki.entry) + delta
	plan.add(Placement{What: "kernel", Start: load, Data: ki.mem[:ki.fileEnd], Size: ki.size, Verify: true})
	return nil
}

func (p *Plan) add(pl Placement) { p.Placements = append(p.Placements, pl) }

// placeDisk puts a disk image in the highest good RAM below 4 GiB, whole
// sectors, for the in-guest BIOS to copy from. It is not checksummed:
// the BIOS reads it on demand, and a CRC of a large image costs seconds
// on an emulating KVM.
func placeDisk(plan *Plan, a *Allocator, d *Module) (*Disk, error) {
	if len(d.Data) == 0 {
		return nil, &PlaceError{What: "disk", Msg: fmt.Sprintf("disk image %s is empty", d.Path)}
	}
	disk := &Disk{Size: uint64(len(d.Data))}
	at, _, err := a.Find(Request{What: "disk image", Size: disk.Sectors() * 512, Align: 4096, Min: oneMiB, Policy: PolicyHighest})
	if err != nil {
		return nil, err
	}
	disk.Addr = at
	plan.add(Placement{What: "disk", Name: d.Path, Start: at, Data: d.Data, Size: disk.Span().Size()})
	return disk, nil
}

// Finish computes the checksums the stub verifies and adds the parameter
// block that carries them and the entry state.
func (p *Plan) Finish() error {
	p.checks = nil
	for _, pl := range p.Placements {
		if p.Verify && pl.Verify && len(pl.Data) > 0 {
			p.checks = append(p.checks, PieceCheck{What: pl.What, Check: realmode.NewCheck(uint32(pl.Start), pl.Data)})
		}
	}
	e := p.Entry
	params := realmode.Params{EIP: e.EIP, EAX: e.EAX, EBX: e.EBX, ESI: e.ESI, ESP: e.ESP, Verify: p.Verify,
		RMCall: e.RealModeCall, RMEntry: e.RealModeEntry, RMSeg: e.RealModeSeg, RMSP: e.RealModeSP}
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
