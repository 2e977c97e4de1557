package realmode

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"golang.org/x/arch/x86/x86asm"
)

// TestBIOSDecodes disassembles every byte of the BIOS code in 16-bit mode,
// as TestFirmwareDecodes does for the stub.
func TestBIOSDecodes(t *testing.T) {
	lay, err := ReadBIOSLayout(Firmware)
	if err != nil {
		t.Fatal(err)
	}
	start, end := int(lay.Code[0]), int(lay.Code[1])
	if start >= end || int(lay.Init) < start || int(lay.Init) >= end {
		t.Fatalf("BIOS layout %+v: empty code span or bios_init outside it", lay)
	}
	fw, _ := ReadLayout(Firmware)
	for _, span := range [][2]uint16{fw.Code16, fw.Code32, fw.Reset} {
		if int(span[0]) < end && start < int(span[1]) {
			t.Fatalf("BIOS code %#x-%#x overlaps the stub's %#x-%#x", start, end, span[0], span[1])
		}
	}
	n := decodeAll(t, "BIOS", Firmware, start, end, 16)
	t.Logf("BIOS: %d instructions in %#x-%#x, bios_init at %#x", n, start, end, lay.Init)
}

// TestBIOSInitCost counts bios_init's instructions up to its ret. It has
// no backward jumps, so the count is its longest path (rep counts once,
// as single-stepping counts it on this host): its share of the stub's
// budget of 300 instructions from reset to kernel entry. About half of it
// is a PC's POST: the tick count from the RTC (a second read of the time
// when a second passed), the PIT and the PIIX4 power-management setup.
func TestBIOSInitCost(t *testing.T) {
	const budget = 144
	lay, err := ReadBIOSLayout(Firmware)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for pc := int(lay.Init); ; {
		inst, err := x86asm.Decode(Firmware[pc:lay.Code[1]], 16)
		if err != nil {
			t.Fatalf("cannot decode at %#x: %v", pc, err)
		}
		n++
		rel, isRel := inst.Args[0].(x86asm.Rel)
		if inst.Op == x86asm.CALL || inst.Op == x86asm.JMP || isRel && rel < 0 {
			t.Fatalf("%v at %#x: bios_init must stay straight-line (forward branches only)", inst, pc)
		}
		if inst.Op == x86asm.RET {
			break
		}
		pc += inst.Len
	}
	t.Logf("bios_init: %d instructions, ret included", n)
	if n > budget {
		t.Errorf("bios_init takes %d instructions, more than its %d", n, budget)
	}
}

func TestBIOSLayoutVersion(t *testing.T) {
	lay, err := ReadBIOSLayout(Firmware)
	if err != nil {
		t.Fatal(err)
	}
	if lay.Version != BIOSTablesVersion {
		t.Fatalf("the image's BIOS reads tables version %d, bios.go writes %d", lay.Version, BIOSTablesVersion)
	}
	if _, err := ReadBIOSLayout(make([]byte, ROMSize)); err == nil {
		t.Error("an empty image has a BIOS")
	}
}

// TestBIOSMatchesSource makes sure bios.go and bios.S agree on the tables.
func TestBIOSMatchesSource(t *testing.T) {
	checkSourceConstants(t, "bios.S", map[string]int{
		"TABLES": BIOSTablesAddr, "TABLES_SIZE": BIOSTablesSize, "TABLES_MAGIC": BIOSTablesMagic,
		"TABLES_VERSION": BIOSTablesVersion, "T_MAGIC": BIOSOffMagic, "T_VERSION": BIOSOffVersion,
		"T_BASE_KB": BIOSOffBaseKiB, "T_EXT_KB": BIOSOffExtKiB, "T_E801_AX": BIOSOffE801AX,
		"T_E801_BX": BIOSOffE801BX, "T_E820_COUNT": BIOSOffE820Count, "T_DISK_ADDR": BIOSOffDiskAddr,
		"T_DISK_SECTORS": BIOSOffDiskSectors, "T_DISK_CYLS": BIOSOffDiskCyls, "T_DISK_HEADS": BIOSOffDiskHeads,
		"T_DISK_SPT": BIOSOffDiskSPT, "T_DISK_DRIVE": BIOSOffDiskDrive, "T_DISK_COUNT": BIOSOffDiskCount,
		"T_LOG_USED": BIOSOffLogUsed, "T_LOG_DROPPED": BIOSOffLogDropped, "T_E820": BIOSOffE820,
		"E820_MAX": BIOSMaxE820, "E820_SIZE": BIOSE820Size, "T_LOG": BIOSOffLog, "LOG_MAX": BIOSLogEntries,
		"LOG_SIZE": BIOSLogEntrySize, "EBDA_SEG": EBDAAddr >> 4, "EBDA_KB": EBDASize >> 10,
		"EQUIPMENT": BIOSEquipment, "EXIT_BOOTSTRAP": BIOSExitBootstrap, "DISK_MAX_COUNT": BIOSDiskMaxCount,
		"BDA_COM1": BDAAddr, "ROM_BASE": ROMBase, "BDA_TICKS": BDATicks, "BDA_MIDNIGHT": BDAMidnight,
		"TICKS_PER_DAY": TicksPerDay, "RSDP_SLOT": RSDPOffset, "RSDP_SIZE": RSDPSize, "PM_BASE": PMBase, "PIC_MASTER_MASK": PICMasterMask, "PIC_SLAVE_MASK": PICSlaveMask,
	})
}

func testTables() []byte {
	b := make([]byte, BIOSTablesSize)
	le := binary.LittleEndian
	le.PutUint32(b[BIOSOffMagic:], BIOSTablesMagic)
	le.PutUint16(b[BIOSOffVersion:], BIOSTablesVersion)
	return b
}

func putLogEntry(b []byte, i int, e BIOSLogEntry) {
	le := binary.LittleEndian
	o := b[BIOSOffLog+i*BIOSLogEntrySize:]
	o[0] = e.Vector
	for j, v := range []uint16{e.AX, e.Count, e.BX, e.CX, e.DX, e.IP, e.CS} {
		le.PutUint16(o[2+2*j:], v)
	}
}

func TestDecodeBIOSLog(t *testing.T) {
	b := testTables()
	if got := DecodeBIOSLog(b); len(got) != 0 {
		t.Fatalf("empty log decodes as %q", got)
	}
	putLogEntry(b, 0, BIOSLogEntry{Vector: 0x15, AX: 0x5300, Count: 1, CS: 0x1020, IP: 0x345})
	putLogEntry(b, 1, BIOSLogEntry{Vector: 0x10, AX: 0x9900, Count: 3, BX: 1, CX: 2, DX: 3, CS: 0x1000, IP: 0x10})
	putLogEntry(b, 2, BIOSLogEntry{Vector: 0x13, AX: 0x1580, Count: 0xFFFF})
	le := binary.LittleEndian
	le.PutUint16(b[BIOSOffLogUsed:], 3)
	le.PutUint16(b[BIOSOffLogDropped:], 7)
	want := []string{
		"bios: unknown service int 15h AX=5300h (1 call; first from 1020:0345, BX=0000 CX=0000 DX=0000): APM installation check",
		"bios: unknown service int 10h AX=9900h (3 calls; first from 1000:0010, BX=0001 CX=0002 DX=0003)",
		"bios: unknown service int 13h AX=1580h (65535 calls or more; first from 0000:0000, BX=0000 CX=0000 DX=0000): get disk type",
		"bios: 7 more unknown calls not logged (the log holds 32 services)",
	}
	got := DecodeBIOSLog(b)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// A corrupt count is named, not trusted.
	le.PutUint16(b[BIOSOffLogUsed:], BIOSLogEntries+1)
	if got := DecodeBIOSLog(b); len(got) != 1 || !strings.Contains(got[0], "unreadable") {
		t.Fatalf("corrupt log: %q", got)
	}
	// No tables placed, short or zero memory: nothing to say.
	for _, b := range [][]byte{make([]byte, BIOSTablesSize), nil, b[:100]} {
		if got := DecodeBIOSLog(b); got != nil {
			t.Fatalf("no tables: %q", got)
		}
	}
}

// TestTicksFromRTC: the count bios_init derives from the RTC stays below
// a day's ticks and runs at 18.2 Hz.
func TestTicksFromRTC(t *testing.T) {
	for _, tc := range []struct {
		h, m, s int
		want    uint32
	}{
		{0, 0, 0, 0},
		{0, 0, 1, 18},                  // 18.2 ticks in the first second
		{1, 0, 0, 65543},               // 3600 s * 18.2065 Hz, rounded down
		{23, 59, 59, TicksPerDay - 19}, // the last second of the day
	} {
		if got := TicksFromRTC(tc.h, tc.m, tc.s); got != tc.want {
			t.Errorf("%02d:%02d:%02d: %d ticks, want %d", tc.h, tc.m, tc.s, got, tc.want)
		}
	}
}

// TestROMTableSlots: the image keeps the slots of the RSDP and of the MP
// floating pointer and configuration table zero (no tables until a
// backend writes them), past all code, 16-byte aligned in the F segment;
// WithTables fills a copy and refuses what is not such a table.
func TestROMTableSlots(t *testing.T) {
	fw, _ := ReadLayout(Firmware)
	bios, _ := ReadBIOSLayout(Firmware)
	slots := []struct {
		what     string
		off, len int
	}{{"RSDP", RSDPOffset, RSDPSize}, {"MP floating pointer", MPFloatingOffset, MPFloatingSize}, {"MP configuration table", MPConfigOffset, MPConfigMax}}
	for i, s := range slots {
		if s.off%16 != 0 || int(bios.Code[1]) > s.off || int(fw.Code32[1]) > s.off || int(fw.Code16[1]) > s.off {
			t.Fatalf("%s slot at %#x: code runs to %#x, %#x, %#x", s.what, s.off, bios.Code[1], fw.Code16[1], fw.Code32[1])
		}
		if !bytes.Equal(Firmware[s.off:s.off+s.len], make([]byte, s.len)) {
			t.Fatalf("the image's %s slot is not zero", s.what)
		}
		for _, o := range slots[i+1:] {
			if s.off < o.off+o.len && o.off < s.off+s.len {
				t.Errorf("the %s and %s slots overlap", s.what, o.what)
			}
		}
		if s.off+s.len > BIOSLayoutOffset {
			t.Errorf("the %s slot runs into the BIOS layout table", s.what)
		}
	}
	rsdp := append([]byte("RSD PTR "), bytes.Repeat([]byte{7}, RSDPSize-8)...)
	mpf := append([]byte("_MP_"), bytes.Repeat([]byte{8}, MPFloatingSize-4)...)
	mpc := append([]byte("PCMP"), bytes.Repeat([]byte{9}, 300)...)
	img, err := WithTables(ROMTables{RSDP: rsdp, MPFloating: mpf, MPConfig: mpc})
	if err != nil || !bytes.Equal(img[RSDPOffset:RSDPOffset+RSDPSize], rsdp) || !bytes.Equal(img[MPFloatingOffset:MPFloatingOffset+MPFloatingSize], mpf) ||
		!bytes.Equal(img[MPConfigOffset:MPConfigOffset+len(mpc)], mpc) {
		t.Fatalf("WithTables: %v", err)
	}
	if !bytes.Equal(Firmware[RSDPOffset:RSDPOffset+RSDPSize], make([]byte, RSDPSize)) || !bytes.Equal(Firmware[MPConfigOffset:MPConfigOffset+len(mpc)], make([]byte, len(mpc))) {
		t.Fatal("WithTables wrote into the shared image")
	}
	if img, err := WithTables(ROMTables{RSDP: rsdp}); err != nil || !bytes.Equal(img[MPFloatingOffset:], Firmware[MPFloatingOffset:]) {
		t.Errorf("WithTables with the RSDP alone: %v, or it wrote more", err)
	}
	for _, bad := range []ROMTables{
		{RSDP: []byte{}}, {RSDP: rsdp[:20]}, {RSDP: append([]byte("RSD PTX "), rsdp[8:]...)},
		{MPFloating: mpf[:15]}, {MPFloating: append([]byte("_MX_"), mpf[4:]...)},
		{MPConfig: make([]byte, MPConfigMax+1)},
	} {
		if _, err := WithTables(bad); err == nil {
			t.Errorf("WithTables(%+v) accepted", bad)
		}
	}
}
