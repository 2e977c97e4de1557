package devices

import "time"

// Well-known ports.
const (
	PortDebugExit = 0xF4
	PortCOM1      = 0x3F8
	PortCOM2      = 0x2F8
	PortKBCtl     = 0x64 // i8042 status/command
	PortSysCtlA   = 0x92 // fast A20 and reset
	PortPOST      = 0x80
	PortPCIAddr   = 0xCF8
	PortResetCtl  = 0xCF9
	PortPCIData   = 0xCFC
	PortCMOSIndex = 0x70
	PortCMOSData  = 0x71
)

// System models the board's glue ports: the debug-exit port, the ways a PC
// resets, the fast-A20 gate, PCI configuration with no devices, and a
// battery-backed clock. Exit and Reset are called when the guest asks.
type System struct {
	Exit  func(v uint32)
	Reset func(how string)
	// MemSize feeds the CMOS memory-size bytes that old code reads.
	MemSize uint64
	// Now is the wall clock the RTC reports (time.Now when nil).
	Now func() time.Time

	a20     bool
	pciAddr uint32
	cmosIdx byte
}

// Attach registers the system ports on bus.
func (s *System) Attach(b *Bus) {
	b.Register(PortDebugExit, 4, Func{OutFunc: func(_ uint16, _ int, v uint32) { s.Exit(v) }})
	b.Register(PortKBCtl, 1, Func{
		// Status 0: output and input buffers empty, so code that waits
		// for the input buffer before sending 0xFE does not spin.
		InFunc: func(uint16, int) uint32 { return 0 },
		OutFunc: func(_ uint16, _ int, v uint32) {
			if byte(v) == 0xFE {
				s.Reset("keyboard controller pulse (port 0x64 <- 0xfe)")
			}
		},
	})
	b.Register(PortSysCtlA, 1, Func{
		InFunc: func(uint16, int) uint32 {
			if s.a20 {
				return 0x02
			}
			return 0
		},
		OutFunc: func(_ uint16, _ int, v uint32) {
			s.a20 = v&0x02 != 0
			if v&0x01 != 0 {
				s.Reset("fast reset (port 0x92 bit 0)")
			}
		},
	})
	b.Register(PortPOST, 1, Ignore)
	b.Register(PortPCIAddr, 4, Func{
		InFunc: func(port uint16, size int) uint32 {
			if port == PortResetCtl && size == 1 {
				return 0
			}
			return s.pciAddr
		},
		OutFunc: func(port uint16, size int, v uint32) {
			switch {
			case port == PortPCIAddr && size == 4:
				s.pciAddr = v
			case port == PortResetCtl && size == 1 && v&0x04 != 0:
				s.Reset("reset control register (port 0xcf9)")
			}
		},
	})
	// No device answers a configuration read: all-ones, "no function here".
	b.Register(PortPCIData, 4, Ignore)
	b.Register(PortCMOSIndex, 2, Func{
		InFunc: func(port uint16, _ int) uint32 {
			if port == PortCMOSData {
				return uint32(s.cmos(s.cmosIdx))
			}
			return uint32(s.cmosIdx)
		},
		OutFunc: func(port uint16, _ int, v uint32) {
			if port == PortCMOSIndex {
				s.cmosIdx = byte(v) & 0x7F // bit 7 is the NMI mask
			}
		},
	})
}

// A20 reports the fast-A20 gate state.
func (s *System) A20() bool { return s.a20 }

func bcd(v int) byte { return byte(v/10<<4 | v%10) }

// cmos answers an RTC/CMOS register: time in BCD, 24-hour mode, no update
// in progress, valid battery, and the memory sizes a BIOS would store.
func (s *System) cmos(i byte) byte {
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	t := now().UTC()
	kb := s.MemSize >> 10
	ext := uint64(0) // KiB above 1 MiB, capped at 63 MiB (registers 0x17/0x30)
	if kb > 1024 {
		ext = min(kb-1024, 0xFFFF)
	}
	high := uint64(0) // 64 KiB blocks above 16 MiB (registers 0x34/0x35)
	if s.MemSize > 16<<20 {
		high = min((s.MemSize-16<<20)>>16, 0xFFFF)
	}
	switch i {
	case 0x00:
		return bcd(t.Second())
	case 0x02:
		return bcd(t.Minute())
	case 0x04:
		return bcd(t.Hour())
	case 0x06:
		return bcd(int(t.Weekday()) + 1)
	case 0x07:
		return bcd(t.Day())
	case 0x08:
		return bcd(int(t.Month()))
	case 0x09:
		return bcd(t.Year() % 100)
	case 0x32:
		return bcd(t.Year() / 100)
	case 0x0A:
		return 0x26 // 32.768 kHz base, 1024 Hz rate, no update in progress
	case 0x0B:
		return 0x02 // 24-hour, BCD
	case 0x0D:
		return 0x80 // battery good
	case 0x15:
		return byte(640 & 0xFF)
	case 0x16:
		return byte(640 >> 8)
	case 0x17, 0x30:
		return byte(ext)
	case 0x18, 0x31:
		return byte(ext >> 8)
	case 0x34:
		return byte(high)
	case 0x35:
		return byte(high >> 8)
	}
	return 0
}
