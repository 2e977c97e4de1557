package loader

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"kvmboot/boot/testkernel"
	"kvmboot/loader/memmap"
)

// samePlan builds src and out with cfg and checks that they boot the same:
// load address, reason, relocations, entry, and every placement byte for
// byte (the kernel relocated, the zero page, the stub's parameter block
// with its checksums).
func samePlan(t *testing.T, src, out []byte, cfg Config) *Plan {
	t.Helper()
	cfg.Kernel = src
	a, err := Build(cfg)
	if err != nil {
		t.Fatalf("source: %v", err)
	}
	cfg.Kernel = out
	b, err := Build(cfg)
	if err != nil {
		t.Fatalf("mkelf output: %v", err)
	}
	if a.Kernel.Protocol != b.Kernel.Protocol || a.LinkAddress != b.LinkAddress || a.LoadAddress != b.LoadAddress || a.Why != b.Why ||
		a.Relocations != b.Relocations || a.SkippedAbsolute != b.SkippedAbsolute || a.Entry != b.Entry {
		t.Errorf("plans differ:\nsource %s link %#x load %#x (%s) relocs %d/%d entry %+v\noutput %s link %#x load %#x (%s) relocs %d/%d entry %+v",
			a.Kernel.Protocol, a.LinkAddress, a.LoadAddress, a.Why, a.Relocations, a.SkippedAbsolute, a.Entry,
			b.Kernel.Protocol, b.LinkAddress, b.LoadAddress, b.Why, b.Relocations, b.SkippedAbsolute, b.Entry)
	}
	pa, pb := a.Sorted(), b.Sorted()
	if len(pa) != len(pb) {
		t.Fatalf("%d placements, source has %d", len(pb), len(pa))
	}
	for i := range pa {
		x, y := pa[i], pb[i]
		if x.What != y.What || x.Name != y.Name || x.Start != y.Start || x.Size != y.Size || x.Verify != y.Verify || !bytes.Equal(x.Data, y.Data) {
			t.Errorf("placement %d: %s %s %#x+%#x (%d bytes), source %s %s %#x+%#x (%d bytes)%s", i,
				y.What, y.Name, y.Start, y.Size, len(y.Data), x.What, x.Name, x.Start, x.Size, len(x.Data), firstDiff(x.Data, y.Data))
		}
	}
	return b
}

func firstDiff(a, b []byte) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return fmt.Sprintf(", first difference at offset %#x", i)
		}
	}
	return ""
}

func TestMkELFTestKernel(t *testing.T) {
	src, err := OpenKernel(testkernel.ELF, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []Compression{Gzip, XZ, Zstd, CompressionNone} {
		t.Run(string(c), func(t *testing.T) {
			res, err := MkELF(testkernel.ELF, MkELFOptions{Compression: c})
			if err != nil {
				t.Fatal(err)
			}
			if Sniff(res.Output) != c {
				t.Errorf("output sniffs as %s", Sniff(res.Output))
			}
			k, err := OpenKernel(res.Output, 0, nil)
			if err != nil {
				t.Fatal(err)
			}
			n := k.Note
			if n == nil || n.Relocs == nil || n.Load == nil || n.LinuxSetup != nil || k.BzImage != nil {
				t.Fatalf("note %+v, BzImage %v", n, k.BzImage)
			}
			r := src.ELF.Relocs
			if n.Relocs.Origin != RelocOriginEmitRelocs || n.Relocs.Encoding != RelocEncodingSections ||
				int(n.Relocs.Count) != len(r.Sites) || int(n.Relocs.Absolute) != r.Absolute || !maps.Equal(n.Relocs.TypeCounts(), r.ByType) {
				t.Errorf("note relocs %+v, source %d sites, %d absolute, %v", n.Relocs, len(r.Sites), r.Absolute, r.ByType)
			}
			if l := n.Load; l.LinkBase != testkernel.LinkBase || l.Preferred != testkernel.LinkBase || l.Align != 4096 || l.MaxEnd != 0 || l.MemSize != src.ELF.End-src.ELF.Base {
				t.Errorf("load %+v", l)
			}
			if k.Multiboot == nil || k.Multiboot.Offset != src.Multiboot.Offset {
				t.Errorf("Multiboot header %+v, source %+v", k.Multiboot, src.Multiboot)
			}
			// Relocated (bad RAM at the link address) and not.
			samePlan(t, testkernel.ELF, res.Output, Config{MemSize: 64 << 20, Cmdline: "kt.exit=0", BadRAM: []memmap.Range{{Start: 16 << 20, End: 32 << 20}}, Verify: true})
			samePlan(t, testkernel.ELF, res.Output, Config{MemSize: 64 << 20, Verify: true})
		})
	}
}

func TestMkELFRelocTable(t *testing.T) {
	res, err := MkELF(testkernel.ELF, MkELFOptions{Compression: CompressionNone, RelocTable: true})
	if err != nil {
		t.Fatal(err)
	}
	k, err := OpenKernel(res.Output, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r := k.Note.Relocs; r.Encoding != RelocEncodingDelta || len(r.Sites) != int(r.Count) || k.ELF.Relocs.Source != "emit-relocs" {
		t.Fatalf("note relocs %+v, image relocs from %s", r, k.ELF.Relocs.Source)
	}
	samePlan(t, testkernel.ELF, res.Output, Config{MemSize: 64 << 20, BadRAM: []memmap.Range{{Start: 16 << 20, End: 32 << 20}}, Verify: true})
	// A second mkelf keeps the table without being asked.
	again, err := MkELF(res.Output, MkELFOptions{Compression: CompressionNone})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.ELF, res.ELF) {
		t.Error("mkelf of a --reloc-table output changed it")
	}
}

func TestMkELFIdempotent(t *testing.T) {
	first, err := MkELF(testkernel.ELF, MkELFOptions{Compression: Gzip})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []Compression{Gzip, Zstd} {
		second, err := MkELF(first.Output, MkELFOptions{Compression: c})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(second.ELF, first.ELF) {
			t.Errorf("mkelf of its own output (%s) gives a different ELF (%d bytes, first %d)", c, len(second.ELF), len(first.ELF))
		}
	}
}

func TestMkELFLayout(t *testing.T) {
	res, err := MkELF(testkernel.ELF, MkELFOptions{Compression: CompressionNone})
	if err != nil {
		t.Fatal(err)
	}
	in, out := parseELF(t, testkernel.ELF), parseELF(t, res.ELF)
	if len(out.Progs) != len(in.Progs)+1 || len(out.Sections) != len(in.Sections)+1 {
		t.Fatalf("%d program headers, %d sections; source %d, %d", len(out.Progs), len(out.Sections), len(in.Progs), len(in.Sections))
	}
	if phoff := binary.LittleEndian.Uint32(res.ELF[0x1c:]); phoff != 52 {
		t.Errorf("program headers at %#x, want right after the ELF header (there is room)", phoff)
	}
	for i, p := range in.Progs {
		if out.Progs[i].ProgHeader != p.ProgHeader {
			t.Errorf("program header %d: %+v, source %+v", i, out.Progs[i].ProgHeader, p.ProgHeader)
		}
	}
	note := out.Progs[len(out.Progs)-1]
	sec := out.Section(".note.kvmboot")
	if note.Type != elf.PT_NOTE || sec == nil || sec.Type != elf.SHT_NOTE || sec.Flags&elf.SHF_ALLOC != 0 || sec.Offset != note.Off || sec.Size != note.Filesz {
		t.Fatalf("note segment %+v, section %+v", note.ProgHeader, sec)
	}
	// Sections keep their index, so symbols and .rel sections still point
	// where they did.
	for i, s := range in.Sections {
		o := out.Sections[i]
		if s.Type == elf.SHT_STRTAB && s.Name == ".shstrtab" && o.Name == s.Name {
			continue // it gained ".note.kvmboot" and moved
		}
		if o.Name != s.Name || o.Type != s.Type || o.Addr != s.Addr || o.Size != s.Size || o.Link != s.Link || o.Info != s.Info {
			t.Errorf("section %d: %s %+v, source %s %+v", i, o.Name, o.SectionHeader, s.Name, s.SectionHeader)
		}
	}
	si, _ := in.Symbols()
	so, err := out.Symbols()
	if err != nil || !slices.Equal(si, so) {
		t.Errorf("symbols differ (%v)", err)
	}
	// readelf reads our note like any other.
	if _, err := exec.LookPath("readelf"); err == nil {
		p := filepath.Join(t.TempDir(), "tk.elf")
		os.WriteFile(p, res.ELF, 0o644)
		b, err := exec.Command("readelf", "-n", "-W", p).CombinedOutput()
		if err != nil || !strings.Contains(string(b), "kvmboot") || strings.Contains(strings.ToLower(string(b)), "warning") {
			t.Errorf("readelf -n: %v\n%s", err, b)
		}
	}
}

func TestMkELFHeaderInSegment(t *testing.T) {
	// A kernel whose one PT_LOAD starts at file offset 0, headers
	// included (ld's default when there is room): the program header
	// table moves to the end, the loaded copy of the ELF header changes,
	// the rest of the loaded bytes do not.
	code := pattern(0x300, 7)
	e := e32File{entry: 0x100080, segs: []e32Seg{{typ: elf.PT_LOAD, off: 0, vaddr: 0x100000, paddr: 0x100000, memsz: 0x1000, align: 0x1000, flags: elf.PF_R | elf.PF_X}}, size: 0x300}
	raw := e.bytes()
	copy(raw[0x60:], code[0x60:])
	binary.LittleEndian.PutUint32(raw[52+16:], 0x300) // p_filesz
	src, err := OpenKernel(raw, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := MkELF(raw, MkELFOptions{Compression: CompressionNone})
	if err != nil {
		t.Fatal(err)
	}
	k, err := OpenKernel(res.ELF, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if phoff := binary.LittleEndian.Uint32(res.ELF[0x1c:]); phoff < 0x300 {
		t.Errorf("program headers at %#x, inside the loaded bytes", phoff)
	}
	a, b := src.ELF.Segments[0].Data, k.ELF.Segments[0].Data
	if len(a) != len(b) || !bytes.Equal(a[elfHeaderSize:], b[elfHeaderSize:]) {
		t.Error("loaded bytes past the ELF header changed")
	}
	if k.Note == nil || k.Note.Relocs != nil {
		t.Errorf("note %+v", k.Note)
	}
}

func TestMkELFChecksum(t *testing.T) {
	res, err := MkELF(testkernel.ELF, MkELFOptions{Compression: CompressionNone})
	if err != nil {
		t.Fatal(err)
	}
	f := parseELF(t, res.ELF)
	text := f.Progs[0]
	noteOff := f.Progs[len(f.Progs)-1].Off
	for _, tc := range []struct {
		name string
		off  uint64
		want string
	}{
		{"loadable byte", text.Off + text.Filesz/2, "checksum mismatch"},
		{"descriptor byte", noteOff + 12 + 8 + 4, "descriptors corrupt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := bytes.Clone(res.ELF)
			bad[tc.off] ^= 0x40
			for _, file := range [][]byte{bad, mustCompress(t, Gzip, bad)} {
				_, err := OpenKernel(file, 0, nil)
				var fe *FormatError
				// The message says which of the two checksums caught it.
				if !errors.As(err, &fe) || !errors.Is(err, ErrChecksum) || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("OpenKernel: %v, want a *FormatError with %q", err, tc.want)
				}
				if _, err := Build(Config{Kernel: file, MemSize: 64 << 20}); !errors.As(err, &fe) {
					t.Errorf("Build: %v, want a *FormatError", err)
				}
			}
		})
	}
}

func mustCompress(t *testing.T, c Compression, b []byte) []byte {
	t.Helper()
	out, err := Compress(c, b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestMkELFAlignMax(t *testing.T) {
	res, err := MkELF(testkernel.ELF, MkELFOptions{Compression: CompressionNone, Align: 32 << 20})
	if err != nil {
		t.Fatal(err)
	}
	p, err := Build(Config{Kernel: res.Output, MemSize: 128 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if p.LoadAddress != 32<<20 || !strings.Contains(p.Why, "32M-aligned") {
		t.Errorf("--align 32M: loaded at %#x (%s), want 0x2000000", p.LoadAddress, p.Why)
	}
	res, err = MkELF(testkernel.ELF, MkELFOptions{Compression: CompressionNone, MaxEnd: 20 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Build(Config{Kernel: res.Output, MemSize: 128 << 20, BadRAM: []memmap.Range{{Start: 1 << 20, End: 24 << 20}}}); !errors.Is(err, ErrNoRoom) {
		t.Errorf("--max 20M with 1M-24M bad: %v, want no room", err)
	}
	for _, tc := range []struct {
		opts MkELFOptions
		is   error
		want string // the option's rule, which the message states: its contract
	}{
		{MkELFOptions{Compression: Gzip, Align: 3 << 12}, nil, "not a power of two"},
		{MkELFOptions{Compression: Gzip, Align: 1024}, nil, "below the image's own alignment"},
		{MkELFOptions{Compression: Gzip, MaxEnd: 1 << 20}, ErrNoRoom, ""},
		{MkELFOptions{Compression: LZ4}, nil, "gzip, xz, zstd or none"},
	} {
		_, err := MkELF(testkernel.ELF, tc.opts)
		if err == nil || tc.is != nil && !errors.Is(err, tc.is) || tc.want != "" && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %v %q", tc.opts, err, tc.is, tc.want)
		}
	}
}

func TestMkELFRefusesNonELF(t *testing.T) {
	_, err := MkELF([]byte("not a kernel"), MkELFOptions{Compression: Gzip})
	var fe *FormatError
	if !errors.As(err, &fe) {
		t.Errorf("got %v, want a *FormatError", err)
	}
}

// TestMkELFRealMode: a real-mode part survives mkelf (twice), plans below
// 640K with the stub told to far-call it, and the kernel's locate word
// holds where it went; a malformed descriptor is refused, since REALMODE is
// critical.
func TestMkELFRealMode(t *testing.T) {
	locate, err := SymbolAddress(testkernel.ELF, testkernel.RealModeLocateSymbol)
	if err != nil {
		t.Fatal(err)
	}
	part := &RealModePart{Code: testkernel.RealMode, MemSize: testkernel.RealModeSize, ResultsOff: testkernel.RealModeResults,
		ResultsSize: testkernel.RealModeSize - testkernel.RealModeResults, Locate: locate}
	res, err := MkELF(testkernel.ELF, MkELFOptions{Compression: CompressionNone, RealMode: part})
	if err != nil {
		t.Fatal(err)
	}
	again, err := MkELF(res.Output, MkELFOptions{Compression: CompressionNone})
	if err != nil || !bytes.Equal(again.ELF, res.ELF) {
		t.Fatalf("mkelf of its own output: %v, same bytes %v", err, err == nil && bytes.Equal(again.ELF, res.ELF))
	}
	plan, err := Build(Config{Kernel: res.Output, MemSize: 64 << 20, BadRAM: []memmap.Range{{Start: 16 << 20, End: 32 << 20}}, Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	rm, kern := planPlacement(t, plan, "realmode"), planPlacement(t, plan, "kernel")
	if rm.End() > 0x9FC00 || rm.Start%16 != 0 || !bytes.Equal(rm.Data, testkernel.RealMode) || !rm.Verify {
		t.Fatalf("real-mode placement %+v", rm)
	}
	if plan.Entry.RealModeCall != uint32(rm.Start>>4)<<16 {
		t.Errorf("real-mode call %#x, want %#x:0", plan.Entry.RealModeCall, rm.Start>>4)
	}
	if got := binary.LittleEndian.Uint32(kern.Data[locate-0x1000000:]); got != uint32(rm.Start) {
		t.Errorf("locate word holds %#x, want the part's address %#x", got, rm.Start)
	}

	n := *res.Note
	n.RealMode = []byte{1, 0, 0, 0}
	out, _, err := elfWithNote(res.ELF, n.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	// The refusal must name the descriptor: that is what a user can look up.
	if _, err := OpenKernel(out, 0, nil); err == nil || !strings.Contains(err.Error(), "REALMODE") {
		t.Errorf("got %v, want a refusal naming REALMODE", err)
	}
}

// TestMkELFDebian: Debian's bzImage through mkelf plans exactly as the
// bzImage does, Linux 32-bit protocol, zero page and all.
func TestMkELFDebian(t *testing.T) {
	vmlinuz := realVmlinuz(t)
	src, err := OpenKernel(vmlinuz, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := MkELF(vmlinuz, MkELFOptions{Compression: Zstd})
	if err != nil {
		t.Fatal(err)
	}
	k, err := OpenKernel(res.Output, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if k.BzImage == nil || !bytes.Equal(k.BzImage.HeaderBytes, src.BzImage.HeaderBytes) || k.BzImage.Header != src.BzImage.Header {
		t.Fatal("the setup header did not survive")
	}
	if r := k.Note.Relocs; r.Origin != RelocOriginLinux || r.Encoding != RelocEncodingDelta || len(r.Sites) != len(src.ELF.Relocs.Sites) {
		t.Fatalf("note relocs %+v, source %d sites", r, len(src.ELF.Relocs.Sites))
	}
	initrd := &Module{Path: "initrd.img", Data: pattern(3<<20, 9)}
	for _, bad := range [][]memmap.Range{nil, {{Start: 16 << 20, End: 48 << 20}}, {{Start: 16 << 20, End: 20 << 20}, {Start: 50 << 20, End: 52 << 20}}} {
		p := samePlan(t, vmlinuz, res.Output, Config{MemSize: 256 << 20, BadRAM: bad, Cmdline: "console=ttyS0 quiet", Initrd: initrd, Verify: true})
		if p.Kernel.Protocol != ProtocolLinux32 || p.Relocations != len(src.ELF.Relocs.Sites) {
			t.Errorf("protocol %s, %d relocations", p.Kernel.Protocol, p.Relocations)
		}
	}
	// The message's pointer to linux32 is the contract: it says what to do.
	if _, err := Build(Config{Kernel: res.Output, MemSize: 256 << 20, Protocol: ProtocolLinux16}); err == nil || !strings.Contains(err.Error(), "linux32") {
		t.Errorf("linux16 on a mkelf image: %v, want a refusal pointing at linux32", err)
	}
}

// withoutRelSections retypes an ELF's SHT_REL sections as SHT_PROGBITS,
// as if strip had removed them.
func withoutRelSections(t *testing.T, elfBytes []byte) []byte {
	b := bytes.Clone(elfBytes)
	le := binary.LittleEndian
	shoff, shnum := le.Uint32(b[0x20:]), int(le.Uint16(b[0x30:]))
	n := 0
	for i := range shnum {
		sh := b[int(shoff)+i*elfShdrSize:]
		if elf.SectionType(le.Uint32(sh[4:])) == elf.SHT_REL {
			le.PutUint32(sh[4:], uint32(elf.SHT_PROGBITS))
			n++
		}
	}
	if n == 0 {
		t.Fatal("no .rel sections to strip")
	}
	return b
}

func TestMkELFStrippedRelocs(t *testing.T) {
	// An --emit-relocs image whose .rel sections went away after mkelf
	// (strip, objcopy --strip-all) is refused: booting it elsewhere than
	// its link address would go unrelocated.
	res, err := MkELF(testkernel.ELF, MkELFOptions{Compression: CompressionNone})
	if err != nil {
		t.Fatal(err)
	}
	// Naming --reloc-table, the fix, is the message's contract.
	if _, err := OpenKernel(withoutRelSections(t, res.ELF), 0, nil); err == nil || !strings.Contains(err.Error(), "--reloc-table") {
		t.Errorf("got %v, want a refusal that names the .rel sections and --reloc-table", err)
	}
	// With the table in the note, the sections are not needed.
	res, err = MkELF(testkernel.ELF, MkELFOptions{Compression: CompressionNone, RelocTable: true})
	if err != nil {
		t.Fatal(err)
	}
	samePlan(t, testkernel.ELF, withoutRelSections(t, res.ELF), Config{MemSize: 64 << 20, BadRAM: []memmap.Range{{Start: 16 << 20, End: 32 << 20}}, Verify: true})
}
