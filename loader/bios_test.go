package loader

import (
	"bytes"
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"testing"

	"kvmboot/boot/testkernel"
	"kvmboot/loader/memmap"
	"kvmboot/realmode"
)

const mb = 1 << 20

// biosMap is a guest's map as the loader makes it: EBDA reserved, bad RAM.
func biosMap(memSize uint64, bad ...memmap.Range) *memmap.Map {
	m := memmap.New(memSize, FirmwareHigh)
	MarkBIOSAreas(m)
	for _, b := range bad {
		m.Set(b, memmap.KindBad)
	}
	return m
}

func mustTables(t *testing.T, m *memmap.Map, memSize uint64, d *Disk) []byte {
	t.Helper()
	b, err := BIOSTables(m, memSize, d)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != realmode.BIOSTablesSize {
		t.Fatalf("tables are %d bytes", len(b))
	}
	return b
}

func wantStatus(t *testing.T, err error, status uint8) {
	t.Helper()
	var be *BIOSError
	if !errors.As(err, &be) || be.Status != status {
		t.Fatalf("got %v, want CF=1 AH=%02xh", err, status)
	}
}

func TestBIOSTablesSizes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mem     uint64
		bad     []memmap.Range
		want    BIOSMemory
		entries []E820Entry
	}{
		{"256M", 256 * mb, nil, BIOSMemory{639, 0xFC00, 0x3C00, (256 - 16) * 16}, []E820Entry{
			{0, 0x9FC00, 1}, {0x9FC00, 0x60400, 2}, {mb, 255 * mb, 1}, {0xFFFF0000, 0x10000, 2}}},
		{"32M", 32 * mb, nil, BIOSMemory{639, 31 * 1024, 15 * 1024, 16 * 16}, nil},
		// Bad RAM at 16M-48M: E801 and 88h stop at the first bad byte; E820
		// shows it as type 5.
		{"bad 16M-48M", 256 * mb, []memmap.Range{{Start: 16 * mb, End: 48 * mb}}, BIOSMemory{639, 15 * 1024, 15 * 1024, 0}, []E820Entry{
			{0, 0x9FC00, 1}, {0x9FC00, 0x60400, 2}, {mb, 15 * mb, 1}, {16 * mb, 32 * mb, 5}, {48 * mb, 208 * mb, 1}, {0xFFFF0000, 0x10000, 2}}},
		// Bad RAM in conventional memory shortens int 12h.
		{"bad 64K", 64 * mb, []memmap.Range{{Start: 0x10000, End: 0x11000}}, BIOSMemory{64, 63 * 1024, 15 * 1024, 48 * 16}, nil},
		{"bad at 1M", 64 * mb, []memmap.Range{{Start: mb, End: mb + 4096}}, BIOSMemory{639, 0, 0, 0}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := mustTables(t, biosMap(tc.mem, tc.bad...), tc.mem, nil)
			got, err := ReadBIOSMemory(b)
			if err != nil || got != tc.want {
				t.Fatalf("sizes %+v (%v), want %+v", got, err, tc.want)
			}
			all, err := E820All(b)
			if err != nil {
				t.Fatal(err)
			}
			regions := biosMap(tc.mem, tc.bad...).Regions()
			if len(all) != len(regions) {
				t.Fatalf("%d E820 entries for %d regions", len(all), len(regions))
			}
			for i, r := range regions {
				if all[i] != (E820Entry{r.Start, r.Size(), uint32(r.Kind)}) {
					t.Errorf("entry %d = %+v, region %v", i, all[i], r)
				}
			}
			if tc.entries != nil && !slices.Equal(all, tc.entries) {
				t.Errorf("E820 %+v, want %+v", all, tc.entries)
			}
			if _, err := ReadBIOSDisk(b, realmode.BIOSDrive); err == nil {
				t.Error("a drive without a disk")
			}
		})
	}
}

func TestBIOSTablesLayout(t *testing.T) {
	b := mustTables(t, biosMap(64*mb), 64*mb, &Disk{Addr: 32 * mb, Size: 3 * mb})
	le := binary.LittleEndian
	for _, f := range []struct {
		off  int
		size int
		want uint64
	}{
		{realmode.BIOSOffMagic, 4, realmode.BIOSTablesMagic},
		{realmode.BIOSOffVersion, 2, realmode.BIOSTablesVersion},
		{realmode.BIOSOffBaseKiB, 2, 639},
		{realmode.BIOSOffE820Count, 2, 4}, // low RAM, ROM window, RAM, firmware below 4G
		{realmode.BIOSOffDiskAddr, 4, 32 * mb},
		{realmode.BIOSOffDiskSectors, 4, 3 * mb / 512},
		{realmode.BIOSOffDiskCyls, 2, 3 * mb / 512 / (16 * 63)},
		{realmode.BIOSOffDiskHeads, 1, 16},
		{realmode.BIOSOffDiskSPT, 1, 63},
		{realmode.BIOSOffDiskDrive, 1, 0x80},
		{realmode.BIOSOffDiskCount, 1, 1},
		{realmode.BIOSOffLogUsed, 2, 0},
		{realmode.BIOSOffLogDropped, 2, 0},
		{realmode.BIOSOffE820 + 20 + 8, 8, 0x60400}, // second entry's length
		{realmode.BIOSOffE820 + 20 + 16, 4, 2},
	} {
		var got uint64
		switch f.size {
		case 1:
			got = uint64(b[f.off])
		case 2:
			got = uint64(le.Uint16(b[f.off:]))
		case 4:
			got = uint64(le.Uint32(b[f.off:]))
		case 8:
			got = le.Uint64(b[f.off:])
		}
		if got != f.want {
			t.Errorf("offset %#x = %#x, want %#x", f.off, got, f.want)
		}
	}
	if !bytes.Equal(b[realmode.BIOSOffLog:], make([]byte, realmode.BIOSTablesSize-realmode.BIOSOffLog)) {
		t.Error("log area not zero")
	}
	p := BIOSTablesPlacement(b)
	if p.Start != realmode.BIOSTablesAddr || p.Size != realmode.BIOSTablesSize || p.What != "bios_tables" {
		t.Errorf("placement %+v", p)
	}
}

func TestBIOSTablesRefuses(t *testing.T) {
	stripes := memmap.New(256*mb, FirmwareHigh)
	MarkBIOSAreas(stripes)
	for i := range uint64(70) {
		stripes.Set(memmap.Range{Start: 2*mb + i*2*mb, End: 2*mb + i*2*mb + 4096}, memmap.KindBad)
	}
	for _, tc := range []struct {
		name string
		m    *memmap.Map
		disk *Disk
		want string
	}{
		{"no EBDA", memmap.New(64*mb, FirmwareHigh), nil, "must reserve the EBDA"},
		{"nil map", nil, nil, "no memory map"},
		{"empty disk", biosMap(64 * mb), &Disk{Addr: 32 * mb}, "empty"},
		{"disk beyond RAM", biosMap(64 * mb), &Disk{Addr: 63 * mb, Size: 2 * mb}, "beyond guest RAM"},
		{"disk partial sector beyond RAM", biosMap(64 * mb), &Disk{Addr: 64*mb - 512, Size: 513}, "beyond guest RAM"},
		{"disk above 4G", biosMap(64 * mb), &Disk{Addr: 1<<32 - 512, Size: 1024}, "below 4 GiB"},
		{"disk on bad RAM", biosMap(64*mb, memmap.Range{Start: 40 * mb, End: 41 * mb}), &Disk{Addr: 32 * mb, Size: 16 * mb}, "not all good RAM"},
		{"disk in the ROM hole", biosMap(64 * mb), &Disk{Addr: 0xF0000, Size: 512}, "not all good RAM"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := BIOSTables(tc.m, 64*mb, tc.disk)
			// The message states the rule the tables break: its contract.
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// TestBIOSTablesManyRegions: a map with more regions than E820 can serve
// keeps its first 127 and reports the rest as one reserved range, so no
// bad RAM is ever reported as usable.
func TestBIOSTablesManyRegions(t *testing.T) {
	m := memmap.New(256*mb, FirmwareHigh)
	MarkBIOSAreas(m)
	for i := range uint64(70) {
		m.Set(memmap.Range{Start: 2*mb + i*2*mb, End: 2*mb + i*2*mb + 4096}, memmap.KindBad)
	}
	b := mustTables(t, m, 256*mb, nil)
	all, err := E820All(b)
	if err != nil || len(all) != 128 {
		t.Fatalf("%d entries, %v", len(all), err)
	}
	regions := m.Regions()
	last := all[127]
	if last.Type != uint32(memmap.KindReserved) || last.Addr != regions[127].Start || last.Addr+last.Size != 1<<32 {
		t.Errorf("last entry %+v, want reserved from %#x to the end", last, regions[127].Start)
	}
	for i, e := range all[:127] {
		if e.Addr != regions[i].Start || e.Type != uint32(regions[i].Kind) {
			t.Errorf("entry %d %+v, map has %v", i, e, regions[i])
		}
	}
}

// TestE820Continuation covers the bad inputs of int 15h E820h: every
// continuation value the BIOS did not hand out, a wrong signature, a
// short buffer, no tables.
func TestE820Continuation(t *testing.T) {
	b := mustTables(t, biosMap(256*mb, memmap.Range{Start: 16 * mb, End: 48 * mb}), 256*mb, nil)
	all, err := E820All(b)
	if err != nil || len(all) != 6 {
		t.Fatalf("%d entries, %v", len(all), err)
	}
	for ebx := uint32(0); ebx < 6; ebx++ {
		e, next, err := E820Call(b, E820Signature, ebx, 20)
		want := (ebx + 1) % 6
		if err != nil || next != want || e != all[ebx] {
			t.Errorf("EBX=%d: %+v next %d %v", ebx, e, next, err)
		}
	}
	if _, _, err := E820Call(b, E820Signature, 0, 24); err != nil {
		t.Errorf("a 24-byte buffer (ACPI 3.0 callers): %v", err)
	}
	for _, tc := range []struct {
		name          string
		edx, ebx, ecx uint32
	}{
		{"EBX = count", E820Signature, 6, 20},
		{"EBX past count", E820Signature, 100, 20},
		{"EBX = 128", E820Signature, 128, 20},
		{"EBX = 0x10000", E820Signature, 0x10000, 20},
		{"EBX = 0x10001 (low word in range)", E820Signature, 0x10001, 20},
		{"EBX = ~0", E820Signature, 0xFFFFFFFF, 20},
		{"signature", 0x534D4151, 0, 20},
		{"no signature", 0, 0, 20},
		{"ECX = 19", E820Signature, 0, 19},
		{"ECX = 0", E820Signature, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := E820Call(b, tc.edx, tc.ebx, tc.ecx)
			wantStatus(t, err, BIOSUnsupported)
		})
	}
	_, _, err = E820Next(make([]byte, realmode.BIOSTablesSize), 0)
	wantStatus(t, err, BIOSUnsupported)
	_, err = ReadBIOSMemory(nil)
	wantStatus(t, err, BIOSUnsupported)
	if got := all[3].Bytes(); !bytes.Equal(got, b[realmode.BIOSOffE820+3*20:][:20]) {
		t.Errorf("Bytes() = % x", got)
	}
}

func diskTables(t *testing.T) ([]byte, BIOSDisk) {
	// 1000 sectors and a partial one: 1001 sectors, one cylinder of 16x63.
	b := mustTables(t, biosMap(64*mb), 64*mb, &Disk{Addr: 32 * mb, Size: 1000*512 + 100})
	d, err := ReadBIOSDisk(b, 0x80)
	if err != nil {
		t.Fatal(err)
	}
	if d.Sectors != 1001 || d.Cyls != 1 || d.Heads != 16 || d.SPT != 63 || d.Addr != 32*mb {
		t.Fatalf("disk %+v", d)
	}
	return b, d
}

func TestExtendedRead(t *testing.T) {
	b, _ := diskTables(t)
	dap := func(count uint16, seg, off uint16, lba uint64) DAP {
		return DAP{Size: 0x10, Count: count, Segment: seg, Offset: off, LBA: lba}
	}
	got, err := ExtendedRead(b, 0x80, dap(3, 0x2000, 0x10, 5))
	if err != nil || got != (DiskCopy{Src: 32*mb + 5*512, Dst: 0x20010, Len: 3 * 512}) {
		t.Fatalf("read: %+v %v", got, err)
	}
	// The last sectors, and a buffer that ends exactly at 1 MiB.
	if _, err := ExtendedRead(b, 0x80, dap(2, 0x9000, 0, 999)); err != nil {
		t.Errorf("last two sectors: %v", err)
	}
	if _, err := ExtendedRead(b, 0x80, dap(1, 0xFFE0, 0, 0)); err != nil {
		t.Errorf("buffer ending at 1 MiB: %v", err)
	}
	if _, err := ExtendedRead(b, 0x80, DAP{Size: 0x18, Count: 1, Segment: 0x1000, LBA: 0}); err != nil {
		t.Errorf("an EDD 3.0 packet (size 0x18): %v", err)
	}
	for _, tc := range []struct {
		name   string
		drive  uint8
		dap    DAP
		status uint8
	}{
		{"beyond the end", 0x80, dap(1, 0x2000, 0, 1001), BIOSNotFound},
		{"across the end", 0x80, dap(2, 0x2000, 0, 1000), BIOSNotFound},
		{"far beyond", 0x80, dap(1, 0x2000, 0, 0xFFFFFFFF), BIOSNotFound},
		{"LBA above 2^32", 0x80, dap(1, 0x2000, 0, 1<<32), BIOSNotFound},
		{"LBA 2^32 + 1 (low half in range)", 0x80, dap(1, 0x2000, 0, 1<<32+1), BIOSNotFound},
		{"buffer crosses 1 MiB", 0x80, dap(1, 0xFFFF, 0, 0), BIOSBoundary},
		{"buffer crosses 1 MiB by a byte", 0x80, dap(1, 0xFFE0, 1, 0), BIOSBoundary},
		{"buffer above 1 MiB (HMA)", 0x80, dap(1, 0xFFFF, 0x10, 0), BIOSBoundary},
		{"long read crosses 1 MiB", 0x80, dap(127, 0xF100, 0, 0), BIOSBoundary},
		{"zero count", 0x80, dap(0, 0x2000, 0, 0), BIOSBadParam},
		{"128 sectors", 0x80, dap(128, 0x1000, 0, 0), BIOSBadParam},
		{"short packet", 0x80, DAP{Size: 0x0F, Count: 1, Segment: 0x2000}, BIOSBadParam},
		{"other drive", 0x81, dap(1, 0x2000, 0, 0), BIOSBadParam},
		{"floppy", 0x00, dap(1, 0x2000, 0, 0), BIOSBadParam},
		// Order: the count before the range, the range before the buffer.
		{"bad count and range", 0x80, dap(200, 0x2000, 0, 5000), BIOSBadParam},
		{"bad range and buffer", 0x80, dap(1, 0xFFFF, 0, 5000), BIOSNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ExtendedRead(b, tc.drive, tc.dap)
			wantStatus(t, err, tc.status)
		})
	}
	noDisk := mustTables(t, biosMap(64*mb), 64*mb, nil)
	_, err = ExtendedRead(noDisk, 0x80, dap(1, 0x2000, 0, 0))
	wantStatus(t, err, BIOSBadParam)
	_, err = ExtendedRead(nil, 0x80, dap(1, 0x2000, 0, 0))
	wantStatus(t, err, BIOSBadParam)
}

func TestCHSRead(t *testing.T) {
	b, _ := diskTables(t)
	// C=0 H=1 S=3: LBA 63+2 = 65.
	got, err := CHSRead(b, 0x0202, 0x0003, 0x0180, 0x3000, 0x100)
	if err != nil || got != (DiskCopy{Src: 32*mb + 65*512, Dst: 0x30100, Len: 1024}) {
		t.Fatalf("read %+v %v", got, err)
	}
	for _, tc := range []struct {
		name       string
		ax, cx, dx uint16
		es, bx     uint16
		status     uint8
	}{
		{"sector 0", 0x0201, 0x0000, 0x0080, 0x3000, 0, BIOSBadParam},
		{"sector 64", 0x0201, 0x0040, 0x0080, 0x3000, 0, BIOSBadParam}, // bits 6-7 are cylinder bits: sector 0
		{"cylinder 1", 0x0201, 0x0101, 0x0080, 0x3000, 0, BIOSBadParam},
		{"head 16", 0x0201, 0x0001, 0x1080, 0x3000, 0, BIOSBadParam},
		{"no sectors", 0x0200, 0x0001, 0x0080, 0x3000, 0, BIOSBadParam},
		{"128 sectors", 0x0280, 0x0001, 0x0080, 0x1000, 0, BIOSBadParam},
		{"past the end", 0x0201, 0x0001 + 57, 0x0F80, 0x3000, 0, BIOSNotFound}, // C0 H15 S58: LBA 1002
		{"across 1 MiB", 0x0201, 0x0001, 0x0080, 0xFFFF, 0, BIOSBoundary},
		{"other drive", 0x0201, 0x0001, 0x0081, 0x3000, 0, BIOSBadParam},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := CHSRead(b, tc.ax, tc.cx, tc.dx, tc.es, tc.bx)
			wantStatus(t, err, tc.status)
		})
	}
}

func TestDriveParams(t *testing.T) {
	b, _ := diskTables(t)
	cx, dx, err := DriveParams(b, 0x80)
	if err != nil || cx != 0x003F || dx != 0x0F01 {
		t.Fatalf("cx %#x dx %#x %v", cx, dx, err)
	}
	// 1 GiB: 255 heads, 130 cylinders; 8 GiB: capped at 1024 cylinders,
	// whose top bits land in CL bits 6-7.
	for _, tc := range []struct {
		size   uint64
		cx, dx uint16
	}{
		{1 << 30, 129<<8 | 63, 254<<8 | 1},
		{2 << 30, 0x04<<8 | 1<<6 | 63, 254<<8 | 1}, // 261 cylinders: the last is 260 = 0x104
	} {
		b := mustTables(t, biosMap(3<<30), 3<<30, &Disk{Addr: 256 * mb, Size: tc.size})
		cx, dx, err := DriveParams(b, 0x80)
		if err != nil || cx != tc.cx || dx != tc.dx {
			t.Errorf("%s: cx %#x dx %#x %v, want %#x %#x", memmap.FormatSize(tc.size), cx, dx, err, tc.cx, tc.dx)
		}
	}
	if c, h, s := diskGeometry(16 << 30 >> 9); c != 1024 || h != 255 || s != 63 {
		t.Errorf("16 GiB geometry %d/%d/%d", c, h, s)
	}
	if c, h, s := diskGeometry(1); c != 1 || h != 16 || s != 63 {
		t.Errorf("one-sector geometry %d/%d/%d", c, h, s)
	}
	_, _, err = DriveParams(b, 0x81)
	wantStatus(t, err, BIOSBadParam)
	p, err := ExtParams(b, 0x80, 0x1E)
	if err != nil || len(p) != 0x1A || binary.LittleEndian.Uint64(p[16:]) != 1001 || binary.LittleEndian.Uint16(p[24:]) != 512 {
		t.Errorf("AH=48h % x %v", p, err)
	}
	_, err = ExtParams(b, 0x80, 0x19)
	wantStatus(t, err, BIOSBadParam)
}

// FuzzBIOSTables: for any bad RAM the tables build or fail cleanly, and
// int 15h E820 never reports a byte of bad RAM as usable.
func FuzzBIOSTables(f *testing.F) {
	f.Add(uint64(256*mb), uint64(16*mb), uint64(32*mb), uint8(0))
	f.Add(uint64(64*mb), uint64(0x9f000), uint64(0xa0000), uint8(70))
	f.Add(uint64(3<<30), uint64(1), uint64(2), uint8(200))
	f.Fuzz(func(t *testing.T, memSize, start, end uint64, stripes uint8) {
		memSize = 2*mb + memSize%(3<<30)
		m := memmap.New(memSize, FirmwareHigh)
		MarkBIOSAreas(m)
		bad := []memmap.Range{}
		if start < end {
			bad = append(bad, memmap.Range{Start: start, End: end})
		}
		for i := uint64(0); i < uint64(stripes); i++ {
			bad = append(bad, memmap.Range{Start: 2*mb + i*64*1024, End: 2*mb + i*64*1024 + 4096})
		}
		for _, b := range bad {
			m.Set(b, memmap.KindBad)
		}
		b, err := BIOSTables(m, memSize, nil)
		if err != nil {
			// One line is the contract of every error kvmboot prints.
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		all, err := E820All(b)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range all {
			if e.Type != uint32(memmap.KindRAM) {
				continue
			}
			if !m.IsAll(memmap.Range{Start: e.Addr, End: e.Addr + e.Size}, memmap.KindRAM) {
				t.Fatalf("E820 reports %#x+%#x as RAM; the map says otherwise", e.Addr, e.Size)
			}
		}
	})
}

// TestBuildWithDisk: --disk puts the image in the highest good RAM, whole
// sectors, and the BIOS tables point int 13h at it.
func TestBuildWithDisk(t *testing.T) {
	img := bytes.Repeat([]byte{0x5A}, 3000)
	plan, err := Build(Config{Kernel: testkernel.ELF, MemSize: 64 * mb, Disk: &Module{Path: "disk.img", Data: img},
		BadRAM: []memmap.Range{{Start: 60 * mb, End: 64 * mb}}})
	if err != nil {
		t.Fatal(err)
	}
	disk, tables := planPlacement(t, plan, "disk"), planPlacement(t, plan, "bios_tables")
	if disk.Size != 3072 || disk.End() > 60*mb || !bytes.Equal(disk.Data, img) {
		t.Fatalf("disk placement %+v", disk)
	}
	d, err := ReadBIOSDisk(tables.Data, 0x80)
	if err != nil || uint64(d.Addr) != disk.Start || d.Sectors != 6 {
		t.Fatalf("BIOS disk %+v, %v; placed at %#x", d, err, disk.Start)
	}
	if _, err := Build(Config{Kernel: testkernel.ELF, MemSize: 64 * mb, Disk: &Module{Path: "empty.img"}}); err == nil {
		t.Error("an empty disk image was accepted")
	}
}
