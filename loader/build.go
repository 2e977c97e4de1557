package loader

import (
	"bytes"
	"fmt"
	"strings"
	"time"

	"kvmboot/loader/kcache"
	"kvmboot/loader/memmap"
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

// String is the module's string in the Multiboot information.
func (m Module) String() string {
	if m.Args == "" {
		return m.Path
	}
	return m.Args
}

// Config is everything Build needs to plan a boot.
type Config struct {
	// Path names the kernel in reports and starts a Multiboot kernel's
	// command line (argv[0]).
	Path    string
	Kernel  []byte // the file as read
	MemSize uint64
	// CPUs is the number of processors the machine has (0 is 1): the
	// backend's firmware tables list them.
	CPUs    int
	BadRAM  []memmap.Range
	Cmdline string
	Modules []Module
	Initrd  *Module // Linux initrd; a first module for Multiboot kernels
	// Disk is a disk image the BIOS serves as drive 80h (int 13h).
	Disk *Module

	// Protocol forces a boot protocol; "" picks it from the image.
	Protocol    Protocol
	Policy      Policy        // where the kernel goes (default preferred)
	LoadAddress *uint64       // force the kernel here
	Region      *memmap.Range // confine the kernel to this range (kexec style)
	Verify      bool          // the stub checks every piece before the jump
	// Limit caps decompressed sizes (DefaultLimit when 0).
	Limit int64
	// Cache, when not nil, keeps decompressed kernels between runs. A
	// kernel it misses is stored in the background: the caller waits for
	// that (Cache.Wait) before it exits.
	Cache *kcache.Cache
}

// Low-memory window for boot information: above the stub, below the
// EBDA/VGA hole, where a BIOS-era kernel can reach it.
const (
	biosDataEnd = 0x500 // the IVT (0x400 bytes) and the BDA (0x100)
	lowInfoMin  = realmode.StubHigh
	lowInfoMax  = memmap.LowRAMEnd
	oneMiB      = 1 << 20
)

// Build reads the kernel, plans where every piece goes and returns the
// plan: relocated image, boot information, stub parameters.
func Build(cfg Config) (*Plan, error) {
	start := time.Now()
	k, err := openKernel(cfg.Kernel, cfg.Limit, cfg.Cache, cfg.Protocol != ProtocolLinux16)
	if err != nil {
		return nil, err
	}
	p, err := buildOpened(k, cfg)
	if p != nil {
		p.Stages.Cache, p.Stages.Decompress = k.Stages.Cache, k.Stages.Decompress
		p.Stages.Build = time.Since(start)
	}
	return p, err
}

// buildOpened is Build for a kernel already opened (cfg.Kernel is not read).
func buildOpened(k *Kernel, cfg Config) (*Plan, error) {
	proto, err := k.protocol(cfg.Protocol)
	if err != nil {
		return nil, err
	}
	// Refuse before laying the image out: a small file can claim gigabytes
	// of bss.
	if need := k.memoryNeed(); need > cfg.MemSize {
		return nil, &PlaceError{What: "kernel", Msg: fmt.Sprintf("no room for kernel: it needs %s of memory from its load address; the guest has %s", memmap.FormatSize(need), memmap.FormatSize(cfg.MemSize)), Class: ErrNoRoom}
	}
	m, acpi, err := BootMap(cfg.MemSize, cfg.BadRAM)
	if err != nil {
		return nil, err
	}
	plan := &Plan{
		Kernel:  KernelInfo{Path: cfg.Path, Format: k.Format, Protocol: proto},
		Cmdline: cfg.Cmdline,
		MemSize: cfg.MemSize,
		CPUs:    max(cfg.CPUs, 1),
		Map:     m,
		Verify:  cfg.Verify,
		ACPI:    acpi,
	}
	a, err := firmwareAllocator(m)
	if err != nil {
		return nil, err
	}
	plan.add(Placement{What: "stub", Name: "GDT, TSS, stack", Start: realmode.StubLow, Size: realmode.ParamsAddr - realmode.StubLow})
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

	switch proto {
	case ProtocolLinux16:
		err = buildLinux16(plan, a, k, cfg)
	case ProtocolLinux32:
		err = buildLinux32(plan, a, k, cfg)
	default:
		err = buildMultiboot(plan, a, k, cfg)
	}
	if err != nil {
		return nil, err
	}
	err = plan.Finish()
	return plan, err
}

// BootMap is the memory map every boot starts from: RAM of mem bytes,
// bad the given ranges, the BIOS areas reserved, and the page the backend
// fills with ACPI tables (returned) reserved at the top of good RAM. It
// needs no kernel: a backend can start its machine from it (the map's bad
// ranges, the ACPI page) while the kernel is read and placed.
func BootMap(mem uint64, bad []memmap.Range) (*memmap.Map, memmap.Range, error) {
	m := memmap.NewWithBadRAM(mem, FirmwareHigh, bad)
	MarkBIOSAreas(m)
	acpi, err := ReserveACPI(m)
	return m, acpi, err
}

// firmwareAllocator is an allocator over m holding what every boot claims
// before its kernel: the entry stub's GDT, TSS, stack and parameter block,
// and what the in-guest BIOS writes at reset (vectors and BDA, its tables,
// and the EBDA, reserved in the map, so checked not to be bad instead).
// Build and Inspect start from it.
func firmwareAllocator(m *memmap.Map) (*Allocator, error) {
	a := NewAllocator(m)
	if err := a.Claim("entry stub", memmap.Range{Start: realmode.StubLow, End: realmode.StubHigh}); err != nil {
		return nil, err
	}
	if err := a.Claim("interrupt vectors and BIOS data area", memmap.Range{Start: 0, End: biosDataEnd}); err != nil {
		return nil, err
	}
	if err := a.Claim("BIOS tables", BIOSTablesRange); err != nil {
		return nil, err
	}
	if !m.IsAll(EBDARange, memmap.KindReserved) {
		return nil, &PlaceError{What: "EBDA", Msg: fmt.Sprintf("bad RAM covers the extended BIOS data area %v that the in-guest BIOS writes at reset", EBDARange), Class: ErrOverlapsBadRAM}
	}
	return a, nil
}

// protocol is the boot protocol the kernel gets when asked is requested
// ("" for the image's own): a Linux image boots through the compressed-ELF
// path (linux32) unless asked for its own setup code (linux16) or it has
// no compressed ELF for kvmboot to unpack; anything else is Multiboot.
func (k *Kernel) protocol(asked Protocol) (Protocol, error) {
	bz := k.BzImage
	switch {
	case bz != nil && asked == ProtocolLinux16 && bz.Setup == nil:
		return "", &FormatError{Context: "kernel", Msg: "this image (kvmboot mkelf) carries Linux's setup header but not its real-mode setup code: it boots with --protocol linux32"}
	case bz != nil && (asked == ProtocolLinux16 || asked == "" && k.ELF == nil):
		return ProtocolLinux16, nil
	case bz != nil && asked == ProtocolLinux32 && k.ELF == nil:
		return "", &FormatError{Context: "bzImage", Msg: fmt.Sprintf("%s: its protected-mode part is code that only its own setup code starts: it boots with --protocol linux16 (its default)", bz.rawWhy())}
	case bz != nil && (asked == "" || asked == ProtocolLinux32):
		return ProtocolLinux32, nil
	case bz != nil:
		return "", &FormatError{Context: "kernel", Msg: fmt.Sprintf("a Linux bzImage boots with --protocol linux32 or linux16, not %s", asked)}
	case asked != "" && asked != ProtocolMultiboot:
		return "", &FormatError{Context: "kernel", Msg: fmt.Sprintf("--protocol %s needs a Linux bzImage; this is a %s", asked, k.Format)}
	case k.Multiboot != nil:
		return ProtocolMultiboot, nil
	}
	return "", &FormatError{Context: "kernel", Msg: "no Multiboot header in the first 8 KiB and not a Linux bzImage: kvmboot does not know how to enter it", Class: ErrNoBootHeader}
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
	modules := multibootModules(cfg)
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
		args := mod.String()
		mods = append(mods, MultibootModule{Start: uint32(at), End: uint32(at) + uint32(len(mod.Data)), String: args})
		plan.ModuleArgs = append(plan.ModuleArgs, args)
	}

	info := &MultibootInfo{Map: plan.Map, Cmdline: multibootCmdline(cfg.Path, cfg.Cmdline), LoaderName: LoaderName, Modules: mods}
	at, _, err := a.Find(Request{What: "Multiboot info", Size: info.Size(), Align: 8, Min: lowInfoMin, Max: lowInfoMax, Policy: PolicyLowest})
	if err != nil {
		return err
	}
	plan.add(Placement{What: "boot_info", Name: "Multiboot info, mmap, strings", Start: at, Data: info.Encode(uint32(at)), Size: info.Size(), Verify: true})
	plan.Entry.EAX = MultibootBootMagic
	plan.Entry.EBX = uint32(at)
	return nil
}

// multibootModules are a Multiboot kernel's modules: the initrd, if any,
// first, as QEMU passes it.
func multibootModules(cfg Config) []Module {
	if cfg.Initrd == nil {
		return cfg.Modules
	}
	return append([]Module{*cfg.Initrd}, cfg.Modules...)
}

// multibootCmdline is the command line a Multiboot kernel gets: its own
// path first (argv[0]), as GRUB's multiboot command and QEMU's -kernel
// pass it, then the arguments.
func multibootCmdline(path, args string) string {
	switch {
	case path == "":
		return args
	case args == "":
		return path
	}
	return path + " " + args
}

// kernelImage is a kernel as it must sit in memory, before placement.
type kernelImage struct {
	name   string // details the plan's "kernel" placement
	mem    []byte // from base: the file bytes (bss is not allocated: size covers it)
	size   uint64 // memory the kernel needs from its load address, >= len(mem)
	base   uint64 // link (or preferred) address
	entry  uint64 // physical entry at the link address
	align  uint64
	min    uint64 // the kernel must start at or above this (0: 1 MiB)
	max    uint64 // the kernel must end at or below this (0: 4 GiB)
	relocs *Relocs
	// movesItself: the image runs wherever it is loaded without
	// relocation info (Linux's own setup code and decompressor).
	movesItself bool
	noRelocs    string // why the image cannot move
	// segments are an ELF's PT_LOADs. An image that cannot move occupies
	// only them, as GRUB loads it segment by segment: the gaps between
	// them stay free (one may lie below 640K and the next at 1M).
	segments []Segment
}

// movable reports whether the image can run elsewhere than at base.
func (ki *kernelImage) movable() bool { return ki.relocs != nil || ki.movesItself }

// lowest is the lowest address the image may start at.
func (ki *kernelImage) lowest() uint64 {
	if ki.min == 0 {
		return oneMiB
	}
	return ki.min
}

// multibootImage lays out a Multiboot kernel from its ELF headers or, with
// flag bit 16, from the header's address fields.
func multibootImage(k *Kernel) (*kernelImage, error) {
	if h := k.Multiboot; h.Flags&MBAddressFields != 0 {
		data, load, size, err := h.KludgeImage(k.Raw)
		if err != nil {
			return nil, err
		}
		return &kernelImage{mem: bytes.Clone(data), size: size, base: load, entry: uint64(h.EntryAddr), align: 4096,
			noRelocs: "it is loaded through Multiboot address fields, which carry no relocation info"}, nil
	}
	img := k.ELF
	ki := &kernelImage{mem: img.Memory(), size: img.End - img.Base, base: img.Base, entry: img.Entry, align: max(4096, img.MaxAlign), segments: img.Segments}
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
	load := ki.base
	switch {
	case cfg.LoadAddress != nil:
		load = *cfg.LoadAddress
		if !ki.movable() && load != ki.base {
			return &PlaceError{What: "kernel", Msg: fmt.Sprintf("--load-address %#x refused: the kernel can only run at its link address %#x: %s", load, ki.base, ki.noRelocs), Class: ErrLoadAddress, Err: ErrCannotMove}
		}
		if ki.min != 0 && load < ki.min {
			return &PlaceError{What: "kernel", Msg: fmt.Sprintf("--load-address %#x refused: the kernel runs at or above %#x", load, ki.min), Class: ErrLoadAddress}
		}
		if load%ki.align != 0 {
			return &PlaceError{What: "kernel", Msg: fmt.Sprintf("--load-address %#x refused: the kernel needs %s alignment", load, memmap.FormatSize(ki.align)), Class: ErrLoadAddress}
		}
		if ki.max != 0 && load+ki.size > ki.max {
			return &PlaceError{What: "kernel", Msg: fmt.Sprintf("--load-address %#x refused: the kernel (%s) must end below %#x", load, memmap.FormatSize(ki.size), ki.max), Class: ErrLoadAddress}
		}
		if err := ki.claim(a, load); err != nil {
			return &PlaceError{What: "kernel", Msg: "--load-address refused: " + err.Error(), Class: ErrLoadAddress, Err: err}
		}
		plan.Why = "forced by --load-address"
	case !ki.movable():
		if err := ki.claim(a, load); err != nil {
			return &PlaceError{What: "kernel", Msg: fmt.Sprintf("the kernel cannot move: %s; at its link address: %v", ki.noRelocs, err), Class: ErrCannotMove, Err: err}
		}
		plan.Why = "link address (not relocatable: " + ki.noRelocs + ")"
	default:
		var err error
		load, plan.Why, err = a.Find(Request{What: "kernel", Size: ki.size, Align: ki.align, Min: ki.lowest(), Max: ki.max, Policy: cfg.Policy, Preferred: ki.base, Region: cfg.Region})
		if err != nil {
			return err
		}
	}
	delta := uint32(load - ki.base)
	if ki.relocs != nil {
		start := time.Now()
		err := ki.relocs.Apply(ki.mem, ki.base, delta)
		plan.Stages.Relocate += time.Since(start)
		if err != nil {
			return err
		}
		plan.Relocations = len(ki.relocs.Sites)
		plan.SkippedAbsolute = ki.relocs.Absolute
	}
	plan.LoadAddress = load
	plan.Entry.EIP = uint32(ki.entry) + delta
	for _, pl := range ki.pieces(load) {
		plan.add(pl)
	}
	return nil
}

// claim takes the image's pieces at load from a.
func (ki *kernelImage) claim(a *Allocator, load uint64) error {
	for _, pl := range ki.pieces(load) {
		if err := a.Claim(strings.TrimSpace("kernel "+pl.Name), pl.Range()); err != nil {
			return err
		}
	}
	return nil
}

// placesFileBytes reports whether the n bytes at link address addr are
// file bytes of a placed piece of the image (not bss, not a gap between
// segments), so that a change to them in mem reaches the guest.
func (ki *kernelImage) placesFileBytes(addr, n uint64) bool {
	for _, pl := range ki.pieces(ki.base) {
		if addr >= pl.Start && addr+n <= pl.Start+uint64(len(pl.Data)) {
			return true
		}
	}
	return false
}

// pieces are the image's placements at load: one block, or for an image
// that cannot move, one per ELF segment, the gaps between them left free.
func (ki *kernelImage) pieces(load uint64) []Placement {
	if ki.movable() || len(ki.segments) < 2 {
		return []Placement{{What: "kernel", Name: ki.name, Start: load, Data: ki.mem, Size: ki.size, Verify: true}}
	}
	out := make([]Placement, 0, len(ki.segments))
	for _, s := range ki.segments {
		off := s.Paddr - ki.base
		out = append(out, Placement{What: "kernel", Name: fmt.Sprintf("segment %d", s.ProgramHeaderN), Start: s.Paddr, Data: ki.mem[off : off+s.FileSz], Size: s.MemSz, Verify: true})
	}
	return out
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
