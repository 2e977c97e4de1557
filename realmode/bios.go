package realmode

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// The BIOS (bios.S) lives in the firmware image beside the stub. The stub
// calls bios_init once; from then on real-mode code (a Gujin-style part,
// Linux's setup code, the e2e test programs) can call int 10h, 11h, 12h,
// 13h, 15h, 16h, 19h and 1Ah. The handlers answer from tables the loader
// writes at BIOSTablesAddr before the guest starts (loader.BIOSTables) and
// note unknown services in a log inside the same tables, which the host
// decodes after the run (DecodeBIOSLog).
//
// Tables (little endian, offsets from BIOSTablesAddr):
//
//	0x000 u32 magic "BIOS" (BIOSTablesMagic)
//	0x004 u16 version (BIOSTablesVersion)
//	0x006 u16 base memory in KiB: int 12h and BDA 0x413 (639 with the EBDA)
//	0x008 u16 int 15h AH=88h: KiB of RAM from 1 MiB on, at most 0xFC00
//	0x00a u16 int 15h E801h AX=CX: KiB of RAM between 1 MiB and 16 MiB
//	0x00c u16 int 15h E801h BX=DX: 64 KiB blocks of RAM above 16 MiB
//	0x00e u16 number of E820 entries (at most BIOSMaxE820)
//	0x010 u32 disk image: guest physical address
//	0x014 u32 disk image: 512-byte sectors
//	0x018 u16 disk geometry for CHS calls: cylinders (1..1024)
//	0x01a u8  heads (1..255)
//	0x01b u8  sectors per track (1..63)
//	0x01c u8  drive number (BIOSDrive, 0x80)
//	0x01d u8  number of drives: 0 (no disk) or 1
//	0x020 u16 log entries in use (written by the guest)
//	0x022 u16 unknown calls not logged because the log was full (guest)
//	0x040     E820 entries, 20 bytes each: u64 base, u64 length, u32 type
//	0xa40     log, BIOSLogEntries entries of 16 bytes: u8 vector, u8 0,
//	          u16 AX, u16 count (saturating), then the first call's BX,
//	          CX, DX and its return address IP, CS (the instruction after
//	          the int)
//
// Other guest memory the BIOS sets up: the IVT at 0, the BDA at 0x400
// (COM1 at 0x400, EBDA segment at 0x40E, equipment word at 0x410, base
// memory at 0x413, video mode 3 and 80x25 at 0x449/0x484, timer ticks at
// BDATicks and the midnight flag at BDAMidnight, hard disks at 0x475) and
// the EBDA at EBDAAddr, 1 KiB, which the memory map reserves.
//
// bios_init (near call, real mode, CS=0xF000, DS=ES=0, IF=0; clobbers EAX,
// CX, DI, SI and the flags) leaves the machine as a PC's POST does:
//
//   - every vector at an iret; IRQ 0 (08h) at the timer handler, IRQ 1
//     (09h) at the keyboard handler, the other IRQs 0-7 (08h) and 8-15
//     (70h) at handlers that send the 8259s an EOI; the services at their
//     handlers;
//   - the 8259s at vector bases 08h and 70h, the timer, the keyboard and
//     the cascade unmasked (PICMasterMask, PICSlaveMask), as SeaBIOS
//     leaves the timer and keyboard;
//   - PIT channel 0 in mode 2 with count 65536: IRQ 0 at 18.2 Hz;
//   - the tick count since midnight from the RTC's time of day
//     (seconds*19663/1080, TicksFromRTC), the midnight flag 0;
//   - on QEMU's PC, the PIIX4's ACPI power-management function (PCI
//     00:01.3, 8086:7113) with its I/O block at PMBase and SCI_EN set, as
//     the loader's ACPI tables describe it (our KVM machine has that block
//     at PMBase from the start; the probe reads all-ones there).
//
// It is straight-line code (forward branches only) of at most 135
// instructions. Interrupts stay off: the stub enters every kernel with
// IF=0, as the boot protocols ask; real-mode code that turns them on
// (Linux's setup code does) gets the timer ticking.
//
// Hardware interrupts (all with interrupts off, registers kept):
//
//	int 08h  IRQ 0: the tick count +1 (at TicksPerDay it goes to 0 and the
//	         midnight flag to 1), int 1Ch, EOI.
//	int 09h  IRQ 1: the keyboard controller's byte read (port 60h) and
//	         dropped, EOI.
//	others   EOI (IRQ 8-15: to both 8259s).
//
// Services and what they do with bad input (CF=1 is an error; AH its code):
//
//	int 10h  0Eh teletype: AL to COM1 (transmitter polled, bounded);
//	         0Fh: AX=5003h (mode 3, 80 columns), BH=0; 03h: DX=0, CX=0607h;
//	         12h BL=10h: BL unchanged ("no EGA"); 4Fxxh: AX=014Fh (no VBE);
//	         00h-02h: nothing to do. Others: CF=1, AX unchanged, logged.
//	int 11h  AX = equipment word (BDA 0x410). int 12h: AX = BDA 0x413.
//	int 13h  only drive 80h, only with a disk: any other DL, or no disk:
//	         CF=1 AH=01h. 00h reset; 08h geometry (CX, DH, DL=1, AX=0);
//	         41h BX=55AAh: BX=AA55h AH=21h CX=1 (BX otherwise: 01h);
//	         48h: 26-byte EDD 1.x buffer (size word under 1Ah: 01h);
//	         42h read (DS:SI packet) and 02h CHS read (ES:BX): packet size
//	         under 10h, count 0 or over 127, CHS outside the geometry: 01h;
//	         sectors past the disk's end (LBA >= 2^32 included): 04h;
//	         a buffer ending above 1 MiB: 09h; on an error after the drive
//	         check the packet's count (42h) or AL (02h) is 0. The copy runs
//	         in 16-bit protected mode with flat segments (A20 on while it
//	         lasts, GDTR restored). 43h write: 03h. Others: 01h, logged.
//	int 15h  E820h: EDX not "SMAP", ECX under 20, or EBX not one the BIOS
//	         handed out (>= the count, >= 128, high bits set): CF=1 AH=86h,
//	         nothing written; DF is ignored (entries are written forwards).
//	         E801h, 88h: sizes (AX/BX/CX/DX; AX). C0h: ES:BX = config
//	         table. EC00h, 86h (returns at once): AH=0. 2400h-2403h: A20
//	         via port 92h (2403h: BX=2). 87h: block move through the
//	         caller's GDT's source and destination bases. Without tables
//	         E820h, E801h, 88h: CF=1 AH=86h. Others: CF=1 AH=86h, logged.
//	int 16h  00h/10h: AX=0 at once: no key will come, and waiting would
//	         hang the boot. 01h/11h: ZF=1 (no key). 02h: AL=0; 12h: AX=0.
//	         03h: nothing to do. Others: CF=1, logged.
//	int 19h  a message on COM1, BIOSExitBootstrap to the debug-exit port,
//	         halt.
//	int 1Ah  00h: CX:DX the tick count, AL the midnight flag (then 0);
//	         01h: the count from CX:DX, the flag 0, AH=0; 02h: time, 04h:
//	         date, in BCD from the RTC (CMOS ports 70h/71h, BCD and 24-hour
//	         mode assumed). An RTC update that never ends: CF=1. Others:
//	         CF=1, logged.
//
// All other vectors: iret. The log counts calls per (vector, AX).
const (
	BIOSTablesAddr    = 0x5000
	BIOSTablesSize    = 0x1000
	BIOSTablesMagic   = 0x534f4942 // "BIOS"
	BIOSTablesVersion = 1

	BIOSOffMagic       = 0x00
	BIOSOffVersion     = 0x04
	BIOSOffBaseKiB     = 0x06
	BIOSOffExtKiB      = 0x08
	BIOSOffE801AX      = 0x0a
	BIOSOffE801BX      = 0x0c
	BIOSOffE820Count   = 0x0e
	BIOSOffDiskAddr    = 0x10
	BIOSOffDiskSectors = 0x14
	BIOSOffDiskCyls    = 0x18
	BIOSOffDiskHeads   = 0x1a
	BIOSOffDiskSPT     = 0x1b
	BIOSOffDiskDrive   = 0x1c
	BIOSOffDiskCount   = 0x1d
	BIOSOffLogUsed     = 0x20
	BIOSOffLogDropped  = 0x22
	BIOSOffE820        = 0x40
	BIOSOffLog         = 0xa40

	BIOSMaxE820      = 128
	BIOSE820Size     = 20
	BIOSLogEntries   = 32
	BIOSLogEntrySize = 16

	// BIOSDrive is the disk's drive number; BIOSDiskMaxCount the most
	// sectors one int 13h read moves.
	BIOSDrive        = 0x80
	BIOSDiskMaxCount = 127

	// EBDAAddr is the extended BIOS data area, EBDASize bytes; the loader
	// reserves it in the memory map, so base memory is 639 KiB.
	EBDAAddr = 0x9FC00
	EBDASize = 0x400
	BDAAddr  = 0x400
	// BDATicks is the u32 count of timer ticks since midnight, and
	// BDAMidnight the byte int 08h sets when the count wraps.
	BDATicks    = 0x46C
	BDAMidnight = 0x470
	// TicksPerDay is where the count wraps: 18.2 Hz (1193182/65536) for
	// 86400 s.
	TicksPerDay = 0x1800B0
	// PICMasterMask and PICSlaveMask are the 8259 masks at hand-off:
	// IRQ 0 (timer), 1 (keyboard) and 2 (cascade) unmasked.
	PICMasterMask = 0xF8
	PICSlaveMask  = 0xFF
	// PMBase is the ACPI power-management I/O block: PM1a event (4
	// bytes) at +0, PM1a control (2 bytes, SCI_EN in bit 0) at +4, the
	// 24-bit PM timer at +8. bios_init puts the PIIX4's there on QEMU's
	// PC; our KVM machine has one there (machine/devices).
	PMBase = 0x600
	// BIOSEquipment is the int 11h word: a coprocessor, 80x25 colour,
	// one serial port.
	BIOSEquipment = 0x0222
	// BIOSExitBootstrap is what int 19h writes to the debug-exit port
	// after its message: there is nothing to boot.
	BIOSExitBootstrap = ExitStubFailed

	// BIOSLayoutOffset is where firmware.ld puts the BIOS layout table.
	BIOSLayoutOffset = 0xFFC0

	// RSDPOffset is where the image keeps ACPI's root pointer, RSDPSize
	// bytes (linear 0xFFF80, in the F segment the standard search scans);
	// zero as built. WithTables writes one.
	RSDPOffset = 0xFF80
	RSDPSize   = 36

	// MPFloatingOffset is where the image keeps the MP floating pointer
	// (Intel MP specification 1.4), MPFloatingSize bytes at linear
	// 0xFFFB0, in the F segment the specification's search scans; the
	// configuration table it points at goes at MPConfigOffset, up to
	// MPConfigMax bytes, past all code. Both zero as built: WithTables
	// writes them.
	MPFloatingOffset = 0xFFB0
	MPFloatingSize   = 16
	MPConfigOffset   = 0xF000
	MPConfigMax      = RSDPOffset - MPConfigOffset
)

// ROMTables are the firmware tables of a machine that live in the
// firmware image's F segment, as a PC's firmware builds them in its
// shadowed F segment; nil ones are left out.
type ROMTables struct {
	RSDP       []byte // ACPI's root pointer (loader.ACPITables)
	MPFloating []byte // the MP floating pointer (loader.MPTable)
	MPConfig   []byte // the MP configuration table it points at
}

// WithTables returns a copy of the firmware image with t in their slots.
func WithTables(t ROMTables) ([]byte, error) {
	if t.RSDP != nil && (len(t.RSDP) != RSDPSize || string(t.RSDP[:8]) != "RSD PTR ") {
		return nil, fmt.Errorf("firmware image: an RSDP is %d bytes starting \"RSD PTR \", not % x", RSDPSize, t.RSDP[:min(len(t.RSDP), 8)])
	}
	if t.MPFloating != nil && (len(t.MPFloating) != MPFloatingSize || string(t.MPFloating[:4]) != "_MP_") {
		return nil, fmt.Errorf("firmware image: an MP floating pointer is %d bytes starting \"_MP_\", not % x", MPFloatingSize, t.MPFloating[:min(len(t.MPFloating), 4)])
	}
	if len(t.MPConfig) > MPConfigMax {
		return nil, fmt.Errorf("firmware image: an MP configuration table of %d bytes; the image has room for %d", len(t.MPConfig), MPConfigMax)
	}
	img := bytes.Clone(Firmware)
	copy(img[RSDPOffset:], t.RSDP)
	copy(img[MPFloatingOffset:], t.MPFloating)
	copy(img[MPConfigOffset:], t.MPConfig)
	return img, nil
}

// TicksFromRTC is the tick count bios_init sets from the RTC's time of
// day: seconds since midnight * 1573040 / 86400, rounded down.
func TicksFromRTC(hour, min, sec int) uint32 {
	return uint32(hour*3600+min*60+sec) * 19663 / 1080
}

// BIOSLayout says where the BIOS lies in the firmware image.
type BIOSLayout struct {
	Code    [2]uint16 // every byte in [Code[0], Code[1]) is 16-bit code
	Init    uint16    // bios_init, near-called by the stub
	Version uint16    // the tables version the handlers read
}

// ReadBIOSLayout reads the BIOS layout table from a firmware image.
func ReadBIOSLayout(img []byte) (BIOSLayout, error) {
	if len(img) != ROMSize {
		return BIOSLayout{}, errors.New("firmware image is not 64 KiB")
	}
	t := img[BIOSLayoutOffset:]
	if string(t[:8]) != "KVMBBIOS" {
		return BIOSLayout{}, errors.New("firmware image has no BIOS")
	}
	w := func(i int) uint16 { return binary.LittleEndian.Uint16(t[8+2*i:]) }
	return BIOSLayout{Code: [2]uint16{w(0), w(1)}, Init: w(2), Version: w(3)}, nil
}

// BIOSLogEntry is one unknown service the BIOS was asked for.
type BIOSLogEntry struct {
	Vector     uint8
	AX         uint16
	Count      uint16 // calls with this vector and AX, saturating at 0xFFFF
	BX, CX, DX uint16 // the first call's registers
	CS, IP     uint16 // the first call's return address
}

// ReadBIOSLog returns the log the handlers kept in the tables and the
// number of calls that found it full. Tables with the wrong magic or
// version (no BIOS tables were placed) have no log.
func ReadBIOSLog(tables []byte) ([]BIOSLogEntry, uint16, error) {
	if len(tables) < BIOSOffLog+BIOSLogEntries*BIOSLogEntrySize {
		return nil, 0, fmt.Errorf("BIOS tables: %d bytes, want %d", len(tables), BIOSTablesSize)
	}
	le := binary.LittleEndian
	if le.Uint32(tables[BIOSOffMagic:]) != BIOSTablesMagic || le.Uint16(tables[BIOSOffVersion:]) != BIOSTablesVersion {
		return nil, 0, errors.New("no BIOS tables (magic or version)")
	}
	used := int(le.Uint16(tables[BIOSOffLogUsed:]))
	if used > BIOSLogEntries {
		return nil, 0, fmt.Errorf("BIOS log claims %d entries, it holds %d", used, BIOSLogEntries)
	}
	var out []BIOSLogEntry
	for i := range used {
		e := tables[BIOSOffLog+i*BIOSLogEntrySize:]
		out = append(out, BIOSLogEntry{
			Vector: e[0], AX: le.Uint16(e[2:]), Count: le.Uint16(e[4:]),
			BX: le.Uint16(e[6:]), CX: le.Uint16(e[8:]), DX: le.Uint16(e[10:]),
			IP: le.Uint16(e[12:]), CS: le.Uint16(e[14:]),
		})
	}
	return out, le.Uint16(tables[BIOSOffLogDropped:]), nil
}

// DecodeBIOSLog renders the BIOS log of a run for people, one line per
// unknown service: what was asked, how often, and from where. It returns
// nothing when no service was unknown, or when tables holds no BIOS tables.
func DecodeBIOSLog(tables []byte) []string {
	entries, dropped, err := ReadBIOSLog(tables)
	if err != nil {
		if len(tables) >= BIOSTablesSize && binary.LittleEndian.Uint32(tables) == BIOSTablesMagic {
			return []string{"bios: log unreadable: " + err.Error()}
		}
		return nil
	}
	var out []string
	for _, e := range entries {
		calls := "1 call"
		switch {
		case e.Count == 0xFFFF:
			calls = "65535 calls or more"
		case e.Count != 1:
			calls = fmt.Sprintf("%d calls", e.Count)
		}
		line := fmt.Sprintf("bios: unknown service int %02xh AX=%04xh (%s; first from %04x:%04x, BX=%04x CX=%04x DX=%04x)",
			e.Vector, e.AX, calls, e.CS, e.IP, e.BX, e.CX, e.DX)
		if name := biosServiceName(e.Vector, e.AX); name != "" {
			line += ": " + name
		}
		out = append(out, line)
	}
	if dropped > 0 {
		out = append(out, fmt.Sprintf("bios: %d more unknown calls not logged (the log holds %d services)", dropped, BIOSLogEntries))
	}
	return out
}

// biosServiceName names services that real-mode code commonly asks for
// and this BIOS does not offer, so that the log reads without a manual.
func biosServiceName(vector uint8, ax uint16) string {
	switch {
	case vector == 0x15 && ax == 0x5300:
		return "APM installation check"
	case vector == 0x15 && ax == 0xE980:
		return "Intel SpeedStep (IST) query"
	case vector == 0x15 && ax>>8 == 0xC2:
		return "PS/2 mouse"
	case vector == 0x15 && ax>>8 == 0x4F:
		return "keyboard intercept"
	case vector == 0x10 && ax == 0x1A00:
		return "VGA display combination"
	case vector == 0x10 && ax>>8 == 0x11:
		return "character generator (fonts)"
	case vector == 0x13 && ax>>8 == 0x15:
		return "get disk type"
	case vector == 0x13 && ax>>8 == 0x01:
		return "status of the last operation"
	case vector == 0x16 && ax>>8 == 0x05:
		return "store a keystroke"
	case vector == 0x1A && ax>>8 == 0xB1:
		return "PCI BIOS"
	}
	return ""
}
