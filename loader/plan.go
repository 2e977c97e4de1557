package loader

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"kvmboot/loader/memmap"
	"kvmboot/realmode"
)

// A Placement is one piece of the boot: bytes that must be at a guest
// physical address before the entry stub runs.
type Placement struct {
	What string // "kernel", "module", "cmdline", "boot_info", "mmap", ...
	Name string // optional detail: a module's path, a segment number
	// Start is the guest physical address of the first byte.
	Start uint64
	// Data is copied to Start; the rest of Size (bss) is zero.
	Data []byte
	// Size is the in-memory size, at least len(Data).
	Size uint64
	// Verify asks the guest-side stub to check the piece's checksum
	// before the jump. Pieces that the stub itself rewrites are not verified.
	Verify bool
}

// End is the first address after the placement.
func (p Placement) End() uint64 { return p.Start + p.Size }

// Range returns the placement's address range.
func (p Placement) Range() memmap.Range { return memmap.Range{Start: p.Start, End: p.End()} }

// Protocol names how the kernel is entered.
type Protocol string

// ParseProtocol reads a --protocol value; "auto" and "" mean "from the image".
func ParseProtocol(s string) (Protocol, error) {
	switch p := Protocol(s); p {
	case "", "auto":
		return "", nil
	case ProtocolMultiboot, ProtocolLinux32, ProtocolLinux16:
		return p, nil
	}
	return "", fmt.Errorf("--protocol %q: want auto, multiboot, linux32 or linux16", s)
}

const (
	ProtocolMultiboot Protocol = "multiboot"
	ProtocolLinux32   Protocol = "linux32"
	ProtocolLinux16   Protocol = "linux16"
	ProtocolELF       Protocol = "elf32" // plain ELF entry, no boot info
)

// EntryState is the register state the entry stub establishes before it
// jumps to the kernel's 32-bit entry point in flat protected mode.
type EntryState struct {
	EIP uint32
	EAX uint32
	EBX uint32
	ESI uint32
	ESP uint32
	// RealModeCall (seg<<16|off) is far-called in real mode, with the BIOS
	// up, before the kernel is entered: a Gujin-style real-mode part.
	RealModeCall uint32
	// RealModeEntry (seg<<16|off), when set, is jumped to in real mode
	// instead of EIP in protected mode, with DS=ES=FS=GS=SS=RealModeSeg
	// and SP=RealModeSP: the Linux 16-bit boot protocol.
	RealModeEntry uint32
	RealModeSeg   uint16
	RealModeSP    uint16
}

// KernelInfo describes the image the plan was made from.
type KernelInfo struct {
	Path     string   `json:"path"`
	Format   string   `json:"format"`
	Protocol Protocol `json:"protocol"`
}

// Plan is everything a backend needs to boot: guest memory size and map,
// the bytes to place, and the entry state. A Plan holds no host resources
// and can be printed without KVM.
type Plan struct {
	Kernel  KernelInfo
	Cmdline string
	// ModuleArgs are the module strings (path first) and Initrd a Linux
	// initrd's path, for backends that hand the original files to
	// another loader (qemu -kernel).
	ModuleArgs []string
	Initrd     string
	MemSize    uint64
	// CPUs is the number of processors; 0 in a plan made by hand means
	// one (NumCPUs).
	CPUs       int
	Map        *memmap.Map
	Placements []Placement
	Entry      EntryState

	LinkAddress uint64 // where the image was linked to run
	LoadAddress uint64 // where it will run
	// Relocations is the number of relocations applied; SkippedAbsolute
	// those left alone because their symbol is absolute.
	Relocations     int
	SkippedAbsolute int
	// Why explains the choice of LoadAddress.
	Why string
	// Verify asks the stub to check every placement's checksum.
	Verify bool
	// ACPI is the page reserved (KindACPI) for the ACPI tables, which the
	// backend writes for its machine (ACPITables); empty in a plan made
	// by hand without one.
	ACPI memmap.Range
	// Stages is how long planning took, stage by stage.
	Stages Stages

	checks []PieceCheck
}

// Stages is where the loader's time went in making a plan. Build covers
// all of Build (the others included, reading the files excluded: the
// caller reads them).
type Stages struct {
	// Cache is the decompression cache: the input's hash, the lookup and
	// the entry's verification (a miss is stored in the background).
	Cache time.Duration
	// Decompress is decoding a compressed kernel: a cache miss, or no cache.
	Decompress time.Duration
	// Relocate is applying the relocations for the load address.
	Relocate time.Duration
	Build    time.Duration
}

// PieceCheck is a checksum the entry stub verifies before the jump.
type PieceCheck struct {
	What string
	realmode.Check
}

// NumCPUs is the number of processors the plan's machine has.
func (p *Plan) NumCPUs() int { return max(p.CPUs, 1) }

// Checks returns the pieces the stub verifies, in the order it checks them.
func (p *Plan) Checks() []PieceCheck { return p.checks }

// Sorted returns the placements ordered by address.
func (p *Plan) Sorted() []Placement {
	s := slices.Clone(p.Placements)
	slices.SortFunc(s, func(a, b Placement) int { return cmp.Compare(a.Start, b.Start) })
	return s
}

// Write prints the plan for people: memory map, placements, entry.
func (p *Plan) Write(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "kernel     %s (%s, %s)\n", p.Kernel.Path, p.Kernel.Format, p.Kernel.Protocol)
	fmt.Fprintf(&b, "memory     %s\n", memmap.FormatSize(p.MemSize))
	fmt.Fprintf(&b, "cpus       %d\n", p.NumCPUs())
	b.WriteString("memory map:\n")
	for _, r := range p.Map.Regions() {
		fmt.Fprintf(&b, "  0x%08x-0x%08x  %-8s %s\n", r.Start, r.End, r.Kind, memmap.FormatSize(r.Size()))
	}
	b.WriteString("placements:\n")
	for _, pl := range p.Sorted() {
		name := pl.What
		if pl.Name != "" {
			name += " " + pl.Name
		}
		fmt.Fprintf(&b, "  0x%08x-0x%08x  %-32s %s\n", pl.Start, pl.End(), name, memmap.FormatSize(pl.Size))
	}
	fmt.Fprintf(&b, "link address %#x, load address %#x: %s\n", p.LinkAddress, p.LoadAddress, p.Why)
	fmt.Fprintf(&b, "relocations  %d applied, %d skipped (absolute symbols)\n", p.Relocations, p.SkippedAbsolute)
	e := p.Entry
	if e.RealModeCall != 0 {
		fmt.Fprintf(&b, "real-mode call %04x:%04x\n", e.RealModeCall>>16, e.RealModeCall&0xffff)
	}
	if e.RealModeEntry != 0 {
		fmt.Fprintf(&b, "entry        real mode %04x:%04x, ds=es=ss=%04x sp=%#x\n", e.RealModeEntry>>16, e.RealModeEntry&0xffff, e.RealModeSeg, e.RealModeSP)
	} else {
		fmt.Fprintf(&b, "entry        eip=%#x eax=%#x ebx=%#x esi=%#x\n", e.EIP, e.EAX, e.EBX, e.ESI)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
