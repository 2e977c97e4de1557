package machine

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"strings"
	"testing"

	"kvmboot/loader"
	"kvmboot/realmode"
)

// Every host access to guest memory is bounds-checked with guest-chosen
// addresses and lengths: the cases are the edges and the overflows.
func TestGuestMemoryBounds(t *testing.T) {
	const size = 0x10000
	m := NewGuestMemory(make([]byte, size))
	if m.Size() != size {
		t.Fatalf("Size() = %#x", m.Size())
	}
	for _, tc := range []struct {
		name    string
		addr, n uint64
		ok      bool
	}{
		{"start", 0, 16, true},
		{"whole", 0, size, true},
		{"exactly at the end", size - 4, 4, true},
		{"empty at the end", size, 0, true},
		{"one past the end", size - 4, 5, false},
		{"addr at the end", size, 1, false},
		{"addr beyond the end", size + 1, 0, false},
		{"addr far beyond", 1 << 40, 1, false},
		{"n overflows addr+n", 8, math.MaxUint64 - 4, false},
		{"n is all ones", 0, math.MaxUint64, false},
		{"addr is all ones", math.MaxUint64, 1, false},
	} {
		s, err := m.Slice(tc.addr, tc.n)
		if (err == nil) != tc.ok {
			t.Errorf("%s: Slice(%#x, %#x) err = %v, want ok=%v", tc.name, tc.addr, tc.n, err, tc.ok)
			continue
		}
		if !tc.ok {
			if !errors.Is(err, ErrOutsideRAM) {
				t.Errorf("%s: error %q", tc.name, err)
			}
			continue
		}
		if uint64(len(s)) != tc.n || uint64(cap(s)) != tc.n {
			t.Errorf("%s: len %d cap %d, want both %d", tc.name, len(s), cap(s), tc.n)
		}
		// Read and Write agree with Slice on the same bounds.
		if tc.n <= 16 {
			p := make([]byte, tc.n)
			if err := m.Read(tc.addr, p); err != nil {
				t.Errorf("%s: Read: %v", tc.name, err)
			}
			if err := m.Write(tc.addr, p); err != nil {
				t.Errorf("%s: Write: %v", tc.name, err)
			}
		}
	}
	// Read and Write refuse the same bad ranges, touching nothing.
	buf := []byte{1, 2, 3, 4, 5}
	if err := m.Write(size-4, buf); err == nil {
		t.Errorf("Write across the end succeeded")
	}
	if err := m.Read(size-4, buf); err == nil {
		t.Errorf("Read across the end succeeded")
	}
	if !bytes.Equal(buf, []byte{1, 2, 3, 4, 5}) {
		t.Errorf("a refused Read changed the buffer: %v", buf)
	}
	if s, _ := m.Slice(size-8, 8); !bytes.Equal(s, make([]byte, 8)) {
		t.Errorf("a refused Write changed guest memory: %x", s)
	}
}

// Slice aliases guest memory, and its capacity stops at its end, so that
// an append by a caller cannot write past the range it asked for.
func TestGuestMemoryAliasing(t *testing.T) {
	ram := make([]byte, 64)
	m := NewGuestMemory(ram)
	if err := m.Write(8, []byte("abcd")); err != nil {
		t.Fatal(err)
	}
	if string(ram[8:12]) != "abcd" {
		t.Errorf("Write did not reach the mapping: %q", ram[8:12])
	}
	s, _ := m.Slice(8, 4)
	s[0] = 'X'
	_ = append(s, 'Z')
	if ram[8] != 'X' || ram[12] != 0 {
		t.Errorf("ram = %q: Slice must alias, and append must not reach past it", ram[8:13])
	}
	p := make([]byte, 4)
	if err := m.Read(8, p); err != nil || string(p) != "Xbcd" {
		t.Errorf("Read = %q, %v", p, err)
	}
}

// Load writes each placement's bytes and zeros the rest of its size
// (bss, and whatever a previous boot left in that memory), and refuses a
// placement outside RAM, naming it.
func TestGuestMemoryLoad(t *testing.T) {
	ram := bytes.Repeat([]byte{0xCC}, 0x3000)
	m := NewGuestMemory(ram)
	plan := &loader.Plan{Placements: []loader.Placement{
		{What: "kernel", Start: 0x1000, Data: []byte("code"), Size: 0x100},
		{What: "bss only", Start: 0x2000, Size: 0x10},
		{What: "empty", Start: 0x3000, Size: 0}, // at the very end: fine
	}}
	if err := m.Load(plan); err != nil {
		t.Fatal(err)
	}
	if string(ram[0x1000:0x1004]) != "code" {
		t.Errorf("kernel bytes = %q", ram[0x1000:0x1004])
	}
	if !bytes.Equal(ram[0x1004:0x1100], make([]byte, 0xFC)) {
		t.Errorf("kernel bss not zeroed")
	}
	if !bytes.Equal(ram[0x2000:0x2010], make([]byte, 0x10)) {
		t.Errorf("bss-only placement not zeroed")
	}
	// Outside the placements nothing changed.
	for _, at := range []int{0xFFF, 0x1100, 0x1FFF, 0x2010, 0x2FFF} {
		if ram[at] != 0xCC {
			t.Errorf("byte %#x = %#x, want untouched 0xcc", at, ram[at])
		}
	}

	for _, pl := range []loader.Placement{
		{What: "module", Start: 0x2FF0, Data: []byte("x"), Size: 0x20}, // bss runs past the end
		{What: "initrd", Start: 0x4000, Size: 1},
		{What: "huge", Start: 0x1000, Size: math.MaxUint64},
	} {
		err := m.Load(&loader.Plan{Placements: []loader.Placement{pl}})
		// Naming the piece first is the message's contract.
		if !errors.Is(err, ErrOutsideRAM) || !strings.HasPrefix(err.Error(), pl.What+":") {
			t.Errorf("Load(%s at %#x+%#x) err = %v, want an error naming it", pl.What, pl.Start, pl.Size, err)
		}
	}
}

// StubState reads the status words the stub leaves in the parameter
// block, and a memory too small to hold one gives the zero state.
func TestGuestMemoryStubState(t *testing.T) {
	ram := make([]byte, 1<<20)
	m := NewGuestMemory(ram)
	le := binary.LittleEndian
	le.PutUint32(ram[realmode.ParamsAddr+realmode.OffStatus:], realmode.StatusBadSum)
	le.PutUint32(ram[realmode.ParamsAddr+realmode.OffDetail:], 3)
	le.PutUint32(ram[realmode.ParamsAddr+realmode.OffGot:], 0xCAFEF00D)
	want := realmode.StubState{Status: realmode.StatusBadSum, Detail: 3, Got: 0xCAFEF00D}
	if got := m.StubState(); got != want {
		t.Errorf("StubState = %+v, want %+v", got, want)
	}
	small := NewGuestMemory(make([]byte, realmode.ParamsAddr+8))
	if got := small.StubState(); got != (realmode.StubState{}) {
		t.Errorf("StubState of a tiny memory = %+v", got)
	}
}
