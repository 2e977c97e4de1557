package loader

import (
	"encoding/binary"
	"fmt"
)

// The classic 16-bit Linux boot protocol (Documentation/arch/x86/boot.rst,
// "Loading the rest of the kernel" and "Running the kernel"): the setup
// sectors run in real mode at a segment X below 640 KiB, with the heap up
// to X+0xE000 and the command line at X+0xE000; the protected-mode part
// loads at code32_start. Linux's own setup code then asks our BIOS for the
// memory map and switches to protected mode itself, and its own
// decompressor chooses where the kernel finally runs.
const (
	linux16Window  = 0x10000 // setup, heap, stack and command line from X
	linux16Heap    = 0xE000  // heap end and stack top, offset from X
	linux16CmdOff  = 0xE000  // command line, offset from X
	linux16CmdMax  = linux16Window - linux16CmdOff
	linux16SetupCS = 0x20 // the entry is (X>>4)+0x20 : 0

	zpHeapEndPtr  = 0x224
	zpCode32Start = 0x214
	canUseHeap    = 0x80
	protoHeap     = 0x0201 // heap_end_ptr and CAN_USE_HEAP
	protoCmdPtr   = 0x0202 // cmd_line_ptr
)

// buildLinux16 plans a bzImage for its own real-mode setup code.
func buildLinux16(plan *Plan, a *Allocator, k *Kernel, cfg Config) error {
	bz := k.BzImage
	h := bz.Header
	if h.Version < protoCmdPtr {
		return &FormatError{Context: "bzImage", Msg: fmt.Sprintf("boot protocol %s: the 16-bit path needs 2.02 or later", versionString(h.Version))}
	}
	if h.LoadFlags&loadedHigh == 0 {
		return &FormatError{Context: "bzImage", Msg: "a zImage (protected-mode part at 0x10000) is not supported: only bzImages"}
	}
	cmdline := []byte(cfg.Cmdline + "\x00")
	limit := uint64(linux16CmdMax - 1)
	if h.CmdlineSize != 0 {
		limit = min(limit, uint64(h.CmdlineSize))
	}
	if uint64(len(cmdline)-1) > limit {
		return &PlaceError{What: "cmdline", Msg: fmt.Sprintf("command line is %d bytes; the 16-bit protocol takes at most %d", len(cmdline)-1, limit)}
	}

	// The setup segment: below 640 KiB, paragraph aligned, good RAM for
	// the whole window (highest fit, as bootloaders traditionally use
	// 0x90000).
	x, why, err := a.Find(Request{What: "Linux setup (real mode)", Size: linux16Window, Align: 16, Min: lowInfoMin, Max: linuxLowMax, Policy: PolicyHighest})
	if err != nil {
		return err
	}
	setup := make([]byte, linux16Window)
	copy(setup, bz.Setup)
	copy(setup[linux16CmdOff:], cmdline)

	// The protected-mode part at code32_start (0x100000) unless bad RAM
	// is there; the image's decompressor is position independent.
	pm := uint64(h.Code32Start)
	if pm == 0 {
		pm = oneMiB
	}
	pmSize := uint64(len(bz.ProtectedMode))
	if err := a.Claim("kernel (protected-mode part)", Range{pm, pm + pmSize}); err != nil {
		if h.Version < 0x0200 || h.RelocatableKernel == 0 {
			return &PlaceError{What: "kernel", Msg: "code32_start is not usable and the kernel is not relocatable: " + err.Error()}
		}
		if pm, _, err = a.Find(Request{What: "kernel (protected-mode part)", Size: pmSize, Align: 4096, Min: oneMiB, Max: kernelImageSize, Policy: PolicyLowest}); err != nil {
			return err
		}
	}

	initrdAt, initrdSize, err := placeInitrd(plan, a, cfg.Initrd, h)
	if err != nil {
		return err
	}

	// The loader's fields, in the setup header of the loaded copy.
	le := binary.LittleEndian
	setLoaderFields(setup, uint32(x+linux16CmdOff), uint32(initrdAt), uint32(initrdSize))
	if h.Version >= protoHeap {
		setup[zpLoadFlags] |= canUseHeap
		le.PutUint16(setup[zpHeapEndPtr:], linux16Heap-0x200)
	}
	le.PutUint32(setup[zpCode32Start:], uint32(pm))

	plan.add(Placement{What: "setup", Name: "Linux real-mode setup, heap, cmdline", Start: x, Data: setup, Size: linux16Window, Verify: true})
	plan.add(Placement{What: "kernel", Name: "protected-mode part (compressed)", Start: pm, Data: bz.ProtectedMode, Size: pmSize, Verify: true})
	plan.LinkAddress, plan.LoadAddress = uint64(h.Code32Start), pm
	plan.Why = fmt.Sprintf("setup at %#x (%s); the kernel's own decompressor chooses where it finally runs", x, why)
	seg := uint16(x >> 4)
	plan.Entry.RealModeEntry = uint32(seg+linux16SetupCS) << 16
	plan.Entry.RealModeSeg = seg
	plan.Entry.RealModeSP = linux16Heap
	return nil
}
