package loader

import (
	"encoding/binary"
	"fmt"

	"kvmboot/loader/memmap"
)

// Zero page (struct boot_params) offsets, Documentation/arch/x86/zero-page.rst.
const (
	ZeroPageSize      = 4096
	zpAltMemK         = 0x1e0 // u32: KiB of memory above 1 MiB (pre-E820 kernels)
	zpE820Entries     = 0x1e8 // u8
	zpTypeOfLoader    = 0x210
	zpLoadFlags       = 0x211
	zpRamdiskImage    = 0x218
	zpRamdiskSize     = 0x21c
	zpCmdLinePtr      = 0x228
	zpHardwareSubarch = 0x23c
	zpVidMode         = 0x1fa
	zpE820Table       = 0x2d0
	e820Max           = 128 // entries in the zero page's table
	e820EntrySize     = 20

	loaderTypeUndefined = 0xFF // type_of_loader: no assigned loader ID
	loadedHigh          = 0x01 // loadflags: protected-mode code at 0x100000 or above
	vidModeNormal       = 0xFFFF
	// kernelImageSize is KERNEL_IMAGE_SIZE for i386: a relocated kernel
	// must end below 512 MiB.
	kernelImageSize = 512 << 20
	// linuxLowMax bounds the zero page and command line: the 16-bit world
	// and early code reach them below 640 KiB.
	linuxLowMax = memmap.LowRAMEnd
)

// buildLinux32 plans a bzImage through the compressed-ELF path: kvmboot has
// decompressed vmlinux, places it at a kernel_alignment boundary with its
// whole init_size in good RAM, applies Linux's relocation table, builds the
// zero page and enters startup_32 with ESI pointing at it.
func buildLinux32(plan *Plan, a *Allocator, k *Kernel, cfg Config) error {
	h := k.BzImage.Header
	if h.Version < protoPrefAddress {
		return &FormatError{Context: "bzImage", Msg: fmt.Sprintf("boot protocol %s: kvmboot needs 2.10 or later (pref_address, init_size)", versionString(h.Version))}
	}
	ki := linux32Image(k)
	ki.mem = k.ELF.Memory()
	if err := placeKernel(plan, a, ki, cfg); err != nil {
		return err
	}
	if k.RealMode != nil {
		if err := placeRealMode(plan, a, k.RealMode, ki); err != nil {
			return err
		}
	}

	initrdAt, initrdSize, err := placeInitrd(plan, a, cfg.Initrd, h)
	if err != nil {
		return err
	}

	cmdline := []byte(cfg.Cmdline + "\x00")
	if h.CmdlineSize != 0 && uint64(len(cmdline)-1) > uint64(h.CmdlineSize) {
		return &PlaceError{What: "cmdline", Msg: fmt.Sprintf("command line is %d bytes; this kernel takes at most %d", len(cmdline)-1, h.CmdlineSize)}
	}
	cmdAt, _, err := a.Find(Request{What: "cmdline", Size: uint64(len(cmdline)), Align: 16, Min: lowInfoMin, Max: linuxLowMax, Policy: PolicyLowest})
	if err != nil {
		return err
	}
	plan.add(Placement{What: "cmdline", Start: cmdAt, Data: cmdline, Size: uint64(len(cmdline)), Verify: true})

	zpAt, _, err := a.Find(Request{What: "zero page", Size: ZeroPageSize, Align: 4096, Min: lowInfoMin, Max: linuxLowMax, Policy: PolicyLowest})
	if err != nil {
		return err
	}
	zp, err := ZeroPage(k.BzImage, plan.Map, uint32(cmdAt), uint32(initrdAt), uint32(initrdSize))
	if err != nil {
		return err
	}
	plan.add(Placement{What: "boot_params", Name: "zero page", Start: zpAt, Data: zp, Size: ZeroPageSize, Verify: true})
	plan.Entry.ESI = uint32(zpAt)
	return nil
}

// linux32Image is the kernel image of a bzImage as the 32-bit protocol
// places it, without its bytes (Memory, FileEnd): buildLinux32 adds them,
// and inspect needs only the layout.
func linux32Image(k *Kernel) *kernelImage {
	h, img := k.BzImage.Header, k.ELF
	ki := &kernelImage{
		base: img.Base, entry: img.Entry,
		size: max(uint64(h.InitSize), img.End-img.Base), align: max(uint64(h.KernelAlignment), 4096), max: kernelImageSize,
	}
	switch {
	case h.RelocatableKernel == 0:
		ki.noRelocs = "the bzImage says it is not relocatable"
	case !img.Relocs.found():
		ki.noRelocs = "it has no relocation info"
	default:
		ki.relocs = img.Relocs
	}
	k.constrainImage(ki)
	return ki
}

// placeInitrd puts a Linux initrd (nil: none) as high as the kernel's
// initrd_addr_max allows, as both boot protocols do.
func placeInitrd(plan *Plan, a *Allocator, initrd *Module, h SetupHeader) (at, size uint64, err error) {
	if initrd == nil {
		return 0, 0, nil
	}
	size = uint64(len(initrd.Data))
	// initrd_addr_max is the address of the initrd's last byte.
	at, _, err = a.Find(Request{What: "initrd", Size: max(size, 1), Align: 4096, Min: oneMiB, Max: initrdAddrMax(h) + 1, Policy: PolicyHighest})
	if err != nil {
		return 0, 0, err
	}
	plan.add(Placement{What: "initrd", Name: initrd.Path, Start: at, Data: initrd.Data, Size: size, Verify: true})
	plan.Initrd = initrd.Path
	return at, size, nil
}

// setLoaderFields writes the setup header fields every loader fills in
// and every protocol version (2.00+) has. b is a zero page or, for the
// 16-bit protocol, the loaded setup sectors: both hold the header at the
// same offsets.
func setLoaderFields(b []byte, initrd, initrdSize uint32) {
	le := binary.LittleEndian
	b[zpTypeOfLoader] = loaderTypeUndefined
	le.PutUint16(b[zpVidMode:], vidModeNormal)
	le.PutUint32(b[zpRamdiskImage:], initrd)
	le.PutUint32(b[zpRamdiskSize:], initrdSize)
}

// ZeroPage builds struct boot_params for the 32-bit boot protocol: the
// setup header copied from the image as the protocol says, the loader's
// fields, and the E820 table from the memory map (bad RAM as type 5).
func ZeroPage(bz *BzImage, m *memmap.Map, cmdline, initrd, initrdSize uint32) ([]byte, error) {
	zp := make([]byte, ZeroPageSize)
	copy(zp[setupHeaderOffset:], bz.HeaderBytes) // sentinel (0x1ef) stays 0
	le := binary.LittleEndian
	setLoaderFields(zp, initrd, initrdSize)
	zp[zpLoadFlags] |= loadedHigh
	le.PutUint32(zp[zpCmdLinePtr:], cmdline)
	le.PutUint32(zp[zpHardwareSubarch:], 0)

	regions := m.Regions()
	if len(regions) > e820Max {
		return nil, &PlaceError{What: "E820 table", Msg: fmt.Sprintf("the memory map has %d regions; the zero page holds at most %d E820 entries (bad RAM too fragmented)", len(regions), e820Max)}
	}
	zp[zpE820Entries] = byte(len(regions))
	for i, r := range regions {
		e820Entry(r).put(zp[zpE820Table+i*e820EntrySize:])
	}
	// alt_mem_k: contiguous RAM above 1 MiB, for kernels that look there.
	above := ramEnd(regions, oneMiB) - oneMiB
	le.PutUint32(zp[zpAltMemK:], uint32(min(above>>10, 0xFFFFFFFF)))
	return zp, nil
}
