package loader

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"math"

	"kvmboot/internal/hugemem"
)

// linuxPageOffset is i386 Linux's __PAGE_OFFSET with the default 3G/1G split
// (CONFIG_PAGE_OFFSET): the kernel links at virtual = physical + 0xC0000000,
// and its appended relocation table holds virtual addresses.
const linuxPageOffset = 0xC0000000

// Relocs lists the 32-bit words of an image that must move with it: when the
// image is loaded delta bytes above its link-time physical address, each of
// these words gets delta added. i386 kernels need nothing else, since
// PC-relative references move by themselves.
type Relocs struct {
	// Source says where the list came from: "linux" (the table Linux
	// appends to its payload), "emit-relocs" (.rel sections kept by
	// `ld --emit-relocs`), or "none".
	Source string
	// Sites are the link-time physical addresses of the words to adjust.
	Sites []uint32
	// ByType counts relocations by type name: "R_386_32" counts the
	// relocations that became sites, other types (e.g. "R_386_PC32") the
	// ones left alone. The Linux table has only "R_386_32".
	ByType map[string]int
	// Absolute counts the R_386_32 relocations skipped because they do not
	// move with the image: against no symbol, an SHN_ABS symbol or an
	// undefined (weak, hence zero) one.
	Absolute int
}

// found reports whether r lists the words to adjust when the image moves:
// not for nil, nor for an image where none were found ("none").
func (r *Relocs) found() bool { return r != nil && r.Source != "none" }

func relocError(format string, args ...any) error {
	return &FormatError{Context: "relocations", Msg: fmt.Sprintf(format, args...)}
}

// LinuxRelocs reads the relocation table that Linux (CONFIG_RELOCATABLE)
// appends after the vmlinux ELF file in its decompressed payload: u32
// entries read backwards from the end of blob up to a 0 entry, which must
// lie at or after elfEnd (see ELFEnd). Each entry is a link-time virtual
// address; its site is the entry minus PAGE_OFFSET, computed modulo 2^32 as
// misc.c's handle_relocations does (ptr = (int32)e + delta - PAGE_OFFSET).
// Sites are returned in table order.
func LinuxRelocs(blob []byte, elfEnd int) (*Relocs, error) {
	if elfEnd < 0 || elfEnd > len(blob) {
		return nil, relocError("ELF end %d lies outside the %d-byte payload", elfEnd, len(blob))
	}
	stop := len(blob) - 4
	for ; stop >= elfEnd; stop -= 4 {
		if binary.LittleEndian.Uint32(blob[stop:]) == 0 {
			break
		}
	}
	if stop < elfEnd {
		return nil, relocError("no 0 entry ends the table in the %d bytes after the ELF file: not a relocatable kernel, or a truncated payload", len(blob)-elfEnd)
	}
	table := blob[stop+4:]
	sites := hugemem.Make[uint32](len(table) / 4) // Debian's kernel: 276,083 sites
	for i := range sites {
		sites[i] = binary.LittleEndian.Uint32(table[4*i:]) - linuxPageOffset
	}
	return &Relocs{Source: "linux", Sites: sites, ByType: map[string]int{elf.R_386_32.String(): len(sites)}}, nil
}

// ELFEnd returns the size of the ELF file at the start of blob: the end of
// the furthest of its headers, header tables, sections and segments. In
// Linux's payload the relocation table starts after it.
func ELFEnd(blob []byte) (int, error) {
	f, err := elf.NewFile(bytes.NewReader(blob))
	if err != nil {
		return 0, &FormatError{Context: "ELF", Msg: "cannot parse", Err: err}
	}
	// debug/elf does not keep the header's table offsets.
	bo := f.ByteOrder
	var phoff, shoff uint64
	var ehsize, phentsize, shentsize uint16
	if f.Class == elf.ELFCLASS64 {
		phoff, shoff = bo.Uint64(blob[0x20:]), bo.Uint64(blob[0x28:])
		ehsize, phentsize, shentsize = bo.Uint16(blob[0x34:]), bo.Uint16(blob[0x36:]), bo.Uint16(blob[0x3a:])
	} else {
		phoff, shoff = uint64(bo.Uint32(blob[0x1c:])), uint64(bo.Uint32(blob[0x20:]))
		ehsize, phentsize, shentsize = bo.Uint16(blob[0x28:]), bo.Uint16(blob[0x2a:]), bo.Uint16(blob[0x2e:])
	}
	end := uint64(ehsize)
	// len(Progs) and len(Sections) also cover extended numbering.
	if n := uint64(len(f.Progs)); n > 0 {
		end = max(end, extent(phoff, n*uint64(phentsize)))
	}
	if n := uint64(len(f.Sections)); n > 0 {
		end = max(end, extent(shoff, n*uint64(shentsize)))
	}
	for _, s := range f.Sections {
		if s.Type != elf.SHT_NOBITS {
			end = max(end, extent(s.Offset, s.FileSize))
		}
	}
	for _, p := range f.Progs {
		end = max(end, extent(p.Off, p.Filesz))
	}
	if end > uint64(len(blob)) {
		return 0, &FormatError{Context: "ELF", Msg: fmt.Sprintf("file extends to 0x%x, past the end of the %d-byte blob", end, len(blob))}
	}
	return int(end), nil
}

// extent returns off+size, or the largest uint64 if that overflows.
func extent(off, size uint64) uint64 {
	if off > math.MaxUint64-size {
		return math.MaxUint64
	}
	return off + size
}

// EmitRelocs reads the .rel sections that `ld --emit-relocs` keeps in an
// i386 ET_EXEC file, following the rules of Linux's arch/x86/tools/relocs.c:
//
//   - Sections whose target (sh_info) is not SHF_ALLOC, or is SHT_NOTE, are
//     skipped and not counted: they do not end up in memory.
//   - R_386_32 becomes a site, its r_offset (a virtual address) turned into
//     a physical one through the PT_LOAD segment that holds it, unless its
//     symbol is absolute (see Relocs.Absolute): ld emits relocations
//     against absolute symbols too, but their values do not move.
//   - PC-relative types (PC32, PLT32, PC16, PC8, GOTPC) and R_386_NONE are
//     counted and left alone.
//   - Any other type, SHT_RELA sections and sites outside every PT_LOAD
//     are errors: applying them wrong would corrupt the kernel silently.
//
// A file without such sections gives Source "none".
func EmitRelocs(f *elf.File) (*Relocs, error) {
	if f.Class != elf.ELFCLASS32 || f.Machine != elf.EM_386 {
		return nil, relocError("%v %v file, want ELFCLASS32 EM_386", f.Class, f.Machine)
	}
	if f.Type != elf.ET_EXEC {
		return nil, relocError("%v file, want ET_EXEC (a linked kernel)", f.Type)
	}
	var loads []*elf.Prog
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD {
			loads = append(loads, p)
		}
	}
	r := &Relocs{Source: "none", ByType: map[string]int{}}
	var counts [256]int // by type, turned into ByType at the end
	for _, s := range f.Sections {
		if s.Type == elf.SHT_RELA {
			return nil, relocError("section %s is SHT_RELA, which i386 does not use", s.Name)
		}
		if s.Type != elf.SHT_REL {
			continue
		}
		if int(s.Info) >= len(f.Sections) {
			return nil, relocError("section %s applies to section %d, which does not exist", s.Name, s.Info)
		}
		if t := f.Sections[s.Info]; t.Flags&elf.SHF_ALLOC == 0 || t.Type == elf.SHT_NOTE {
			continue
		}
		r.Source = "emit-relocs"
		shndx, err := symbolSections(f, s)
		if err != nil {
			return nil, err
		}
		rels, err := s.Data()
		if err != nil {
			return nil, &FormatError{Context: "relocations", Msg: "cannot read " + s.Name, Err: err}
		}
		if len(rels)%8 != 0 {
			return nil, relocError("section %s is %d bytes, not a whole number of 8-byte Elf32_Rel entries", s.Name, len(rels))
		}
		var seg *elf.Prog // the PT_LOAD of the previous site: sites cluster
		for i := 0; i < len(rels); i += 8 {
			off := f.ByteOrder.Uint32(rels[i:])
			info := f.ByteOrder.Uint32(rels[i+4:])
			typ, sym := elf.R_386(info&0xff), info>>8
			switch typ {
			case elf.R_386_32:
			case elf.R_386_NONE, elf.R_386_PC32, elf.R_386_PLT32, elf.R_386_PC16, elf.R_386_PC8, elf.R_386_GOTPC:
				counts[typ]++
				continue
			default:
				return nil, relocError("unsupported relocation type %v in %s at 0x%x", typ, s.Name, off)
			}
			if sym >= uint32(len(shndx)) {
				return nil, relocError("relocation at 0x%x in %s names symbol %d, past the end of the symbol table", off, s.Name, sym)
			}
			if sym == 0 || shndx[sym] == elf.SHN_ABS || shndx[sym] == elf.SHN_UNDEF {
				r.Absolute++
				continue
			}
			if seg == nil || !inSegment(seg, off) {
				seg = nil
				for _, p := range loads {
					if inSegment(p, off) {
						seg = p
						break
					}
				}
				if seg == nil {
					return nil, relocError("R_386_32 site 0x%x in %s lies in no PT_LOAD segment", off, s.Name)
				}
			}
			phys := seg.Paddr + (uint64(off) - seg.Vaddr)
			if phys > math.MaxUint32-3 {
				return nil, relocError("R_386_32 site 0x%x in %s maps to physical 0x%x, above 4 GiB", off, s.Name, phys)
			}
			r.Sites = append(r.Sites, uint32(phys))
			counts[typ]++
		}
	}
	for typ, n := range counts {
		if n > 0 {
			r.ByType[elf.R_386(typ).String()] = n
		}
	}
	return r, nil
}

// inSegment reports whether the 4-byte word at virtual address va lies in p.
func inSegment(p *elf.Prog, va uint32) bool {
	return uint64(va) >= p.Vaddr && uint64(va)+4 <= p.Vaddr+p.Memsz
}

// symbolSections returns the section index of every symbol in the table that
// rel links to, indexed by symbol number: all EmitRelocs needs to know about
// a symbol. It reads the raw table because debug/elf's Symbols drops symbol
// 0, which would shift the numbering.
func symbolSections(f *elf.File, rel *elf.Section) ([]elf.SectionIndex, error) {
	if int(rel.Link) >= len(f.Sections) {
		return nil, relocError("section %s links to section %d, which does not exist", rel.Name, rel.Link)
	}
	st := f.Sections[rel.Link]
	if st.Type != elf.SHT_SYMTAB && st.Type != elf.SHT_DYNSYM {
		return nil, relocError("section %s links to %s, which is %v, not a symbol table", rel.Name, st.Name, st.Type)
	}
	data, err := st.Data()
	if err != nil {
		return nil, &FormatError{Context: "relocations", Msg: "cannot read " + st.Name, Err: err}
	}
	const symSize = 16 // Elf32_Sym; st_shndx is its last two bytes
	shndx := make([]elf.SectionIndex, len(data)/symSize)
	for i := range shndx {
		shndx[i] = elf.SectionIndex(f.ByteOrder.Uint16(data[i*symSize+14:]))
	}
	return shndx, nil
}

// Apply adds delta to the 32-bit little-endian word at every site. img holds
// the image as it will sit in memory, img[0] being the byte whose link-time
// physical address is base. Apply checks every site before it writes any, so
// that a bad table leaves img untouched, and reports the first site outside
// img as a *FormatError.
func (r *Relocs) Apply(img []byte, base uint64, delta uint32) error {
	end := base + uint64(len(img))
	for i, s := range r.Sites {
		if uint64(s) < base || uint64(s)+4 > end || end < base {
			return relocError("site %d of %d, 0x%x, lies outside the image [0x%x, 0x%x)", i, len(r.Sites), s, base, end)
		}
	}
	// Every site is now at or above base, which therefore fits in 32 bits.
	b := uint32(base)
	for _, s := range r.Sites {
		w := img[s-b : s-b+4]
		binary.LittleEndian.PutUint32(w, binary.LittleEndian.Uint32(w)+delta)
	}
	return nil
}
