package loader

import (
	"encoding/binary"
	"fmt"

	"kvmboot/loader/memmap"
)

// Multiboot 1 constants (the Multiboot Specification, version 0.6.96).
const (
	MultibootHeaderMagic = 0x1BADB002
	MultibootBootMagic   = 0x2BADB002 // in EAX at entry
	multibootSearch      = 8192       // the header lies in the file's first 8 KiB

	MBPageAlignModules = 1 << 0
	MBMemoryInfo       = 1 << 1
	MBVideoMode        = 1 << 2
	MBAddressFields    = 1 << 16
	// Bits 0-15 are requirements: a loader that does not understand one
	// must refuse the image. kvmboot understands 0-2; video mode (2) gets a
	// text console, which the spec allows.
	mbKnownRequired = MBPageAlignModules | MBMemoryInfo | MBVideoMode
)

// Multiboot info flags (what the loader filled in).
const (
	MBInfoMemory     = 1 << 0
	MBInfoCmdline    = 1 << 2
	MBInfoModules    = 1 << 3
	MBInfoMmap       = 1 << 6
	MBInfoLoaderName = 1 << 9
)

// MultibootHeader is a Multiboot 1 header found in an image.
type MultibootHeader struct {
	Offset   int // file offset of the magic
	Flags    uint32
	Checksum uint32
	// Address fields, valid with MBAddressFields (the "a.out kludge").
	HeaderAddr, LoadAddr, LoadEndAddr, BSSEndAddr, EntryAddr uint32
}

// FindMultiboot looks for a Multiboot header: 4-byte aligned within the
// first 8 KiB, magic, flags and checksum summing to zero. It returns nil
// without error when there is none, and an error for a header that is
// there but wrong (bad checksum, requirements kvmboot cannot meet).
func FindMultiboot(raw []byte) (*MultibootHeader, error) {
	le := binary.LittleEndian
	end := min(len(raw), multibootSearch)
	var badSum *MultibootHeader
	for off := 0; off+12 <= end; off += 4 {
		if le.Uint32(raw[off:]) != MultibootHeaderMagic {
			continue
		}
		h := &MultibootHeader{Offset: off, Flags: le.Uint32(raw[off+4:]), Checksum: le.Uint32(raw[off+8:])}
		if MultibootHeaderMagic+h.Flags+h.Checksum != 0 {
			if badSum == nil {
				badSum = h
			}
			continue
		}
		if unknown := h.Flags & 0xFFFF &^ mbKnownRequired; unknown != 0 {
			return nil, &FormatError{Context: "Multiboot header", Msg: fmt.Sprintf("requires features kvmboot does not provide (flags %#x)", unknown)}
		}
		if h.Flags&MBAddressFields != 0 {
			if off+32 > len(raw) {
				return nil, &FormatError{Context: "Multiboot header", Msg: "address fields cut off by the end of the file", Class: ErrTruncated}
			}
			h.HeaderAddr = le.Uint32(raw[off+12:])
			h.LoadAddr = le.Uint32(raw[off+16:])
			h.LoadEndAddr = le.Uint32(raw[off+20:])
			h.BSSEndAddr = le.Uint32(raw[off+24:])
			h.EntryAddr = le.Uint32(raw[off+28:])
		}
		return h, nil
	}
	if badSum != nil {
		return nil, &FormatError{Context: "Multiboot header", Msg: fmt.Sprintf("at offset %#x has a bad checksum (magic+flags+checksum = %#x, must be 0)", badSum.Offset, uint32(MultibootHeaderMagic+badSum.Flags+badSum.Checksum))}
	}
	return nil, nil
}

// KludgeImage returns the image the address fields describe: file bytes
// from the header's position back to load_addr, up to load_end_addr (0 =
// end of file), then bss to bss_end_addr (0 = none).
func (h *MultibootHeader) KludgeImage(raw []byte) (data []byte, load, memSize uint64, err error) {
	bad := func(msg string, args ...any) error {
		return &FormatError{Context: "Multiboot address fields", Msg: fmt.Sprintf(msg, args...)}
	}
	if h.HeaderAddr < h.LoadAddr {
		return nil, 0, 0, bad("header_addr %#x is below load_addr %#x", h.HeaderAddr, h.LoadAddr)
	}
	start := int64(h.Offset) - int64(h.HeaderAddr-h.LoadAddr)
	if start < 0 {
		return nil, 0, 0, bad("load_addr %#x would start before the file", h.LoadAddr)
	}
	end := int64(len(raw))
	if h.LoadEndAddr != 0 {
		if h.LoadEndAddr < h.LoadAddr {
			return nil, 0, 0, bad("load_end_addr %#x is below load_addr %#x", h.LoadEndAddr, h.LoadAddr)
		}
		end = start + int64(h.LoadEndAddr-h.LoadAddr)
		if end > int64(len(raw)) {
			return nil, 0, 0, &FormatError{Context: "Multiboot address fields", Msg: fmt.Sprintf("load_end_addr %#x is past the end of the file: truncated?", h.LoadEndAddr), Class: ErrTruncated}
		}
	}
	data = raw[start:end]
	memSize = uint64(len(data))
	if h.BSSEndAddr != 0 {
		if uint64(h.BSSEndAddr) < uint64(h.LoadAddr)+memSize {
			return nil, 0, 0, bad("bss_end_addr %#x is below the end of the loaded bytes", h.BSSEndAddr)
		}
		memSize = uint64(h.BSSEndAddr) - uint64(h.LoadAddr)
	}
	if h.EntryAddr < h.LoadAddr || uint64(h.EntryAddr) >= uint64(h.LoadAddr)+memSize {
		return nil, 0, 0, bad("entry_addr %#x is outside the image %#x-%#x", h.EntryAddr, h.LoadAddr, uint64(h.LoadAddr)+memSize)
	}
	return data, uint64(h.LoadAddr), memSize, nil
}

// MultibootModule is a module as the info structure describes it.
type MultibootModule struct {
	Start, End uint32
	String     string
}

// MultibootInfo is what the loader tells a Multiboot kernel.
type MultibootInfo struct {
	Map        *memmap.Map
	Cmdline    string
	LoaderName string
	Modules    []MultibootModule
}

// Sizes of the Multiboot structures kvmboot writes.
const (
	mbInfoSize   = 88 // up to and including the APM table pointer and VBE fields
	mbMmapEntry  = 24 // u32 size (20), u64 base, u64 length, u32 type
	mbModuleSize = 16
)

// Size is how many bytes Encode needs.
func (mi *MultibootInfo) Size() uint64 {
	n := mbInfoSize + mbMmapEntry*len(mi.Map.Regions()) + mbModuleSize*len(mi.Modules)
	n += len(mi.Cmdline) + 1 + len(mi.LoaderName) + 1
	for _, m := range mi.Modules {
		n += len(m.String) + 1
	}
	return uint64(n)
}

// Encode lays out the info structure, memory map, module list and strings
// in one block that will sit at guest physical address base.
func (mi *MultibootInfo) Encode(base uint32) []byte {
	le := binary.LittleEndian
	b := make([]byte, mi.Size())
	regions := mi.Map.Regions()
	mmapAt := mbInfoSize
	modsAt := mmapAt + mbMmapEntry*len(regions)
	strAt := modsAt + mbModuleSize*len(mi.Modules)
	putString := func(s string) uint32 {
		addr := base + uint32(strAt)
		strAt += copy(b[strAt:], s) + 1 // NUL from make
		return addr
	}

	flags := uint32(MBInfoMemory | MBInfoCmdline | MBInfoMmap | MBInfoLoaderName)
	lower, upper := mi.memLowerUpper()
	le.PutUint32(b[4:], lower)
	le.PutUint32(b[8:], upper)
	le.PutUint32(b[16:], putString(mi.Cmdline))
	for i, r := range regions {
		e := b[mmapAt+i*mbMmapEntry:]
		le.PutUint32(e[0:], mbMmapEntry-4)
		e820Entry(r).put(e[4:])
	}
	le.PutUint32(b[44:], uint32(mbMmapEntry*len(regions)))
	le.PutUint32(b[48:], base+uint32(mmapAt))
	if len(mi.Modules) > 0 {
		flags |= MBInfoModules
		le.PutUint32(b[20:], uint32(len(mi.Modules)))
		le.PutUint32(b[24:], base+uint32(modsAt))
		for i, m := range mi.Modules {
			e := b[modsAt+i*mbModuleSize:]
			le.PutUint32(e[0:], m.Start)
			le.PutUint32(e[4:], m.End)
			le.PutUint32(e[8:], putString(m.String))
		}
	}
	le.PutUint32(b[64:], putString(mi.LoaderName))
	le.PutUint32(b[0:], flags)
	return b
}

// memLowerUpper gives mem_lower (KiB of RAM from 0) and mem_upper (KiB of
// RAM from 1 MiB up to the first hole), as a BIOS-based loader reports
// them: bad RAM ends either range.
func (mi *MultibootInfo) memLowerUpper() (lower, upper uint32) {
	regions := mi.Map.Regions()
	lower = uint32(min(ramEnd(regions, 0), memmap.LowRAMEnd) >> 10)
	upper = uint32((min(ramEnd(regions, memmap.HighRAMStart), 1<<32) - memmap.HighRAMStart) >> 10)
	return lower, upper
}
