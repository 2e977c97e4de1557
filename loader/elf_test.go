package loader

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"testing"

	"kvmboot/boot/testkernel"
)

// e32Seg is one program header of a hand-built ELF32 file. data is written
// at off; filesz defaults to len(data).
type e32Seg struct {
	typ                   elf.ProgType
	off                   uint32
	vaddr, paddr          uint32
	filesz, memsz, align  uint32
	flags                 elf.ProgFlag
	data                  []byte
	fileszSet, noDataCopy bool
}

// e32File is a minimal ELF32 file: header, program headers, segment bytes;
// no sections. Fields left zero take an i386 executable's values.
type e32File struct {
	class   elf.Class
	data    elf.Data
	machine elf.Machine
	typ     elf.Type
	entry   uint32
	segs    []e32Seg
	size    int // file size; 0 = just past the last segment's bytes
}

func (e e32File) bytes() []byte {
	class, data, machine, typ := e.class, e.data, e.machine, e.typ
	if class == 0 {
		class = elf.ELFCLASS32
	}
	if data == 0 {
		data = elf.ELFDATA2LSB
	}
	if machine == 0 {
		machine = elf.EM_386
	}
	if typ == 0 {
		typ = elf.ET_EXEC
	}
	const ehsize, phentsize = 52, 32
	size := ehsize + phentsize*len(e.segs)
	for _, s := range e.segs {
		size = max(size, int(s.off)+len(s.data))
	}
	if e.size != 0 {
		size = e.size
	}
	b := make([]byte, max(size, ehsize+phentsize*len(e.segs)))
	le := binary.LittleEndian
	copy(b, []byte{0x7f, 'E', 'L', 'F', byte(class), byte(data), byte(elf.EV_CURRENT)})
	le.PutUint16(b[16:], uint16(typ))
	le.PutUint16(b[18:], uint16(machine))
	le.PutUint32(b[20:], uint32(elf.EV_CURRENT))
	le.PutUint32(b[24:], e.entry)
	le.PutUint32(b[28:], ehsize) // e_phoff
	le.PutUint32(b[32:], 0)      // e_shoff: no sections
	le.PutUint16(b[40:], ehsize)
	le.PutUint16(b[42:], phentsize)
	le.PutUint16(b[44:], uint16(len(e.segs)))
	le.PutUint16(b[46:], 40)
	for i, s := range e.segs {
		p := b[ehsize+phentsize*i:]
		filesz := uint32(len(s.data))
		if s.fileszSet {
			filesz = s.filesz
		}
		for j, v := range []uint32{uint32(s.typ), s.off, s.vaddr, s.paddr, filesz, s.memsz, uint32(s.flags), s.align} {
			le.PutUint32(p[4*j:], v)
		}
		if !s.noDataCopy && len(s.data) > 0 {
			copy(b[s.off:], s.data)
		}
	}
	return b[:size]
}

// pattern returns n recognisable bytes.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*13)
	}
	return b
}

// twoLoads is a kernel with text and data+bss, program headers in
// reverse address order (ParseELF sorts by address).
func twoLoads() e32File {
	return e32File{entry: 0x100010, segs: []e32Seg{
		{typ: elf.PT_LOAD, off: 0x2000, vaddr: 0x102000, paddr: 0x102000, memsz: 0x1000, align: 0x1000, flags: elf.PF_R | elf.PF_W, data: pattern(0x80, 0x40)},
		{typ: elf.PT_NOTE, off: 0x100, data: pattern(0x20, 0)}, // not loaded
		{typ: elf.PT_LOAD, off: 0x1000, vaddr: 0x100000, paddr: 0x100000, memsz: 0x200, align: 0x1000, flags: elf.PF_R | elf.PF_X, data: pattern(0x200, 1)},
	}}
}

func TestParseELFTwoLoads(t *testing.T) {
	e := twoLoads()
	raw := e.bytes()
	img, err := ParseELF(raw)
	if err != nil {
		t.Fatal(err)
	}
	if img.Base != 0x100000 || img.End != 0x103000 || img.Entry != 0x100010 || img.MaxAlign != 0x1000 {
		t.Errorf("base %#x end %#x entry %#x maxalign %#x, want 0x100000 0x103000 0x100010 0x1000", img.Base, img.End, img.Entry, img.MaxAlign)
	}
	if len(img.Segments) != 2 {
		t.Fatalf("%d segments, want 2 (PT_NOTE is not loaded)", len(img.Segments))
	}
	text, data := img.Segments[0], img.Segments[1]
	if text.Paddr != 0x100000 || text.FileSz != 0x200 || text.MemSz != 0x200 || text.ProgramHeaderN != 2 || text.Flags != elf.PF_R|elf.PF_X {
		t.Errorf("text segment %+v", text)
	}
	if data.Paddr != 0x102000 || data.FileSz != 0x80 || data.MemSz != 0x1000 || data.ProgramHeaderN != 0 {
		t.Errorf("data segment %+v", data)
	}
	if !bytes.Equal(text.Data, raw[0x1000:0x1200]) || !bytes.Equal(data.Data, raw[0x2000:0x2080]) {
		t.Errorf("segment data is not the file bytes")
	}

	// Memory: text, a zero gap, data; the bss is not allocated.
	mem := img.Memory()
	want := make([]byte, 0x2080)
	copy(want, e.segs[2].data)
	copy(want[0x2000:], e.segs[0].data)
	if !bytes.Equal(mem, want) {
		t.Errorf("Memory() differs from text, gap, data")
	}
	// FileEnd: the end of the data segment's file bytes, from Base.
	if got := img.FileEnd(); got != 0x2080 {
		t.Errorf("FileEnd() = %#x, want 0x2080", got)
	}
	// Memory is a fresh copy each time: relocating it must not change
	// the file.
	mem[0] ^= 0xFF
	if img.Memory()[0] != raw[0x1000] || raw[0x1000] != e.segs[2].data[0] {
		t.Errorf("Memory() aliases the file")
	}
}

// A kernel linked at a higher-half virtual address: segments go by
// p_paddr, and an entry given as a virtual address is translated.
func TestParseELFHigherHalf(t *testing.T) {
	for _, tc := range []struct {
		entry, want uint32
	}{
		{0xC1000040, 0x1000040}, // virtual
		{0x1000040, 0x1000040},  // already physical
		{0xC1001FFF, 0x1001FFF}, // last byte of bss, virtual
	} {
		e := e32File{entry: tc.entry, segs: []e32Seg{
			{typ: elf.PT_LOAD, off: 0x1000, vaddr: 0xC1000000, paddr: 0x1000000, memsz: 0x2000, align: 0x1000, data: pattern(0x800, 3)},
		}}
		img, err := ParseELF(e.bytes())
		if err != nil {
			t.Fatalf("entry %#x: %v", tc.entry, err)
		}
		if img.Entry != uint64(tc.want) || img.Base != 0x1000000 || img.End != 0x1002000 {
			t.Errorf("entry %#x: Entry %#x Base %#x End %#x, want entry %#x base 0x1000000 end 0x1002000", tc.entry, img.Entry, img.Base, img.End, tc.want)
		}
		if s := img.Segments[0]; s.Vaddr != 0xC1000000 || s.Paddr != 0x1000000 {
			t.Errorf("segment %+v", s)
		}
		if img.FileEnd() != 0x800 {
			t.Errorf("FileEnd() = %#x, want 0x800", img.FileEnd())
		}
	}
}

// Adjacent segments (one ends where the next begins) are fine; a zero-size
// PT_LOAD is ignored rather than counted as a segment at address 0.
func TestParseELFEdges(t *testing.T) {
	e := e32File{entry: 0x200000, segs: []e32Seg{
		{typ: elf.PT_LOAD, off: 0x1000, paddr: 0x200000, vaddr: 0x200000, memsz: 0x1000, align: 0x200000, data: pattern(0x1000, 5)},
		{typ: elf.PT_LOAD, off: 0x2000, paddr: 0x201000, vaddr: 0x201000, memsz: 0x10, align: 4, data: pattern(0x10, 6)},
		{typ: elf.PT_LOAD, off: 0, paddr: 0, vaddr: 0, memsz: 0},
		{typ: elf.PT_LOAD, off: 0x2010, paddr: 0x300000, vaddr: 0x300000, memsz: 0x100, align: 16}, // bss only
	}}
	img, err := ParseELF(e.bytes())
	if err != nil {
		t.Fatal(err)
	}
	if len(img.Segments) != 3 || img.Base != 0x200000 || img.End != 0x300100 || img.MaxAlign != 0x200000 {
		t.Errorf("%d segments, base %#x end %#x maxalign %#x", len(img.Segments), img.Base, img.End, img.MaxAlign)
	}
	// The bss-only segment contributes no file bytes.
	if img.FileEnd() != 0x1010 {
		t.Errorf("FileEnd() = %#x, want 0x1010", img.FileEnd())
	}
	// Memory holds the file bytes only, not the bss that follows them.
	if len(img.Memory()) != 0x1010 {
		t.Errorf("Memory() is %#x bytes, want 0x1010", len(img.Memory()))
	}
}

// TestHugeBssNotAllocated: a small file claiming 2000 MiB of bss costs a
// buffer of its file bytes, not of its memory size; the plan's Size covers
// the bss, which guest RAM holds zeroed already.
func TestHugeBssNotAllocated(t *testing.T) {
	e := e32File{entry: 0x100000, segs: []e32Seg{
		{typ: elf.PT_LOAD, off: 0x1000, paddr: 0x100000, vaddr: 0x100000, memsz: 2000 << 20, align: 4096, data: pattern(0x100, 7)},
	}}
	img, err := ParseELF(e.bytes())
	if err != nil {
		t.Fatal(err)
	}
	if len(img.Memory()) != 0x100 || img.End-img.Base != 2000<<20 {
		t.Errorf("Memory() %#x bytes for an image of %#x", len(img.Memory()), img.End-img.Base)
	}
}

// What a bootloader cannot load is refused with a message saying why.
func TestParseELFRefused(t *testing.T) {
	load := func(off, paddr, memsz uint32, data []byte) e32Seg {
		return e32Seg{typ: elf.PT_LOAD, off: off, vaddr: paddr, paddr: paddr, memsz: memsz, align: 0x1000, data: data}
	}
	elf64 := make([]byte, 64)
	copy(elf64, []byte{0x7f, 'E', 'L', 'F', 2, 1, 1})
	for _, tc := range []struct {
		name string
		raw  []byte
		want string
	}{
		{"not ELF", []byte("MZ\x90\x00 a PE file"), "not an ELF file"},
		{"empty", nil, "not an ELF file"},
		{"ELF64 (an x86-64 vmlinux)", elf64, "ELF64"},
		{"ELF64 header of a real file", e32File{class: elf.ELFCLASS64, entry: 0x100000}.bytes(), "ELF64"},
		{"EM_X86_64", e32File{machine: elf.EM_X86_64, entry: 0x100000, segs: []e32Seg{load(0x1000, 0x100000, 0x10, pattern(0x10, 1))}}.bytes(), "machine EM_X86_64"},
		{"EM_ARM", e32File{machine: elf.EM_ARM, entry: 0x100000, segs: []e32Seg{load(0x1000, 0x100000, 0x10, pattern(0x10, 1))}}.bytes(), "machine"},
		{"ET_DYN", e32File{typ: elf.ET_DYN, entry: 0x100000, segs: []e32Seg{load(0x1000, 0x100000, 0x10, pattern(0x10, 1))}}.bytes(), "ET_DYN"},
		{"ET_REL (an object file)", e32File{typ: elf.ET_REL, entry: 0x100000, segs: []e32Seg{load(0x1000, 0x100000, 0x10, pattern(0x10, 1))}}.bytes(), "ET_REL"},
		{"no PT_LOAD", e32File{entry: 0x100000, segs: []e32Seg{{typ: elf.PT_NOTE, off: 0x100, data: pattern(8, 1)}}}.bytes(), "no loadable segment"},
		{"only empty PT_LOADs", e32File{entry: 0x100000, segs: []e32Seg{load(0x100, 0x100000, 0, nil)}}.bytes(), "no loadable segment"},
		{"filesz > memsz", e32File{entry: 0x100000, segs: []e32Seg{load(0x1000, 0x100000, 0x10, pattern(0x20, 1))}}.bytes(), "program header 0: file size 0x20 exceeds memory size 0x10"},
		{"segment bytes past EOF", e32File{entry: 0x100000, segs: []e32Seg{
			{typ: elf.PT_LOAD, off: 0x1000, vaddr: 0x100000, paddr: 0x100000, filesz: 0x1000, fileszSet: true, memsz: 0x1000, data: pattern(0x800, 1)},
		}}.bytes(), "truncated"},
		{"segment offset past EOF", e32File{entry: 0x100000, size: 0x200, segs: []e32Seg{
			{typ: elf.PT_LOAD, off: 0x1000, vaddr: 0x100000, paddr: 0x100000, filesz: 0x10, fileszSet: true, memsz: 0x10, noDataCopy: true},
		}}.bytes(), "truncated"},
		{"program headers cut off", e32File{entry: 0x100000, size: 60, segs: []e32Seg{load(0x100, 0x100000, 0x10, nil)}}.bytes(), "truncated"},
		{"overlapping segments", e32File{entry: 0x100000, segs: []e32Seg{
			load(0x1000, 0x100000, 0x2000, pattern(0x100, 1)),
			load(0x2000, 0x101FFF, 0x10, pattern(0x10, 2)),
		}}.bytes(), "program headers 0 and 1 overlap"},
		{"one segment inside another", e32File{entry: 0x100000, segs: []e32Seg{
			load(0x2000, 0x100800, 0x10, pattern(0x10, 2)),
			load(0x1000, 0x100000, 0x2000, pattern(0x100, 1)),
		}}.bytes(), "overlap"},
		{"segment beyond 4 GiB", e32File{entry: 0xFFFFF000, segs: []e32Seg{load(0x1000, 0xFFFFF000, 0x2000, pattern(0x10, 1))}}.bytes(), "beyond 4 GiB"},
		{"entry outside every segment", e32File{entry: 0x200000, segs: []e32Seg{load(0x1000, 0x100000, 0x1000, pattern(0x10, 1))}}.bytes(), "entry point 0x200000 is in no loadable segment"},
		{"entry at the end of the segment", e32File{entry: 0x101000, segs: []e32Seg{load(0x1000, 0x100000, 0x1000, pattern(0x10, 1))}}.bytes(), "entry point 0x101000"},
		{"entry in the gap between segments", e32File{entry: 0x101800, segs: []e32Seg{
			load(0x1000, 0x100000, 0x1000, pattern(0x10, 1)),
			load(0x2000, 0x102000, 0x1000, pattern(0x10, 1)),
		}}.bytes(), "in no loadable segment"},
	} {
		img, err := ParseELF(tc.raw)
		if img != nil {
			t.Errorf("%s: accepted", tc.name)
		}
		checkFormatError(t, tc.name, err, tc.want)
	}
}

// The embedded test kernel: two PT_LOADs at its link base, entry _start.
func TestParseELFTestKernel(t *testing.T) {
	img, err := ParseELF(testkernel.ELF)
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.NewFile(bytes.NewReader(testkernel.ELF))
	if err != nil {
		t.Fatal(err)
	}
	if img.Base != testkernel.LinkBase || img.Entry != f.Entry {
		t.Errorf("base %#x entry %#x, want %#x %#x", img.Base, img.Entry, testkernel.LinkBase, f.Entry)
	}
	var end uint64
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD {
			end = max(end, p.Paddr+p.Memsz)
		}
	}
	if img.End != end || uint64(len(img.Memory())) != img.FileEnd() {
		t.Errorf("end %#x, Memory() %#x bytes; want end %#x and FileEnd %#x bytes", img.End, len(img.Memory()), end, img.FileEnd())
	}
	// Memory holds each segment's file bytes at its offset from Base.
	mem := img.Memory()
	for _, p := range f.Progs {
		if p.Type != elf.PT_LOAD {
			continue
		}
		want := make([]byte, p.Filesz)
		if _, err := p.ReadAt(want, 0); err != nil {
			t.Fatal(err)
		}
		if got := mem[p.Paddr-img.Base:][:p.Filesz]; !bytes.Equal(got, want) {
			t.Errorf("segment at %#x: Memory() bytes differ from the file", p.Paddr)
		}
		if bss := mem[min(p.Paddr-img.Base+p.Filesz, img.FileEnd()):min(p.Paddr-img.Base+p.Memsz, img.FileEnd())]; !bytes.Equal(bss, make([]byte, len(bss))) {
			t.Errorf("segment at %#x: bss not zero", p.Paddr)
		}
	}
}

// fuzzMemoryLimit bounds the images whose Memory() the fuzz target builds:
// a tiny file can describe file-backed segments gigabytes apart.
const fuzzMemoryLimit = 64 << 20

func FuzzParseELF(f *testing.F) {
	f.Add(testkernel.ELF)
	f.Add(twoLoads().bytes())
	f.Add(e32File{entry: 0xC1000040, segs: []e32Seg{
		{typ: elf.PT_LOAD, off: 0x1000, vaddr: 0xC1000000, paddr: 0x1000000, memsz: 0x2000, align: 0x1000, data: pattern(0x800, 3)},
	}}.bytes())
	f.Add(e32File{class: elf.ELFCLASS64}.bytes())
	f.Add(e32File{entry: 0x100000, size: 60, segs: []e32Seg{{typ: elf.PT_LOAD, off: 0x100, paddr: 0x100000, memsz: 0x10}}}.bytes())
	f.Fuzz(func(t *testing.T, raw []byte) {
		img, err := ParseELF(raw)
		if err != nil {
			if img != nil {
				t.Fatalf("image and error")
			}
			checkFuzzError(t, err)
			return
		}
		checkELFImage(t, img)
	})
}

// checkELFImage checks what ParseELF promises about an image it accepts.
func checkELFImage(t *testing.T, img *ELFImage) {
	t.Helper()
	if len(img.Segments) == 0 || img.Base >= img.End || img.End > 1<<32 {
		t.Fatalf("base %#x end %#x with %d segments", img.Base, img.End, len(img.Segments))
	}
	inSeg := false
	for i, s := range img.Segments {
		if uint64(len(s.Data)) != s.FileSz || s.FileSz > s.MemSz || s.MemSz == 0 {
			t.Fatalf("segment %d: %d data bytes, filesz %#x memsz %#x", i, len(s.Data), s.FileSz, s.MemSz)
		}
		if s.Paddr < img.Base || s.Paddr+s.MemSz > img.End {
			t.Fatalf("segment %d [%#x, %#x) outside [%#x, %#x)", i, s.Paddr, s.Paddr+s.MemSz, img.Base, img.End)
		}
		if i > 0 && img.Segments[i-1].Paddr+img.Segments[i-1].MemSz > s.Paddr {
			t.Fatalf("segments %d and %d overlap or are unsorted", i-1, i)
		}
		if img.Entry >= s.Paddr && img.Entry < s.Paddr+s.MemSz {
			inSeg = true
		}
	}
	if !inSeg {
		t.Fatalf("entry %#x in no segment", img.Entry)
	}
	if fe := img.FileEnd(); fe > img.End-img.Base {
		t.Fatalf("FileEnd %#x beyond the image size %#x", fe, img.End-img.Base)
	}
	if img.FileEnd() <= fuzzMemoryLimit {
		mem := img.Memory()
		if uint64(len(mem)) != img.FileEnd() {
			t.Fatalf("Memory() is %#x bytes, want FileEnd %#x", len(mem), img.FileEnd())
		}
		for _, s := range img.Segments {
			if !bytes.Equal(mem[s.Paddr-img.Base:][:s.FileSz], s.Data) {
				t.Fatalf("Memory() lost segment %d's bytes", s.ProgramHeaderN)
			}
		}
	}
}
