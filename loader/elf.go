package loader

import (
	"bytes"
	"cmp"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"slices"

	"kvmboot/internal/hugemem"
)

// Segment is one PT_LOAD of an ELF image.
type Segment struct {
	Paddr, Vaddr   uint64
	FileSz, MemSz  uint64
	Align          uint64
	Flags          elf.ProgFlag
	Data           []byte // FileSz bytes
	ProgramHeaderN int
}

// ELFImage is a loadable ELF32 i386 executable: its segments laid out by
// physical address, its entry point, and what it knows about relocation.
type ELFImage struct {
	File  *elf.File
	Raw   []byte
	Entry uint64 // physical
	// Base and End bound the image in physical memory, bss included.
	Base, End uint64
	Segments  []Segment
	Relocs    *Relocs
	MaxAlign  uint64 // largest PT_LOAD alignment
}

// ParseELF reads an ELF32 i386 executable. It refuses what a bootloader
// cannot load: other classes and machines, no PT_LOAD, a segment whose
// file bytes are missing or whose memory size is smaller than its file
// size, overlapping segments, an entry outside every segment.
func ParseELF(raw []byte) (*ELFImage, error) {
	if len(raw) < 4 || string(raw[:4]) != elf.ELFMAG {
		return nil, &FormatError{Context: "kernel", Msg: "not an ELF file (no \\x7fELF magic)", Class: ErrNotELF}
	}
	if len(raw) > 4 && elf.Class(raw[4]) == elf.ELFCLASS64 {
		return nil, &FormatError{Context: "ELF", Msg: "ELF64 image: kvmboot boots i386 (ELF32) kernels"}
	}
	f, err := elf.NewFile(bytes.NewReader(raw))
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, &FormatError{Context: "ELF", Msg: fmt.Sprintf("truncated: its headers point past the end of the file (%d bytes)", len(raw)), Class: ErrTruncated}
	}
	if err != nil {
		return nil, &FormatError{Context: "ELF", Msg: "cannot parse", Err: err}
	}
	if f.Class != elf.ELFCLASS32 {
		return nil, &FormatError{Context: "ELF", Msg: fmt.Sprintf("%v image: kvmboot boots ELF32 i386 kernels", f.Class)}
	}
	if f.Data != elf.ELFDATA2LSB {
		return nil, &FormatError{Context: "ELF", Msg: "big-endian image: i386 kernels are little-endian"}
	}
	if f.Machine != elf.EM_386 {
		return nil, &FormatError{Context: "ELF", Msg: fmt.Sprintf("machine %v: kvmboot boots i386 kernels", f.Machine)}
	}
	if f.Type != elf.ET_EXEC {
		return nil, &FormatError{Context: "ELF", Msg: fmt.Sprintf("type %v: a kernel is an executable (ET_EXEC)", f.Type)}
	}
	img := &ELFImage{File: f, Raw: raw, Base: ^uint64(0)}
	for i, p := range f.Progs {
		if p.Type != elf.PT_LOAD || p.Memsz == 0 {
			continue
		}
		if p.Filesz > p.Memsz {
			return nil, &FormatError{Context: "ELF", Msg: fmt.Sprintf("program header %d: file size %#x exceeds memory size %#x", i, p.Filesz, p.Memsz)}
		}
		if !inFile(raw, p.Off, p.Filesz) {
			return nil, &FormatError{Context: "ELF", Msg: fmt.Sprintf("program header %d: bytes %#x+%#x are past the end of the file (%#x bytes): truncated?", i, p.Off, p.Filesz, len(raw)), Class: ErrTruncated}
		}
		if p.Paddr+p.Memsz > 1<<32 || p.Paddr+p.Memsz < p.Paddr {
			return nil, &FormatError{Context: "ELF", Msg: fmt.Sprintf("program header %d: %#x+%#x goes beyond 4 GiB", i, p.Paddr, p.Memsz)}
		}
		img.Segments = append(img.Segments, Segment{
			Paddr: p.Paddr, Vaddr: p.Vaddr, FileSz: p.Filesz, MemSz: p.Memsz, Align: p.Align,
			Flags: p.Flags, Data: raw[p.Off : p.Off+p.Filesz], ProgramHeaderN: i,
		})
		img.Base = min(img.Base, p.Paddr)
		img.End = max(img.End, p.Paddr+p.Memsz)
		img.MaxAlign = max(img.MaxAlign, p.Align)
	}
	if len(img.Segments) == 0 {
		return nil, &FormatError{Context: "ELF", Msg: "no loadable segment (PT_LOAD)"}
	}
	slices.SortFunc(img.Segments, func(a, b Segment) int { return cmp.Compare(a.Paddr, b.Paddr) })
	for i := 1; i < len(img.Segments); i++ {
		a, b := img.Segments[i-1], img.Segments[i]
		if a.Paddr+a.MemSz > b.Paddr {
			return nil, &FormatError{Context: "ELF", Msg: fmt.Sprintf("program headers %d and %d overlap in physical memory", a.ProgramHeaderN, b.ProgramHeaderN)}
		}
	}
	entry, ok := img.physical(f.Entry)
	if !ok {
		return nil, &FormatError{Context: "ELF", Msg: fmt.Sprintf("entry point %#x is in no loadable segment", f.Entry)}
	}
	img.Entry = entry
	return img, nil
}

// inFile reports whether raw holds the size bytes at off, with no overflow
// however large a header's values.
func inFile(raw []byte, off, size uint64) bool {
	return off <= uint64(len(raw)) && size <= uint64(len(raw))-off
}

// physical translates an address that is either physical already or
// virtual (kernels linked high give virtual addresses) to physical.
func (img *ELFImage) physical(a uint64) (uint64, bool) {
	for _, s := range img.Segments {
		if a >= s.Paddr && a < s.Paddr+s.MemSz {
			return a, true
		}
	}
	for _, s := range img.Segments {
		if a >= s.Vaddr && a < s.Vaddr+s.MemSz {
			return s.Paddr + (a - s.Vaddr), true
		}
	}
	return 0, false
}

// Memory returns the image's file bytes as they sit in memory from Base to
// FileEnd: segment bytes, zeros for the gaps between segments. The bss
// after FileEnd is not allocated (a small file can claim gigabytes of it):
// a placement's Size covers it, and guest RAM starts zeroed.
func (img *ELFImage) Memory() []byte {
	m := hugemem.Make[byte](int(img.FileEnd()))
	for _, s := range img.Segments {
		if s.FileSz > 0 {
			copy(m[s.Paddr-img.Base:], s.Data)
		}
	}
	return m
}

// FileEnd is how much of Memory holds file bytes; the rest is zero.
func (img *ELFImage) FileEnd() uint64 {
	var end uint64
	for _, s := range img.Segments {
		if s.FileSz > 0 {
			end = max(end, s.Paddr+s.FileSz-img.Base)
		}
	}
	return end
}
