package loader

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
)

// The hand-built i386 kernel: linked at virtual 0xC1000000, physical
// 0x1000000, one PT_LOAD at file offset 0x1000 as ld lays out a kernel.
const (
	testVirt = 0xC1000000
	testPhys = 0x1000000
	testOff  = 0x1000
)

type testSection struct {
	name       string
	typ        elf.SectionType
	flags      elf.SectionFlag
	addr       uint32 // for SHF_ALLOC sections: also fixes the file offset
	data       []byte
	size       uint32 // SHT_NOBITS only
	link, info uint32
	entsize    uint32
}

type testELF struct {
	typ      elf.Type
	machine  elf.Machine
	sections []testSection // index 0, the null section, is implied
}

// bytes writes the file: ELF header, one PT_LOAD covering the alloc
// sections, section data, .shstrtab, section headers.
func (e *testELF) bytes() []byte {
	bo := binary.LittleEndian
	shstrtab := []byte{0}
	names := make([]uint32, len(e.sections)+1)
	for i, s := range e.sections {
		names[i] = uint32(len(shstrtab))
		shstrtab = append(append(shstrtab, s.name...), 0)
	}
	names[len(e.sections)] = uint32(len(shstrtab))
	shstrtab = append(shstrtab, ".shstrtab\x00"...)
	secs := append(slices.Clone(e.sections), testSection{name: ".shstrtab", typ: elf.SHT_STRTAB, data: shstrtab})

	out := make([]byte, testOff)
	offs := make([]uint32, len(secs))
	var loadEnd, memEnd uint32 = testOff, testOff
	for i, s := range secs {
		if s.flags&elf.SHF_ALLOC == 0 {
			continue
		}
		offs[i] = testOff + s.addr - testVirt
		if s.typ == elf.SHT_NOBITS {
			memEnd = max(memEnd, offs[i]+s.size)
			continue
		}
		if need := int(offs[i]) + len(s.data); need > len(out) {
			out = append(out, make([]byte, need-len(out))...)
		}
		copy(out[offs[i]:], s.data)
		loadEnd = max(loadEnd, offs[i]+uint32(len(s.data)))
	}
	memEnd = max(memEnd, loadEnd)
	for i, s := range secs {
		if s.flags&elf.SHF_ALLOC == 0 {
			for len(out)%4 != 0 {
				out = append(out, 0)
			}
			offs[i] = uint32(len(out))
			out = append(out, s.data...)
		}
	}
	for len(out)%4 != 0 {
		out = append(out, 0)
	}
	shoff := uint32(len(out))
	out = append(out, make([]byte, 40)...) // null section header
	for i, s := range secs {
		size := uint32(len(s.data))
		if s.typ == elf.SHT_NOBITS {
			size = s.size
		}
		for _, v := range []uint32{names[i], uint32(s.typ), uint32(s.flags), s.addr, offs[i], size, s.link, s.info, 4, s.entsize} {
			out = bo.AppendUint32(out, v)
		}
	}
	// ELF header and the program header right after it.
	copy(out, []byte{0x7f, 'E', 'L', 'F', byte(elf.ELFCLASS32), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)})
	bo.PutUint16(out[16:], uint16(e.typ))
	bo.PutUint16(out[18:], uint16(e.machine))
	bo.PutUint32(out[20:], uint32(elf.EV_CURRENT))
	bo.PutUint32(out[24:], testVirt)            // e_entry
	bo.PutUint32(out[28:], 52)                  // e_phoff
	bo.PutUint32(out[32:], shoff)               // e_shoff
	bo.PutUint16(out[40:], 52)                  // e_ehsize
	bo.PutUint16(out[42:], 32)                  // e_phentsize
	bo.PutUint16(out[44:], 1)                   // e_phnum
	bo.PutUint16(out[46:], 40)                  // e_shentsize
	bo.PutUint16(out[48:], uint16(len(secs)+1)) // e_shnum
	bo.PutUint16(out[50:], uint16(len(secs)))   // e_shstrndx
	ph := out[52:]
	for i, v := range []uint32{uint32(elf.PT_LOAD), testOff, testVirt, testPhys, loadEnd - testOff, memEnd - testOff, uint32(elf.PF_R | elf.PF_W | elf.PF_X), 0x1000} {
		bo.PutUint32(ph[4*i:], v)
	}
	return out
}

func sym(name uint32, value uint32, shndx elf.SectionIndex) []byte {
	b := binary.LittleEndian.AppendUint32(nil, name)
	b = binary.LittleEndian.AppendUint32(b, value)
	b = binary.LittleEndian.AppendUint32(b, 4)
	b = append(b, byte(elf.STB_GLOBAL)<<4|byte(elf.STT_OBJECT), 0)
	return binary.LittleEndian.AppendUint16(b, uint16(shndx))
}

type rel struct {
	off uint32
	sym uint32
	typ elf.R_386
}

func rels(rs ...rel) []byte {
	var b []byte
	for _, r := range rs {
		b = binary.LittleEndian.AppendUint32(b, r.off)
		b = binary.LittleEndian.AppendUint32(b, r.sym<<8|uint32(r.typ))
	}
	return b
}

// Section indices in testKernel.
const (
	secText = 1 + iota
	secData
	secNotes
	secBss
	secComment
	secSymtab
	secStrtab
	secRelText
	secRelData
	secRelNotes
	secRelComment
)

// Symbols in testKernel.
const (
	symText   = 1 // in .text
	symAbs    = 2 // SHN_ABS
	symUndef  = 3 // weak, undefined
	symData   = 4 // in .data
	numSymbol = 5
)

// testKernel returns an ET_EXEC with every kind of relocation EmitRelocs must
// tell apart; wantTestKernel is the answer.
func testKernel() *testELF {
	symtab := slices.Concat(make([]byte, 16),
		sym(1, testVirt+0x10, secText),
		sym(10, 0x1234, elf.SHN_ABS),
		sym(18, 0, elf.SHN_UNDEF),
		sym(29, testVirt+0x50, secData))
	strtab := []byte("\x00text_sym\x00abs_sym\x00weak_undef\x00data_sym\x00")
	return &testELF{typ: elf.ET_EXEC, machine: elf.EM_386, sections: []testSection{
		{name: ".text", typ: elf.SHT_PROGBITS, flags: elf.SHF_ALLOC | elf.SHF_EXECINSTR, addr: testVirt, data: make([]byte, 0x40)},
		{name: ".data", typ: elf.SHT_PROGBITS, flags: elf.SHF_ALLOC | elf.SHF_WRITE, addr: testVirt + 0x40, data: bytes.Repeat([]byte{0x11}, 0x20)},
		{name: ".notes", typ: elf.SHT_NOTE, flags: elf.SHF_ALLOC, addr: testVirt + 0x60, data: make([]byte, 0x10)},
		{name: ".bss", typ: elf.SHT_NOBITS, flags: elf.SHF_ALLOC | elf.SHF_WRITE, addr: testVirt + 0x70, size: 0x100},
		{name: ".comment", typ: elf.SHT_PROGBITS, data: []byte("GCC: (Debian) 12\x00")},
		{name: ".symtab", typ: elf.SHT_SYMTAB, data: symtab, link: secStrtab, info: 1, entsize: 16},
		{name: ".strtab", typ: elf.SHT_STRTAB, data: strtab},
		{name: ".rel.text", typ: elf.SHT_REL, link: secSymtab, info: secText, entsize: 8, data: rels(
			rel{testVirt + 0x04, symText, elf.R_386_32},    // site
			rel{testVirt + 0x08, symAbs, elf.R_386_32},     // absolute
			rel{testVirt + 0x0c, symText, elf.R_386_PC32},  // left alone
			rel{testVirt + 0x10, 0, elf.R_386_32},          // no symbol: absolute
			rel{testVirt + 0x14, symUndef, elf.R_386_32},   // weak undefined: absolute
			rel{testVirt + 0x18, symText, elf.R_386_PLT32}, // left alone
			rel{testVirt + 0x1c, 0, elf.R_386_NONE},        // left alone
		)},
		{name: ".rel.data", typ: elf.SHT_REL, link: secSymtab, info: secData, entsize: 8, data: rels(
			rel{testVirt + 0x44, symData, elf.R_386_32},
			rel{testVirt + 0x48, symText, elf.R_386_32},
			rel{testVirt + 0x4c, symText, elf.R_386_PC16},
		)},
		// Relocations for sections that are not loaded, or are notes, are
		// skipped whole, unsupported types included.
		{name: ".rel.notes", typ: elf.SHT_REL, link: secSymtab, info: secNotes, entsize: 8, data: rels(
			rel{testVirt + 0x60, symText, elf.R_386_32},
			rel{testVirt + 0x64, symText, elf.R_386_GOT32},
		)},
		{name: ".rel.comment", typ: elf.SHT_REL, link: secSymtab, info: secComment, entsize: 8, data: rels(
			rel{0, symText, elf.R_386_32},
			rel{4, symText, elf.R_386_TLS_IE},
		)},
	}}
}

var wantTestKernel = Relocs{
	Source: "emit-relocs",
	Sites:  []uint32{testPhys + 0x04, testPhys + 0x44, testPhys + 0x48},
	ByType: map[string]int{"R_386_32": 3, "R_386_PC32": 1, "R_386_PLT32": 1, "R_386_NONE": 1, "R_386_PC16": 1},
	// R_386_32 against SHN_ABS, symbol 0 and a weak undefined symbol.
	Absolute: 3,
}

func parseELF(t testing.TB, b []byte) *elf.File {
	t.Helper()
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func checkRelocs(t *testing.T, got *Relocs, want Relocs) {
	t.Helper()
	if got.Source != want.Source || !slices.Equal(got.Sites, want.Sites) || !maps.Equal(got.ByType, want.ByType) || got.Absolute != want.Absolute {
		t.Errorf("got  %+v (sites %#x)\nwant %+v (sites %#x)", *got, got.Sites, want, want.Sites)
	}
}

func TestEmitRelocs(t *testing.T) {
	blob := testKernel().bytes()
	r, err := EmitRelocs(parseELF(t, blob))
	if err != nil {
		t.Fatal(err)
	}
	checkRelocs(t, r, wantTestKernel)

	// The sites are where the words are: relocate the loaded image.
	img, base := loadSegments(t, blob)
	if base != testPhys {
		t.Fatalf("image base %#x, want %#x", base, testPhys)
	}
	before := bytes.Clone(img)
	if err := r.Apply(img, base, 0x2000000); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		off  int
		want uint32
	}{
		{0x04, 0x2000000},              // .text word, was 0
		{0x44, 0x11111111 + 0x2000000}, // .data words
		{0x48, 0x11111111 + 0x2000000},
		{0x08, 0}, // absolute: untouched
		{0x4c, 0x11111111},
	} {
		if got := binary.LittleEndian.Uint32(img[tc.off:]); got != tc.want {
			t.Errorf("word at +%#x = %#x, want %#x", tc.off, got, tc.want)
		}
	}
	diff := 0
	for i := range img {
		if img[i] != before[i] {
			diff++
		}
	}
	if diff > 3*4 {
		t.Errorf("%d bytes changed, want at most 12", diff)
	}
}

func TestEmitRelocsNone(t *testing.T) {
	k := testKernel()
	k.sections = k.sections[:secRelText-1]
	r, err := EmitRelocs(parseELF(t, k.bytes()))
	if err != nil {
		t.Fatal(err)
	}
	checkRelocs(t, r, Relocs{Source: "none", ByType: map[string]int{}})
}

func TestEmitRelocsErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(k *testELF)
		want string
	}{
		{"unsupported type", func(k *testELF) {
			k.sections[secRelText-1].data = append(k.sections[secRelText-1].data, rels(rel{testVirt + 0x20, symText, elf.R_386_GOT32})...)
		}, "relocations: unsupported relocation type R_386_GOT32 in .rel.text at 0xc1000020"},
		{"absolute 16-bit", func(k *testELF) {
			k.sections[secRelData-1].data = rels(rel{testVirt + 0x40, symData, elf.R_386_16})
		}, "unsupported relocation type R_386_16 in .rel.data"},
		{"RELA", func(k *testELF) {
			k.sections[secRelText-1].typ = elf.SHT_RELA
			k.sections[secRelText-1].name = ".rela.text"
		}, "section .rela.text is SHT_RELA, which i386 does not use"},
		{"site outside PT_LOAD", func(k *testELF) {
			k.sections[secRelText-1].data = rels(rel{testVirt + 0x1000, symText, elf.R_386_32})
		}, "R_386_32 site 0xc1001000 in .rel.text lies in no PT_LOAD segment"},
		{"site straddles segment end", func(k *testELF) {
			k.sections[secRelText-1].data = rels(rel{testVirt + 0x16e, symText, elf.R_386_32})
		}, "lies in no PT_LOAD segment"},
		{"symbol past table", func(k *testELF) {
			k.sections[secRelText-1].data = rels(rel{testVirt + 0x04, numSymbol, elf.R_386_32})
		}, "names symbol 5, past the end of the symbol table"},
		{"no such target", func(k *testELF) { k.sections[secRelText-1].info = 99 }, "section .rel.text applies to section 99, which does not exist"},
		{"no such symtab", func(k *testELF) { k.sections[secRelText-1].link = 99 }, "section .rel.text links to section 99"},
		{"link not a symtab", func(k *testELF) { k.sections[secRelText-1].link = secStrtab }, "links to .strtab, which is SHT_STRTAB, not a symbol table"},
		{"odd size", func(k *testELF) { k.sections[secRelText-1].data = make([]byte, 12) }, "not a whole number of 8-byte Elf32_Rel entries"},
		{"ET_DYN", func(k *testELF) { k.typ = elf.ET_DYN }, "ET_DYN file, want ET_EXEC"},
		{"x86-64", func(k *testELF) { k.machine = elf.EM_X86_64 }, "ELFCLASS32 EM_X86_64 file, want ELFCLASS32 EM_386"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := testKernel()
			tc.edit(k)
			_, err := EmitRelocs(parseELF(t, k.bytes()))
			wantFormatError(t, err, tc.want)
		})
	}
}

// linuxTable is Linux's appended relocation table for testKernel, as
// arch/x86/tools/relocs writes it for i386: a 0, then the virtual addresses.
var linuxTable = []uint32{0, testVirt + 0x04, testVirt + 0x44, testVirt + 0x48}

func withTable(elfBytes []byte, table []uint32) []byte {
	b := bytes.Clone(elfBytes)
	for _, e := range table {
		b = binary.LittleEndian.AppendUint32(b, e)
	}
	return b
}

func TestELFEnd(t *testing.T) {
	k := testKernel().bytes()
	// Move .comment's data after the section header table, so that the
	// file ends with section data.
	moved := bytes.Clone(k)
	shoff := binary.LittleEndian.Uint32(k[32:])
	binary.LittleEndian.PutUint32(moved[shoff+40*secComment+16:], uint32(len(k)))
	moved = append(moved, "GCC: (Debian) 12\x00"...)
	for _, tc := range []struct {
		name string
		b    []byte
		want int
	}{
		{"kernel", k, len(k)},
		{"kernel and table", withTable(k, linuxTable), len(k)},
		{"section after headers", moved, len(moved)},
	} {
		got, err := ELFEnd(tc.b)
		if err != nil || got != tc.want {
			t.Errorf("%s: ELFEnd = %d, %v; want %d", tc.name, got, err, tc.want)
		}
	}
	_, err := ELFEnd(moved[:len(moved)-1])
	wantFormatError(t, err, "ELF: file extends to 0x")
	_, err = ELFEnd(k[:len(k)-40])
	wantFormatError(t, err, "ELF: cannot parse")
	_, err = ELFEnd([]byte("not an ELF file, just some bytes of text"))
	wantFormatError(t, err, "ELF: cannot parse")
}

// TestLinuxRelocs checks the table against misc.c's arithmetic: for load
// address out, delta = out - LOAD_PHYSICAL_ADDR, map = delta - PAGE_OFFSET,
// and entry e adjusts the word at (int32)e + map.
func TestLinuxRelocs(t *testing.T) {
	k := testKernel().bytes()
	blob := withTable(k, linuxTable)
	end, err := ELFEnd(blob)
	if err != nil {
		t.Fatal(err)
	}
	r, err := LinuxRelocs(blob, end)
	if err != nil {
		t.Fatal(err)
	}
	checkRelocs(t, r, Relocs{Source: "linux", Sites: wantTestKernel.Sites, ByType: map[string]int{"R_386_32": 3}})

	const out = 0x3000000
	delta := uint32(out - testPhys)
	mapping := int64(delta) - linuxPageOffset
	img, base := loadSegments(t, k)
	moved := bytes.Clone(img)
	if err := r.Apply(moved, base, delta); err != nil {
		t.Fatal(err)
	}
	for i, e := range linuxTable[1:] {
		ptr := uint32(int64(int32(e)) + mapping) // where misc.c writes, at run time
		if ptr < out || ptr >= out+uint32(len(img)) {
			t.Fatalf("entry %#x: misc.c writes at %#x, outside the kernel", e, ptr)
		}
		if got := r.Sites[i] - uint32(base) + out; got != ptr {
			t.Errorf("entry %#x: site %#x lands at %#x after the move, misc.c writes %#x", e, r.Sites[i], got, ptr)
		}
		o := ptr - out
		if w, w0 := binary.LittleEndian.Uint32(moved[o:]), binary.LittleEndian.Uint32(img[o:]); w != w0+delta {
			t.Errorf("word at %#x: %#x, want %#x", ptr, w, w0+delta)
		}
	}
}

func TestLinuxRelocsErrors(t *testing.T) {
	k := testKernel().bytes()
	for _, tc := range []struct {
		name   string
		blob   []byte
		elfEnd int
		want   string
	}{
		{"no table", k, len(k), "relocations: no 0 entry ends the table in the 0 bytes after the ELF file"},
		// The ELF file ends in zero bytes: they must not count.
		{"no terminator", withTable(k, linuxTable[1:]), len(k), "no 0 entry ends the table in the 12 bytes after the ELF file"},
		{"end past blob", k, len(k) + 1, "ELF end"},
		{"negative end", k, -1, "ELF end -1 lies outside"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LinuxRelocs(tc.blob, tc.elfEnd)
			wantFormatError(t, err, tc.want)
		})
	}
	// An empty table is a relocatable kernel with nothing to move.
	r, err := LinuxRelocs(withTable(k, []uint32{0}), len(k))
	if err != nil || len(r.Sites) != 0 {
		t.Errorf("empty table: %v, %v", r, err)
	}
}

func TestApply(t *testing.T) {
	const base = 0x1000000
	for _, tc := range []struct {
		name  string
		sites []uint32
		base  uint64
		size  int
		want  string // error, or "" for success
	}{
		{"first and last word", []uint32{base, base + 60}, base, 64, ""},
		{"unaligned", []uint32{base + 1, base + 59}, base, 64, ""},
		{"none", nil, base, 0, ""},
		{"below image", []uint32{base, base - 4}, base, 64, "relocations: site 1 of 2, 0xfffffc, lies outside the image [0x1000000, 0x1000040)"},
		{"straddles end", []uint32{base + 61}, base, 64, "site 0 of 1, 0x100003d, lies outside"},
		{"at end", []uint32{base, base + 64}, base, 64, "site 1 of 2, 0x1000040"},
		{"image too small", []uint32{base}, base, 3, "lies outside the image [0x1000000, 0x1000003)"},
		{"base above 4G", []uint32{base}, 1 << 32, 64, "lies outside the image [0x100000000, 0x100000040)"},
		{"image wraps", []uint32{base}, 1<<64 - 32, 64, "lies outside"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Guard bytes around img catch writes outside it.
			buf := bytes.Repeat([]byte{0xa5}, tc.size+8)
			img := buf[4 : 4+tc.size : 4+tc.size]
			r := &Relocs{Sites: tc.sites}
			err := r.Apply(img, tc.base, 0x01020304)
			if tc.want != "" {
				wantFormatError(t, err, tc.want)
				if !bytes.Equal(buf, bytes.Repeat([]byte{0xa5}, len(buf))) {
					t.Fatal("failed Apply wrote to the image")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := bytes.Repeat([]byte{0xa5}, len(buf))
			for _, s := range tc.sites {
				w := want[4+s-base:]
				binary.LittleEndian.PutUint32(w, binary.LittleEndian.Uint32(w)+0x01020304)
			}
			if !bytes.Equal(buf, want) {
				t.Fatalf("image\n% x\nwant\n% x", buf, want)
			}
		})
	}
}

// checkApplyContained applies r to a guarded copy of img and fails if it
// writes outside img, or writes at all when it fails.
func checkApplyContained(t *testing.T, r *Relocs, img []byte, base uint64, delta uint32) {
	buf := make([]byte, len(img)+8)
	copy(buf[4:], img)
	inner := buf[4 : 4+len(img) : 4+len(img)]
	orig := bytes.Clone(buf)
	if err := r.Apply(inner, base, delta); err != nil {
		var fe *FormatError
		if !errors.As(err, &fe) {
			t.Fatalf("Apply: %v (%T), want a *FormatError", err, err)
		}
		if !bytes.Equal(buf, orig) {
			t.Fatal("failed Apply wrote to the image")
		}
		return
	}
	if !bytes.Equal(buf[:4], orig[:4]) || !bytes.Equal(buf[len(buf)-4:], orig[len(orig)-4:]) {
		t.Fatal("Apply wrote outside the image")
	}
}

func FuzzLinuxRelocs(f *testing.F) {
	k := testKernel().bytes()
	f.Add(withTable(k, linuxTable), len(k), uint32(testPhys), uint32(0x2000000))
	f.Add(withTable(k, []uint32{0, 0x1000, 0xffffffff}), len(k), uint32(0), uint32(1))
	f.Fuzz(func(t *testing.T, blob []byte, elfEnd int, base, delta uint32) {
		r, err := LinuxRelocs(blob, elfEnd)
		if err != nil {
			wantFormatError(t, err, "relocations: ")
			return
		}
		if 4*(len(r.Sites)+1) > len(blob)-elfEnd {
			t.Fatalf("%d sites from %d bytes after the ELF file", len(r.Sites), len(blob)-elfEnd)
		}
		checkApplyContained(t, r, blob, uint64(base), delta)
	})
}

func FuzzEmitRelocs(f *testing.F) {
	f.Add(testKernel().bytes())
	k := testKernel()
	k.sections[secRelText-1].data = append(k.sections[secRelText-1].data, rels(rel{testVirt + 0x20, symText, elf.R_386_GOT32})...)
	f.Add(k.bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		ef, err := elf.NewFile(bytes.NewReader(b))
		if err != nil {
			return
		}
		r, err := EmitRelocs(ef)
		if err != nil {
			wantFormatError(t, err, "relocations: ")
			return
		}
		checkApplyContained(t, r, make([]byte, 0x200), testPhys, 0x2000000)
	})
}

// TestLinux32ImageNeedsRelocs: a bzImage that says it is relocatable but
// whose image has no relocation info stays at its link address, as an ELF
// without relocations does; with the info it may move.
func TestLinux32ImageNeedsRelocs(t *testing.T) {
	for _, tc := range []struct {
		relocatable uint8
		relocs      *Relocs
		movable     bool
		why         string
	}{
		{1, &Relocs{Source: "linux", Sites: []uint32{0x1000010}}, true, ""},
		{1, &Relocs{Source: "none"}, false, "no relocation info"},
		{1, nil, false, "no relocation info"},
		{0, &Relocs{Source: "linux"}, false, "not relocatable"},
	} {
		k := &Kernel{
			BzImage: &BzImage{Header: SetupHeader{RelocatableKernel: tc.relocatable}},
			ELF:     &ELFImage{Base: 0x1000000, End: 0x1100000, Entry: 0x1000000, Relocs: tc.relocs},
		}
		ki := linux32Image(k)
		if (ki.relocs != nil) != tc.movable || !strings.Contains(ki.noRelocs, tc.why) {
			t.Errorf("relocatable_kernel %d, relocs %+v: relocs %v, why %q; want movable %v, why %q", tc.relocatable, tc.relocs, ki.relocs, ki.noRelocs, tc.movable, tc.why)
		}
	}
}
