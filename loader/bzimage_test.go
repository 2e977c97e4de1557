package loader

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"os"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"

	"kvmboot/e2e/hosttest"
)

// realVmlinuz returns the bytes of Debian's bzImage or skips the test.
func realVmlinuz(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(hosttest.DebianKernel(t))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// bzSpec describes a synthetic image of the Linux boot protocol, laid out
// as Linux's build tools lay out a bzImage: setup sectors with the header
// at 0x1f1, then the protected-mode part. The header holds the fields of
// its version only and ends where they end (the jump's offset says so);
// the setup code after it is a byte pattern, so that a loader writing a
// field the version lacks shows.
type bzSpec struct {
	version     uint16
	setupSects  uint8 // 0 means 4, as the protocol says
	zImage      bool  // LOADED_HIGH clear
	relocatable bool  // 2.05+
	align       uint32
	minAlign    uint8  // 2.10+
	cmdlineSize uint32 // 2.06+
	initrdMax   uint32 // 2.03+
	pref        uint64 // 2.10+
	initSize    uint32 // 2.10+
	code32      uint32 // 0: 0x100000, or 0x10000 for a zImage
	// pm is the protected-mode part; payload, when set, goes into it at
	// payloadOff, and payload_offset and payload_length say so (2.08+).
	pm         []byte
	payload    []byte
	payloadOff uint32
	// unpadded leaves the part as long as it is, as non-Linux images
	// do; Linux's build pads it to whole 16-byte paragraphs (syssize).
	unpadded bool
}

// protoHeaderEnd is where the setup header of protocol v ends: just past
// the last field that version has.
func protoHeaderEnd(v uint16) int {
	for _, e := range []struct {
		since uint16
		end   int
	}{{0x020f, 0x26c}, {0x020b, 0x268}, {0x020a, 0x264}, {0x0209, 0x258}, {0x0208, 0x250}, {0x0207, 0x248},
		{0x0206, 0x23c}, {0x0205, 0x236}, {0x0203, 0x230}, {0x0202, 0x22c}, {0x0201, 0x226}} {
		if v >= e.since {
			return e.end
		}
	}
	return 0x224
}

// setupFiller is the byte of the synthetic setup code at offset i.
func setupFiller(i int) byte { return byte(i*7 + 3) }

func (s bzSpec) bytes() []byte {
	sects := int(s.setupSects)
	if sects == 0 {
		sects = 4
	}
	pm := bytes.Clone(s.pm)
	if s.payload != nil {
		if need := int(s.payloadOff) + len(s.payload); len(pm) < need {
			pm = append(pm, make([]byte, need-len(pm))...)
		}
		copy(pm[s.payloadOff:], s.payload)
	}
	if !s.unpadded && len(pm)%16 != 0 {
		pm = append(pm, make([]byte, 16-len(pm)%16)...)
	}
	end := protoHeaderEnd(s.version)
	b := make([]byte, (sects+1)*512)
	for i := end; i < len(b); i++ {
		b[i] = setupFiller(i)
	}
	le16 := func(off int, v uint16) { binary.LittleEndian.PutUint16(b[off:], v) }
	le32 := func(off int, v uint32) { binary.LittleEndian.PutUint32(b[off:], v) }
	le64 := func(off int, v uint64) { binary.LittleEndian.PutUint64(b[off:], v) }
	b[0x1f1] = s.setupSects
	sys := uint32(len(pm)+15) / 16 // paragraphs, rounded up
	if s.version >= 0x0204 {
		le32(0x1f4, sys)
	} else {
		le16(0x1f4, uint16(sys))
	}
	le16(0x1fa, 0xffff)                        // vid_mode
	le16(0x1fe, 0xaa55)                        // boot_flag
	b[0x200], b[0x201] = 0xeb, byte(end-0x202) // jmp past the header
	copy(b[0x202:], "HdrS")
	le16(0x206, s.version)
	code32 := s.code32
	if !s.zImage {
		b[0x211] = 0x01 // LOADED_HIGH
		if code32 == 0 {
			code32 = 0x100000
		}
	} else if code32 == 0 {
		code32 = 0x10000
	}
	le32(0x214, code32)
	if s.version >= 0x0203 {
		le32(0x22c, s.initrdMax)
	}
	if s.version >= 0x0205 {
		le32(0x230, s.align)
		if s.relocatable {
			b[0x234] = 1
		}
	}
	if s.version >= 0x0206 {
		le32(0x238, s.cmdlineSize)
	}
	if s.version >= 0x0208 && s.payload != nil {
		le32(0x248, s.payloadOff)
		le32(0x24c, uint32(len(s.payload)))
	}
	if s.version >= 0x020a {
		b[0x235] = s.minAlign
		le64(0x258, s.pref)
		le32(0x260, s.initSize)
	}
	return append(b, pm...)
}

// The synthetic Linux bzImage: protocol 2.15, three setup sectors, a gzip
// payload 0x200 bytes into the protected-mode part.
const (
	testSetupSects = 3
	testHeaderEnd  = 0x26c // 0x202 + 0x6a, as in current kernels
	testPayloadOff = 0x200
)

var testPlain = []byte("\x7fELF pretend this is vmlinux, which kvmboot decompresses itself")

// linuxSpec is a current Linux bzImage around payload (compressed, its
// decompressed size appended as Linux's build does).
func linuxSpec(payload []byte) bzSpec {
	return bzSpec{
		version: 0x020f, setupSects: testSetupSects, relocatable: true, align: 0x1000000, minAlign: 13,
		cmdlineSize: 2047, initrdMax: 0x7fffffff, pref: 0x1000000, initSize: 0x100c000,
		pm: []byte("startup_32 would be here"), payload: payload, payloadOff: testPayloadOff,
	}
}

// makeBzImage builds a bzImage whose payload is testPlain, with the
// fields a current kernel has that kvmboot only copies.
func makeBzImage(t testing.TB) []byte {
	payload := gzipBytes(t, testPlain, gzip.BestCompression)
	payload = binary.LittleEndian.AppendUint32(payload, uint32(len(testPlain)))
	b := linuxSpec(payload).bytes()
	le := binary.LittleEndian
	le.PutUint16(b[0x1f2:], 1)      // root_flags
	le.PutUint16(b[0x20e:], 0x3c0)  // kernel_version
	le.PutUint16(b[0x212:], 0x8000) // setup_move_size
	le.PutUint32(b[0x264:], 0x190)  // handover_offset
	le.PutUint32(b[0x268:], 0x1234) // kernel_info_offset
	b[0x26c] = 0xfa                 // cli: start_of_setup, past the header
	return b
}

func TestParseBzImage(t *testing.T) {
	b := makeBzImage(t)
	if !IsBzImage(b) {
		t.Fatal("IsBzImage = false")
	}
	img, err := ParseBzImage(b)
	if err != nil {
		t.Fatal(err)
	}
	want := SetupHeader{
		SetupSects: testSetupSects, RootFlags: 1, SysSize: uint32(len(b)-4*512) / 16,
		VidMode: 0xffff, BootFlag: 0xaa55, Jump: 0x6aeb, HeaderMagic: [4]byte{'H', 'd', 'r', 'S'},
		Version: 0x020f, KernelVersion: 0x3c0, LoadFlags: 1, SetupMoveSize: 0x8000,
		Code32Start: 0x100000, InitrdAddrMax: 0x7fffffff, KernelAlignment: 0x1000000,
		RelocatableKernel: 1, MinAlignment: 13, CmdlineSize: 2047,
		PayloadOffset: testPayloadOff, PayloadLength: img.Header.PayloadLength,
		PrefAddress: 0x1000000, InitSize: 0x100c000, HandoverOffset: 0x190, KernelInfoOffset: 0x1234,
	}
	if img.Header != want {
		t.Errorf("Header =\n%+v\nwant\n%+v", img.Header, want)
	}
	if got := img.Header.SetupSize(); got != 4*512 {
		t.Errorf("SetupSize = %d, want %d", got, 4*512)
	}
	if !bytes.Equal(img.HeaderBytes, b[0x1f1:testHeaderEnd]) {
		t.Errorf("HeaderBytes = [0x1f1, 0x%x), want [0x1f1, 0x%x)", 0x1f1+len(img.HeaderBytes), testHeaderEnd)
	}
	if !bytes.Equal(img.Setup, b[:4*512]) || !bytes.Equal(img.ProtectedMode, b[4*512:]) {
		t.Errorf("Setup/ProtectedMode split at %d, want %d", len(img.Setup), 4*512)
	}
	if off := 4*512 + testPayloadOff; !bytes.Equal(img.Payload, b[off:off+int(want.PayloadLength)]) {
		t.Error("Payload is not [payload_offset, +payload_length) of the protected-mode part")
	}
	if img.Compression != Gzip {
		t.Errorf("Compression = %q, want gzip", img.Compression)
	}
	out, err := Decompress(img.Compression, img.Payload, DefaultLimit)
	if err != nil || !bytes.Equal(out, testPlain) {
		t.Errorf("payload decompresses to %q, %v", out, err)
	}
}

// TestParseBzImageOlderFields checks that fields newer than the image's
// protocol read as zero even when bytes follow the header.
func TestParseBzImageOlderFields(t *testing.T) {
	b := makeBzImage(t)
	binary.LittleEndian.PutUint16(b[0x206:], 0x0208)
	b[0x201] = 0x250 - 0x202 // 2.08's header ends after payload_length
	img, err := ParseBzImage(b)
	if err != nil {
		t.Fatal(err)
	}
	h := img.Header
	if h.PrefAddress != 0 || h.InitSize != 0 || h.HandoverOffset != 0 || h.KernelInfoOffset != 0 {
		t.Errorf("fields past 0x250 = %#x %#x %#x %#x, want 0", h.PrefAddress, h.InitSize, h.HandoverOffset, h.KernelInfoOffset)
	}
	if h.PayloadLength == 0 || len(img.HeaderBytes) != 0x250-0x1f1 {
		t.Errorf("PayloadLength %d, %d header bytes", h.PayloadLength, len(img.HeaderBytes))
	}
}

func TestParseBzImageErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(b []byte) []byte
		want string
	}{
		{"too short", func(b []byte) []byte { return b[:0x200] }, "bzImage: file is 512 bytes, too short"},
		{"no boot flag", func(b []byte) []byte { b[0x1fe] = 0; return b }, "no boot flag at 0x1fe (found 0xaa00, want 0xaa55)"},
		{"no HdrS", func(b []byte) []byte { b[0x205] = 's'; return b }, `no "HdrS" at 0x202`},
		{"header too long", func(b []byte) []byte { b[0x201] = 0xff; return b }, "setup header claims to end at 0x301, past the zero page's room for it (0x290)"},
		{"header too short", func(b []byte) []byte { b[0x201] = 2; return b }, "before the protocol version"},
		{"protocol 1.99", func(b []byte) []byte { binary.LittleEndian.PutUint16(b[0x206:], 0x0199); return b }, `boot protocol 1.153: "HdrS" images start at 2.00`},
		{"header lacks payload fields", func(b []byte) []byte { b[0x201] = 0x30; return b }, "protocol 2.15 header ends at 0x232, before payload_length's end (0x250)"},
		{"setup past end", func(b []byte) []byte { return b[:3*512] }, "setup code (3 sectors, 2048 bytes) runs past the end of the 1536-byte file"},
		{"truncated", func(b []byte) []byte { return b[:len(b)-16] }, "file truncated: syssize says"},
		{"no protected-mode part", func(b []byte) []byte { return b[:4*512] }, "no protected-mode code after the 2048 bytes of setup code"},
		{"zImage too large", func(b []byte) []byte {
			b[0x211] = 0
			return append(b, make([]byte, 0x80000)...)
		}, "zImage (LOADED_HIGH clear) with 524896 bytes of protected-mode code: it loads at 0x10000 and must end below 0x90000"},
		{"payload outside", func(b []byte) []byte { binary.LittleEndian.PutUint32(b[0x24c:], 0xfffffff0); return b }, "payload [0x200, 0x1000001f0) lies outside the"},
		{"payload offset outside", func(b []byte) []byte { binary.LittleEndian.PutUint32(b[0x248:], 0xffffffff); return b }, "lies outside the"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseBzImage(tc.edit(makeBzImage(t)))
			wantFormatError(t, err, tc.want)
		})
	}
}

// TestParseBzImageRaw: images whose protected-mode part is code to run as
// it is parse without a payload, whatever their protocol; syssize may
// round the part's length up to a whole paragraph.
func TestParseBzImageRaw(t *testing.T) {
	code := []byte("\xfa\xf4 a raw 32-bit part, 37 bytes long.")
	for _, tc := range []struct {
		name string
		spec bzSpec
		why  string
	}{
		{"2.00 zImage", bzSpec{version: 0x0200, zImage: true, pm: code, unpadded: true}, "boot protocol 2.00 has no payload_offset"},
		{"2.03", bzSpec{version: 0x0203, pm: code, unpadded: true}, "boot protocol 2.03 has no payload_offset"},
		{"2.07 relocatable", bzSpec{version: 0x0207, relocatable: true, align: 0x200000, pm: code, unpadded: true}, "boot protocol 2.07 has no payload_offset"},
		{"2.12 no payload", bzSpec{version: 0x020c, pm: code, unpadded: true}, "payload_length is 0"},
		{"2.12 raw payload", bzSpec{version: 0x020c, pm: code, payload: code[:8], payloadOff: 0, unpadded: true}, "the payload starts with fa f4 20 61, no compression kvmboot knows"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.spec.bytes()
			img, err := ParseBzImage(b)
			if err != nil {
				t.Fatal(err)
			}
			if img.Payload != nil || img.Compression != CompressionNone {
				t.Errorf("payload %d bytes, compression %q: want none", len(img.Payload), img.Compression)
			}
			if !bytes.Equal(img.ProtectedMode, code) {
				t.Errorf("protected-mode part is %d bytes, want the file's %d", len(img.ProtectedMode), len(code))
			}
			if got, want := int(img.Header.SysSize)*16, (len(code)+15)&^15; len(code)%16 == 0 || got != want {
				t.Errorf("syssize says %d bytes, want %d rounded up (%d)", got, len(code), want)
			}
			if got := img.rawWhy(); !strings.HasPrefix(got, tc.why) {
				t.Errorf("rawWhy = %q, want %q...", got, tc.why)
			}
			k, err := OpenKernel(b, 0, nil)
			if err != nil || k.ELF != nil || k.BzImage == nil || k.Format != "bzimage" {
				t.Fatalf("OpenKernel: %+v, %v", k, err)
			}
		})
	}
}

// TestSetupHeaderByVersion: a field newer than the image's protocol reads
// as zero even when the header is long enough to hold bytes there, and
// syssize is two bytes wide before 2.04.
func TestSetupHeaderByVersion(t *testing.T) {
	b := makeBzImage(t)
	le := binary.LittleEndian
	le.PutUint16(b[0x206:], 0x0203)
	le.PutUint16(b[0x1f6:], 0x1234) // syssize's upper half, not syssize before 2.04
	h := parseSetupHeader(b[0x1f1:testHeaderEnd])
	if h.InitrdAddrMax != 0x7fffffff || h.CmdLinePtr != 0 || h.HeapEndPtr != 0 {
		t.Errorf("2.03 fields: initrd_addr_max %#x cmd_line_ptr %#x heap_end_ptr %#x", h.InitrdAddrMax, h.CmdLinePtr, h.HeapEndPtr)
	}
	if h.KernelAlignment != 0 || h.RelocatableKernel != 0 || h.CmdlineSize != 0 || h.PayloadLength != 0 || h.PrefAddress != 0 || h.InitSize != 0 || h.KernelInfoOffset != 0 {
		t.Errorf("fields newer than 2.03 read %+v", h)
	}
	if want := le.Uint16(b[0x1f4:]); h.SysSize != uint32(want) {
		t.Errorf("2.03 syssize %#x, want the low two bytes %#x", h.SysSize, want)
	}
	le.PutUint16(b[0x206:], 0x0201)
	if h := parseSetupHeader(b[0x1f1:testHeaderEnd]); h.InitrdAddrMax != 0 || h.HeapEndPtr != 0 && h.Version != 0x0201 {
		t.Errorf("2.01: initrd_addr_max %#x", h.InitrdAddrMax)
	}
}

func TestIsBzImage(t *testing.T) {
	good := makeBzImage(t)
	for _, tc := range []struct {
		name string
		b    []byte
		want bool
	}{
		{"bzImage", good, true},
		{"header only", good[:0x206], true},
		{"short", good[:0x205], false},
		{"ELF", []byte("\x7fELF"), false},
		{"no boot flag", append(append(bytes.Clone(good[:0x1fe]), 0, 0), good[0x200:]...), false},
	} {
		if got := IsBzImage(tc.b); got != tc.want {
			t.Errorf("%s: IsBzImage = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// loadSegments lays out an ELF file's PT_LOAD segments as they sit in
// memory, starting at the lowest physical address, which it returns.
func loadSegments(t testing.TB, blob []byte) ([]byte, uint64) {
	t.Helper()
	f, err := elf.NewFile(bytes.NewReader(blob))
	if err != nil {
		t.Fatal(err)
	}
	lo, hi := ^uint64(0), uint64(0)
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD {
			lo, hi = min(lo, p.Paddr), max(hi, p.Paddr+p.Memsz)
		}
	}
	img := make([]byte, hi-lo)
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD {
			copy(img[p.Paddr-lo:], blob[p.Off:p.Off+p.Filesz])
		}
	}
	return img, lo
}

// realKernel is a real bzImage's decompressed payload with its relocation
// table, and its segments laid out in memory.
type realKernel struct {
	bz    *BzImage
	blob  []byte // vmlinux followed by the relocation table
	elf   int    // ELFEnd(blob)
	img   []byte
	base  uint64
	sites *Relocs
}

func loadRealKernel(t testing.TB) *realKernel {
	t.Helper()
	bz, err := ParseBzImage(realVmlinuz(t))
	if err != nil {
		t.Fatal(err)
	}
	k := &realKernel{bz: bz}
	if k.blob, err = Decompress(bz.Compression, bz.Payload, DefaultLimit); err != nil {
		t.Fatal(err)
	}
	if k.elf, err = ELFEnd(k.blob); err != nil {
		t.Fatal(err)
	}
	if k.sites, err = LinuxRelocs(k.blob, k.elf); err != nil {
		t.Fatal(err)
	}
	k.img, k.base = loadSegments(t, k.blob[:k.elf])
	return k
}

// TestRealKernel runs the whole host-side path on a real kernel: parse,
// decompress, find the table, relocate.
func TestRealKernel(t *testing.T) {
	k := loadRealKernel(t)
	h := k.bz.Header
	t.Logf("protocol %s, %s payload %d bytes -> %d bytes (ELF %d + %d relocations), pref_address %#x, init_size %#x",
		versionString(h.Version), k.bz.Compression, len(k.bz.Payload), len(k.blob), k.elf, len(k.sites.Sites), h.PrefAddress, h.InitSize)
	if k.base != h.PrefAddress {
		t.Errorf("lowest p_paddr %#x, pref_address %#x: want them equal (LOAD_PHYSICAL_ADDR)", k.base, h.PrefAddress)
	}
	if len(k.sites.Sites) < 1000 {
		t.Errorf("only %d relocations", len(k.sites.Sites))
	}
	// misc.c requires every site inside [out, out + (__bss_start - _text)]:
	// the vmlinux keeps its section headers, so check against .bss.
	f := parseELF(t, k.blob[:k.elf])
	bss := f.Section(".bss")
	if bss == nil {
		t.Fatal("no .bss section")
	}
	bssPhys := uint32(bss.Addr - linuxPageOffset)
	for _, s := range k.sites.Sites {
		if s < uint32(k.base) || s+4 > bssPhys {
			t.Fatalf("site %#x outside [%#x, %#x), the text and data misc.c relocates", s, k.base, bssPhys)
		}
	}
	img := bytes.Clone(k.img)
	const delta = 0x2000000
	if err := k.sites.Apply(img, k.base, delta); err != nil {
		t.Fatal(err)
	}
	for _, s := range k.sites.Sites[:10] {
		o := s - uint32(k.base)
		old, got := binary.LittleEndian.Uint32(k.img[o:]), binary.LittleEndian.Uint32(img[o:])
		if got-old != delta {
			t.Errorf("word at %#x: %#x -> %#x, want +%#x", s, old, got, delta)
		}
	}
}

func FuzzParseBzImage(f *testing.F) {
	f.Add(makeBzImage(f))
	f.Add(bzSpec{version: 0x0201, zImage: true, pm: []byte("raw code"), unpadded: true}.bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		img, err := ParseBzImage(b)
		if err != nil {
			wantFormatError(t, err, "bzImage: ")
			return
		}
		if !IsBzImage(b) {
			t.Fatal("parsed, yet IsBzImage = false")
		}
		if len(img.Setup) != img.Header.SetupSize() || len(img.Setup)+len(img.ProtectedMode) != len(b) {
			t.Fatalf("setup %d + protected mode %d != %d", len(img.Setup), len(img.ProtectedMode), len(b))
		}
		if img.Payload == nil {
			// No payload to unpack: the image says why in one line.
			if why := img.rawWhy(); why == "" || strings.Contains(why, "\n") {
				t.Fatalf("rawWhy = %q", why)
			}
		} else if off := int(img.Header.PayloadOffset); !bytes.Equal(img.ProtectedMode[off:off+len(img.Payload)], img.Payload) {
			t.Fatal("payload not inside the protected-mode part")
		}
		if img.Payload != nil && (img.Compression == CompressionNone || img.Header.Version < 0x208) {
			t.Fatalf("a payload with compression %q, protocol %#x", img.Compression, img.Header.Version)
		}
		if !img.Header.LoadedHigh() && len(img.ProtectedMode) > zImageMax {
			t.Fatalf("a zImage with a %d-byte protected-mode part", len(img.ProtectedMode))
		}
		if end := 0x1f1 + len(img.HeaderBytes); end > 0x290 {
			t.Fatalf("header ends at %#x", end)
		}
	})
}
