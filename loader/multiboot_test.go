package loader

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"

	"kvmboot/boot/testkernel"
	"kvmboot/loader/memmap"
)

// mbHeader returns a Multiboot 1 header: magic, flags, a checksum making
// the three sum to zero (plus sumOff, to break it), then any address
// fields.
func mbHeader(flags uint32, sumOff uint32, addr ...uint32) []byte {
	le := binary.LittleEndian
	b := le.AppendUint32(nil, 0x1BADB002)
	b = le.AppendUint32(b, flags)
	b = le.AppendUint32(b, mbChecksum(flags)+sumOff)
	for _, a := range addr {
		b = le.AppendUint32(b, a)
	}
	return b
}

// mbChecksum is the checksum that makes a header with flags valid.
func mbChecksum(flags uint32) uint32 { return -(0x1BADB002 + flags) }

// mbFile is size bytes of filler (0x90, never a magic) with hdr at off.
func mbFile(size, off int, hdr []byte) []byte {
	b := bytes.Repeat([]byte{0x90}, size)
	copy(b[off:], hdr)
	return b
}

// checkFormatError checks that err is a *FormatError with a one-line
// message containing every one of want.
func checkFormatError(t *testing.T, what string, err error, want ...string) {
	t.Helper()
	var fe *FormatError
	if !errors.As(err, &fe) {
		t.Errorf("%s: error %v (%T), want a *FormatError", what, err, err)
		return
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") {
		t.Errorf("%s: error %q is more than one line", what, msg)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("%s: error %q, want it to mention %q", what, msg, w)
		}
	}
}

// The Multiboot spec (3.1.1): the header "must be contained completely
// within the first 8192 bytes of the OS image, and must be longword
// (32-bit) aligned". Its required part is 12 bytes, so the last offset
// that qualifies is 8180; 8184 and 8188 are aligned but stick out.
func TestFindMultibootPosition(t *testing.T) {
	hdr := mbHeader(0x00000003, 0)
	for _, tc := range []struct {
		name  string
		size  int
		off   int
		found bool
	}{
		{"offset 0", 64, 0, true},
		{"offset 4", 64, 4, true},
		{"header is the whole file", 12, 0, true},
		{"last slot that fits in 8 KiB", 16384, 8180, true},
		{"last slot, file ends with the header", 8192, 8180, true},
		{"aligned but crosses 8 KiB by 4 bytes", 16384, 8184, false},
		{"aligned but crosses 8 KiB by 8 bytes", 16384, 8188, false},
		{"at 8 KiB", 16384, 8192, false},
		{"far beyond 8 KiB", 65536, 0x8000, false},
		{"unaligned by 1", 64, 1, false},
		{"unaligned by 2", 64, 2, false},
		{"unaligned by 3", 64, 3, false},
	} {
		h, err := FindMultiboot(mbFile(tc.size, tc.off, hdr))
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if (h != nil) != tc.found {
			t.Errorf("%s: found=%v, want %v", tc.name, h != nil, tc.found)
			continue
		}
		if h != nil && (h.Offset != tc.off || h.Flags != 3 || h.Checksum != mbChecksum(3)) {
			t.Errorf("%s: header %+v", tc.name, h)
		}
	}
	// Too short for any header, or empty.
	for _, b := range [][]byte{nil, {}, hdr[:11], mbFile(8, 0, hdr[:8])} {
		if h, err := FindMultiboot(b); h != nil || err != nil {
			t.Errorf("FindMultiboot(%d bytes) = %+v, %v", len(b), h, err)
		}
	}
}

func TestFindMultibootChecks(t *testing.T) {
	// A bad checksum is an error naming where the header is: the user
	// meant a Multiboot kernel and must learn why it is refused.
	_, err := FindMultiboot(mbFile(256, 0x40, mbHeader(3, 1)))
	checkFormatError(t, "bad checksum", err, "0x40", "checksum")

	// The magic can occur by chance (in code, in data) before the real
	// header: a later valid header wins over an earlier bad one.
	b := mbFile(512, 0x10, mbHeader(3, 0x1234))
	copy(b[0x100:], mbHeader(2, 0))
	h, err := FindMultiboot(b)
	if err != nil || h == nil || h.Offset != 0x100 || h.Flags != 2 {
		t.Errorf("valid header after a bad one: %+v, %v", h, err)
	}
	// Only the first valid header counts.
	copy(b[0x10:], mbHeader(1, 0))
	if h, _ := FindMultiboot(b); h == nil || h.Offset != 0x10 {
		t.Errorf("first of two valid headers: %+v", h)
	}
	// The magic alone, with no valid checksum anywhere: the first bad
	// one is named.
	b = mbFile(512, 0x20, mbHeader(0, 7))
	copy(b[0x80:], mbHeader(0, 9))
	_, err = FindMultiboot(b)
	checkFormatError(t, "two bad checksums", err, "0x20")

	// Bits 0-15 are requirements: kvmboot meets 0 (page-aligned
	// modules), 1 (memory info) and 2 (video mode: a text console is
	// allowed); any other must be refused rather than ignored.
	for _, tc := range []struct {
		flags uint32
		ok    bool
	}{
		{0x0, true},
		{0x1, true},
		{0x2, true},
		{0x4, true},
		{0x7, true},
		{0x8, false},           // bit 3: unknown requirement
		{0xB, false},           // bit 3 with known ones
		{0x8000, false},        // bit 15
		{0x00020003, true},     // bit 17: optional, ignored
		{0x80000000 | 3, true}, // bit 31: optional
	} {
		h, err := FindMultiboot(mbFile(64, 0, mbHeader(tc.flags, 0)))
		if tc.ok {
			if err != nil || h == nil || h.Flags != tc.flags {
				t.Errorf("flags %#x: %+v, %v; want accepted", tc.flags, h, err)
			}
			continue
		}
		if h != nil {
			t.Errorf("flags %#x: accepted, want refused", tc.flags)
		}
		checkFormatError(t, fmt.Sprintf("flags %#x", tc.flags), err, "Multiboot", fmt.Sprintf("%#x", tc.flags&0xFFF8))
	}
}

// With flag bit 16 the five address fields follow the checksum; each must
// land in its own field.
func TestFindMultibootAddressFields(t *testing.T) {
	const flags = 0x00010002
	hdr := mbHeader(flags, 0, 0x00100100, 0x00100000, 0x00103000, 0x00108000, 0x0010010C)
	h, err := FindMultiboot(mbFile(4096, 0x100, hdr))
	if err != nil || h == nil {
		t.Fatalf("FindMultiboot: %+v, %v", h, err)
	}
	want := MultibootHeader{Offset: 0x100, Flags: flags, Checksum: mbChecksum(flags),
		HeaderAddr: 0x00100100, LoadAddr: 0x00100000, LoadEndAddr: 0x00103000, BSSEndAddr: 0x00108000, EntryAddr: 0x0010010C}
	if *h != want {
		t.Errorf("header\n got %+v\nwant %+v", *h, want)
	}
	// Without bit 16 the same bytes are not read.
	hdr = mbHeader(0x2, 0, 0x00100100, 0x00100000, 0x00103000, 0x00108000, 0x0010010C)
	h, _ = FindMultiboot(mbFile(4096, 0x100, hdr))
	if h == nil || h.HeaderAddr != 0 || h.EntryAddr != 0 {
		t.Errorf("address fields read without flag bit 16: %+v", h)
	}
	// The file ends inside the address fields: refuse, do not read past
	// the end (or invent zeros).
	full := mbHeader(flags, 0, 1, 2, 3, 4, 5)
	for cut := 12; cut < len(full); cut += 4 {
		h, err := FindMultiboot(mbFile(0x40+cut, 0x40, full[:cut]))
		if h != nil {
			t.Errorf("cut at %d bytes of header: found %+v", cut, h)
		}
		checkFormatError(t, fmt.Sprintf("cut at %d", cut), err, "address fields", "end of the file")
	}
	// Exactly long enough.
	if h, err := FindMultiboot(mbFile(0x40+32, 0x40, full)); err != nil || h.EntryAddr != 5 {
		t.Errorf("header ending at EOF: %+v, %v", h, err)
	}
}

// The embedded test kernel's header: flags 3 in its .multiboot section,
// at file offset 0x1000.
func TestFindMultibootTestKernel(t *testing.T) {
	h, err := FindMultiboot(testkernel.ELF)
	if err != nil || h == nil {
		t.Fatalf("FindMultiboot(test kernel) = %+v, %v", h, err)
	}
	if h.Offset != 0x1000 || h.Flags != 3 {
		t.Errorf("test kernel header %+v, want offset 0x1000 flags 3", h)
	}
}

// An a.out-kludge image as the spec describes it (3.1.3): file bytes from
// (header offset - (header_addr - load_addr)) to load_end_addr, then bss
// to bss_end_addr.
func TestKludgeImage(t *testing.T) {
	// A 0x3000-byte file; the header sits at file offset 0x1010. The
	// image starts 0x10 before it (file offset 0x1000) at load_addr
	// 0x200000: whatever precedes it in the file is not loaded.
	raw := make([]byte, 0x3000)
	for i := range raw {
		raw[i] = byte(i * 7)
	}
	base := MultibootHeader{Offset: 0x1010, Flags: MBAddressFields,
		HeaderAddr: 0x200010, LoadAddr: 0x200000, LoadEndAddr: 0x201800, BSSEndAddr: 0x204000, EntryAddr: 0x200020}
	for _, tc := range []struct {
		name     string
		change   func(h *MultibootHeader)
		fileFrom int // expected data = raw[fileFrom:fileTo]
		fileTo   int
		memSize  uint64
		err      string // non-empty: expected error text
	}{
		{"all fields", nil, 0x1000, 0x2800, 0x4000, ""},
		{"load_end_addr 0: the rest of the file", func(h *MultibootHeader) { h.LoadEndAddr = 0 },
			0x1000, 0x3000, 0x4000, ""},
		{"bss_end_addr 0: no bss", func(h *MultibootHeader) { h.BSSEndAddr = 0 },
			0x1000, 0x2800, 0x1800, ""},
		{"both 0", func(h *MultibootHeader) { h.LoadEndAddr, h.BSSEndAddr = 0, 0 },
			0x1000, 0x3000, 0x2000, ""},
		{"bss_end_addr at the end of the data: no bss", func(h *MultibootHeader) { h.BSSEndAddr = 0x201800 },
			0x1000, 0x2800, 0x1800, ""},
		{"header at load_addr: image starts at the header", func(h *MultibootHeader) { h.HeaderAddr, h.LoadEndAddr = 0x200000, 0x200100; h.EntryAddr = 0x200000 },
			0x1010, 0x1110, 0x4000, ""},
		{"image from file offset 0", func(h *MultibootHeader) { h.HeaderAddr = 0x201010; h.EntryAddr = 0x200000 },
			0, 0x1800, 0x4000, ""},
		{"load_end_addr at the end of the file", func(h *MultibootHeader) { h.LoadEndAddr = 0x202000 },
			0x1000, 0x3000, 0x4000, ""},
		{"entry in the last byte of bss", func(h *MultibootHeader) { h.EntryAddr = 0x203FFF },
			0x1000, 0x2800, 0x4000, ""},

		{"header_addr below load_addr", func(h *MultibootHeader) { h.HeaderAddr = 0x1FFFF0 },
			0, 0, 0, "header_addr 0x1ffff0 is below load_addr 0x200000"},
		{"load_addr before the start of the file", func(h *MultibootHeader) { h.HeaderAddr = 0x201011 },
			0, 0, 0, "would start before the file"},
		{"load_end_addr below load_addr", func(h *MultibootHeader) { h.LoadEndAddr = 0x1FF000 },
			0, 0, 0, "load_end_addr 0x1ff000 is below load_addr"},
		{"load_end_addr past the end of the file", func(h *MultibootHeader) { h.LoadEndAddr = 0x202001 },
			0, 0, 0, "past the end of the file"},
		{"bss_end_addr inside the data", func(h *MultibootHeader) { h.BSSEndAddr = 0x2017FF },
			0, 0, 0, "bss_end_addr 0x2017ff"},
		{"entry below load_addr", func(h *MultibootHeader) { h.EntryAddr = 0x1FFFFF },
			0, 0, 0, "entry_addr 0x1fffff is outside the image 0x200000-0x204000"},
		{"entry at the end of bss", func(h *MultibootHeader) { h.EntryAddr = 0x204000 },
			0, 0, 0, "entry_addr 0x204000"},
		{"entry past the data, no bss", func(h *MultibootHeader) { h.BSSEndAddr, h.EntryAddr = 0, 0x201800 },
			0, 0, 0, "outside the image 0x200000-0x201800"},
	} {
		h := base
		if tc.change != nil {
			tc.change(&h)
		}
		data, load, memSize, err := h.KludgeImage(raw)
		if tc.err != "" {
			if data != nil {
				t.Errorf("%s: returned data with an error", tc.name)
			}
			checkFormatError(t, tc.name, err, tc.err, "Multiboot address fields")
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if load != uint64(h.LoadAddr) || memSize != tc.memSize {
			t.Errorf("%s: load %#x size %#x, want %#x %#x", tc.name, load, memSize, h.LoadAddr, tc.memSize)
		}
		if !bytes.Equal(data, raw[tc.fileFrom:tc.fileTo]) {
			t.Errorf("%s: data is %d bytes, want file bytes [%#x, %#x)", tc.name, len(data), tc.fileFrom, tc.fileTo)
		}
	}
}

// decodedMBInfo is a Multiboot info structure decoded by hand from the spec
// (3.3, version 0.6.96), independently of the encoder.
type decodedMBInfo struct {
	flags, memLower, memUpper uint32
	cmdline, loaderName       string
	mods                      []MultibootModule
	mmap                      []decodedMmap
	raw                       []byte
}

type decodedMmap struct {
	size      uint32
	base, len uint64
	typ       uint32
}

// decodeMBInfo reads the info block b placed at guest address base.
func decodeMBInfo(t *testing.T, b []byte, base uint32) decodedMBInfo {
	t.Helper()
	u32 := func(off uint32) uint32 {
		if int(off)+4 > len(b) {
			t.Fatalf("u32 at %#x outside the %d-byte block", off, len(b))
		}
		return binary.LittleEndian.Uint32(b[off:])
	}
	u64 := func(off uint32) uint64 { return uint64(u32(off)) | uint64(u32(off+4))<<32 }
	cstr := func(addr uint32) string {
		if addr < base || int(addr-base) >= len(b) {
			t.Fatalf("string pointer %#x outside the block [%#x, %#x)", addr, base, int(base)+len(b))
		}
		s := b[addr-base:]
		n := bytes.IndexByte(s, 0)
		if n < 0 {
			t.Fatalf("string at %#x has no NUL", addr)
		}
		return string(s[:n])
	}
	mi := decodedMBInfo{flags: u32(0), raw: b}
	if mi.flags&(1<<0) != 0 {
		mi.memLower, mi.memUpper = u32(4), u32(8)
	}
	if mi.flags&(1<<2) != 0 {
		mi.cmdline = cstr(u32(16))
	}
	if mi.flags&(1<<3) != 0 {
		n, at := u32(20), u32(24)-base
		for i := uint32(0); i < n; i++ {
			e := at + 16*i
			mi.mods = append(mi.mods, MultibootModule{Start: u32(e), End: u32(e + 4), String: cstr(u32(e + 8))})
			if r := u32(e + 12); r != 0 {
				t.Errorf("module %d reserved word = %#x, want 0", i, r)
			}
		}
	}
	if mi.flags&(1<<6) != 0 {
		length, at := u32(44), u32(48)-base
		// mmap_addr points at the first entry's size field; size counts
		// the bytes after it.
		for off := at; off < at+length; {
			e := decodedMmap{size: u32(off), base: u64(off + 4), len: u64(off + 12), typ: u32(off + 20)}
			mi.mmap = append(mi.mmap, e)
			off += e.size + 4
		}
	}
	if mi.flags&(1<<9) != 0 {
		mi.loaderName = cstr(u32(64))
	}
	return mi
}

func TestMultibootInfoEncode(t *testing.T) {
	const base = 0x9000
	for _, tc := range []struct {
		name     string
		mem      uint64
		bad      []memmap.Range
		cmdline  string
		mods     []MultibootModule
		flags    uint32
		lower    uint32
		upper    uint32
		wantMmap []decodedMmap
	}{
		{
			name: "256M, no bad RAM, no modules", mem: 256 << 20, cmdline: "console=ttyS0 root=/dev/sda",
			flags: 0x245, lower: 640, upper: (256 - 1) * 1024,
			wantMmap: []decodedMmap{
				{20, 0, 0xA0000, 1},
				{20, 0xA0000, 0x60000, 2},
				{20, 0x100000, 0xFF00000, 1},
				{20, 0xFFFF0000, 0x10000, 2}, // the firmware below 4G
			},
		},
		{
			// Bad RAM at 16M-32M cuts mem_upper to the first hole, as
			// a BIOS-based loader reports it; the map shows it as type 5.
			name: "bad 16M-32M, two modules", mem: 256 << 20, bad: []memmap.Range{{Start: 16 << 20, End: 32 << 20}},
			cmdline: "kt.exit=3",
			mods: []MultibootModule{
				{Start: 0x100000, End: 0x100123, String: "/boot/mod1 arg=1"},
				{Start: 0x101000, End: 0x101000, String: ""},
			},
			flags: 0x24D, lower: 640, upper: 15 * 1024,
			wantMmap: []decodedMmap{
				{20, 0, 0xA0000, 1},
				{20, 0xA0000, 0x60000, 2},
				{20, 0x100000, 0xF00000, 1},
				{20, 0x1000000, 0x1000000, 5},
				{20, 0x2000000, 0xE000000, 1},
				{20, 0xFFFF0000, 0x10000, 2}, // the firmware below 4G
			},
		},
		{
			// Bad RAM in conventional memory ends mem_lower there.
			name: "bad page at 36K", mem: 64 << 20, bad: []memmap.Range{{Start: 0x9000, End: 0xA000}},
			flags: 0x245, lower: 36, upper: 63 * 1024,
			wantMmap: []decodedMmap{
				{20, 0, 0x9000, 1},
				{20, 0x9000, 0x1000, 5},
				{20, 0xA000, 0x96000, 1},
				{20, 0xA0000, 0x60000, 2},
				{20, 0x100000, 0x3F00000, 1},
				{20, 0xFFFF0000, 0x10000, 2}, // the firmware below 4G
			},
		},
		{
			// Bad RAM right at 1 MiB: no upper memory at all.
			name: "bad page at 1M", mem: 64 << 20, bad: []memmap.Range{{Start: 0x100000, End: 0x101000}},
			flags: 0x245, lower: 640, upper: 0,
			wantMmap: []decodedMmap{
				{20, 0, 0xA0000, 1},
				{20, 0xA0000, 0x60000, 2},
				{20, 0x100000, 0x1000, 5},
				{20, 0x101000, 0x3EFF000, 1},
				{20, 0xFFFF0000, 0x10000, 2}, // the firmware below 4G
			},
		},
		{
			// Bad RAM at the very top leaves mem_upper up to it.
			name: "3G guest, last page bad", mem: 3 << 30, bad: []memmap.Range{{Start: 3<<30 - 4096, End: 3 << 30}},
			flags: 0x245, lower: 640, upper: 3*1024*1024 - 1024 - 4,
			wantMmap: []decodedMmap{
				{20, 0, 0xA0000, 1},
				{20, 0xA0000, 0x60000, 2},
				{20, 0x100000, 3<<30 - 0x100000 - 4096, 1},
				{20, 3<<30 - 4096, 4096, 5},
				{20, 0xFFFF0000, 0x10000, 2}, // the firmware below 4G
			},
		},
	} {
		m := memmap.New(tc.mem, FirmwareHigh)
		for _, r := range tc.bad {
			m.Set(r, memmap.KindBad)
		}
		info := &MultibootInfo{Map: m, Cmdline: tc.cmdline, LoaderName: "kvmboot", Modules: tc.mods}
		b := info.Encode(base)
		if uint64(len(b)) != info.Size() {
			t.Errorf("%s: Encode gave %d bytes, Size says %d", tc.name, len(b), info.Size())
		}
		mi := decodeMBInfo(t, b, base)
		if mi.flags != tc.flags {
			t.Errorf("%s: flags %#x, want %#x", tc.name, mi.flags, tc.flags)
		}
		if mi.memLower != tc.lower || mi.memUpper != tc.upper {
			t.Errorf("%s: mem_lower %d mem_upper %d, want %d %d", tc.name, mi.memLower, mi.memUpper, tc.lower, tc.upper)
		}
		if mi.cmdline != tc.cmdline {
			t.Errorf("%s: cmdline %q, want %q", tc.name, mi.cmdline, tc.cmdline)
		}
		if mi.loaderName != "kvmboot" {
			t.Errorf("%s: boot loader name %q", tc.name, mi.loaderName)
		}
		if fmt.Sprint(mi.mods) != fmt.Sprint(tc.mods) {
			t.Errorf("%s: modules\n got %+v\nwant %+v", tc.name, mi.mods, tc.mods)
		}
		if fmt.Sprint(mi.mmap) != fmt.Sprint(tc.wantMmap) {
			t.Errorf("%s: mmap\n got %v\nwant %v", tc.name, mi.mmap, tc.wantMmap)
		}
		// Fields for flags kvmboot does not set stay 0: boot_device,
		// syms, drives, config table, APM, VBE.
		for _, off := range []int{12, 28, 32, 36, 40, 52, 56, 60, 68, 72, 76, 80, 84} {
			if v := binary.LittleEndian.Uint32(b[off:]); v != 0 {
				t.Errorf("%s: word at %d = %#x, want 0", tc.name, off, v)
			}
		}
		// Without modules, mods_count and mods_addr are 0 too.
		if len(tc.mods) == 0 && (binary.LittleEndian.Uint32(b[20:]) != 0 || binary.LittleEndian.Uint32(b[24:]) != 0) {
			t.Errorf("%s: mods fields set with no modules", tc.name)
		}
		// The block is self-contained: every pointer is inside it and
		// 4-aligned where the spec's structures are.
		for _, off := range []int{48} {
			p := binary.LittleEndian.Uint32(b[off:])
			if p < base || p >= base+uint32(len(b)) || p%4 != 0 {
				t.Errorf("%s: pointer at %d = %#x, outside the block or unaligned", tc.name, off, p)
			}
		}
	}
}

// Encoding at a different base moves every pointer by the same amount and
// nothing else.
func TestMultibootInfoEncodeBase(t *testing.T) {
	info := &MultibootInfo{Map: memmap.New(32<<20, FirmwareHigh), Cmdline: "a b c", LoaderName: "kvmboot",
		Modules: []MultibootModule{{Start: 0x200000, End: 0x200010, String: "m"}}}
	a, b := info.Encode(0x8000), info.Encode(0x10000)
	mmap := len(info.Map.Regions()) * 24
	ptrs := map[int]bool{16: true, 24: true, 48: true, 64: true, 88 + mmap + 8: true}
	for off := 0; off+4 <= len(a); off += 4 {
		va, vb := binary.LittleEndian.Uint32(a[off:]), binary.LittleEndian.Uint32(b[off:])
		if ptrs[off] {
			if vb-va != 0x8000 {
				t.Errorf("pointer at %d: %#x vs %#x, want 0x8000 apart", off, va, vb)
			}
		} else if va != vb {
			t.Errorf("word at %d changed with the base: %#x vs %#x", off, va, vb)
		}
	}
}

// FuzzFindMultiboot: any file either has no header, a header that obeys
// the spec's placement and checksum rules, or a one-line *FormatError; and
// the address fields of a header never lead KludgeImage out of the file.
func FuzzFindMultiboot(f *testing.F) {
	f.Add(testkernel.ELF)
	f.Add(mbFile(64, 0, mbHeader(3, 0)))
	f.Add(mbFile(16384, 8180, mbHeader(0x00010002, 0, 0x100000, 0x100000, 0, 0, 0x100000)))
	f.Add(mbFile(8192, 8184, mbHeader(3, 0)))
	f.Add(mbFile(256, 0x40, mbHeader(3, 1)))
	f.Add(mbFile(64, 0, mbHeader(8, 0)))
	f.Add(mbFile(0x40+20, 0x40, mbHeader(0x00010000, 0, 1, 2)))
	f.Add(mbFile(0x3000, 0x1010, mbHeader(MBAddressFields, 0, 0x200010, 0x200000, 0x201800, 0x204000, 0x200020)))
	f.Fuzz(func(t *testing.T, raw []byte) {
		h, err := FindMultiboot(raw)
		if err != nil {
			if h != nil {
				t.Fatalf("header and error")
			}
			checkFuzzError(t, err)
			return
		}
		if h == nil {
			return
		}
		le := binary.LittleEndian
		if h.Offset%4 != 0 || h.Offset+12 > 8192 || h.Offset+12 > len(raw) {
			t.Fatalf("header at %d in a %d-byte file", h.Offset, len(raw))
		}
		if le.Uint32(raw[h.Offset:]) != 0x1BADB002 || h.Flags != le.Uint32(raw[h.Offset+4:]) || h.Checksum != le.Uint32(raw[h.Offset+8:]) {
			t.Fatalf("header %+v does not match the file", h)
		}
		if 0x1BADB002+h.Flags+h.Checksum != 0 || h.Flags&0xFFF8 != 0 {
			t.Fatalf("accepted header %+v: bad sum or unknown requirement", h)
		}
		if h.Flags&MBAddressFields == 0 {
			return
		}
		if h.Offset+32 > len(raw) || h.EntryAddr != le.Uint32(raw[h.Offset+28:]) || h.HeaderAddr != le.Uint32(raw[h.Offset+12:]) {
			t.Fatalf("address fields of %+v do not match the file", h)
		}
		data, load, memSize, err := h.KludgeImage(raw)
		if err != nil {
			checkFuzzError(t, err)
			return
		}
		if load != uint64(h.LoadAddr) || uint64(len(data)) > memSize || len(data) > len(raw) {
			t.Fatalf("image: %d bytes at %#x, size %#x", len(data), load, memSize)
		}
		if e := uint64(h.EntryAddr); e < load || e >= load+memSize {
			t.Fatalf("entry %#x outside [%#x, %#x)", e, load, load+memSize)
		}
	})
}

// checkFuzzError checks the error contract: a *FormatError with a
// non-empty one-line message.
func checkFuzzError(t *testing.T, err error) {
	t.Helper()
	var fe *FormatError
	if !errors.As(err, &fe) {
		t.Fatalf("error %v is %T, want *FormatError", err, err)
	}
	if msg := err.Error(); msg == "" || strings.ContainsAny(msg, "\n\r") {
		t.Fatalf("error message %q is not one line", msg)
	}
}
