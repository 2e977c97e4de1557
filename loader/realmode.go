package loader

import (
	"encoding/binary"
	"fmt"

	"kvmboot/loader/memmap"
)

// A real-mode part is code an image carries for the bootloader to run in
// real mode, with the BIOS up, before the kernel proper: what Gujin's
// kernels did to ask the BIOS things a protected-mode kernel no longer can.
// kvmboot carries it in the REALMODE descriptor (type 5) of its ELF note:
//
//	u32 version      1
//	u32 flags        bit 0: fixed: run at addr; else anywhere below 640 KiB,
//	                 paragraph aligned (the loader picks good RAM)
//	u32 addr         load address when fixed: paragraph aligned, below 1 MiB
//	u32 mem_size     bytes it occupies (at least the code; the rest is zeroed;
//	                 at most 64 KiB: one real-mode segment)
//	u32 entry        offset of its entry: the loader far-calls seg:entry with
//	                 CS = the part's segment, and the part returns with lret
//	u32 results_off  where in the part it leaves its results (informational)
//	u32 results_size
//	u32 locate       link-time physical address of a u32 in the image's file
//	                 bytes that the loader sets to the part's physical
//	                 address, so the kernel can find the results (0: none)
//	u8  code[]       the rest of the descriptor: the part's bytes
//
// The loader verifies the part with every other piece before it runs it.

// RealModeFixed is the flag of a part that must run at its own address.
const RealModeFixed = 1

const (
	realModeVersion    = 1
	realModeHeaderSize = 32
	realModeMaxSize    = 0x10000
	realModeLimit      = 0x9FC00 // the EBDA starts here
)

// RealModePart is a decoded REALMODE descriptor.
type RealModePart struct {
	Flags       uint32 `json:"flags"`
	Addr        uint32 `json:"addr,omitempty"`
	MemSize     uint32 `json:"mem_size"`
	Entry       uint32 `json:"entry"`
	ResultsOff  uint32 `json:"results_off"`
	ResultsSize uint32 `json:"results_size"`
	Locate      uint32 `json:"locate,omitempty"`
	Code        []byte `json:"-"`
}

// ParseRealModePart decodes and checks a REALMODE descriptor.
func ParseRealModePart(d []byte) (*RealModePart, error) {
	if len(d) < realModeHeaderSize {
		return nil, noteError("REALMODE descriptor is %d bytes, shorter than its %d-byte header", len(d), realModeHeaderSize)
	}
	le := binary.LittleEndian
	if v := le.Uint32(d); v != realModeVersion {
		return nil, noteError("REALMODE version %d: this kvmboot reads version %d", v, realModeVersion)
	}
	p := &RealModePart{
		Flags: le.Uint32(d[4:]), Addr: le.Uint32(d[8:]), MemSize: le.Uint32(d[12:]), Entry: le.Uint32(d[16:]),
		ResultsOff: le.Uint32(d[20:]), ResultsSize: le.Uint32(d[24:]), Locate: le.Uint32(d[28:]),
		Code: d[realModeHeaderSize:],
	}
	return p, p.check()
}

func (p *RealModePart) check() error {
	switch {
	case p.Flags&^RealModeFixed != 0:
		return noteError("REALMODE flags %#x: only bit 0 is defined", p.Flags)
	case len(p.Code) == 0:
		return noteError("REALMODE part has no code")
	case uint64(p.MemSize) < uint64(len(p.Code)) || p.MemSize > realModeMaxSize:
		return noteError("REALMODE mem_size %#x: at least the %d code bytes and at most 64 KiB", p.MemSize, len(p.Code))
	case p.Entry >= uint32(len(p.Code)):
		return noteError("REALMODE entry %#x is past its %d code bytes", p.Entry, len(p.Code))
	case uint64(p.ResultsOff)+uint64(p.ResultsSize) > uint64(p.MemSize):
		return noteError("REALMODE results %#x+%#x lie outside the part (%#x bytes)", p.ResultsOff, p.ResultsSize, p.MemSize)
	case p.Flags&RealModeFixed != 0 && (p.Addr%16 != 0 || p.Addr < lowInfoMin || uint64(p.Addr)+uint64(p.MemSize) > realModeLimit):
		return noteError("REALMODE address %#x: a fixed part must be paragraph aligned within %#x-%#x", p.Addr, lowInfoMin, realModeLimit)
	}
	return nil
}

// Marshal encodes the descriptor.
func (p *RealModePart) Marshal() []byte {
	b := make([]byte, realModeHeaderSize, realModeHeaderSize+len(p.Code))
	le := binary.LittleEndian
	for i, v := range []uint32{realModeVersion, p.Flags, p.Addr, p.MemSize, p.Entry, p.ResultsOff, p.ResultsSize, p.Locate} {
		le.PutUint32(b[4*i:], v)
	}
	return append(b, p.Code...)
}

// placeRealMode places the image's real-mode part in good low RAM, tells
// the kernel where it went (the locate word, in the placed kernel's bytes)
// and has the stub far-call it before the jump to the kernel.
func placeRealMode(plan *Plan, a *Allocator, p *RealModePart, ki *kernelImage) error {
	size := uint64(p.MemSize)
	var at uint64
	if p.Flags&RealModeFixed != 0 {
		at = uint64(p.Addr)
		if err := a.Claim("real-mode part", memmap.Range{Start: at, End: at + size}); err != nil {
			return &PlaceError{What: "real-mode part", Msg: "the real-mode part must run at its own address: " + err.Error(), Err: err}
		}
	} else {
		var err error
		if at, _, err = a.Find(Request{What: "real-mode part", Size: size, Align: 16, Min: lowInfoMin, Max: realModeLimit, Policy: PolicyLowest}); err != nil {
			return err
		}
	}
	if p.Locate != 0 {
		if !ki.placesFileBytes(uint64(p.Locate), 4) {
			return &FormatError{Context: "kvmboot note", Msg: fmt.Sprintf("REALMODE locate word %#x is not in the image's file bytes %#x-%#x", p.Locate, ki.base, ki.base+uint64(len(ki.mem)))}
		}
		binary.LittleEndian.PutUint32(ki.mem[uint64(p.Locate)-ki.base:], uint32(at))
	}
	plan.add(Placement{What: "realmode", Name: "the image's real-mode part", Start: at, Data: p.Code, Size: size, Verify: true})
	plan.Entry.RealModeCall = uint32(at>>4)<<16 | p.Entry
	return nil
}

// String describes the part for inspect.
func (p *RealModePart) String() string {
	where := "anywhere below 640K"
	if p.Flags&RealModeFixed != 0 {
		where = fmt.Sprintf("at %#x", p.Addr)
	}
	s := fmt.Sprintf("real-mode part: %d code bytes, %#x in memory, %s, entry +%#x, results +%#x (%d bytes)", len(p.Code), p.MemSize, where, p.Entry, p.ResultsOff, p.ResultsSize)
	if p.Locate != 0 {
		s += fmt.Sprintf(", its address stored at %#x", p.Locate)
	}
	return s
}

// SymbolAddress finds name in a kernel's symbol table (after
// decompression) and returns its physical address; a number ("0x1002020")
// is taken as is.
func SymbolAddress(kernel []byte, name string) (uint32, error) {
	if n, err := memmap.ParseSize(name); err == nil && n <= 0xFFFFFFFF {
		return uint32(n), nil
	}
	k, err := OpenKernel(kernel, 0, nil)
	if err != nil {
		return 0, err
	}
	if k.ELF == nil {
		return 0, fmt.Errorf("%s: the kernel is %w", name, ErrNotELF)
	}
	syms, err := k.ELF.File.Symbols()
	if err != nil {
		return 0, fmt.Errorf("%s: no symbol table: %v", name, err)
	}
	for _, s := range syms {
		if s.Name == name {
			if a, ok := k.ELF.physical(s.Value); ok {
				return uint32(a), nil
			}
			return 0, fmt.Errorf("%s (%#x) is in no loadable segment", name, s.Value)
		}
	}
	return 0, fmt.Errorf("no symbol %q in the kernel", name)
}
