package devices

import (
	"fmt"
	"testing"
	"time"
)

// sysBus is a System on a bus, recording what it asked of the machine.
type sysBus struct {
	bus    Bus
	sys    *System
	exits  []uint32
	resets []string
}

func newSysBus(memSize uint64, now time.Time) *sysBus {
	s := &sysBus{}
	s.sys = &System{
		Exit:    func(v uint32) { s.exits = append(s.exits, v) },
		Reset:   func(how string) { s.resets = append(s.resets, how) },
		MemSize: memSize,
		Now:     func() time.Time { return now },
	}
	s.sys.Attach(&s.bus)
	return s
}

// Any write to the debug-exit ports ends the run with the value as
// written, whatever the width: kvm-unit-tests use outl, others outb.
func TestSystemDebugExit(t *testing.T) {
	for _, tc := range []struct {
		port uint16
		size int
		v    uint32
	}{
		{0xF4, 1, 0},
		{0xF4, 1, 0x05},
		{0xF4, 2, 0x1234},
		{0xF4, 4, 0xDEADBEEF},
		{0xF5, 1, 0x01}, // iosize=4: the whole window is the device
		{0xF7, 1, 0x7F},
	} {
		s := newSysBus(64<<20, time.Time{})
		s.bus.Out(tc.port, tc.size, tc.v)
		if fmt.Sprint(s.exits) != fmt.Sprint([]uint32{tc.v}) {
			t.Errorf("out%d %#x <- %#x: Exit calls %v, want [%d]", tc.size, tc.port, tc.v, s.exits, tc.v)
		}
		if len(s.resets) != 0 || s.bus.Unknown != 0 {
			t.Errorf("out %#x: resets %v, unknown %d", tc.port, s.resets, s.bus.Unknown)
		}
	}
	s := newSysBus(64<<20, time.Time{})
	s.bus.Out(0xF8, 1, 1)
	if len(s.exits) != 0 {
		t.Errorf("port 0xf8 is not debug-exit, but Exit was called")
	}
}

// The ways a PC resets: each must reach Reset (a guest that reboots ends
// the run), and the near misses must not.
func TestSystemReset(t *testing.T) {
	for _, tc := range []struct {
		name  string
		port  uint16
		size  int
		v     uint32
		reset bool
	}{
		{"keyboard controller pulse", 0x64, 1, 0xFE, true},
		{"other i8042 command", 0x64, 1, 0xD1, false},
		{"i8042 0xfe in a word's high byte", 0x64, 2, 0xFE00, false},
		{"cf9 hard reset (Linux writes 0x02 then 0x06)", 0xCF9, 1, 0x06, true},
		{"cf9 full reset", 0xCF9, 1, 0x0E, true},
		{"cf9 system reset bit only, no reset", 0xCF9, 1, 0x02, false},
		{"cf9 as a word is not the reset register", 0xCF9, 2, 0x06, false},
		{"0x92 fast reset", 0x92, 1, 0x01, true},
		{"0x92 fast reset with A20", 0x92, 1, 0x03, true},
		{"0x92 A20 only", 0x92, 1, 0x02, false},
	} {
		s := newSysBus(64<<20, time.Time{})
		s.bus.Out(tc.port, tc.size, tc.v)
		if got := len(s.resets) == 1; got != tc.reset || len(s.resets) > 1 {
			t.Errorf("%s: Reset calls %q, want reset=%v", tc.name, s.resets, tc.reset)
		}
		if len(s.exits) != 0 {
			t.Errorf("%s: Exit called", tc.name)
		}
	}
	// i8042 status reads 0 (buffers empty): code waiting for the input
	// buffer before it sends 0xFE does not spin.
	s := newSysBus(64<<20, time.Time{})
	if got := s.bus.In(0x64, 1); got != 0 {
		t.Errorf("i8042 status = %#x, want 0", got)
	}
	if got := s.bus.In(0xCF9, 1); got != 0 {
		t.Errorf("reset control register = %#x, want 0", got)
	}
}

// Fast A20: bit 1 of port 0x92 reads back what was written; bit 0 always
// reads 0, so the usual read-modify-write "in; or 2; out" enabling A20
// never resets by accident.
func TestSystemA20(t *testing.T) {
	s := newSysBus(64<<20, time.Time{})
	if s.sys.A20() || s.bus.In(0x92, 1) != 0 {
		t.Fatalf("A20 on at reset")
	}
	v := s.bus.In(0x92, 1)
	s.bus.Out(0x92, 1, v|0x02)
	if !s.sys.A20() {
		t.Errorf("A20() false after enabling")
	}
	if got := s.bus.In(0x92, 1); got != 0x02 {
		t.Errorf("port 0x92 = %#x, want 0x02", got)
	}
	v = s.bus.In(0x92, 1)
	s.bus.Out(0x92, 1, v|0x02)
	if len(s.resets) != 0 {
		t.Errorf("read-modify-write of port 0x92 reset the machine: %q", s.resets)
	}
	s.bus.Out(0x92, 1, 0x00)
	if s.sys.A20() || s.bus.In(0x92, 1) != 0 {
		t.Errorf("A20 still on after clearing bit 1")
	}
}

// PCI configuration mechanism #1 with no devices: the address latch at
// 0xCF8 holds a dword written as a dword, and data reads are all-ones
// ("no function"), which is how Linux's pci_direct_probe and device scan
// conclude there is nothing.
func TestSystemPCI(t *testing.T) {
	s := newSysBus(64<<20, time.Time{})
	s.bus.Out(0xCF8, 4, 0x80000000)
	if got := s.bus.In(0xCF8, 4); got != 0x80000000 {
		t.Errorf("0xcf8 = %#x, want 0x80000000", got)
	}
	s.bus.Out(0xCF8, 4, 0x8000F840)
	if got := s.bus.In(0xCF8, 4); got != 0x8000F840 {
		t.Errorf("0xcf8 = %#x, want 0x8000f840", got)
	}
	// A byte write to 0xcf8 is not a latch write.
	s.bus.Out(0xCF8, 1, 0x00)
	if got := s.bus.In(0xCF8, 4); got != 0x8000F840 {
		t.Errorf("0xcf8 after a byte write = %#x, want 0x8000f840", got)
	}
	for _, tc := range []struct {
		port uint16
		size int
		want uint32
	}{
		{0xCFC, 4, 0xFFFFFFFF},
		{0xCFC, 2, 0xFFFF},
		{0xCFE, 2, 0xFFFF},
		{0xCFF, 1, 0xFF},
	} {
		if got := s.bus.In(tc.port, tc.size); got != tc.want {
			t.Errorf("in%d %#x = %#x, want %#x", tc.size, tc.port, got, tc.want)
		}
	}
	s.bus.Out(0xCFC, 4, 0x12345678) // ignored
	if len(s.resets) != 0 || len(s.exits) != 0 || s.bus.Unknown != 0 {
		t.Errorf("PCI accesses: resets %v, exits %v, unknown %d", s.resets, s.exits, s.bus.Unknown)
	}
	// The POST port swallows writes silently, as real boards do.
	s.bus.Out(0x80, 1, 0x55)
	if s.bus.Unknown != 0 {
		t.Errorf("POST port write counted as unknown")
	}
}

// cmosRead selects register i (with the NMI-mask bit set, as Linux's
// CMOS_READ does not but some BIOS code does) and reads it.
func cmosRead(b *Bus, i byte) byte {
	b.Out(0x70, 1, uint32(i)|0x80)
	return byte(b.In(0x71, 1))
}

// The RTC in BCD, 24-hour mode, from a fixed clock: Linux's
// mach_get_cmos_time reads these registers at boot and a wrong encoding
// gives a wrong date (or a hang waiting for UIP to clear).
func TestSystemCMOSTime(t *testing.T) {
	// Thursday 29 February 2024, 13:45:07 UTC, given in UTC+2: the RTC
	// keeps UTC.
	now := time.Date(2024, 2, 29, 15, 45, 7, 0, time.FixedZone("EET", 2*3600))
	s := newSysBus(64<<20, now)
	for _, tc := range []struct {
		reg  byte
		want byte
		what string
	}{
		{0x00, 0x07, "seconds"},
		{0x02, 0x45, "minutes"},
		{0x04, 0x13, "hours (24-hour, UTC)"},
		{0x06, 0x05, "day of week (Sunday = 1)"},
		{0x07, 0x29, "day of month"},
		{0x08, 0x02, "month"},
		{0x09, 0x24, "year"},
		{0x32, 0x20, "century"},
		{0x0A, 0x26, "status A: 32.768 kHz, 1024 Hz, UIP clear"},
		{0x0B, 0x02, "status B: 24-hour, BCD"},
		{0x0D, 0x80, "status D: battery good"},
		{0x0C, 0x00, "status C: no interrupt flags"},
		{0x01, 0x00, "alarm seconds (unmodelled)"},
	} {
		if got := cmosRead(&s.bus, tc.reg); got != tc.want {
			t.Errorf("CMOS %#02x (%s) = %#02x, want %#02x", tc.reg, tc.what, got, tc.want)
		}
	}
	// Index port reads back the index without the NMI bit.
	s.bus.Out(0x70, 1, 0x8B)
	if got := s.bus.In(0x70, 1); got != 0x0B {
		t.Errorf("CMOS index = %#x, want 0x0b", got)
	}
	// Sunday 31 December 2023, 23:59:59: the edges of each field.
	s = newSysBus(0, time.Date(2023, 12, 31, 23, 59, 59, 0, time.UTC))
	for reg, want := range map[byte]byte{0x00: 0x59, 0x02: 0x59, 0x04: 0x23, 0x06: 0x01, 0x07: 0x31, 0x08: 0x12, 0x09: 0x23} {
		if got := cmosRead(&s.bus, reg); got != want {
			t.Errorf("CMOS %#02x at the end of 2023 = %#02x, want %#02x", reg, got, want)
		}
	}
	// Without Now the wall clock is used: only check it is valid BCD.
	sys := &System{}
	var b Bus
	sys.Attach(&b)
	for _, reg := range []byte{0x00, 0x02, 0x04, 0x07, 0x08, 0x09} {
		v := cmosRead(&b, reg)
		if v&0x0F > 9 || v>>4 > 9 {
			t.Errorf("CMOS %#02x from the wall clock = %#02x, not BCD", reg, v)
		}
	}
}

// Memory sizes in the CMOS as a BIOS stores them (and QEMU's pc_cmos_init):
// base memory 640 KiB; extended memory above 1 MiB in KiB, capped at
// 0xFFFF; memory above 16 MiB in 64 KiB blocks.
func TestSystemCMOSMemory(t *testing.T) {
	for _, tc := range []struct {
		mem  uint64
		want map[byte]byte
	}{
		// 256 MiB: extended 261120 KiB, capped at 0xFFFF; above 16 MiB,
		// 240 MiB / 64 KiB = 3840 = 0x0F00.
		{256 << 20, map[byte]byte{0x15: 0x80, 0x16: 0x02, 0x17: 0xFF, 0x18: 0xFF, 0x30: 0xFF, 0x31: 0xFF, 0x34: 0x00, 0x35: 0x0F}},
		// 8 MiB: extended 7168 KiB = 0x1C00; nothing above 16 MiB.
		{8 << 20, map[byte]byte{0x15: 0x80, 0x16: 0x02, 0x17: 0x00, 0x18: 0x1C, 0x30: 0x00, 0x31: 0x1C, 0x34: 0x00, 0x35: 0x00}},
		// Exactly 16 MiB: 15 MiB extended, nothing above.
		{16 << 20, map[byte]byte{0x17: 0x00, 0x18: 0x3C, 0x34: 0x00, 0x35: 0x00}},
		// 64 MiB + 1 MiB: extended 64 MiB = 0x10000 KiB, one past the cap.
		{65 << 20, map[byte]byte{0x17: 0xFF, 0x18: 0xFF, 0x34: 0x10, 0x35: 0x03}},
		// 1 MiB or less: no extended memory.
		{1 << 20, map[byte]byte{0x17: 0x00, 0x18: 0x00, 0x34: 0x00, 0x35: 0x00}},
	} {
		s := newSysBus(tc.mem, time.Unix(0, 0))
		for reg, want := range tc.want {
			if got := cmosRead(&s.bus, reg); got != want {
				t.Errorf("%d MiB: CMOS %#02x = %#02x, want %#02x", tc.mem>>20, reg, got, want)
			}
		}
	}
}
