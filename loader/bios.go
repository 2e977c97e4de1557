package loader

import (
	"encoding/binary"
	"fmt"

	"kvmboot/loader/memmap"
	"kvmboot/realmode"
)

// The BIOS in the firmware image (realmode/bios.S) answers from tables the
// loader writes at realmode.BIOSTablesAddr: memory sizes and the E820 map
// from the same memory map (memmap.Map) the rest of the plan uses (bad RAM is type 5
// there, so a kernel that asks int 15h sees it), and the optional disk
// image. BIOSTables builds them; the functions after it are models of what
// the assembly does with them, call for call, so that the rules (and what
// happens to bad inputs) are unit-tested here and checked against the
// guest in e2e/bios_test.go.

// FirmwareHigh is the firmware image's alias just below 4 GiB, where a PC
// starts (the reset vector): a PC's memory map reserves it.
var FirmwareHigh = memmap.Range{Start: realmode.ROMHigh, End: realmode.ROMHigh + realmode.ROMSize}

// EBDARange is the extended BIOS data area at the top of conventional
// memory. The memory map must reserve it (MarkBIOSAreas): E820 then ends
// low RAM at 0x9FC00 and int 12h says 639 KiB.
var EBDARange = memmap.Range{Start: realmode.EBDAAddr, End: realmode.EBDAAddr + realmode.EBDASize}

// BIOSTablesRange is the guest memory of the tables.
var BIOSTablesRange = memmap.Range{Start: realmode.BIOSTablesAddr, End: realmode.BIOSTablesAddr + realmode.BIOSTablesSize}

// MarkBIOSAreas reserves what the BIOS keeps for itself in m: the EBDA.
func MarkBIOSAreas(m *memmap.Map) { m.Set(EBDARange, memmap.KindReserved) }

// Disk is a disk image in guest RAM that the BIOS serves as drive 0x80.
type Disk struct {
	Addr uint64 // guest physical address of the first byte
	Size uint64 // bytes in the image
}

// Sectors is the image's size in 512-byte sectors, the last one partial
// when Size is not a multiple of 512.
func (d Disk) Sectors() uint64 { return (d.Size + 511) / 512 }

// Span is the guest memory the BIOS reads the image from: whole sectors,
// so a placement of the image must be this large (its tail zeroed).
func (d Disk) Span() memmap.Range { return memmap.Range{Start: d.Addr, End: d.Addr + d.Sectors()*512} }

// Limits of the values in the tables.
const (
	biosExt88Max   = 0xFC00   // KiB: int 15h AH=88h reports up to 64 MiB
	biosE801AXMax  = 0x3C00   // KiB between 1 MiB and 16 MiB
	biosSixteenMiB = 16 << 20 // where E801's BX starts counting
	biosDiskLimit  = uint64(1) << 32
)

// BIOSTables returns the bytes of the BIOS tables region (BIOSTablesRange)
// for a guest with memSize bytes of RAM and memory map m. disk is nil for a
// machine without a disk (int 13h then answers "no such drive"). m must
// reserve the EBDA (MarkBIOSAreas).
//
// The sizes are conservative where bad RAM breaks memory up: int 12h
// counts the RAM from 0 up to the first byte that is not RAM, int 15h 88h
// and E801 the RAM from 1 MiB up to the first byte that is not. The E820
// table is the map itself, region by region.
func BIOSTables(m *memmap.Map, memSize uint64, disk *Disk) ([]byte, error) {
	if m == nil {
		return nil, fmt.Errorf("BIOS tables: no memory map")
	}
	if !m.IsAll(EBDARange, memmap.KindReserved) {
		return nil, fmt.Errorf("BIOS tables: the memory map must reserve the EBDA at %v (loader.MarkBIOSAreas)", EBDARange)
	}
	regions := biosE820(m.Regions())
	b := make([]byte, realmode.BIOSTablesSize)
	le := binary.LittleEndian
	le.PutUint32(b[realmode.BIOSOffMagic:], realmode.BIOSTablesMagic)
	le.PutUint16(b[realmode.BIOSOffVersion:], realmode.BIOSTablesVersion)

	le.PutUint16(b[realmode.BIOSOffBaseKiB:], uint16(min(ramEnd(regions, 0), memmap.LowRAMEnd)>>10))

	extEnd := ramEnd(regions, memmap.HighRAMStart)
	extKiB := (extEnd - memmap.HighRAMStart) >> 10
	le.PutUint16(b[realmode.BIOSOffExtKiB:], uint16(min(extKiB, biosExt88Max)))
	le.PutUint16(b[realmode.BIOSOffE801AX:], uint16(min(extKiB, biosE801AXMax)))
	if extEnd > biosSixteenMiB {
		le.PutUint16(b[realmode.BIOSOffE801BX:], uint16(min((extEnd-biosSixteenMiB)>>16, 0xFFFF)))
	}

	le.PutUint16(b[realmode.BIOSOffE820Count:], uint16(len(regions)))
	for i, r := range regions {
		e820Entry(r).put(b[realmode.BIOSOffE820+i*realmode.BIOSE820Size:])
	}

	if disk != nil {
		span := disk.Span()
		switch {
		case disk.Size == 0:
			return nil, fmt.Errorf("BIOS tables: the disk image is empty")
		case span.End > biosDiskLimit || span.End < span.Start:
			return nil, fmt.Errorf("BIOS tables: the disk image at %v must end below 4 GiB: the BIOS copies from it with 32-bit addresses", span)
		case span.End > memSize:
			return nil, fmt.Errorf("BIOS tables: the disk image at %v is beyond guest RAM (%s)", span, memmap.FormatSize(memSize))
		case !m.IsAll(span, memmap.KindRAM):
			return nil, fmt.Errorf("BIOS tables: the disk image at %v is not all good RAM", span)
		}
		sectors := disk.Sectors()
		cyls, heads, spt := diskGeometry(sectors)
		le.PutUint32(b[realmode.BIOSOffDiskAddr:], uint32(disk.Addr))
		le.PutUint32(b[realmode.BIOSOffDiskSectors:], uint32(sectors))
		le.PutUint16(b[realmode.BIOSOffDiskCyls:], cyls)
		b[realmode.BIOSOffDiskHeads] = heads
		b[realmode.BIOSOffDiskSPT] = spt
		b[realmode.BIOSOffDiskDrive] = realmode.BIOSDrive
		b[realmode.BIOSOffDiskCount] = 1
	}
	return b, nil
}

// ramEnd is where the RAM that holds from ends (from itself when from is
// not in RAM): the contiguous memory a BIOS-era size field reports. Regions
// are coalesced, so at most one RAM region holds from.
func ramEnd(regions []memmap.Region, from uint64) uint64 {
	for _, r := range regions {
		if r.Kind == memmap.KindRAM && r.Start <= from && from < r.End {
			return r.End
		}
	}
	return from
}

// biosE820 fits the memory map into the table int 15h E820 serves. A map
// with more regions (finely striped bad RAM) keeps its first entries and
// reports the rest as one reserved range: memory left out of the map is
// never used, while memory wrongly called RAM would be.
func biosE820(regions []memmap.Region) []memmap.Region {
	if len(regions) <= realmode.BIOSMaxE820 {
		return regions
	}
	keep := regions[:realmode.BIOSMaxE820-1]
	rest := memmap.Region{Range: memmap.Range{Start: regions[len(keep)].Start, End: regions[len(regions)-1].End}, Kind: memmap.KindReserved}
	return append(keep[:len(keep):len(keep)], rest)
}

// diskGeometry is the CHS geometry int 13h AH=08h/48h report and AH=02h
// reads by: 63 sectors a track, 16 heads (255 above 504 MiB), as many
// cylinders as fit, 1 to 1024. Sectors past the geometry are reachable
// only by LBA; CHS addresses past the disk's end are refused.
func diskGeometry(sectors uint64) (cyls uint16, heads, spt uint8) {
	spt, heads = 63, 16
	if sectors > 1024*16*63 {
		heads = 255
	}
	c := sectors / (uint64(heads) * uint64(spt))
	return uint16(max(1, min(c, 1024))), heads, spt
}

// BIOSTablesPlacement is the plan's placement of the tables. It is
// verified like the pieces the kernel reads: the stub checks it before
// any BIOS service runs, and only services write to it afterwards (the log).
func BIOSTablesPlacement(tables []byte) Placement {
	return Placement{What: "bios_tables", Name: "BIOS tables: E820, sizes, disk, log", Start: BIOSTablesRange.Start,
		Data: tables, Size: BIOSTablesRange.Size(), Verify: true}
}

// ---- models of the services -------------------------------------------

// BIOS status codes: a call that fails returns CF=1 with one of these in AH.
const (
	BIOSBadParam     = 0x01 // int 13h: invalid parameter, or no such drive
	BIOSWriteProtect = 0x03 // int 13h AH=43h: the image is read-only
	BIOSNotFound     = 0x04 // int 13h: a sector beyond the end of the disk
	BIOSBoundary     = 0x09 // int 13h: the buffer crosses the 1 MiB line
	BIOSUnsupported  = 0x86 // int 15h: unsupported function or bad input
)

// BIOSError is a BIOS call that returns CF=1 with AH = Status.
type BIOSError struct {
	Status uint8
	Msg    string
}

func (e *BIOSError) Error() string { return fmt.Sprintf("CF=1 AH=%02xh: %s", e.Status, e.Msg) }

func biosErr(status uint8, format string, args ...any) error {
	return &BIOSError{Status: status, Msg: fmt.Sprintf(format, args...)}
}

// biosTables checks what every handler checks first: the magic and
// version. Without them the handlers know nothing (no memory sizes, no
// E820, no disk).
func biosTables(t []byte) bool {
	le := binary.LittleEndian
	return len(t) >= realmode.BIOSTablesSize && le.Uint32(t[realmode.BIOSOffMagic:]) == realmode.BIOSTablesMagic &&
		le.Uint16(t[realmode.BIOSOffVersion:]) == realmode.BIOSTablesVersion
}

// E820Entry is one entry as int 15h E820h writes it (20 bytes).
type E820Entry struct {
	Addr, Size uint64
	Type       uint32
}

// e820Entry is a memory-map region as an E820 entry.
func e820Entry(r memmap.Region) E820Entry { return E820Entry{r.Start, r.Size(), uint32(r.Kind)} }

// put writes e in the 20-byte layout that the BIOS tables, the zero page
// and the Multiboot memory map (after its size word) all use.
func (e E820Entry) put(b []byte) {
	binary.LittleEndian.PutUint64(b, e.Addr)
	binary.LittleEndian.PutUint64(b[8:], e.Size)
	binary.LittleEndian.PutUint32(b[16:], e.Type)
}

// Bytes is the entry as the BIOS stores it in the caller's buffer.
func (e E820Entry) Bytes() []byte {
	b := make([]byte, realmode.BIOSE820Size)
	e.put(b)
	return b
}

// E820Signature is "SMAP", the EDX a caller passes and EAX on return.
const E820Signature = 0x534D4150

// E820Call models int 15h EAX=E820h with EDX, EBX and ECX: the entry
// written to ES:DI and the next EBX (0 after the last entry), with
// EAX=EDX="SMAP" and ECX=20 on return. It fails (CF=1, AH=86h, nothing
// written) on a wrong signature, a buffer under 20 bytes, or an EBX that
// is not a continuation value the BIOS handed out.
func E820Call(tables []byte, edx, ebx, ecx uint32) (E820Entry, uint32, error) {
	if edx != E820Signature {
		return E820Entry{}, 0, biosErr(BIOSUnsupported, "E820: EDX=%#x is not \"SMAP\"", edx)
	}
	if ecx < realmode.BIOSE820Size {
		return E820Entry{}, 0, biosErr(BIOSUnsupported, "E820: ECX=%d, the buffer must take %d bytes", ecx, realmode.BIOSE820Size)
	}
	return E820Next(tables, ebx)
}

// E820Next returns the entry for continuation value ebx and the next one.
func E820Next(tables []byte, ebx uint32) (E820Entry, uint32, error) {
	if !biosTables(tables) {
		return E820Entry{}, 0, biosErr(BIOSUnsupported, "E820: no BIOS tables")
	}
	le := binary.LittleEndian
	count := uint32(le.Uint16(tables[realmode.BIOSOffE820Count:]))
	if ebx >= realmode.BIOSMaxE820 || ebx >= count {
		return E820Entry{}, 0, biosErr(BIOSUnsupported, "E820: EBX=%d out of range (%d entries)", ebx, count)
	}
	e := tables[realmode.BIOSOffE820+ebx*realmode.BIOSE820Size:]
	entry := E820Entry{Addr: le.Uint64(e), Size: le.Uint64(e[8:]), Type: le.Uint32(e[16:])}
	next := ebx + 1
	if next >= count {
		next = 0
	}
	return entry, next, nil
}

// E820All walks the table from EBX=0 as a bootloader does.
func E820All(tables []byte) ([]E820Entry, error) {
	var out []E820Entry
	for ebx := uint32(0); ; {
		e, next, err := E820Next(tables, ebx)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
		if next == 0 {
			return out, nil
		}
		ebx = next
	}
}

// BIOSMemory are the memory sizes of int 12h and int 15h 88h and E801h.
type BIOSMemory struct {
	BaseKiB uint16 // int 12h AX, BDA 0x413
	ExtKiB  uint16 // int 15h AH=88h AX
	E801AX  uint16 // int 15h AX=E801h AX and CX
	E801BX  uint16 // int 15h AX=E801h BX and DX
}

// ReadBIOSMemory models the size services. Without tables int 15h 88h and
// E801h fail with CF=1 AH=86h (and bios_init leaves base memory at 0).
func ReadBIOSMemory(tables []byte) (BIOSMemory, error) {
	if !biosTables(tables) {
		return BIOSMemory{}, biosErr(BIOSUnsupported, "no BIOS tables")
	}
	le := binary.LittleEndian
	return BIOSMemory{
		BaseKiB: le.Uint16(tables[realmode.BIOSOffBaseKiB:]),
		ExtKiB:  le.Uint16(tables[realmode.BIOSOffExtKiB:]),
		E801AX:  le.Uint16(tables[realmode.BIOSOffE801AX:]),
		E801BX:  le.Uint16(tables[realmode.BIOSOffE801BX:]),
	}, nil
}

// BIOSDisk is the disk as the tables describe it.
type BIOSDisk struct {
	Addr, Sectors uint32
	Cyls          uint16
	Heads, SPT    uint8
	Drive         uint8
}

// ReadBIOSDisk models the check every int 13h service starts with: the
// drive in DL must be the tables' drive. It fails with CF=1 AH=01h when
// there is no disk or DL names another drive.
func ReadBIOSDisk(tables []byte, dl uint8) (BIOSDisk, error) {
	if !biosTables(tables) || tables[realmode.BIOSOffDiskCount] != 1 {
		return BIOSDisk{}, biosErr(BIOSBadParam, "int 13h: no drive %#x (no disk)", dl)
	}
	if dl != tables[realmode.BIOSOffDiskDrive] {
		return BIOSDisk{}, biosErr(BIOSBadParam, "int 13h: no drive %#x", dl)
	}
	le := binary.LittleEndian
	return BIOSDisk{
		Addr: le.Uint32(tables[realmode.BIOSOffDiskAddr:]), Sectors: le.Uint32(tables[realmode.BIOSOffDiskSectors:]),
		Cyls: le.Uint16(tables[realmode.BIOSOffDiskCyls:]), Heads: tables[realmode.BIOSOffDiskHeads],
		SPT: tables[realmode.BIOSOffDiskSPT], Drive: dl,
	}, nil
}

// DriveParams models int 13h AH=08h: CX and DX on return (AX=0, CF=0).
func DriveParams(tables []byte, dl uint8) (cx, dx uint16, err error) {
	d, err := ReadBIOSDisk(tables, dl)
	if err != nil {
		return 0, 0, err
	}
	c := d.Cyls - 1
	cx = (c&0xFF)<<8 | (c>>8)<<6 | uint16(d.SPT)
	dx = uint16(d.Heads-1)<<8 | 1
	return cx, dx, nil
}

// DAP is an int 13h extended disk address packet.
type DAP struct {
	Size            uint8  // at least 0x10
	Count           uint16 // sectors, 1..127
	Offset, Segment uint16 // the buffer, below 1 MiB
	LBA             uint64
}

// DiskCopy is what a successful read copies: Len bytes from guest physical
// Src (in the image) to Dst (the caller's buffer, below 1 MiB).
type DiskCopy struct {
	Src, Dst, Len uint32
}

// ExtendedRead models int 13h AH=42h with DL=drive and DS:SI -> dap.
// The checks, in the assembly's order: the drive (01h), the packet size
// (01h), the count, 1 to 127 (01h), the sectors on the disk (04h; an LBA
// of 2^32 or more is always beyond it), the buffer's end at or below
// 1 MiB (09h). On an error the packet's count is set to 0.
func ExtendedRead(tables []byte, drive uint8, dap DAP) (DiskCopy, error) {
	d, err := ReadBIOSDisk(tables, drive)
	if err != nil {
		return DiskCopy{}, err
	}
	if dap.Size < 0x10 {
		return DiskCopy{}, biosErr(BIOSBadParam, "int 13h AH=42h: packet size %#x, want 0x10 or more", dap.Size)
	}
	lba := uint32(dap.LBA)
	if dap.LBA>>32 != 0 {
		lba = 0xFFFFFFFF
	}
	return diskRead(d, lba, uint32(dap.Count), uint32(dap.Segment)<<4+uint32(dap.Offset))
}

// CHSRead models int 13h AH=02h: AL sectors from cylinder (CH, CL bits
// 6-7), head DH, sector CL bits 0-5 (from 1) of drive DL, to ES:BX. On
// success AL keeps the count; on an error AL=0. A CHS address outside the
// geometry, or a zero count, is 01h; the rest is as for ExtendedRead.
func CHSRead(tables []byte, ax, cx, dx, es, bx uint16) (DiskCopy, error) {
	d, err := ReadBIOSDisk(tables, uint8(dx))
	if err != nil {
		return DiskCopy{}, err
	}
	count := uint32(ax & 0xFF)
	sector := uint32(cx & 0x3F)
	cyl := uint32(cx>>8) | uint32(cx&0xC0)<<2
	head := uint32(dx >> 8)
	switch {
	case sector == 0 || sector > uint32(d.SPT):
		return DiskCopy{}, biosErr(BIOSBadParam, "int 13h AH=02h: sector %d, the geometry has 1..%d", sector, d.SPT)
	case count == 0:
		return DiskCopy{}, biosErr(BIOSBadParam, "int 13h AH=02h: no sectors asked for")
	case cyl >= uint32(d.Cyls):
		return DiskCopy{}, biosErr(BIOSBadParam, "int 13h AH=02h: cylinder %d, the geometry has %d", cyl, d.Cyls)
	case head >= uint32(d.Heads):
		return DiskCopy{}, biosErr(BIOSBadParam, "int 13h AH=02h: head %d, the geometry has %d", head, d.Heads)
	}
	lba := (cyl*uint32(d.Heads)+head)*uint32(d.SPT) + sector - 1
	return diskRead(d, lba, count, uint32(es)<<4+uint32(bx))
}

// diskRead is the assembly's disk_read.
func diskRead(d BIOSDisk, lba, count, dst uint32) (DiskCopy, error) {
	if count == 0 || count > realmode.BIOSDiskMaxCount {
		return DiskCopy{}, biosErr(BIOSBadParam, "int 13h: %d sectors, want 1..%d", count, realmode.BIOSDiskMaxCount)
	}
	if lba >= d.Sectors || count > d.Sectors-lba {
		return DiskCopy{}, biosErr(BIOSNotFound, "int 13h: sectors %d+%d beyond the disk's %d", lba, count, d.Sectors)
	}
	n := count * sectorSize
	if uint64(dst)+uint64(n) > memmap.HighRAMStart {
		return DiskCopy{}, biosErr(BIOSBoundary, "int 13h: buffer %#x+%#x crosses the 1 MiB line", dst, n)
	}
	return DiskCopy{Src: d.Addr + lba*sectorSize, Dst: dst, Len: n}, nil
}

// ExtParams models int 13h AH=48h: the 26-byte EDD 1.x result buffer
// (size, flags 2 = geometry valid, cylinders, heads, sectors per track,
// total sectors, bytes per sector). bufSize is the size word the caller
// put in its buffer: under 0x1A the call fails with 01h.
func ExtParams(tables []byte, dl uint8, bufSize uint16) ([]byte, error) {
	d, err := ReadBIOSDisk(tables, dl)
	if err != nil {
		return nil, err
	}
	if bufSize < 0x1A {
		return nil, biosErr(BIOSBadParam, "int 13h AH=48h: buffer of %d bytes, want 26", bufSize)
	}
	b := make([]byte, 0x1A)
	le := binary.LittleEndian
	le.PutUint16(b, 0x1A)
	le.PutUint16(b[2:], 2)
	le.PutUint32(b[4:], uint32(d.Cyls))
	le.PutUint32(b[8:], uint32(d.Heads))
	le.PutUint32(b[12:], uint32(d.SPT))
	le.PutUint64(b[16:], uint64(d.Sectors))
	le.PutUint16(b[24:], sectorSize)
	return b, nil
}
