// Package loader reads i386 kernel images (compressed ELF, Linux bzImage,
// Multiboot), plans where every piece goes in guest memory around bad RAM,
// and builds the boot information; it needs no KVM. This comment also
// specifies kvmboot's own ELF note, which `kvmboot mkelf` writes (MkELF) and
// OpenKernel reads; docs/note-format.md says the same with examples.
//
// # The kvmboot ELF note
//
// The 2007 Gujin/kexec thread (../shared/seed/) asked for loader information
// in a PT_NOTE rather than in extra PT_LOADs that other ELF loaders would
// trip over: the relocation info, where the image may go, a checksum to
// verify before jumping, and a real-mode part.
//
// # Note container
//
// The note lives in one PT_NOTE program header of an ELF32 i386 file (a
// section header named .note.kvmboot, SHT_NOTE, not SHF_ALLOC, describes the
// same bytes for readelf and objcopy). The segment holds ordinary ELF note
// entries, 4-byte aligned:
//
//	u32 namesz   8
//	u32 descsz   length of the descriptor
//	u32 type     which descriptor (below)
//	char name[8] "kvmboot\0"
//	u8 desc[descsz], zero padded to a multiple of 4
//
// Every integer is little-endian. Each descriptor type appears at most once;
// VERSION comes first and CHECKSUM last. Bit 31 of the type splits the
// descriptors into critical ones (bit clear), which a loader that does not
// know the type must refuse the image for, and optional ones (bit set),
// which it may ignore: new critical types need a new major version only if
// old loaders could misboot without them, and they cannot, since they refuse.
// The segment is not loaded (p_vaddr = p_paddr = 0) and lies outside every
// PT_LOAD, so it is not part of the checksummed bytes.
//
// # Note descriptors (format 1.0)
//
//	type        name         size   content
//	1           VERSION      8      u32 major (1), u32 minor (0). A loader refuses another major.
//	2           LOAD         48     u64 link_base: the lowest PT_LOAD p_paddr, where the image runs unrelocated
//	                                u64 preferred: where it would like to run (Linux pref_address)
//	                                u64 align: load address alignment (power of two)
//	                                u64 min: lowest load address
//	                                u64 max_end: the image must end at or below (0: 4 GiB)
//	                                u64 mem_size: memory needed from the load address, bss and brk included
//	3           RELOCS       24+    u32 origin: 1 Linux's appended table, 2 ld --emit-relocs
//	                                u32 encoding: 0 no table, apply the file's .rel sections; 1 delta table
//	                                u32 sites: 32-bit words to adjust by the load delta
//	                                u32 skipped_absolute: R_386_32 left alone (absolute symbols)
//	                                u32 ntypes, u32 table_bytes
//	                                ntypes x {u32 ELF r_type, u32 count}: relocations by type
//	                                table_bytes: sites, sorted, as ULEB128 deltas from the previous (from 0)
//	4           LINUX_SETUP  n      Linux setup header bytes [0x1f1, 0x202+byte[0x201]) of the bzImage
//	5           REALMODE     32+    a real-mode part the loader runs before the kernel: see realmode.go
//	6           CHECKSUM     24     u32 algorithm (1: CRC-32C), u32 flags (0), u64 loadable_bytes,
//	                                u32 loadable_crc: over every PT_LOAD's p_filesz bytes at p_offset,
//	                                    in program header order
//	                                u32 notes_crc: over the segment's bytes before this entry
//	0x80000001  BUILD_INFO   n      UTF-8 "key=value" lines: what made the image (optional)
//
// A site is the link-time physical address of a 32-bit word; loading the
// image delta = load - link_base bytes higher adds delta to every site (the
// same rule as Linux's table after its PAGE_OFFSET conversion, see reloc.go).
// With encoding 0 the loader reads the .rel sections as EmitRelocs does and
// must find exactly `sites` and `skipped_absolute`.
package loader

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"maps"
	"slices"
	"strings"
)

// NoteName is the owner name of kvmboot's note entries.
const NoteName = "kvmboot"

// Version of the note format this loader writes and reads.
const (
	NoteMajor = 1
	NoteMinor = 0
)

// NoteType is the type of one kvmboot note entry: which descriptor it holds.
type NoteType uint32

// Descriptor types. NoteOptional marks the ones a loader may ignore.
const (
	NoteTypeVersion    NoteType = 1
	NoteTypeLoad       NoteType = 2
	NoteTypeRelocs     NoteType = 3
	NoteTypeLinuxSetup NoteType = 4
	// NoteTypeRealMode is a Gujin-style real-mode part (realmode.go): its
	// bytes, where it runs below 1 MiB, its entry, where its results go.
	// Critical: a loader that cannot run it must refuse the image.
	NoteTypeRealMode NoteType = 5
	NoteTypeChecksum NoteType = 6

	NoteOptional      NoteType = 1 << 31
	NoteTypeBuildInfo NoteType = NoteOptional | 1
)

// String names a type as the format does: "LOAD", "BUILD_INFO".
func (t NoteType) String() string {
	switch t {
	case NoteTypeVersion:
		return "VERSION"
	case NoteTypeLoad:
		return "LOAD"
	case NoteTypeRelocs:
		return "RELOCS"
	case NoteTypeLinuxSetup:
		return "LINUX_SETUP"
	case NoteTypeRealMode:
		return "REALMODE"
	case NoteTypeChecksum:
		return "CHECKSUM"
	case NoteTypeBuildInfo:
		return "BUILD_INFO"
	}
	if t&NoteOptional != 0 {
		return fmt.Sprintf("optional %#x", uint32(t))
	}
	return fmt.Sprintf("%#x", uint32(t))
}

// Relocation origins and encodings of the RELOCS descriptor.
const (
	RelocOriginLinux      = 1 // Linux's table appended to its payload
	RelocOriginEmitRelocs = 2 // .rel sections kept by ld --emit-relocs

	RelocEncodingSections = 0 // no table: apply the file's .rel sections
	RelocEncodingDelta    = 1 // sorted sites as ULEB128 deltas
)

// ChecksumCRC32C is the CHECKSUM algorithm: CRC-32C (Castagnoli), the one
// the entry stub verifies placements with.
const ChecksumCRC32C = 1

// Descriptor sizes.
const (
	noteVersionSize  = 8
	noteLoadSize     = 48
	noteRelocsHeader = 24
	noteChecksumSize = 24
	noteNameSize     = 8 // "kvmboot\0", already a multiple of 4
	noteEntryHeader  = 12
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Note is kvmboot's note, decoded. Nil fields are absent descriptors.
type Note struct {
	Major uint32 `json:"major"`
	Minor uint32 `json:"minor"`

	Load   *NoteLoad   `json:"load,omitempty"`
	Relocs *NoteRelocs `json:"relocs,omitempty"`
	// LinuxSetup is the bzImage's setup header, from offset 0x1f1: what the
	// 32-bit boot protocol copies into the zero page.
	LinuxSetup []byte `json:"linux_setup,omitempty"`
	// RealMode is the REALMODE descriptor, raw (ParseRealModePart decodes it).
	RealMode  []byte        `json:"realmode,omitempty"`
	Checksum  *NoteChecksum `json:"checksum,omitempty"`
	BuildInfo string        `json:"build_info,omitempty"`
	// Other holds optional descriptors this version does not know.
	Other []RawNote `json:"other,omitempty"`
}

// NoteLoad is the LOAD descriptor: where the image may run.
type NoteLoad struct {
	LinkBase  uint64 `json:"link_base"`
	Preferred uint64 `json:"preferred"`
	Align     uint64 `json:"align"`
	Min       uint64 `json:"min"`
	MaxEnd    uint64 `json:"max_end"` // 0: 4 GiB
	MemSize   uint64 `json:"mem_size"`
}

// NoteRelocs is the RELOCS descriptor.
type NoteRelocs struct {
	Origin   uint32 `json:"origin"`
	Encoding uint32 `json:"encoding"`
	Count    uint32 `json:"sites"`
	Absolute uint32 `json:"skipped_absolute"`
	// ByType counts relocations by ELF type (R_386_*).
	ByType map[elf.R_386]uint32 `json:"-"`
	// Sites are sorted; nil with RelocEncodingSections.
	Sites []uint32 `json:"-"`
}

// OriginName is "linux" or "emit-relocs", the Relocs.Source names.
func (r *NoteRelocs) OriginName() string {
	switch r.Origin {
	case RelocOriginLinux:
		return "linux"
	case RelocOriginEmitRelocs:
		return "emit-relocs"
	}
	return fmt.Sprintf("origin-%d", r.Origin)
}

// EncodingName is "sections" or "delta-uleb128".
func (r *NoteRelocs) EncodingName() string {
	switch r.Encoding {
	case RelocEncodingSections:
		return "sections"
	case RelocEncodingDelta:
		return "delta-uleb128"
	}
	return fmt.Sprintf("encoding-%d", r.Encoding)
}

// TypeCounts returns ByType with type names as keys, as Relocs.ByType has.
func (r *NoteRelocs) TypeCounts() map[string]int {
	m := make(map[string]int, len(r.ByType))
	for t, n := range r.ByType {
		m[t.String()] = int(n)
	}
	return m
}

// NoteChecksum is the CHECKSUM descriptor.
type NoteChecksum struct {
	Algorithm     uint32 `json:"algorithm"`
	LoadableBytes uint64 `json:"loadable_bytes"`
	LoadableCRC   uint32 `json:"loadable_crc"`
	NotesCRC      uint32 `json:"notes_crc"`
}

// RawNote is one note entry, any owner.
type RawNote struct {
	Name string `json:"name"`
	Type uint32 `json:"type"`
	Desc []byte `json:"desc"`
	// Offset is where the entry starts in the bytes parsed.
	Offset int `json:"-"`
}

func noteError(format string, args ...any) error {
	return &FormatError{Context: "kvmboot note", Msg: fmt.Sprintf(format, args...)}
}

// ParseNotes splits the content of a PT_NOTE segment or SHT_NOTE section
// into its entries (4-byte aligned, as in every ELF32 file). Names lose
// their terminating NUL.
func ParseNotes(b []byte, bo binary.ByteOrder) ([]RawNote, error) {
	var out []RawNote
	for off := 0; off < len(b); {
		if len(b)-off < noteEntryHeader {
			if allZero(b[off:]) {
				break // padding
			}
			return nil, &FormatError{Context: "ELF note", Msg: fmt.Sprintf("entry at %#x: %d bytes left, too few for a note header", off, len(b)-off)}
		}
		namesz, descsz, typ := bo.Uint32(b[off:]), bo.Uint32(b[off+4:]), bo.Uint32(b[off+8:])
		nameAt := off + noteEntryHeader
		descAt := uint64(nameAt) + align4(uint64(namesz))
		end := descAt + align4(uint64(descsz))
		if end > uint64(len(b)) || descAt+uint64(descsz) > uint64(len(b)) {
			return nil, &FormatError{Context: "ELF note", Msg: fmt.Sprintf("entry at %#x (namesz %d, descsz %d) runs past the end of the %d-byte note", off, namesz, descsz, len(b))}
		}
		name := string(b[nameAt : nameAt+int(namesz)])
		name = strings.TrimRight(name, "\x00")
		out = append(out, RawNote{Name: name, Type: typ, Desc: b[descAt : descAt+uint64(descsz)], Offset: off})
		off = int(end)
	}
	return out, nil
}

func align4(n uint64) uint64 { return (n + 3) &^ 3 }

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// IsKvmbootNote reports whether a note segment's content holds a kvmboot
// entry.
func IsKvmbootNote(b []byte) bool {
	notes, err := ParseNotes(b, binary.LittleEndian)
	if err != nil {
		return false
	}
	for _, n := range notes {
		if n.Name == NoteName {
			return true
		}
	}
	return false
}

// ParseNote decodes kvmboot's note from the content of its PT_NOTE segment.
// Entries of other owners are skipped. It checks the container (version,
// order, sizes, the notes CRC) but not the loadable bytes: see
// VerifyLoadable.
func ParseNote(seg []byte) (*Note, error) {
	entries, err := ParseNotes(seg, binary.LittleEndian)
	if err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	n := &Note{}
	seen := map[NoteType]bool{}
	first := true
	for _, e := range entries {
		if e.Name != NoteName {
			continue
		}
		t := NoteType(e.Type)
		if seen[NoteTypeChecksum] {
			return nil, noteError("%s descriptor after CHECKSUM, which must be last", t)
		}
		if first && t != NoteTypeVersion {
			return nil, noteError("first descriptor is %s; VERSION must come first", t)
		}
		first = false
		if seen[t] {
			return nil, noteError("two %s descriptors", t)
		}
		seen[t] = true
		d := e.Desc
		need := func(size int) error {
			if len(d) < size {
				return noteError("%s descriptor is %d bytes, want at least %d", t, len(d), size)
			}
			return nil
		}
		switch t {
		case NoteTypeVersion:
			if err := need(noteVersionSize); err != nil {
				return nil, err
			}
			n.Major, n.Minor = le.Uint32(d), le.Uint32(d[4:])
			if n.Major != NoteMajor {
				return nil, noteError("format version %d.%d; this kvmboot reads version %d", n.Major, n.Minor, NoteMajor)
			}
		case NoteTypeLoad:
			if err := need(noteLoadSize); err != nil {
				return nil, err
			}
			l := &NoteLoad{LinkBase: le.Uint64(d), Preferred: le.Uint64(d[8:]), Align: le.Uint64(d[16:]),
				Min: le.Uint64(d[24:]), MaxEnd: le.Uint64(d[32:]), MemSize: le.Uint64(d[40:])}
			if l.Align == 0 || l.Align&(l.Align-1) != 0 {
				return nil, noteError("LOAD alignment %#x is not a power of two", l.Align)
			}
			n.Load = l
		case NoteTypeRelocs:
			r, err := parseNoteRelocs(d)
			if err != nil {
				return nil, err
			}
			n.Relocs = r
		case NoteTypeLinuxSetup:
			if err := checkSetupBytes(d); err != nil {
				return nil, err
			}
			n.LinuxSetup = bytes.Clone(d)
		case NoteTypeRealMode:
			n.RealMode = bytes.Clone(d)
		case NoteTypeChecksum:
			if err := need(noteChecksumSize); err != nil {
				return nil, err
			}
			c := &NoteChecksum{Algorithm: le.Uint32(d), LoadableBytes: le.Uint64(d[8:]), LoadableCRC: le.Uint32(d[16:]), NotesCRC: le.Uint32(d[20:])}
			if c.Algorithm != ChecksumCRC32C {
				return nil, noteError("checksum algorithm %d; this kvmboot knows 1 (CRC-32C)", c.Algorithm)
			}
			if got := crc32.Checksum(seg[:e.Offset], castagnoli); got != c.NotesCRC {
				return nil, &FormatError{Context: "kvmboot note", Msg: fmt.Sprintf("descriptors corrupt: their CRC-32C is %#08x, the CHECKSUM descriptor says %#08x", got, c.NotesCRC), Class: ErrChecksum}
			}
			n.Checksum = c
		case NoteTypeBuildInfo:
			n.BuildInfo = string(d)
		default:
			if t&NoteOptional == 0 {
				return nil, noteError("critical descriptor type %#x unknown to this kvmboot (format %d.%d): refusing the image", uint32(t), NoteMajor, NoteMinor)
			}
			n.Other = append(n.Other, RawNote{Name: e.Name, Type: e.Type, Desc: bytes.Clone(d)})
		}
	}
	if first {
		return nil, noteError("no %q entries in the note", NoteName)
	}
	if n.Checksum == nil {
		return nil, noteError("no CHECKSUM descriptor")
	}
	return n, nil
}

// parseNoteRelocs decodes a RELOCS descriptor.
func parseNoteRelocs(d []byte) (*NoteRelocs, error) {
	le := binary.LittleEndian
	if len(d) < noteRelocsHeader {
		return nil, noteError("RELOCS descriptor is %d bytes, want at least %d", len(d), noteRelocsHeader)
	}
	r := &NoteRelocs{Origin: le.Uint32(d), Encoding: le.Uint32(d[4:]), Count: le.Uint32(d[8:]), Absolute: le.Uint32(d[12:])}
	ntypes, tableBytes := uint64(le.Uint32(d[16:])), uint64(le.Uint32(d[20:]))
	if r.Origin != RelocOriginLinux && r.Origin != RelocOriginEmitRelocs {
		return nil, noteError("RELOCS origin %d: want 1 (Linux table) or 2 (emit-relocs)", r.Origin)
	}
	if uint64(len(d)) != noteRelocsHeader+8*ntypes+tableBytes {
		return nil, noteError("RELOCS descriptor is %d bytes; its %d types and %d table bytes make %d", len(d), ntypes, tableBytes, noteRelocsHeader+8*ntypes+tableBytes)
	}
	r.ByType = make(map[elf.R_386]uint32, ntypes)
	for i := uint64(0); i < ntypes; i++ {
		e := d[noteRelocsHeader+8*i:]
		r.ByType[elf.R_386(le.Uint32(e))] += le.Uint32(e[4:])
	}
	table := d[noteRelocsHeader+8*ntypes:]
	switch r.Encoding {
	case RelocEncodingSections:
		if r.Origin != RelocOriginEmitRelocs {
			return nil, noteError("RELOCS without a table must come from .rel sections (origin 2), not origin %d", r.Origin)
		}
		if len(table) != 0 {
			return nil, noteError("RELOCS encoding 0 (sections) with %d table bytes", len(table))
		}
	case RelocEncodingDelta:
		sites, err := decodeSites(table, r.Count)
		if err != nil {
			return nil, err
		}
		r.Sites = sites
	default:
		return nil, noteError("RELOCS encoding %d: want 0 (sections) or 1 (delta table)", r.Encoding)
	}
	return r, nil
}

// decodeSites reads count ULEB128 deltas.
func decodeSites(b []byte, count uint32) ([]uint32, error) {
	sites := make([]uint32, 0, min(uint64(count), uint64(len(b)))) // a site takes at least a byte
	var at uint64
	for len(b) > 0 {
		v, n := binary.Uvarint(b)
		if n <= 0 || v > 0xFFFFFFFF {
			return nil, noteError("relocation table: bad ULEB128 after %d sites", len(sites))
		}
		b = b[n:]
		at += v
		if at > 0xFFFFFFFC {
			return nil, noteError("relocation table: site %d at %#x is beyond 4 GiB", len(sites), at)
		}
		if uint32(len(sites)) == count {
			return nil, noteError("relocation table holds more than the %d sites the descriptor says", count)
		}
		sites = append(sites, uint32(at))
	}
	if uint32(len(sites)) != count {
		return nil, noteError("relocation table holds %d sites, the descriptor says %d", len(sites), count)
	}
	return sites, nil
}

// encodeSites writes sorted sites as ULEB128 deltas.
func encodeSites(sites []uint32) []byte {
	s := sortedSites(sites)
	out := make([]byte, 0, 2*len(s))
	var prev uint32
	for _, v := range s {
		out = binary.AppendUvarint(out, uint64(v-prev))
		prev = v
	}
	return out
}

// checkSetupBytes checks that b is a setup header as the LINUX_SETUP
// descriptor carries it: from 0x1f1 to the end its jump gives.
func checkSetupBytes(b []byte) error {
	magic := headerMagicOffset - setupHeaderOffset
	if len(b) < magic+len(headerMagic) || !bytes.Equal(b[magic:magic+len(headerMagic)], headerMagic[:]) {
		return noteError("LINUX_SETUP descriptor (%d bytes) has no \"HdrS\" at 0x202", len(b))
	}
	if end := headerMagicOffset + int(b[0x201-setupHeaderOffset]); end-setupHeaderOffset != len(b) {
		return noteError("LINUX_SETUP descriptor is %d bytes; the header it holds ends at 0x%x (%d bytes)", len(b), end, end-setupHeaderOffset)
	}
	if len(b) > setupHeaderLimit-setupHeaderOffset {
		return noteError("LINUX_SETUP header runs past 0x%x", setupHeaderLimit)
	}
	return nil
}

// Marshal lays the note out as the content of its PT_NOTE segment:
// VERSION, the descriptors present, BUILD_INFO and other optional ones,
// and CHECKSUM last with its notes CRC computed here. Major and Minor
// default to this format's; Checksum's loadable fields are the caller's
// (see LoadableChecksum).
func (n *Note) Marshal() []byte {
	le := binary.LittleEndian
	var b []byte
	put := func(t NoteType, desc []byte) {
		b = le.AppendUint32(b, noteNameSize)
		b = le.AppendUint32(b, uint32(len(desc)))
		b = le.AppendUint32(b, uint32(t))
		b = append(b, NoteName+"\x00"...)
		b = append(b, desc...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
	}
	major, minor := n.Major, n.Minor
	if major == 0 {
		major, minor = NoteMajor, NoteMinor
	}
	put(NoteTypeVersion, le.AppendUint32(le.AppendUint32(nil, major), minor))
	if l := n.Load; l != nil {
		var d []byte
		for _, v := range []uint64{l.LinkBase, l.Preferred, l.Align, l.Min, l.MaxEnd, l.MemSize} {
			d = le.AppendUint64(d, v)
		}
		put(NoteTypeLoad, d)
	}
	if r := n.Relocs; r != nil {
		put(NoteTypeRelocs, r.marshal())
	}
	if n.LinuxSetup != nil {
		put(NoteTypeLinuxSetup, n.LinuxSetup)
	}
	if n.RealMode != nil {
		put(NoteTypeRealMode, n.RealMode)
	}
	if n.BuildInfo != "" {
		put(NoteTypeBuildInfo, []byte(n.BuildInfo))
	}
	for _, o := range n.Other {
		put(NoteType(o.Type), o.Desc)
	}
	c := NoteChecksum{Algorithm: ChecksumCRC32C}
	if n.Checksum != nil {
		c = *n.Checksum
		c.Algorithm = ChecksumCRC32C
	}
	c.NotesCRC = crc32.Checksum(b, castagnoli)
	d := le.AppendUint32(nil, c.Algorithm)
	d = le.AppendUint32(d, 0)
	d = le.AppendUint64(d, c.LoadableBytes)
	d = le.AppendUint32(d, c.LoadableCRC)
	d = le.AppendUint32(d, c.NotesCRC)
	put(NoteTypeChecksum, d)
	n.Checksum = &c
	return b
}

func (r *NoteRelocs) marshal() []byte {
	le := binary.LittleEndian
	var table []byte
	if r.Encoding == RelocEncodingDelta {
		table = encodeSites(r.Sites)
	}
	types := slices.Sorted(maps.Keys(r.ByType))
	d := le.AppendUint32(nil, r.Origin)
	d = le.AppendUint32(d, r.Encoding)
	d = le.AppendUint32(d, r.Count)
	d = le.AppendUint32(d, r.Absolute)
	d = le.AppendUint32(d, uint32(len(types)))
	d = le.AppendUint32(d, uint32(len(table)))
	for _, t := range types {
		d = le.AppendUint32(d, uint32(t))
		d = le.AppendUint32(d, r.ByType[t])
	}
	return append(d, table...)
}

// LoadableChecksum returns the CRC-32C of an ELF file's loadable bytes,
// as the CHECKSUM descriptor defines them: every PT_LOAD's p_filesz bytes
// at p_offset, in program header order; and how many bytes that is.
func LoadableChecksum(f *elf.File, raw []byte) (crc uint32, n uint64, err error) {
	for i, p := range f.Progs {
		if p.Type != elf.PT_LOAD || p.Filesz == 0 {
			continue
		}
		if !inFile(raw, p.Off, p.Filesz) {
			return 0, 0, &FormatError{Context: "ELF", Msg: fmt.Sprintf("program header %d: bytes %#x+%#x are past the end of the file", i, p.Off, p.Filesz)}
		}
		crc = crc32.Update(crc, castagnoli, raw[p.Off:p.Off+p.Filesz])
		n += p.Filesz
	}
	return crc, n, nil
}

// FindNote returns kvmboot's note in an ELF file and the index of its
// program header, or nil and -1 when the file has none. More than one
// kvmboot PT_NOTE is an error.
func FindNote(f *elf.File, raw []byte) (*Note, int, error) {
	var note *Note
	at := -1
	for i, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		if !inFile(raw, p.Off, p.Filesz) {
			return nil, -1, &FormatError{Context: "ELF", Msg: fmt.Sprintf("note program header %d: bytes %#x+%#x are past the end of the file", i, p.Off, p.Filesz)}
		}
		seg := raw[p.Off : p.Off+p.Filesz]
		if !IsKvmbootNote(seg) {
			continue
		}
		if note != nil {
			return nil, -1, noteError("two kvmboot PT_NOTE segments (program headers %d and %d)", at, i)
		}
		n, err := ParseNote(seg)
		if err != nil {
			return nil, -1, err
		}
		note, at = n, i
	}
	return note, at, nil
}

// VerifyLoadable checks the note's CHECKSUM against the file's loadable
// bytes, as a loader must before it uses them.
func (n *Note) VerifyLoadable(f *elf.File, raw []byte) error {
	crc, size, err := LoadableChecksum(f, raw)
	if err != nil {
		return err
	}
	c := n.Checksum
	if size != c.LoadableBytes || crc != c.LoadableCRC {
		return &FormatError{Context: "kvmboot note", Msg: fmt.Sprintf("checksum mismatch: the loadable bytes (%d) have CRC-32C %#08x, the note says %d bytes with %#08x: the image is corrupt or was changed after kvmboot mkelf", size, crc, c.LoadableBytes, c.LoadableCRC), Class: ErrChecksum}
	}
	return nil
}

// applyNote reads kvmboot's note from an opened ELF kernel, if it has one,
// verifies it and lets it speak: its relocation table replaces the .rel
// sections, and a Linux setup header makes the kernel a Linux one (a
// BzImage with the header only), so that Build plans it with the 32-bit
// boot protocol as it would the bzImage it came from.
func (k *Kernel) applyNote() error {
	img := k.ELF
	n, _, err := FindNote(img.File, img.Raw)
	if err != nil || n == nil {
		return err
	}
	if err := n.VerifyLoadable(img.File, img.Raw); err != nil {
		return err
	}
	if n.RealMode != nil {
		part, err := ParseRealModePart(n.RealMode)
		if err != nil {
			return err
		}
		if part.Locate != 0 && (uint64(part.Locate) < img.Base || uint64(part.Locate)+4 > img.Base+img.FileEnd()) {
			return noteError("REALMODE locate word %#x is not in the image's file bytes", part.Locate)
		}
		k.RealMode = part
	}
	if l := n.Load; l != nil && l.LinkBase != img.Base {
		return noteError("LOAD link base %#x is not the image's lowest PT_LOAD address %#x", l.LinkBase, img.Base)
	}
	if r := n.Relocs; r != nil {
		switch r.Encoding {
		case RelocEncodingDelta:
			img.Relocs = &Relocs{Source: r.OriginName(), Sites: r.Sites, ByType: r.TypeCounts(), Absolute: int(r.Absolute)}
		case RelocEncodingSections:
			got := img.Relocs
			if got == nil || got.Source != "emit-relocs" || len(got.Sites) != int(r.Count) || got.Absolute != int(r.Absolute) {
				have := "no .rel sections"
				if got != nil && got.Source == "emit-relocs" {
					have = fmt.Sprintf("%d sites and %d skipped", len(got.Sites), got.Absolute)
				}
				return noteError("RELOCS says the .rel sections give %d sites and %d skipped as absolute; the file has %s (stripped after kvmboot mkelf? mkelf --reloc-table keeps the sites in the note)", r.Count, r.Absolute, have)
			}
		}
	}
	if n.LinuxSetup != nil {
		k.BzImage = &BzImage{Header: parseSetupHeader(n.LinuxSetup), HeaderBytes: n.LinuxSetup, Compression: k.Compression}
	}
	k.Note = n
	return nil
}

// constrainImage applies the note's LOAD descriptor to a kernel image
// about to be placed: alignment, memory size and end limit can only
// tighten what the image says itself. (kvmboot never loads a kernel below
// 1 MiB and prefers its link address, so min and preferred add nothing.)
func (k *Kernel) constrainImage(ki *kernelImage) {
	if k.Note == nil || k.Note.Load == nil {
		return
	}
	l := k.Note.Load
	ki.align = max(ki.align, l.Align)
	ki.size = max(ki.size, l.MemSize)
	if l.MaxEnd != 0 && (ki.max == 0 || l.MaxEnd < ki.max) {
		ki.max = l.MaxEnd
	}
}
