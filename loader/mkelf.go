package loader

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"kvmboot/loader/kcache"
	"kvmboot/loader/memmap"
)

// MkELFOptions says how MkELF builds its output.
type MkELFOptions struct {
	// Compression of the output: gzip, xz, zstd or none.
	Compression Compression
	// RelocTable writes the relocation sites into the note even for an
	// `ld --emit-relocs` input, whose .rel sections the loader could read
	// (they stay in the file either way).
	RelocTable bool
	// Align, when not 0, is the load alignment the note asks for; it may
	// not be below the image's own.
	Align uint64
	// MaxEnd, when not 0, is the address the image must end at or below;
	// it may not be above the image's own limit.
	MaxEnd uint64
	// RealMode, when not nil, is a real-mode part to carry (REALMODE).
	RealMode *RealModePart
	// Limit and Cache are OpenKernel's (the caller waits for the cache's
	// stores: Cache.Wait).
	Limit int64
	Cache *kcache.Cache
}

// MkELFResult is what MkELF made.
type MkELFResult struct {
	ELF    []byte // the ELF file, uncompressed
	Output []byte // ELF compressed as asked: the bytes to write
	Note   *Note
	// Source is the opened input (Source.Format: "bzimage", "xz+elf32", ...).
	Source *Kernel
}

// mkelfCompressions are the output compressions: those every ELF loader
// with decompression is likely to read, and that this module can write.
var mkelfCompressions = []Compression{Gzip, XZ, Zstd, CompressionNone}

// MkELF turns a kernel into a compressed ia32 ELF carrying kvmboot's note
// (see note.go): from a bzImage, the vmlinux inside it with Linux's
// relocation table and setup header moved into the note; from an ELF
// (possibly compressed, possibly made by MkELF before), the same ELF with
// its relocation info recorded. The ELF's loadable bytes are not changed,
// so any ELF loader loads the same kernel, and kvmboot plans it as it
// plans the input. The output is checked by opening it again before it is
// returned.
func MkELF(input []byte, opts MkELFOptions) (*MkELFResult, error) {
	if !slices.Contains(mkelfCompressions, opts.Compression) {
		return nil, fmt.Errorf("mkelf writes gzip, xz, zstd or none, not %q", string(opts.Compression))
	}
	k, err := OpenKernel(input, opts.Limit, opts.Cache)
	if err != nil {
		return nil, err
	}
	img := k.ELF
	switch {
	case img == nil && k.BzImage != nil:
		return nil, &FormatError{Context: "mkelf", Msg: k.BzImage.rawWhy() + ": the bzImage holds no ELF to convert (it boots with --protocol linux16)"}
	case img == nil:
		return nil, &FormatError{Context: "mkelf", Msg: fmt.Sprintf("the input is a %s, not an ELF kernel or a bzImage", k.Format)}
	}
	n, err := mkelfNote(k, opts)
	if err != nil {
		return nil, err
	}

	// Lay the file out with the note at its final size, then fill in the
	// checksum of the loadable bytes, which do not move.
	out, noteOff, err := elfWithNote(k.Raw, n.Marshal())
	if err != nil {
		return nil, err
	}
	f, err := elf.NewFile(bytes.NewReader(out))
	if err != nil {
		return nil, &FormatError{Context: "mkelf", Msg: "the ELF written does not parse", Err: err}
	}
	crc, size, err := LoadableChecksum(f, out)
	if err != nil {
		return nil, err
	}
	n.Checksum = &NoteChecksum{Algorithm: ChecksumCRC32C, LoadableBytes: size, LoadableCRC: crc}
	copy(out[noteOff:], n.Marshal())

	if err := checkMkELF(k, out); err != nil {
		return nil, err
	}
	packed, err := Compress(opts.Compression, out)
	if err != nil {
		return nil, err
	}
	return &MkELFResult{ELF: out, Output: packed, Note: n, Source: k}, nil
}

// mkelfNote builds the note for an opened kernel, all but its checksum.
func mkelfNote(k *Kernel, opts MkELFOptions) (*Note, error) {
	img := k.ELF
	n := &Note{BuildInfo: fmt.Sprintf("tool=kvmboot mkelf\nnote=%d.%d\nsource=%s\n", NoteMajor, NoteMinor, k.Format)}
	if k.BzImage != nil {
		if v := KernelVersionString(k.BzImage); v != "" {
			n.BuildInfo += "kernel=" + strings.ReplaceAll(v, "\n", " ") + "\n"
		}
	}
	if k.Note != nil && k.Note.BuildInfo != "" {
		n.BuildInfo = k.Note.BuildInfo // what the first mkelf said about the source
	}
	l := &NoteLoad{LinkBase: img.Base, Preferred: img.Base, Align: max(4096, img.MaxAlign), Min: oneMiB, MemSize: img.End - img.Base}
	if k.Note != nil && k.Note.Load != nil {
		// A second mkelf keeps what the first one recorded.
		c := *k.Note.Load
		l = &c
	} else if bz := k.BzImage; bz != nil {
		h := bz.Header
		if h.PrefAddress != 0 {
			l.Preferred = h.PrefAddress
		}
		l.Align = max(uint64(h.KernelAlignment), 4096)
		l.MaxEnd = kernelImageSize
		l.MemSize = max(uint64(h.InitSize), img.End-img.Base)
	}
	if a := opts.Align; a != 0 {
		if a&(a-1) != 0 {
			return nil, fmt.Errorf("--align %#x is not a power of two", a)
		}
		if a < l.Align {
			return nil, fmt.Errorf("--align %s is below the image's own alignment, %s", memmap.FormatSize(a), memmap.FormatSize(l.Align))
		}
		l.Align = a
	}
	if m := opts.MaxEnd; m != 0 {
		if l.MaxEnd != 0 && m > l.MaxEnd {
			return nil, fmt.Errorf("--max %#x is above the image's own limit, %#x", m, l.MaxEnd)
		}
		if m < l.Min+l.MemSize {
			return nil, fmt.Errorf("--max %#x leaves %w: the image needs %s from at least %#x", m, ErrNoRoom, memmap.FormatSize(l.MemSize), l.Min)
		}
		l.MaxEnd = m
	}
	n.Load = l
	switch {
	case opts.RealMode != nil:
		if err := opts.RealMode.check(); err != nil {
			return nil, err
		}
		if loc := uint64(opts.RealMode.Locate); loc != 0 && (loc < img.Base || loc+4 > img.Base+img.FileEnd()) {
			return nil, fmt.Errorf("--realmode-locate %#x is not in the image's file bytes %#x-%#x", loc, img.Base, img.Base+img.FileEnd())
		}
		n.RealMode = opts.RealMode.Marshal()
	case k.Note != nil:
		n.RealMode = k.Note.RealMode // a second mkelf keeps the part
	}
	if bz := k.BzImage; bz != nil {
		n.LinuxSetup = bytes.Clone(bz.HeaderBytes)
	}

	r := movableRelocs(k)
	if r == nil {
		return n, nil
	}
	nr := &NoteRelocs{Count: uint32(len(r.Sites)), Absolute: uint32(r.Absolute), ByType: map[elf.R_386]uint32{}}
	for name, c := range r.ByType {
		t, ok := r386ByName(name)
		if !ok {
			return nil, fmt.Errorf("relocation type %q has no R_386 number", name)
		}
		nr.ByType[t] = uint32(c)
	}
	hadTable := k.Note != nil && k.Note.Relocs != nil && k.Note.Relocs.Encoding == RelocEncodingDelta
	switch r.Source {
	case "linux":
		nr.Origin = RelocOriginLinux
	case "emit-relocs":
		nr.Origin = RelocOriginEmitRelocs
	default:
		return nil, fmt.Errorf("relocations from %q: mkelf knows linux and emit-relocs", r.Source)
	}
	if nr.Origin == RelocOriginLinux || opts.RelocTable || hadTable {
		nr.Encoding, nr.Sites = RelocEncodingDelta, r.Sites
	}
	n.Relocs = nr
	return n, nil
}

// movableRelocs is the relocation info the note records for k, nil when k
// cannot move: none found, or a bzImage that says it is not relocatable.
func movableRelocs(k *Kernel) *Relocs {
	r := k.ELF.Relocs
	if !r.found() || k.BzImage != nil && k.BzImage.Header.RelocatableKernel == 0 {
		return nil
	}
	return r
}

// r386ByName maps "R_386_32" back to its number.
func r386ByName(name string) (elf.R_386, bool) {
	for t := range elf.R_386(256) {
		if t.String() == name {
			return t, true
		}
	}
	return 0, false
}

// checkMkELF opens the ELF MkELF wrote, as a loader will, and checks that
// it loads the same bytes with the same relocations as the source.
func checkMkELF(src *Kernel, out []byte) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("mkelf: internal error: the output does not match its source: "+format, args...)
	}
	k, err := OpenKernel(out, int64(len(out))+1, nil)
	if err != nil {
		return fmt.Errorf("mkelf: internal error: the output does not load: %w", err)
	}
	a, b := src.ELF, k.ELF
	if a.Base != b.Base || a.End != b.End || a.Entry != b.Entry || len(a.Segments) != len(b.Segments) {
		return fail("image %#x-%#x entry %#x, %d segments; source %#x-%#x entry %#x, %d segments", b.Base, b.End, b.Entry, len(b.Segments), a.Base, a.End, a.Entry, len(a.Segments))
	}
	// Loadable bytes may differ only where a segment holds the ELF header,
	// which must describe the new file.
	for i := range a.Segments {
		sa, sb := a.Segments[i], b.Segments[i]
		off := min(uint64(elfHeaderSize), sa.FileSz)
		if sa.Paddr != sb.Paddr || sa.MemSz != sb.MemSz || !bytes.Equal(sa.Data[off:], sb.Data[off:]) {
			return fail("segment %d differs", i)
		}
	}
	ra, rb := movableRelocs(src), b.Relocs
	if ra != nil && (rb == nil || !slices.Equal(sortedSites(ra.Sites), sortedSites(rb.Sites)) || ra.Absolute != rb.Absolute) {
		return fail("relocation sites differ")
	}
	if (src.BzImage == nil) != (k.BzImage == nil) || src.BzImage != nil && !bytes.Equal(src.BzImage.HeaderBytes, k.BzImage.HeaderBytes) {
		return fail("Linux setup header differs")
	}
	return nil
}

func sortedSites(s []uint32) []uint32 {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

// ELF32 layout constants.
const (
	elfHeaderSize  = 52
	elfPhdrSize    = 32
	elfShdrSize    = 40
	noteSectionStr = ".note.kvmboot"
)

// elfWithNote rewrites raw, an ELF32 little-endian file, with note as its
// kvmboot PT_NOTE (replacing one it already has) and returns the file and
// the note's offset in it. The layout:
//
//   - every byte of every other segment and section stays at its file
//     offset, so loadable bytes, their alignment and a Multiboot header in
//     the first 8 KiB do not move, and section indices (which symbols and
//     .rel sections refer to) stay;
//   - the note, the section name table (with ".note.kvmboot" added) and the
//     section header table follow the last of those bytes;
//   - the program header table, one entry longer, goes back after the ELF
//     header if there is room before the first content byte, else to the
//     end of the file;
//   - the ELF header gets the new table offsets and counts. When a segment
//     loads the ELF header itself (first PT_LOAD at offset 0), that copy
//     changes with it.
//
// The old tables' bytes are dropped unless they lie inside kept content.
// Running it again on its output gives the same output.
func elfWithNote(raw, note []byte) ([]byte, int, error) {
	l, err := readELFTables(raw)
	if err != nil {
		return nil, 0, err
	}
	le := binary.LittleEndian
	shdrs, phdrs, shstrndx, ours := l.shdrs, l.phdrs, l.shstrndx, l.ours
	start, end := l.content[0][0], l.content[0][1]
	for _, c := range l.content[1:] {
		start, end = min(start, c[0]), max(end, c[1])
	}

	out := make([]byte, end, end+uint64(len(note))+4096)
	copy(out[start:], raw[start:end])
	pad := func() {
		for len(out)%4 != 0 {
			out = append(out, 0)
		}
	}
	pad()
	noteOff := len(out)
	out = append(out, note...)

	// Section name table: the old one, with our name added if missing.
	var strtab []byte
	if len(shdrs) == 0 {
		strtab = []byte("\x00.shstrtab\x00")
		shdrs = [][]byte{make([]byte, elfShdrSize), make([]byte, elfShdrSize)}
		le.PutUint32(shdrs[1][0:], 1)
		le.PutUint32(shdrs[1][4:], uint32(elf.SHT_STRTAB))
		le.PutUint32(shdrs[1][32:], 1)
		shstrndx = 1
	} else {
		s := shdrs[shstrndx]
		off, size := uint64(le.Uint32(s[16:])), uint64(le.Uint32(s[20:]))
		if !inFile(raw, off, size) {
			return nil, 0, mkelfError("section name table runs past the end of the file")
		}
		strtab = bytes.Clone(raw[off : off+size])
	}
	nameOff := bytes.Index(strtab, []byte("\x00"+noteSectionStr+"\x00")) + 1
	if nameOff == 0 {
		if len(strtab) == 0 {
			strtab = []byte{0}
		}
		nameOff = len(strtab)
		strtab = append(strtab, noteSectionStr+"\x00"...)
	}
	strOff := len(out)
	out = append(out, strtab...)
	le.PutUint32(shdrs[shstrndx][16:], uint32(strOff))
	le.PutUint32(shdrs[shstrndx][20:], uint32(len(strtab)))

	if ours < 0 {
		ours = len(shdrs)
		shdrs = append(shdrs, nil)
	}
	sh := make([]byte, elfShdrSize)
	le.PutUint32(sh[0:], uint32(nameOff))
	le.PutUint32(sh[4:], uint32(elf.SHT_NOTE))
	le.PutUint32(sh[16:], uint32(noteOff))
	le.PutUint32(sh[20:], uint32(len(note)))
	le.PutUint32(sh[32:], 4)
	shdrs[ours] = sh
	pad()
	shOff := len(out)
	for _, s := range shdrs {
		out = append(out, s...)
	}

	ph := make([]byte, elfPhdrSize)
	le.PutUint32(ph[0:], uint32(elf.PT_NOTE))
	le.PutUint32(ph[4:], uint32(noteOff))
	le.PutUint32(ph[16:], uint32(len(note)))
	le.PutUint32(ph[20:], uint32(len(note)))
	le.PutUint32(ph[24:], uint32(elf.PF_R))
	le.PutUint32(ph[28:], 4)
	phdrs = append(phdrs, ph)
	phOff := elfHeaderSize
	if uint64(elfHeaderSize+elfPhdrSize*len(phdrs)) > start {
		pad()
		phOff = len(out)
		out = append(out, make([]byte, elfPhdrSize*len(phdrs))...)
	}
	for i, p := range phdrs {
		copy(out[phOff+i*elfPhdrSize:], p)
	}

	copy(out, raw[:elfHeaderSize])
	le.PutUint32(out[0x1c:], uint32(phOff))
	le.PutUint32(out[0x20:], uint32(shOff))
	le.PutUint16(out[0x2a:], elfPhdrSize)
	le.PutUint16(out[0x2c:], uint16(len(phdrs)))
	le.PutUint16(out[0x2e:], elfShdrSize)
	le.PutUint16(out[0x30:], uint16(len(shdrs)))
	le.PutUint16(out[0x32:], uint16(shstrndx))
	if uint64(len(out)) > 1<<32-1 {
		return nil, 0, mkelfError("output larger than 4 GiB")
	}
	return out, noteOff, nil
}

func mkelfError(format string, args ...any) error {
	return &FormatError{Context: "mkelf", Msg: fmt.Sprintf(format, args...)}
}

// elfTables is what elfWithNote keeps of an ELF: its program and section
// headers (without kvmboot's note segment), the file ranges that stay
// where they are, the section name table's index and our note section's
// (-1 when there is none yet).
type elfTables struct {
	phdrs, shdrs   [][]byte
	content        [][2]uint64
	shstrndx, ours int
}

// readELFTables checks the ELF header and reads its tables for elfWithNote.
func readELFTables(raw []byte) (*elfTables, error) {
	le := binary.LittleEndian
	if len(raw) < elfHeaderSize || string(raw[:4]) != elf.ELFMAG || elf.Class(raw[4]) != elf.ELFCLASS32 || elf.Data(raw[5]) != elf.ELFDATA2LSB {
		return nil, &FormatError{Context: "mkelf", Msg: "not an ELF32 little-endian file", Class: ErrNotELF}
	}
	phoff, shoff := uint64(le.Uint32(raw[0x1c:])), uint64(le.Uint32(raw[0x20:]))
	ehsize, phentsize, phnum := le.Uint16(raw[0x28:]), le.Uint16(raw[0x2a:]), int(le.Uint16(raw[0x2c:]))
	shentsize, shnum, shstrndx := le.Uint16(raw[0x2e:]), int(le.Uint16(raw[0x30:])), int(le.Uint16(raw[0x32:]))
	switch {
	case ehsize != elfHeaderSize || phnum > 0 && phentsize != elfPhdrSize || shnum > 0 && shentsize != elfShdrSize:
		return nil, mkelfError("unusual ELF header or table entry sizes (%d, %d, %d)", ehsize, phentsize, shentsize)
	case phnum == 0xffff || shnum == 0 && shoff != 0 || shnum >= int(elf.SHN_LORESERVE)-1:
		return nil, mkelfError("extended section or program header numbering is not supported")
	case phoff+uint64(phnum)*elfPhdrSize > uint64(len(raw)) || shoff+uint64(shnum)*elfShdrSize > uint64(len(raw)):
		return nil, mkelfError("header tables run past the end of the file")
	case shnum > 0 && shstrndx >= shnum:
		return nil, mkelfError("section name table index %d is not below the section count %d", shstrndx, shnum)
	}
	l := &elfTables{shstrndx: shstrndx, ours: -1}
	for i := range phnum {
		ph := raw[phoff+uint64(i)*elfPhdrSize:][:elfPhdrSize]
		typ, off, filesz := elf.ProgType(le.Uint32(ph)), uint64(le.Uint32(ph[4:])), uint64(le.Uint32(ph[16:]))
		if !inFile(raw, off, filesz) {
			return nil, mkelfError("program header %d: bytes %#x+%#x are past the end of the file", i, off, filesz)
		}
		if typ == elf.PT_PHDR {
			return nil, mkelfError("program header %d is PT_PHDR: mkelf moves the program header table and cannot keep it", i)
		}
		if typ == elf.PT_NOTE && IsKvmbootNote(raw[off:off+filesz]) {
			continue // replaced
		}
		l.phdrs = append(l.phdrs, bytes.Clone(ph))
		if filesz > 0 {
			l.content = append(l.content, [2]uint64{off, off + filesz})
		}
	}
	for i := range shnum {
		sh := bytes.Clone(raw[shoff+uint64(i)*elfShdrSize:][:elfShdrSize])
		l.shdrs = append(l.shdrs, sh)
		typ, flags := elf.SectionType(le.Uint32(sh[4:])), elf.SectionFlag(le.Uint32(sh[8:]))
		off, size := uint64(le.Uint32(sh[16:])), uint64(le.Uint32(sh[20:]))
		if i == 0 || typ == elf.SHT_NOBITS || size == 0 {
			continue
		}
		if !inFile(raw, off, size) {
			return nil, mkelfError("section %d: bytes %#x+%#x are past the end of the file", i, off, size)
		}
		switch {
		case i == shstrndx:
		case typ == elf.SHT_NOTE && flags&elf.SHF_ALLOC == 0 && IsKvmbootNote(raw[off:off+size]):
			l.ours = i
		default:
			l.content = append(l.content, [2]uint64{off, off + size})
		}
	}
	if len(l.content) == 0 {
		return nil, mkelfError("the file has no segment or section content")
	}
	return l, nil
}

// Compress packs b with c at the strongest setting that stays quick to
// decode: gzip -9, xz with a CRC-32 check (what Linux's and most boot
// loaders' xz decoders support) and an 8 MiB dictionary (no BCJ filter:
// this encoder has none), zstd at its best level with a content checksum.
func Compress(c Compression, b []byte) ([]byte, error) {
	var (
		buf bytes.Buffer
		w   io.WriteCloser
		err error
	)
	switch c {
	case CompressionNone:
		return b, nil
	case Gzip:
		buf.Grow(len(b) / 3)
		w, err = gzip.NewWriterLevel(&buf, gzip.BestCompression)
	case XZ:
		buf.Grow(len(b) / 4)
		w, err = xz.WriterConfig{CheckSum: xz.CRC32, DictCap: 8 << 20}.NewWriter(&buf)
	case Zstd:
		w, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithEncoderCRC(true))
		if err != nil {
			return nil, err
		}
		defer w.Close()
		return w.EncodeAll(b, make([]byte, 0, len(b)/3)), nil
	default:
		return nil, fmt.Errorf("cannot write %s", string(c))
	}
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(b); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
