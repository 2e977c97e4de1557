package loader

import (
	"encoding/binary"
	"fmt"

	"kvmboot/loader/memmap"
)

// The classic 16-bit Linux boot protocol (Documentation/arch/x86/boot.rst,
// "Loading the rest of the kernel" and "Running the kernel"), as GRUB's
// linux16 follows it for every protocol version: the setup sectors run in
// real mode at a segment X below 640 KiB, with a heap and stack above them
// and the command line above the heap; the protected-mode part loads at
// code32_start, or, for a relocatable kernel, wherever kvmboot finds room
// for all it needs. The image's own setup code then asks our BIOS for the
// memory map and switches to protected mode itself; a Linux kernel's own
// decompressor unpacks it in place.
const (
	linux16SetupCS = 0x20 // the entry is (X>>4)+0x20 : 0

	// A bzImage of protocol 2.02 or later takes a whole segment anywhere
	// below 640 KiB: setup, heap and stack to X+0xE000, the command line
	// above.
	linux16Window  = 0x10000
	linux16HeapEnd = 0xE000
	// Older images, and zImages, keep their real-mode part at 0x90000 and
	// must not touch memory above 0x9A000: heap and stack to X+0x9800,
	// the command line above.
	linux16OldSeg     = 0x90000
	linux16OldWindow  = 0xA000
	linux16OldHeapEnd = 0x9800

	zImageAddr = 0x10000 // where a zImage's protected-mode part loads

	// Before 2.02 the command line is announced by a magic word and an
	// offset from X in the boot sector, and must lie within
	// setup_move_size bytes of X.
	zpCmdLineMagic   = 0x20
	zpCmdLineOffset  = 0x22
	cmdLineMagic     = 0xA33F
	zpSetupMoveSize  = 0x212
	zpHeapEndPtr     = 0x224
	zpCode32Start    = 0x214
	canUseHeap       = 0x80
	cmdlineSizeOld   = 255        // the longest command line before 2.06
	initrdAddrMaxOld = 0x37FFFFFF // initrd_addr_max before 2.03
	// initSizeFactor estimates what a relocatable kernel before 2.10 (no
	// init_size) needs from its load address: three times its
	// protected-mode part, GRUB's estimate for a compressed kernel.
	initSizeFactor = 3
)

// realModeLayout is where an image's real-mode part runs: at 0x90000 for
// images older than 2.02 and zImages, else anywhere (fixed false); how
// much memory from X it uses, and where its heap ends (the command line
// follows), as boot.rst's sample configuration has it.
func realModeLayout(h SetupHeader) (fixed bool, window, heapEnd uint64) {
	if h.Version < protoCmdPtr || !h.LoadedHigh() {
		return true, linux16OldWindow, linux16OldHeapEnd
	}
	return false, linux16Window, linux16HeapEnd
}

// cmdlineMax is the longest command line (without its NUL) the image
// takes: cmdline_size from 2.06, 255 before.
func cmdlineMax(h SetupHeader) uint64 {
	if h.Version < protoCmdlineSize || h.CmdlineSize == 0 {
		return cmdlineSizeOld
	}
	return uint64(h.CmdlineSize)
}

// initrdAddrMax is the highest address the initrd may occupy:
// initrd_addr_max from 2.03, 0x37FFFFFF before.
func initrdAddrMax(h SetupHeader) uint64 {
	if h.Version < protoInitrdMax {
		return initrdAddrMaxOld
	}
	return uint64(h.InitrdAddrMax)
}

// pmLoadAddress is where the protocol loads the protected-mode part
// unless a relocatable kernel is placed elsewhere: 0x100000 for a bzImage,
// 0x10000 for a zImage.
func pmLoadAddress(h SetupHeader) uint64 {
	if h.LoadedHigh() {
		return oneMiB
	}
	return zImageAddr
}

// linux16Image is the protected-mode part of a Linux image as the 16-bit
// protocol places it. A zImage goes to 0x10000 and a kernel that is not
// relocatable to code32_start. A relocatable one (2.05+) goes, like the
// compressed-ELF path's kernel, to a kernel_alignment boundary below
// 512 MiB with its whole init_size in good free RAM, so that its own
// decompressor, which unpacks it at max(align_up(load, kernel_alignment),
// pref_address), never writes outside that room: at or above pref_address,
// which it prefers.
func linux16Image(k *Kernel) *kernelImage {
	h := k.BzImage.Header
	pm := k.BzImage.ProtectedMode
	at := pmLoadAddress(h)
	size := uint64(len(pm))
	ki := &kernelImage{name: "protected-mode part", mem: pm, size: size, base: at, entry: at, align: 16}
	switch {
	case !h.LoadedHigh():
		ki.max = linux16OldSeg
		ki.noRelocs = "a zImage's protected-mode part loads at 0x10000"
	case h.Relocatable():
		ki.name = "protected-mode part, room to unpack"
		ki.movesItself = true
		ki.align = max(uint64(h.KernelAlignment), 4096)
		ki.max = kernelImageSize
		ki.size = ((size + 4095) &^ 4095) * initSizeFactor
		if h.Version >= protoPrefAddress {
			ki.size = max(size, uint64(h.InitSize))
			if h.PrefAddress != 0 {
				ki.base, ki.min = h.PrefAddress, max(oneMiB, h.PrefAddress)
			}
		}
	default:
		ki.noRelocs = fmt.Sprintf("boot protocol %s, relocatable_kernel 0", versionString(h.Version))
	}
	return ki
}

// buildLinux16 plans a Linux image for its own real-mode setup code.
func buildLinux16(plan *Plan, a *Allocator, k *Kernel, cfg Config) error {
	bz := k.BzImage
	h := bz.Header
	fixed, window, heapEnd := realModeLayout(h)
	if uint64(len(bz.Setup)) > heapEnd {
		return &FormatError{Context: "bzImage", Msg: fmt.Sprintf("setup code of %d bytes: the protocol gives it %#x bytes below its heap's end", len(bz.Setup), heapEnd)}
	}
	cmdline := []byte(cfg.Cmdline + "\x00")
	limit := min(window-heapEnd-1, cmdlineMax(h))
	if uint64(len(cmdline)-1) > limit {
		return &PlaceError{What: "cmdline", Msg: fmt.Sprintf("command line is %d bytes; this image takes at most %d", len(cmdline)-1, limit)}
	}

	// The setup segment: good RAM for the whole window, at 0x90000 where
	// the protocol says so, else the highest fit below 640 KiB, as
	// bootloaders traditionally use 0x90000.
	const what = "Linux setup (real mode)"
	var x uint64
	why := "fixed at 0x90000 by the protocol"
	if fixed {
		if err := a.Claim(what, memmap.Range{Start: linux16OldSeg, End: linux16OldSeg + window}); err != nil {
			return &PlaceError{What: what, Msg: fmt.Sprintf("boot protocol %s (%s) runs its setup code at 0x90000: %v", versionString(h.Version), imageKind(h), err), Err: err}
		}
		x = linux16OldSeg
	} else {
		var err error
		if x, why, err = a.Find(Request{What: what, Size: window, Align: 16, Min: lowInfoMin, Max: linuxLowMax, Policy: PolicyHighest}); err != nil {
			return err
		}
	}

	ki := linux16Image(k)
	if err := placeKernel(plan, a, ki, cfg); err != nil {
		return err
	}
	pm := plan.LoadAddress
	if err := claimDecompression(plan, a, h, memmap.Range{Start: pm, End: pm + ki.size}, ki.movable()); err != nil {
		return err
	}
	initrdAt, initrdSize, err := placeInitrd(plan, a, cfg.Initrd, h)
	if err != nil {
		return err
	}

	setup := make([]byte, window)
	copy(setup, bz.Setup)
	copy(setup[heapEnd:], cmdline)
	// code32_start moves with the part, as GRUB moves it.
	code32 := h.Code32Start + uint32(pm-pmLoadAddress(h))
	setLinux16Fields(setup, h, x, heapEnd, uint32(len(cmdline)), code32, uint32(initrdAt), uint32(initrdSize))

	plan.add(Placement{What: "setup", Name: "Linux real-mode setup, heap, cmdline", Start: x, Data: setup, Size: window, Verify: true})
	plan.LinkAddress = pmLoadAddress(h)
	plan.Why = fmt.Sprintf("protected-mode part: %s; setup at %#x (%s)", plan.Why, x, why)
	seg := uint16(x >> 4)
	plan.Entry.RealModeEntry = uint32(seg+linux16SetupCS) << 16
	plan.Entry.RealModeSeg = seg
	plan.Entry.RealModeSP = uint16(heapEnd)
	return nil
}

// imageKind is "zImage" or "bzImage", for messages.
func imageKind(h SetupHeader) string {
	if h.LoadedHigh() {
		return "bzImage"
	}
	return "zImage"
}

// claimDecompression claims the room where a Linux kernel that cannot
// move unpacks itself: pref_address for init_size bytes (2.10+), besides
// its protected-mode part at pm. A relocatable kernel unpacks inside pm,
// which already has its init_size.
func claimDecompression(plan *Plan, a *Allocator, h SetupHeader, pm memmap.Range, movable bool) error {
	if movable || h.Version < protoPrefAddress || h.InitSize == 0 || h.PrefAddress == 0 {
		return nil
	}
	room := memmap.Range{Start: h.PrefAddress, End: h.PrefAddress + uint64(h.InitSize)}
	for _, r := range memmap.Subtract([]memmap.Range{room}, []memmap.Range{pm}) {
		if err := a.Claim("kernel (decompressed)", r); err != nil {
			return &PlaceError{What: "kernel", Msg: fmt.Sprintf("the kernel is not relocatable and unpacks itself at pref_address %v: %v", room, err), Class: ErrCannotMove, Err: err}
		}
		plan.add(Placement{What: "kernel", Name: "where it unpacks itself", Start: r.Start, Size: r.Size()})
	}
	return nil
}

// setLinux16Fields writes the loader's fields into the setup header of the
// loaded setup code (at X), for the image's protocol version only: an
// older header's bytes past its fields are setup code. The command line
// (cmdlineLen bytes with its NUL) is at X+heapEnd.
func setLinux16Fields(setup []byte, h SetupHeader, x, heapEnd uint64, cmdlineLen, code32, initrd, initrdSize uint32) {
	le := binary.LittleEndian
	setLoaderFields(setup, initrd, initrdSize)
	le.PutUint32(setup[zpCode32Start:], code32)
	if h.Version >= protoHeap {
		setup[zpLoadFlags] |= canUseHeap
		le.PutUint16(setup[zpHeapEndPtr:], uint16(heapEnd-0x200))
	}
	if h.Version >= protoCmdPtr {
		le.PutUint32(setup[zpCmdLinePtr:], uint32(x+heapEnd))
		return
	}
	le.PutUint16(setup[zpCmdLineMagic:], cmdLineMagic)
	le.PutUint16(setup[zpCmdLineOffset:], uint16(heapEnd))
	le.PutUint16(setup[zpSetupMoveSize:], uint16(heapEnd)+uint16(cmdlineLen))
}
