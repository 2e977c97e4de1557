package devices

import (
	"fmt"
	"sort"
)

// PortDevice answers port I/O. size is 1, 2 or 4 bytes.
type PortDevice interface {
	In(port uint16, size int) uint32
	Out(port uint16, size int, v uint32)
}

type portRange struct {
	base, end uint32 // [base, end); 32 bits so that a range can end at 0x10000
	dev       PortDevice
}

// Bus dispatches port I/O to devices. A port nobody handles reads as
// all-ones (as an empty ISA bus does) and is reported once through Log:
// a guest probing for hardware must never end the run.
type Bus struct {
	ranges  []portRange
	seen    map[uint16]bool
	Log     func(msg string)
	Unknown int // accesses to unhandled ports
}

// Register attaches dev to ports [base, base+n).
func (b *Bus) Register(base, n uint16, dev PortDevice) {
	b.ranges = append(b.ranges, portRange{uint32(base), uint32(base) + uint32(n), dev})
	sort.Slice(b.ranges, func(i, j int) bool { return b.ranges[i].base < b.ranges[j].base })
}

func (b *Bus) find(port uint16) PortDevice {
	i := sort.Search(len(b.ranges), func(i int) bool { return b.ranges[i].end > uint32(port) })
	if i < len(b.ranges) && b.ranges[i].base <= uint32(port) {
		return b.ranges[i].dev
	}
	return nil
}

// In reads size bytes from port.
func (b *Bus) In(port uint16, size int) uint32 {
	if d := b.find(port); d != nil {
		return d.In(port, size)
	}
	b.unknown(port, "read")
	return ones(size)
}

// Out writes size bytes of v to port.
func (b *Bus) Out(port uint16, size int, v uint32) {
	if d := b.find(port); d != nil {
		d.Out(port, size, v)
		return
	}
	b.unknown(port, fmt.Sprintf("write of %#x", v))
}

func (b *Bus) unknown(port uint16, what string) {
	b.Unknown++
	if b.seen == nil {
		b.seen = map[uint16]bool{}
	}
	if b.seen[port] {
		return
	}
	b.seen[port] = true
	if b.Log != nil {
		b.Log(fmt.Sprintf("unhandled port %#x (%s); further accesses to it are not logged", port, what))
	}
}

func ones(size int) uint32 {
	if size >= 4 {
		return 0xFFFFFFFF
	}
	return 1<<(8*size) - 1
}

// UARTPorts puts a UART on the bus at base (8 ports). Wider accesses are
// split into byte accesses, as the ISA bus does.
type UARTPorts struct {
	UART *UART
	Base uint16
}

func (p UARTPorts) In(port uint16, size int) uint32 {
	var v uint32
	for i := 0; i < size; i++ {
		v |= uint32(p.UART.ReadReg(port+uint16(i)-p.Base)) << (8 * i)
	}
	return v
}

func (p UARTPorts) Out(port uint16, size int, v uint32) {
	for i := 0; i < size; i++ {
		p.UART.WriteReg(port+uint16(i)-p.Base, byte(v>>(8*i)))
	}
}

// Func adapts a pair of functions to a PortDevice; nil In reads as
// all-ones, nil Out ignores writes.
type Func struct {
	InFunc  func(port uint16, size int) uint32
	OutFunc func(port uint16, size int, v uint32)
}

func (f Func) In(port uint16, size int) uint32 {
	if f.InFunc == nil {
		return ones(size)
	}
	return f.InFunc(port, size)
}

func (f Func) Out(port uint16, size int, v uint32) {
	if f.OutFunc != nil {
		f.OutFunc(port, size, v)
	}
}

// Ignore is a device that reads as all-ones and ignores writes, for ports a
// PC has but kvmboot does not model (POST code port 0x80).
var Ignore PortDevice = Func{}
