package loader

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"os"
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

// The synthetic bzImage: protocol 2.15, three setup sectors, a gzip payload
// 0x200 bytes into the protected-mode part.
const (
	testSetupSects = 3
	testHeaderEnd  = 0x26c // 0x202 + 0x6a, as in current kernels
	testPayloadOff = 0x200
)

var testPlain = []byte("\x7fELF pretend this is vmlinux, which kvmboot decompresses itself")

// makeBzImage builds a bzImage byte by byte as Linux's build tools lay it out.
func makeBzImage(t testing.TB) []byte {
	payload := gzipBytes(t, testPlain, gzip.BestCompression)
	payload = binary.LittleEndian.AppendUint32(payload, uint32(len(testPlain)))
	pm := make([]byte, testPayloadOff, 4096)
	copy(pm, "startup_32 would be here")
	pm = append(pm, payload...)
	pm = append(pm, make([]byte, 16-len(pm)%16)...) // build.c pads to paragraphs
	b := make([]byte, (testSetupSects+1)*512, (testSetupSects+1)*512+len(pm))
	le16 := func(off int, v uint16) { binary.LittleEndian.PutUint16(b[off:], v) }
	le32 := func(off int, v uint32) { binary.LittleEndian.PutUint32(b[off:], v) }
	le64 := func(off int, v uint64) { binary.LittleEndian.PutUint64(b[off:], v) }
	b[0x1f1] = testSetupSects
	le16(0x1f2, 1)                    // root_flags
	le32(0x1f4, uint32(len(pm)/16))   // syssize
	le16(0x1fa, 0xffff)               // vid_mode
	le16(0x1fe, 0xaa55)               // boot_flag
	b[0x200], b[0x201] = 0xeb, 0x6a   // jmp start_of_setup
	copy(b[0x202:], "HdrS")           //
	le16(0x206, 0x020f)               // version 2.15
	le16(0x20e, 0x3c0)                // kernel_version
	b[0x211] = 0x01                   // loadflags: LOADED_HIGH
	le16(0x212, 0x8000)               // setup_move_size
	le32(0x214, 0x100000)             // code32_start
	le32(0x22c, 0x7fffffff)           // initrd_addr_max
	le32(0x230, 0x1000000)            // kernel_alignment
	b[0x234], b[0x235] = 1, 13        // relocatable_kernel, min_alignment
	le16(0x236, 0)                    // xloadflags
	le32(0x238, 2047)                 // cmdline_size
	le32(0x248, testPayloadOff)       // payload_offset
	le32(0x24c, uint32(len(payload))) // payload_length
	le64(0x258, 0x1000000)            // pref_address
	le32(0x260, 0x100c000)            // init_size
	le32(0x264, 0x190)                // handover_offset
	le32(0x268, 0x1234)               // kernel_info_offset
	b[0x26c] = 0xfa                   // cli: start_of_setup, past the header
	return append(b, pm...)
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
		{"protocol 2.07", func(b []byte) []byte { b[0x206] = 7; return b }, "boot protocol 2.07 is older than 2.08, which added payload_offset and payload_length"},
		{"header lacks payload fields", func(b []byte) []byte { b[0x201] = 0x30; return b }, "protocol 2.15 header ends at 0x232, before payload_length's end (0x250)"},
		{"setup past end", func(b []byte) []byte { return b[:3*512] }, "setup code (3 sectors, 2048 bytes) runs past the end of the 1536-byte file"},
		{"truncated", func(b []byte) []byte { return b[:len(b)-32] }, "file truncated: syssize says"},
		{"payload outside", func(b []byte) []byte { binary.LittleEndian.PutUint32(b[0x24c:], 0xfffffff0); return b }, "payload [0x200, 0x1000001f0) lies outside the"},
		{"payload offset outside", func(b []byte) []byte { binary.LittleEndian.PutUint32(b[0x248:], 0xffffffff); return b }, "lies outside the"},
		{"unknown compression", func(b []byte) []byte { b[4*512+testPayloadOff] = 0x7f; return b }, "bzImage: unknown payload compression (payload starts with 7f 8b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseBzImage(tc.edit(makeBzImage(t)))
			wantFormatError(t, err, tc.want)
		})
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
		if off := int(img.Header.PayloadOffset); !bytes.Equal(img.ProtectedMode[off:off+len(img.Payload)], img.Payload) {
			t.Fatal("payload not inside the protected-mode part")
		}
		if img.Compression == CompressionNone || img.Header.Version < 0x208 {
			t.Fatalf("accepted compression %q, protocol %#x", img.Compression, img.Header.Version)
		}
		if end := 0x1f1 + len(img.HeaderBytes); end > 0x290 {
			t.Fatalf("header ends at %#x", end)
		}
	})
}
