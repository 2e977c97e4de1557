package loader

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"kvmboot/loader/memmap"

	"github.com/klauspost/compress/gzip"
)

// The Linux boot paths over synthetic images, without a downloaded kernel:
// the compressed-ELF path (buildLinux32, ZeroPage, placeInitrd) over a
// bzImage whose payload is testKernel with Linux's relocation table, and
// the 16-bit path (buildLinux16) over every protocol generation, zImage
// and bzImage, raw protected-mode code and a compressed kernel.

// linuxPayload is testKernel with Linux's appended relocation table,
// gzipped, with the decompressed size after it as Linux's build appends.
func linuxPayload(t testing.TB) []byte {
	blob := withTable(testKernel().bytes(), linuxTable)
	return binary.LittleEndian.AppendUint32(gzipBytes(t, blob, gzip.BestSpeed), uint32(len(blob)))
}

// rawCode is a protected-mode part that is code to run as it is, 37
// bytes: not a whole number of paragraphs.
var rawCode = []byte("\xfa\xf4 raw protected-mode code, 37 bytes.")

var testInitrd = &Module{Path: "initrd.img", Data: pattern(5000, 9)}

// placementsOf returns the plan's placements of kind what.
func placementsOf(p *Plan, what string) []Placement {
	var out []Placement
	for _, pl := range p.Placements {
		if pl.What == what {
			out = append(out, pl)
		}
	}
	return out
}

func TestBuildLinux32Synthetic(t *testing.T) {
	payload := linuxPayload(t)
	spec := func(edit func(*bzSpec)) []byte {
		s := linuxSpec(payload)
		if edit != nil {
			edit(&s)
		}
		return s.bytes()
	}
	for _, tc := range []struct {
		name       string
		kernel     []byte
		bad        []memmap.Range
		load       uint64 // want
		initrdMax  uint64 // the initrd must end at or below this
		wantErr    string
		wantFormat bool // wantErr is a *FormatError, else a *PlaceError
	}{
		{name: "at pref_address", kernel: spec(nil), load: 0x1000000, initrdMax: 256 * btMiB},
		{name: "around bad RAM", kernel: spec(nil), bad: []memmap.Range{{Start: 16 * btMiB, End: 32 * btMiB}}, load: 32 * btMiB, initrdMax: 256 * btMiB},
		{name: "initrd below bad RAM at the top", kernel: spec(nil), bad: []memmap.Range{{Start: 200 * btMiB, End: 256 * btMiB}}, load: 16 * btMiB, initrdMax: 200 * btMiB},
		{name: "initrd below initrd_addr_max", kernel: spec(func(s *bzSpec) { s.initrdMax = 96*btMiB - 1 }), load: 16 * btMiB, initrdMax: 96 * btMiB},
		{name: "not relocatable", kernel: spec(func(s *bzSpec) { s.relocatable = false }), load: 16 * btMiB, initrdMax: 256 * btMiB},
		{name: "not relocatable over bad RAM", kernel: spec(func(s *bzSpec) { s.relocatable = false }), bad: []memmap.Range{{Start: 20 * btMiB, End: 21 * btMiB}},
			wantErr: "the kernel cannot move: the bzImage says it is not relocatable"},
		{name: "protocol 2.09", kernel: spec(func(s *bzSpec) { s.version = 0x0209 }), wantErr: "boot protocol 2.09: kvmboot needs 2.10 or later", wantFormat: true},
		{name: "command line too long", kernel: spec(func(s *bzSpec) { s.cmdlineSize = 8 }), wantErr: "command line is 10 bytes; this kernel takes at most 8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Kernel: tc.kernel, MemSize: 256 * btMiB, BadRAM: tc.bad, Cmdline: "console=ab", Initrd: testInitrd, Verify: true}
			p, err := Build(cfg)
			if tc.wantErr != "" {
				var fe *FormatError
				var pe *PlaceError
				// The message quotes the header's fields and the rule: its contract.
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || tc.wantFormat != errors.As(err, &fe) || !tc.wantFormat && !errors.As(err, &pe) {
					t.Fatalf("error %v, want one saying %q (format error: %v)", err, tc.wantErr, tc.wantFormat)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Kernel.Protocol != ProtocolLinux32 || p.LoadAddress != tc.load {
				t.Fatalf("protocol %s, load %#x: want linux32 at %#x", p.Kernel.Protocol, p.LoadAddress, tc.load)
			}
			checkNoOverlap(t, p, tc.bad)
			checkParams(t, p)
			checkLinux32Plan(t, p, cfg, tc.initrdMax)
		})
	}
}

// checkLinux32Plan checks a linux32 plan of a linuxSpec image: the kernel
// relocated to its place with room for init_size, the entry and ESI, and
// the zero page as the 32-bit boot protocol wants it.
func checkLinux32Plan(t *testing.T, p *Plan, cfg Config, initrdMax uint64) {
	t.Helper()
	le := binary.LittleEndian
	bz, err := ParseBzImage(cfg.Kernel)
	if err != nil {
		t.Fatal(err)
	}
	delta := uint32(p.LoadAddress - testPhys)
	kern := placementsOf(p, "kernel")[0]
	if kern.Start != p.LoadAddress || kern.Size != uint64(bz.Header.InitSize) || kern.Start%uint64(bz.Header.KernelAlignment) != 0 {
		t.Errorf("kernel at %v, want %#x for init_size %#x", kern.Range(), p.LoadAddress, bz.Header.InitSize)
	}
	wantRelocs := 0
	if bz.Header.Relocatable() {
		wantRelocs = len(wantTestKernel.Sites)
	}
	if p.Relocations != wantRelocs {
		t.Errorf("%d relocations applied, want %d", p.Relocations, wantRelocs)
	}
	// .text is zeros and .data 0x11 bytes in testKernel: each site holds
	// its old word plus delta, as Linux's misc.c would leave it.
	for _, site := range wantTestKernel.Sites {
		old := uint32(0)
		if site >= testPhys+0x40 {
			old = 0x11111111
		}
		if got := le.Uint32(kern.Data[site-testPhys:]); got != old+delta {
			t.Errorf("word at site %#x = %#x, want %#x", site, got, old+delta)
		}
	}
	if want := uint32(testPhys) + delta; p.Entry.EIP != want || p.Entry.RealModeEntry != 0 {
		t.Errorf("entry %+v, want eip %#x in protected mode", p.Entry, want)
	}

	zpl := placementsOf(p, "boot_params")[0]
	zp := zpl.Data
	if p.Entry.ESI != uint32(zpl.Start) || len(zp) != ZeroPageSize || zpl.End() > linuxLowMax {
		t.Fatalf("zero page at %v (%d bytes), esi %#x", zpl.Range(), len(zp), p.Entry.ESI)
	}
	// The header is the image's, but for what the loader writes.
	written := map[int]bool{}
	for _, f := range []struct{ off, size int }{{zpTypeOfLoader, 1}, {zpLoadFlags, 1}, {zpVidMode, 2}, {zpCmdLinePtr, 4}, {zpRamdiskImage, 4}, {zpRamdiskSize, 4}} {
		for i := range f.size {
			written[f.off+i] = true
		}
	}
	for i, c := range bz.HeaderBytes {
		if off := setupHeaderOffset + i; !written[off] && zp[off] != c {
			t.Errorf("zero page byte %#x = %#x, the header has %#x", off, zp[off], c)
		}
	}
	if end := setupHeaderOffset + len(bz.HeaderBytes); !bytes.Equal(zp[end:zpE820Table], make([]byte, zpE820Table-end)) || zp[0x1ef] != 0 {
		t.Errorf("zero page bytes after the header or the sentinel are not zero")
	}
	if zp[zpTypeOfLoader] != 0xff || zp[zpLoadFlags]&loadedHigh == 0 || le.Uint16(zp[zpVidMode:]) != 0xffff || le.Uint32(zp[zpHardwareSubarch:]) != 0 {
		t.Errorf("type_of_loader %#x loadflags %#x vid_mode %#x", zp[zpTypeOfLoader], zp[zpLoadFlags], le.Uint16(zp[zpVidMode:]))
	}
	cmd := placementsOf(p, "cmdline")[0]
	if le.Uint32(zp[zpCmdLinePtr:]) != uint32(cmd.Start) || string(cmd.Data) != cfg.Cmdline+"\x00" || cmd.End() > linuxLowMax {
		t.Errorf("cmd_line_ptr %#x, cmdline %q at %v", le.Uint32(zp[zpCmdLinePtr:]), cmd.Data, cmd.Range())
	}
	initrd := placementsOf(p, "initrd")[0]
	if le.Uint32(zp[zpRamdiskImage:]) != uint32(initrd.Start) || le.Uint32(zp[zpRamdiskSize:]) != uint32(len(cfg.Initrd.Data)) || !bytes.Equal(initrd.Data, cfg.Initrd.Data) {
		t.Errorf("ramdisk %#x+%#x, initrd placed at %v", le.Uint32(zp[zpRamdiskImage:]), le.Uint32(zp[zpRamdiskSize:]), initrd.Range())
	}
	// The highest page-aligned fit below the limit: nothing free above it.
	if initrd.End() > initrdMax || initrd.Start%4096 != 0 || initrd.End()+4096 <= initrdMax && p.Map.IsAll(memmap.Range{Start: initrd.Start + 4096, End: initrd.End() + 4096}, memmap.KindRAM) {
		t.Errorf("initrd at %v, want the highest page-aligned fit ending at or below %#x", initrd.Range(), initrdMax)
	}
	regions := p.Map.Regions()
	if int(zp[zpE820Entries]) != len(regions) {
		t.Fatalf("%d E820 entries, the map has %d regions", zp[zpE820Entries], len(regions))
	}
	for i, r := range regions {
		e := zp[zpE820Table+i*e820EntrySize:]
		if le.Uint64(e) != r.Start || le.Uint64(e[8:]) != r.Size() || le.Uint32(e[16:]) != uint32(r.Kind) {
			t.Errorf("E820 entry %d = %#x+%#x type %d, want %v", i, le.Uint64(e), le.Uint64(e[8:]), le.Uint32(e[16:]), r)
		}
	}
	if got, want := le.Uint32(zp[zpAltMemK:]), uint32((ramEnd(regions, oneMiB)-oneMiB)>>10); got != want {
		t.Errorf("alt_mem_k %d, want %d", got, want)
	}
}

// linux16Case is one image for the 16-bit protocol and what its plan must be.
type linux16Case struct {
	name    string
	spec    bzSpec
	bad     []memmap.Range
	load    *uint64 // --load-address
	cmdline string
	// Where things go: the setup segment (0 for the highest fit), the
	// protected-mode part and how much room it has.
	setupAt, pmAt, pmSize uint64
	wantErr               string
}

func u64p(v uint64) *uint64 { return &v }

func TestBuildLinux16Synthetic(t *testing.T) {
	payload := linuxPayload(t)
	debian := linuxSpec(payload)
	notRelocatable := debian
	notRelocatable.relocatable = false
	raw := func(version uint16, edit func(*bzSpec)) bzSpec {
		s := bzSpec{version: version, pm: rawCode, unpadded: true}
		if edit != nil {
			edit(&s)
		}
		return s
	}
	rawSize := uint64(len(rawCode))
	reloc212 := raw(0x020c, func(s *bzSpec) {
		s.relocatable, s.align, s.pref, s.initSize, s.cmdlineSize, s.initrdMax = true, 2*btMiB, 4*btMiB, 4*btMiB, 100, 0x7fffffff
	})
	for _, tc := range []linux16Case{
		{name: "2.00 zImage", spec: raw(0x0200, func(s *bzSpec) { s.zImage = true }), setupAt: 0x90000, pmAt: 0x10000, pmSize: rawSize},
		{name: "2.01 bzImage", spec: raw(0x0201, nil), setupAt: 0x90000, pmAt: btMiB, pmSize: rawSize},
		{name: "2.02 zImage", spec: raw(0x0202, func(s *bzSpec) { s.zImage = true }), setupAt: 0x90000, pmAt: 0x10000, pmSize: rawSize},
		{name: "2.03 raw", spec: raw(0x0203, func(s *bzSpec) { s.initrdMax = 0x7fffffff }), pmAt: btMiB, pmSize: rawSize},
		// No init_size before 2.10: three times the part, page-rounded.
		{name: "2.07 relocatable", spec: raw(0x0207, func(s *bzSpec) { s.relocatable, s.align, s.initrdMax = true, 2*btMiB, 0x7fffffff }), pmAt: 2 * btMiB, pmSize: 3 * 4096},
		{name: "2.12 relocatable at pref_address", spec: reloc212, pmAt: 4 * btMiB, pmSize: 4 * btMiB},
		{name: "2.12 relocatable around bad RAM", spec: reloc212, bad: []memmap.Range{{Start: 5 * btMiB, End: 6 * btMiB}}, pmAt: 6 * btMiB, pmSize: 4 * btMiB},
		{name: "2.12 forced address", spec: reloc212, load: u64p(10 * btMiB), pmAt: 10 * btMiB, pmSize: 4 * btMiB},
		{name: "2.12 forced below pref_address", spec: reloc212, load: u64p(2 * btMiB), wantErr: "--load-address 0x200000 refused: the kernel runs at or above 0x400000"},
		{name: "Linux", spec: debian, pmAt: 16 * btMiB, pmSize: 0x100c000},
		{name: "Linux around bad RAM", spec: debian, bad: []memmap.Range{{Start: 16 * btMiB, End: 48 * btMiB}}, pmAt: 48 * btMiB, pmSize: 0x100c000},
		{name: "Linux not relocatable", spec: notRelocatable, pmAt: btMiB},
		{name: "Linux not relocatable, bad RAM where it unpacks", spec: notRelocatable, bad: []memmap.Range{{Start: 20 * btMiB, End: 21 * btMiB}},
			wantErr: "the kernel is not relocatable and unpacks itself at pref_address 0x01000000-0x0200c000: kernel (decompressed) at 0x01000000-0x0200c000 overlaps bad RAM"},
		{name: "2.03 not relocatable over bad RAM", spec: raw(0x0203, nil), bad: []memmap.Range{{Start: btMiB, End: btMiB + 4096}},
			wantErr: "the kernel cannot move: boot protocol 2.03, relocatable_kernel 0; at its link address"},
		{name: "2.01 bad RAM at 0x90000", spec: raw(0x0201, nil), bad: []memmap.Range{{Start: 0x99000, End: 0x9a000}},
			wantErr: "boot protocol 2.01 (bzImage) runs its setup code at 0x90000"},
		{name: "command line past 255 bytes before 2.06", spec: raw(0x0205, nil), cmdline: strings.Repeat("x", 256),
			wantErr: "command line is 256 bytes; this image takes at most 255"},
		{name: "command line past cmdline_size", spec: reloc212, cmdline: strings.Repeat("x", 101),
			wantErr: "command line is 101 bytes; this image takes at most 100"},
		{name: "setup too large for 0x90000", spec: raw(0x0201, func(s *bzSpec) { s.setupSects = 80 }),
			wantErr: "setup code of 41472 bytes: the protocol gives it 0x9800 bytes below its heap's end"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.cmdline == "" {
				tc.cmdline = "console=ttyS0 hello"
			}
			cfg := Config{Kernel: tc.spec.bytes(), MemSize: 256 * btMiB, BadRAM: tc.bad, Cmdline: tc.cmdline, Initrd: testInitrd,
				Protocol: ProtocolLinux16, LoadAddress: tc.load, Verify: true}
			p, err := Build(cfg)
			if tc.wantErr != "" {
				// The message quotes the header's fields and the rule: its contract.
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			checkNoOverlap(t, p, tc.bad)
			checkParams(t, p)
			checkLinux16Plan(t, p, cfg, tc)
		})
	}
}

// checkLinux16Plan checks a linux16 plan against the boot protocol: the
// setup code at its segment with the loader's fields for the image's
// version (and nothing written past its header), the command line above
// the heap, the protected-mode part where the case says, the real-mode
// entry.
func checkLinux16Plan(t *testing.T, p *Plan, cfg Config, tc linux16Case) {
	t.Helper()
	le := binary.LittleEndian
	bz, err := ParseBzImage(cfg.Kernel)
	if err != nil {
		t.Fatal(err)
	}
	h := bz.Header
	old := h.Version < 0x0202 || !h.LoadedHigh()
	heapEnd, window := uint64(0xE000), uint64(0x10000)
	if old {
		heapEnd, window = 0x9800, 0xA000
	}
	setup := placementsOf(p, "setup")[0]
	x := setup.Start
	switch {
	case tc.setupAt != 0 && x != tc.setupAt:
		t.Errorf("setup at %#x, want %#x", x, tc.setupAt)
	case tc.setupAt == 0 && (x+window > 0x9FC00 || x+window+16 <= 0x9FC00):
		t.Errorf("setup at %v, want the highest fit below the EBDA", setup.Range())
	}
	if setup.Size != window || x%16 != 0 {
		t.Errorf("setup window %v, want %#x bytes from a paragraph", setup.Range(), window)
	}
	s := setup.Data
	end := setupHeaderOffset + len(bz.HeaderBytes)
	if !bytes.Equal(s[end:len(bz.Setup)], bz.Setup[end:]) || !bytes.Equal(s[:0x20], bz.Setup[:0x20]) {
		t.Errorf("the loader wrote setup code outside the version %s header (it ends at %#x)", versionString(h.Version), end)
	}
	if s[zpTypeOfLoader] != 0xff || le.Uint16(s[zpVidMode:]) != 0xffff {
		t.Errorf("type_of_loader %#x vid_mode %#x", s[zpTypeOfLoader], le.Uint16(s[zpVidMode:]))
	}
	if got := s[zpLoadFlags] & canUseHeap; (got != 0) != (h.Version >= 0x0201) {
		t.Errorf("CAN_USE_HEAP %#x at protocol %s", got, versionString(h.Version))
	}
	if h.Version >= 0x0201 && le.Uint16(s[zpHeapEndPtr:]) != uint16(heapEnd-0x200) {
		t.Errorf("heap_end_ptr %#x, want %#x", le.Uint16(s[zpHeapEndPtr:]), heapEnd-0x200)
	}
	if got := string(s[heapEnd : heapEnd+uint64(len(cfg.Cmdline))+1]); got != cfg.Cmdline+"\x00" {
		t.Errorf("command line at X+%#x: %q", heapEnd, got)
	}
	if h.Version >= 0x0202 {
		if got := le.Uint32(s[zpCmdLinePtr:]); uint64(got) != x+heapEnd {
			t.Errorf("cmd_line_ptr %#x, want %#x", got, x+heapEnd)
		}
	} else if le.Uint16(s[0x20:]) != 0xA33F || le.Uint16(s[0x22:]) != uint16(heapEnd) || uint64(le.Uint16(s[zpSetupMoveSize:])) != heapEnd+uint64(len(cfg.Cmdline))+1 {
		t.Errorf("old command line protocol: magic %#x offset %#x setup_move_size %#x", le.Uint16(s[0x20:]), le.Uint16(s[0x22:]), le.Uint16(s[zpSetupMoveSize:]))
	}

	kern := placementsOf(p, "kernel")[0]
	if kern.Start != tc.pmAt || p.LoadAddress != tc.pmAt || !bytes.Equal(kern.Data, bz.ProtectedMode) {
		t.Errorf("protected-mode part at %v (load %#x), want at %#x", kern.Range(), p.LoadAddress, tc.pmAt)
	}
	if tc.pmSize != 0 && kern.Size != tc.pmSize {
		t.Errorf("protected-mode part has %#x bytes of room, want %#x", kern.Size, tc.pmSize)
	}
	if got := le.Uint32(s[zpCode32Start:]); uint64(got) != tc.pmAt {
		t.Errorf("code32_start %#x, want %#x", got, tc.pmAt)
	}
	if !h.Relocatable() && h.Version >= 0x020a {
		unpack := placementsOf(p, "kernel")
		if len(unpack) != 2 || unpack[1].Range() != (memmap.Range{Start: h.PrefAddress, End: h.PrefAddress + uint64(h.InitSize)}) {
			t.Errorf("kernel placements %v: want the room where it unpacks itself claimed", unpack)
		}
	}
	initrd := placementsOf(p, "initrd")[0]
	if le.Uint32(s[zpRamdiskImage:]) != uint32(initrd.Start) || le.Uint32(s[zpRamdiskSize:]) != uint32(len(cfg.Initrd.Data)) {
		t.Errorf("ramdisk %#x+%#x, initrd at %v", le.Uint32(s[zpRamdiskImage:]), le.Uint32(s[zpRamdiskSize:]), initrd.Range())
	}
	seg := uint32(x >> 4)
	if e := p.Entry; e.RealModeEntry != (seg+0x20)<<16 || uint32(e.RealModeSeg) != seg || uint64(e.RealModeSP) != heapEnd {
		t.Errorf("entry %+v, want %04x:0000 with ds=ss=%04x sp=%#x", e, seg+0x20, seg, heapEnd)
	}
}

// TestLinuxProtocolChoice: an image with a compressed ELF boots through
// the compressed-ELF path unless asked otherwise; one without boots with
// its own setup code, and refuses the compressed-ELF path in a line that
// says why and what to use.
func TestLinuxProtocolChoice(t *testing.T) {
	linux := linuxSpec(linuxPayload(t)).bytes()
	raw := bzSpec{version: 0x0207, pm: rawCode, unpadded: true}.bytes()
	for _, tc := range []struct {
		name   string
		kernel []byte
		asked  Protocol
		want   Protocol
		err    string
	}{
		{"Linux", linux, "", ProtocolLinux32, ""},
		{"Linux, linux16 asked", linux, ProtocolLinux16, ProtocolLinux16, ""},
		{"raw", raw, "", ProtocolLinux16, ""},
		{"raw, linux16 asked", raw, ProtocolLinux16, ProtocolLinux16, ""},
		{"raw, linux32 asked", raw, ProtocolLinux32, "", "bzImage: boot protocol 2.07 has no payload_offset (2.08+): no compressed kernel to unpack: its protected-mode part is code that only its own setup code starts: it boots with --protocol linux16 (its default)"},
		{"raw, multiboot asked", raw, ProtocolMultiboot, "", "a Linux bzImage boots with --protocol linux32 or linux16, not multiboot"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Build(Config{Kernel: tc.kernel, MemSize: 64 * btMiB, Protocol: tc.asked})
			if tc.err != "" {
				wantFormatError(t, err, tc.err)
				return
			}
			if err != nil || p.Kernel.Protocol != tc.want || p.Kernel.Format != "bzimage" {
				t.Fatalf("plan %+v, %v: want %s", p, err, tc.want)
			}
		})
	}
	_, err := MkELF(raw, MkELFOptions{Compression: CompressionNone})
	wantFormatError(t, err, "mkelf: boot protocol 2.07 has no payload_offset (2.08+): no compressed kernel to unpack: the bzImage holds no ELF to convert")
}

// TestInspectRawBzImage: inspect describes an image without a compressed
// ELF, and where its protected-mode part could go.
func TestInspectRawBzImage(t *testing.T) {
	spec := bzSpec{version: 0x020c, relocatable: true, align: 2 * btMiB, pref: 4 * btMiB, initSize: 4 * btMiB, pm: rawCode, unpadded: true}
	in, err := Inspect(spec.bytes(), InspectOptions{MemSize: 64 * btMiB, BadRAM: []memmap.Range{{Start: 4 * btMiB, End: 6 * btMiB}}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(in.Payload, "37 bytes of code run as they are (payload_length is 0") || in.Setup == nil || in.ELFSize != 0 {
		t.Errorf("payload %q, setup %v, ELF %d bytes", in.Payload, in.Setup != nil, in.ELFSize)
	}
	pi := in.Placement
	if pi.Error != "" || pi.Protocol != ProtocolLinux16 || pi.LoadAddress != 6*btMiB || !pi.Relocatable || pi.MinStart != 4*btMiB || pi.Size != 4*btMiB || pi.Align != 2*btMiB {
		t.Errorf("placement %+v", pi)
	}
	if pi.Lowest == nil || *pi.Lowest != 6*btMiB {
		t.Errorf("lowest %v, want 6M", pi.Lowest)
	}
	var out strings.Builder
	if err := in.Write(&out); err != nil || !strings.Contains(out.String(), "payload      37 bytes of code") || !strings.Contains(out.String(), "at or above 4M") {
		t.Errorf("Write: %v\n%s", err, out.String())
	}
}

// TestConformanceImages reads the conformance images e2e boots (built from
// e2e/conformance by scripts/build-conformance-loader.sh) as golden
// inputs: each parses as what it is and plans by default as its loader
// would boot it.
func TestConformanceImages(t *testing.T) {
	read := func(t *testing.T, name string) []byte {
		b, err := os.ReadFile(filepath.Join("..", "e2e", "conformance", name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		file        string
		version     uint16
		relocatable bool
		why         string
	}{
		{"linux-raw-203.bin", 0x0203, false, "boot protocol 2.03 has no payload_offset"},
		{"linux-raw-207.bin", 0x0207, true, "boot protocol 2.07 has no payload_offset"},
		{"linux-raw-212.bin", 0x020c, true, "the payload starts with fa fc e8 00, no compression kvmboot knows"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			b := read(t, tc.file)
			bz, err := ParseBzImage(b)
			if err != nil {
				t.Fatal(err)
			}
			h := bz.Header
			if h.Version != tc.version || h.Relocatable() != tc.relocatable || bz.Payload != nil || !strings.HasPrefix(bz.rawWhy(), tc.why) {
				t.Errorf("protocol %s, relocatable %v, payload %d bytes, %q", versionString(h.Version), h.Relocatable(), len(bz.Payload), bz.rawWhy())
			}
			if n := len(bz.ProtectedMode); n%16 == 0 || uint32(n+15)/16 != h.SysSize {
				t.Errorf("a %d-byte 32-bit part with syssize %d: want a part that ends inside its last paragraph", n, h.SysSize)
			}
			p, err := Build(Config{Path: tc.file, Kernel: b, MemSize: 64 * btMiB, Cmdline: "x"})
			if err != nil || p.Kernel.Protocol != ProtocolLinux16 || p.LoadAddress != btMiB {
				t.Fatalf("plan %+v, %v: want linux16 with the 32-bit part at 1M", p, err)
			}
		})
	}
	t.Run("multiboot-argv0.elf", func(t *testing.T) {
		p, err := Build(Config{Path: "/x/multiboot-argv0.elf", Kernel: read(t, "multiboot-argv0.elf"), MemSize: 64 * btMiB, Cmdline: "a"})
		if err != nil || p.Kernel.Protocol != ProtocolMultiboot {
			t.Fatalf("plan %+v, %v", p, err)
		}
		info := planPlacement(t, p, "boot_info")
		if mi := decodeMBInfo(t, info.Data, uint32(info.Start)); mi.cmdline != "/x/multiboot-argv0.elf a" {
			t.Errorf("command line %q", mi.cmdline)
		}
	})
	t.Run("multiboot-twoseg.elf", func(t *testing.T) {
		p, err := Build(Config{Kernel: read(t, "multiboot-twoseg.elf"), MemSize: 64 * btMiB})
		if err != nil {
			t.Fatal(err)
		}
		if k := placementsOf(p, "kernel"); len(k) != 2 || k[0].Start != 0x40000 || k[1].Start != btMiB {
			t.Errorf("kernel placements %+v, want one at 0x40000 and one at 1M", k)
		}
	})
}

// FuzzBuildLinux16: whatever a Linux-protocol image's header says, a
// linux16 plan is one line of refusal (a *FormatError or *PlaceError) or a
// plan whose pieces lie in RAM without overlapping, with the setup window
// below 640K and the real-mode entry at its segment + 0x20.
func FuzzBuildLinux16(f *testing.F) {
	f.Add(bzSpec{version: 0x0201, zImage: true, pm: rawCode, unpadded: true}.bytes())
	f.Add(bzSpec{version: 0x0207, relocatable: true, align: 2 * btMiB, pm: rawCode, unpadded: true}.bytes())
	f.Add(bzSpec{version: 0x020c, relocatable: true, align: 2 * btMiB, pref: 4 * btMiB, initSize: 4 * btMiB, pm: rawCode}.bytes())
	f.Add(linuxSpec(gzipBytes(f, testPlain, 1)).bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Build(Config{Kernel: b, MemSize: 64 * btMiB, Protocol: ProtocolLinux16, Cmdline: "x", Initrd: testInitrd})
		if err != nil {
			var fe *FormatError
			var pe *PlaceError
			// One line is the contract of every error kvmboot prints.
			if !errors.As(err, &fe) && !errors.As(err, &pe) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %T %q: want one line, a *FormatError or a *PlaceError", err, err)
			}
			return
		}
		checkNoOverlap(t, p, nil)
		setup := placementsOf(p, "setup")[0]
		if setup.End() > 0xA0000 || setup.Start%16 != 0 || p.Entry.RealModeEntry != (uint32(setup.Start>>4)+0x20)<<16 {
			t.Fatalf("setup at %v, entry %+v", setup.Range(), p.Entry)
		}
	})
}
