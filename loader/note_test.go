package loader

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// testSetupBytes is a setup header as the LINUX_SETUP descriptor holds it.
func testSetupBytes(t testing.TB) []byte {
	bz := makeBzImage(t)
	return bytes.Clone(bz[setupHeaderOffset:testHeaderEnd])
}

// fullNote has every descriptor this version knows, and an unknown
// optional one.
func fullNote(t testing.TB) *Note {
	return &Note{
		Load: &NoteLoad{LinkBase: 0x1000000, Preferred: 0x1000000, Align: 0x1000000, Min: 1 << 20, MaxEnd: 512 << 20, MemSize: 0x100c000},
		Relocs: &NoteRelocs{Origin: RelocOriginLinux, Encoding: RelocEncodingDelta, Count: 6, Absolute: 2,
			ByType: map[elf.R_386]uint32{elf.R_386_32: 6, elf.R_386_PC32: 9},
			// Unsorted, with a duplicate and a large gap: the table sorts.
			Sites: []uint32{0x1000010, 0x1000004, 0x1fffff0, 0x1000004, 0x1000000, 0xfffffffc}},
		LinuxSetup: testSetupBytes(t),
		BuildInfo:  "tool=test\n",
		Other:      []RawNote{{Name: NoteName, Type: uint32(NoteOptional | 0x77), Desc: []byte{1, 2, 3}}},
		Checksum:   &NoteChecksum{LoadableBytes: 12345, LoadableCRC: 0xdeadbeef},
	}
}

func TestNoteRoundTrip(t *testing.T) {
	n := fullNote(t)
	seg := n.Marshal()
	if len(seg)%4 != 0 {
		t.Fatalf("segment is %d bytes, not 4-aligned", len(seg))
	}
	got, err := ParseNote(seg)
	if err != nil {
		t.Fatal(err)
	}
	if got.Major != NoteMajor || got.Minor != NoteMinor {
		t.Errorf("version %d.%d", got.Major, got.Minor)
	}
	if *got.Load != *n.Load {
		t.Errorf("load %+v, want %+v", got.Load, n.Load)
	}
	r, want := got.Relocs, n.Relocs
	wantSites := slices.Clone(want.Sites)
	slices.Sort(wantSites)
	if r.Origin != want.Origin || r.Encoding != want.Encoding || r.Count != want.Count || r.Absolute != want.Absolute ||
		!reflect.DeepEqual(r.ByType, want.ByType) || !slices.Equal(r.Sites, wantSites) {
		t.Errorf("relocs %+v, want %+v with sorted sites", r, want)
	}
	if !bytes.Equal(got.LinuxSetup, n.LinuxSetup) || got.BuildInfo != n.BuildInfo || got.RealMode != nil {
		t.Errorf("setup %x build info %q real mode %x", got.LinuxSetup, got.BuildInfo, got.RealMode)
	}
	if len(got.Other) != 1 || got.Other[0].Type != uint32(NoteOptional|0x77) || !bytes.Equal(got.Other[0].Desc, []byte{1, 2, 3}) {
		t.Errorf("optional descriptors %+v", got.Other)
	}
	c := got.Checksum
	if c.Algorithm != ChecksumCRC32C || c.LoadableBytes != 12345 || c.LoadableCRC != 0xdeadbeef || c.NotesCRC != n.Checksum.NotesCRC {
		t.Errorf("checksum %+v, marshalled %+v", c, n.Checksum)
	}
	// Marshal is deterministic and the parse loses nothing it writes.
	if again := got.Marshal(); !bytes.Equal(again, seg) {
		t.Error("marshal(parse(marshal(n))) differs from marshal(n)")
	}
	// readelf and friends see standard note entries.
	entries, err := ParseNotes(seg, binary.LittleEndian)
	if err != nil {
		t.Fatal(err)
	}
	var types []NoteType
	for _, e := range entries {
		if e.Name != NoteName {
			t.Errorf("entry named %q", e.Name)
		}
		types = append(types, NoteType(e.Type))
	}
	wantTypes := []NoteType{NoteTypeVersion, NoteTypeLoad, NoteTypeRelocs, NoteTypeLinuxSetup, NoteTypeBuildInfo, NoteOptional | 0x77, NoteTypeChecksum}
	if !slices.Equal(types, wantTypes) {
		t.Errorf("entry types %v, want %v", types, wantTypes)
	}
}

func TestNoteMinimalAndSections(t *testing.T) {
	// Only what every note has, plus an emit-relocs record without table.
	n := &Note{Relocs: &NoteRelocs{Origin: RelocOriginEmitRelocs, Encoding: RelocEncodingSections, Count: 154, Absolute: 3, ByType: map[elf.R_386]uint32{elf.R_386_32: 154}}}
	got, err := ParseNote(n.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	if got.Load != nil || got.LinuxSetup != nil || got.Relocs.Sites != nil || got.Relocs.Count != 154 || got.Relocs.OriginName() != "emit-relocs" || got.Relocs.EncodingName() != "sections" {
		t.Errorf("got %+v relocs %+v", got, got.Relocs)
	}
}

func TestNoteSkipsOtherOwners(t *testing.T) {
	// A segment may mix owners: ours are found among the others, and the
	// notes CRC covers every byte before the checksum entry.
	other := noteEntry("GNU", 3, []byte{1, 2, 3, 4, 5})
	n := &Note{Load: &NoteLoad{LinkBase: 1 << 20, Align: 4096}}
	ours := n.Marshal()
	// Re-marshal with the GNU entry first: the CRC must include it.
	seg := append(bytes.Clone(other), ours...)
	if _, err := ParseNote(seg); !errors.Is(err, ErrChecksum) {
		t.Fatalf("notes CRC did not cover the foreign entry before ours: %v", err)
	}
	ck := len(ours) - (noteEntryHeader + noteNameSize + noteChecksumSize)
	seg = append(append(bytes.Clone(other), ours[:ck]...), checksumEntry(append(bytes.Clone(other), ours[:ck]...))...)
	got, err := ParseNote(seg)
	if err != nil || got.Load.LinkBase != 1<<20 {
		t.Fatalf("got %+v, %v", got, err)
	}
	if !IsKvmbootNote(seg) || IsKvmbootNote(other) {
		t.Error("IsKvmbootNote")
	}
}

// noteEntry builds one note entry by hand.
func noteEntry(name string, typ uint32, desc []byte) []byte {
	le := binary.LittleEndian
	b := le.AppendUint32(nil, uint32(len(name)+1))
	b = le.AppendUint32(b, uint32(len(desc)))
	b = le.AppendUint32(b, typ)
	b = append(b, name...)
	b = append(b, 0)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	b = append(b, desc...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// checksumEntry is a CHECKSUM entry whose notes CRC covers before.
func checksumEntry(before []byte) []byte {
	le := binary.LittleEndian
	d := le.AppendUint32(nil, ChecksumCRC32C)
	d = le.AppendUint32(d, 0)
	d = le.AppendUint64(d, 0)
	d = le.AppendUint32(d, 0)
	d = le.AppendUint32(d, crc32.Checksum(before, castagnoli))
	return noteEntry(NoteName, uint32(NoteTypeChecksum), d)
}

// versionEntry is a VERSION entry.
func versionEntry(major, minor uint32) []byte {
	le := binary.LittleEndian
	return noteEntry(NoteName, uint32(NoteTypeVersion), le.AppendUint32(le.AppendUint32(nil, major), minor))
}

// sealed appends a valid checksum entry to entries.
func sealed(entries ...[]byte) []byte {
	b := bytes.Join(entries, nil)
	return append(b, checksumEntry(b)...)
}

func TestNoteErrors(t *testing.T) {
	le := binary.LittleEndian
	load := func(align uint64) []byte {
		var d []byte
		for _, v := range []uint64{1 << 24, 1 << 24, align, 1 << 20, 0, 4096} {
			d = le.AppendUint64(d, v)
		}
		return noteEntry(NoteName, uint32(NoteTypeLoad), d)
	}
	relocs := func(origin, encoding, count uint32, table []byte) []byte {
		d := le.AppendUint32(nil, origin)
		d = le.AppendUint32(d, encoding)
		d = le.AppendUint32(d, count)
		d = le.AppendUint32(d, 0)
		d = le.AppendUint32(d, 0)
		d = le.AppendUint32(d, uint32(len(table)))
		return noteEntry(NoteName, uint32(NoteTypeRelocs), append(d, table...))
	}
	good := fullNote(t).Marshal()
	flipped := bytes.Clone(good)
	flipped[50] ^= 1 // inside LOAD's descriptor
	truncated := good[:len(good)-6]
	badSetup := testSetupBytes(t)
	badSetup[0x202-setupHeaderOffset] = 'X'
	for _, tc := range []struct {
		name, want string
		seg        []byte
	}{
		{"empty", "no \"kvmboot\" entries", nil},
		{"other owners only", "no \"kvmboot\" entries", noteEntry("GNU", 3, []byte{1})},
		{"no checksum", "no CHECKSUM", versionEntry(1, 0)},
		{"version 2", "format version 2.0", sealed(versionEntry(2, 0))},
		{"version not first", "VERSION must come first", sealed(load(4096), versionEntry(1, 0))},
		{"twice", "two LOAD descriptors", sealed(versionEntry(1, 0), load(4096), load(4096))},
		{"after checksum", "after CHECKSUM", append(sealed(versionEntry(1, 0)), load(4096)...)},
		{"unknown critical", "critical descriptor type 0x63", sealed(versionEntry(1, 0), noteEntry(NoteName, 99, nil))},
		{"descriptors corrupt", "descriptors corrupt", flipped},
		{"truncated", "runs past the end", truncated},
		{"short load", "LOAD descriptor is 8 bytes", sealed(versionEntry(1, 0), noteEntry(NoteName, uint32(NoteTypeLoad), make([]byte, 8)))},
		{"alignment", "not a power of two", sealed(versionEntry(1, 0), load(3*4096))},
		{"origin", "RELOCS origin 7", sealed(versionEntry(1, 0), relocs(7, 1, 0, nil))},
		{"encoding", "RELOCS encoding 5", sealed(versionEntry(1, 0), relocs(1, 5, 0, nil))},
		{"linux without table", "must come from .rel sections", sealed(versionEntry(1, 0), relocs(1, 0, 0, nil))},
		{"too few sites", "holds 2 sites, the descriptor says 3", sealed(versionEntry(1, 0), relocs(1, 1, 3, []byte{4, 4}))},
		{"too many sites", "more than the 1 sites", sealed(versionEntry(1, 0), relocs(1, 1, 1, []byte{4, 4}))},
		{"bad uleb", "bad ULEB128", sealed(versionEntry(1, 0), relocs(1, 1, 1, []byte{0x80}))},
		{"beyond 4G", "beyond 4 GiB", sealed(versionEntry(1, 0), relocs(1, 1, 2, []byte{0xff, 0xff, 0xff, 0xff, 0x0f, 0x10}))},
		{"setup", "no \"HdrS\"", sealed(versionEntry(1, 0), noteEntry(NoteName, uint32(NoteTypeLinuxSetup), badSetup))},
		{"setup length", "the header it holds ends", sealed(versionEntry(1, 0), noteEntry(NoteName, uint32(NoteTypeLinuxSetup), testSetupBytes(t)[:0x60]))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseNote(tc.seg)
			var fe *FormatError
			// Which rule of the note format is broken is the message's contract, as debug/elf's FormatError.
			if !errors.As(err, &fe) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want a *FormatError with %q", err, tc.want)
			}
		})
	}
}

func TestNoteTypeNames(t *testing.T) {
	for typ, want := range map[NoteType]string{NoteTypeVersion: "VERSION", NoteTypeRealMode: "REALMODE", NoteTypeBuildInfo: "BUILD_INFO", 42: "0x2a", NoteOptional | 9: "optional 0x80000009"} {
		if got := typ.String(); got != want {
			t.Errorf("%d: %q, want %q", uint32(typ), got, want)
		}
	}
}

func TestNoteSitesEncoding(t *testing.T) {
	// Linux's table: dense sites. The delta table spends about a byte each.
	sites := make([]uint32, 0, 10000)
	for i := range 10000 {
		sites = append(sites, 0x1000000+uint32(i)*37)
	}
	enc := encodeSites(sites)
	if len(enc) > len(sites)+8 {
		t.Errorf("%d sites took %d bytes", len(sites), len(enc))
	}
	got, err := decodeSites(enc, uint32(len(sites)))
	if err != nil || !slices.Equal(got, sites) {
		t.Fatalf("round trip: %v", err)
	}
}

func FuzzParseNote(f *testing.F) {
	f.Add(fullNote(f).Marshal())
	f.Add((&Note{}).Marshal())
	f.Add(sealed(versionEntry(1, 0), noteEntry(NoteName, uint32(NoteTypeRealMode), []byte{1})))
	f.Fuzz(func(t *testing.T, seg []byte) {
		n, err := ParseNote(seg)
		if err != nil {
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is not a *FormatError", err)
			}
			return
		}
		// What parses marshals back to something that parses the same.
		again, err := ParseNote(n.Marshal())
		if err != nil {
			t.Fatalf("re-marshalled note does not parse: %v", err)
		}
		if again.Relocs != nil && !slices.IsSorted(again.Relocs.Sites) {
			t.Fatal("sites not sorted")
		}
	})
}
