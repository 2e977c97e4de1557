package devices

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// access is one call a recording device saw.
type access struct {
	dev  string
	out  bool
	port uint16
	size int
	v    uint32
}

// recorder is a PortDevice that logs every access and reads as a
// recognisable value (its tag in the top byte, the port below).
type recorder struct {
	name string
	tag  uint32
	log  *[]access
}

func (r recorder) In(port uint16, size int) uint32 {
	*r.log = append(*r.log, access{r.name, false, port, size, 0})
	return r.tag<<24 | uint32(port)
}

func (r recorder) Out(port uint16, size int, v uint32) {
	*r.log = append(*r.log, access{r.name, true, port, size, v})
}

// Accesses go to the device whose range holds the port, with the port
// itself (not an offset) and the size unchanged; the ends of each range
// are the cases an off-by-one breaks.
func TestBusDispatch(t *testing.T) {
	var log []access
	var b Bus
	// Registered out of order: the bus sorts.
	b.Register(0x3F8, 8, recorder{"com1", 1, &log})
	b.Register(0x80, 1, recorder{"post", 2, &log})
	b.Register(0x2F8, 8, recorder{"com2", 3, &log})
	b.Register(0x3F0, 8, recorder{"fdc", 4, &log}) // adjacent to com1

	for _, tc := range []struct {
		port uint16
		size int
		dev  string
		tag  uint32
	}{
		{0x80, 1, "post", 2},
		{0x2F8, 1, "com2", 3},
		{0x2FF, 2, "com2", 3},
		{0x3F0, 4, "fdc", 4},
		{0x3F7, 1, "fdc", 4}, // last port of fdc, first below com1
		{0x3F8, 1, "com1", 1},
		{0x3FF, 1, "com1", 1},
	} {
		log = nil
		got := b.In(tc.port, tc.size)
		if want := tc.tag<<24 | uint32(tc.port); got != want {
			t.Errorf("In(%#x) = %#x, want %#x", tc.port, got, want)
		}
		b.Out(tc.port, tc.size, 0xAB)
		want := []access{{tc.dev, false, tc.port, tc.size, 0}, {tc.dev, true, tc.port, tc.size, 0xAB}}
		if fmt.Sprint(log) != fmt.Sprint(want) {
			t.Errorf("port %#x: accesses %v, want %v", tc.port, log, want)
		}
	}
	if b.Unknown != 0 {
		t.Errorf("Unknown = %d after handled accesses only", b.Unknown)
	}

	// Just outside every range: nobody answers.
	for _, port := range []uint16{0x7F, 0x81, 0x2F7, 0x300, 0x3EF, 0x400, 0, 0xFFFF} {
		log = nil
		b.In(port, 1)
		b.Out(port, 1, 0)
		if len(log) != 0 {
			t.Errorf("port %#x reached %v", port, log)
		}
	}
}

// An empty ISA bus reads as all-ones whatever the width; each unknown port
// is logged once (a guest probing in a loop must not flood the log), while
// Unknown counts every access.
func TestBusUnknownPorts(t *testing.T) {
	var msgs []string
	b := Bus{Log: func(m string) { msgs = append(msgs, m) }}
	for _, tc := range []struct {
		size int
		want uint32
	}{{1, 0xFF}, {2, 0xFFFF}, {4, 0xFFFFFFFF}} {
		if got := b.In(0x100, tc.size); got != tc.want {
			t.Errorf("In(0x100, %d) = %#x, want %#x", tc.size, got, tc.want)
		}
	}
	b.Out(0x100, 1, 0x12)
	b.Out(0x2E0, 2, 0xBEEF)
	b.In(0x2E0, 1)
	b.Out(0x2E0, 1, 0)
	if b.Unknown != 7 {
		t.Errorf("Unknown = %d, want 7 (every access counts)", b.Unknown)
	}
	if len(msgs) != 2 {
		t.Fatalf("logged %q, want one line per port", msgs)
	}
	if !strings.Contains(msgs[0], "0x100") || !strings.Contains(msgs[0], "read") {
		t.Errorf("first message %q should name port 0x100 and the read", msgs[0])
	}
	if !strings.Contains(msgs[1], "0x2e0") || !strings.Contains(msgs[1], "0xbeef") {
		t.Errorf("second message %q should name port 0x2e0 and the value written", msgs[1])
	}
	// Without a Log the bus still counts and answers.
	var quiet Bus
	if got := quiet.In(0x1234, 2); got != 0xFFFF {
		t.Errorf("In without Log = %#x", got)
	}
	if quiet.Unknown != 1 {
		t.Errorf("Unknown = %d, want 1", quiet.Unknown)
	}
}

// A device at the very top of the port space: base+n wraps a 16-bit end.
func TestBusTopOfPortSpace(t *testing.T) {
	var log []access
	var b Bus
	b.Register(0xFFF8, 8, recorder{"top", 5, &log})
	for _, port := range []uint16{0xFFF8, 0xFFFF} {
		if got, want := b.In(port, 1), uint32(5<<24)|uint32(port); got != want {
			t.Errorf("In(%#x) = %#x, want %#x", port, got, want)
		}
	}
	if got := b.In(0xFFF7, 1); got != 0xFF {
		t.Errorf("In(0xfff7) = %#x, want 0xff", got)
	}
}

// UARTPorts turns a 2- or 4-byte access into byte accesses to consecutive
// registers, low byte first, as the ISA bus does for an 8-bit device.
func TestUARTPortsSplit(t *testing.T) {
	var out bytes.Buffer
	u := NewUART(&out, nil)
	var b Bus
	b.Register(PortCOM1, 8, UARTPorts{UART: u, Base: PortCOM1})

	// outw to base: THR <- 'A', IER <- 0x07.
	b.Out(PortCOM1, 2, 0x0741)
	if out.String() != "A" {
		t.Errorf("output = %q, want %q", out.String(), "A")
	}
	if got := b.In(PortCOM1+1, 1); got != 0x07 {
		t.Errorf("IER = %#x, want 0x07", got)
	}
	// outl to base+4: MCR <- 0x0B, LSR and MSR ignore writes, SCR <- 0x5A.
	b.Out(PortCOM1+4, 4, 0x5A_00_00_0B)
	if got := b.In(PortCOM1+7, 1); got != 0x5A {
		t.Errorf("SCR = %#x, want 0x5a", got)
	}
	// inl from base+4: MCR, LSR, MSR, SCR in that byte order.
	if got, want := b.In(PortCOM1+4, 4), uint32(0x5A_B0_60_0B); got != want {
		t.Errorf("inl(base+4) = %#08x, want %#08x", got, want)
	}
	// inw from base+2: IIR (THRE pending since IER enabled it) and LCR.
	if got := b.In(PortCOM1+2, 2); got != 0x0002 {
		t.Errorf("inw(base+2) = %#04x, want 0x0002", got)
	}
	// A byte access is just that register.
	if got := b.In(PortCOM1+5, 1); got != 0x60 {
		t.Errorf("LSR = %#x, want 0x60", got)
	}
}

// Func with nil halves behaves as an absent device; Ignore is one.
func TestFuncDefaults(t *testing.T) {
	var f Func
	for _, tc := range []struct {
		size int
		want uint32
	}{{1, 0xFF}, {2, 0xFFFF}, {4, 0xFFFFFFFF}} {
		if got := f.In(0x80, tc.size); got != tc.want {
			t.Errorf("Func{}.In(size %d) = %#x, want %#x", tc.size, got, tc.want)
		}
		if got := Ignore.In(0x80, tc.size); got != tc.want {
			t.Errorf("Ignore.In(size %d) = %#x, want %#x", tc.size, got, tc.want)
		}
	}
	f.Out(0x80, 1, 0x55)
	Ignore.Out(0x80, 4, 0x55)

	var got []uint32
	g := Func{
		InFunc:  func(port uint16, size int) uint32 { return uint32(port) + uint32(size) },
		OutFunc: func(port uint16, size int, v uint32) { got = append(got, uint32(port), uint32(size), v) },
	}
	if v := g.In(0x10, 2); v != 0x12 {
		t.Errorf("In = %#x, want 0x12", v)
	}
	g.Out(0x20, 4, 7)
	if fmt.Sprint(got) != "[32 4 7]" {
		t.Errorf("Out saw %v", got)
	}
}
