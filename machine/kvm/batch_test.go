package kvm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"testing"

	"kvmboot/machine/devices"
)

type portWrite struct {
	port uint16
	size int
	v    uint32
}

// fill puts writes into ring from index at on, as KVM does, and moves last.
func fill(ring []byte, at uint32, writes ...portWrite) {
	for _, w := range writes {
		e := ring[ringEntries+int(at)*ringEntrySize:][:ringEntrySize]
		binary.LittleEndian.PutUint64(e, uint64(w.port))
		binary.LittleEndian.PutUint32(e[ringEntryLen:], uint32(w.size))
		binary.LittleEndian.PutUint32(e[ringEntryLen+4:], 1) // pio
		binary.LittleEndian.PutUint32(e[ringEntryData:], w.v)
		at = (at + 1) % ringMax
	}
	binary.LittleEndian.PutUint32(ring[ringLast:], at)
}

// take hands queued writes over in the guest's order, wrapping around the
// ring's end, and gives each entry back to KVM (first).
func TestPortBatchTake(t *testing.T) {
	b := &portBatch{ring: make([]byte, pageSize)}
	var got []portWrite
	out := func(port uint16, size int, v uint32) { got = append(got, portWrite{port, size, v}) }

	b.take(out)
	if len(got) != 0 {
		t.Fatalf("an empty ring gave %v", got)
	}
	start := uint32(ringMax - 2)
	binary.LittleEndian.PutUint32(b.ring[ringFirst:], start)
	want := []portWrite{{0x3f8, 1, 'a'}, {0x3f8, 1, 'b'}, {0x2f8, 1, 0xff}, {0x3f8, 1, 'c'}}
	fill(b.ring, start, want...)
	b.take(out)
	if !slices.Equal(got, want) {
		t.Errorf("took %v, want %v", got, want)
	}
	if first, last := binary.LittleEndian.Uint32(b.ring[ringFirst:]), binary.LittleEndian.Uint32(b.ring[ringLast:]); first != 2 || last != 2 {
		t.Errorf("first %d, last %d after the wrap; want 2, 2", first, last)
	}

	// An index beyond the ring is not KVM's: nothing is read.
	got = nil
	binary.LittleEndian.PutUint32(b.ring[ringLast:], ringMax)
	b.take(out)
	if len(got) != 0 {
		t.Errorf("a bad index gave %v", got)
	}
}

// sync registers a UART's data port exactly while its writes may wait, and
// stops changing anything after KVM refuses once.
func TestPortBatchSync(t *testing.T) {
	var calls []string
	var refuse bool
	b := &portBatch{register: func(port uint16, on bool) error {
		calls = append(calls, fmt.Sprintf("%#x %v", port, on))
		if refuse {
			return errors.New("refused")
		}
		return nil
	}}
	var ports devices.Bus
	u := devices.NewUART(nil, nil)
	ports.Register(devices.PortCOM1, 8, devices.UARTPorts{UART: u, Base: devices.PortCOM1})
	b.add(u, devices.PortCOM1)
	step := func(what string, want ...string) {
		t.Helper()
		calls = nil
		if err := b.sync(); (err != nil) != refuse {
			t.Errorf("%s: %v", what, err)
		}
		if !slices.Equal(calls, want) {
			t.Errorf("%s: registered %q, want %q", what, calls, want)
		}
	}
	step("reset", "0x3f8 true")
	step("no change")
	ports.Out(devices.PortCOM1+1, 1, 0x05) // IER: receive interrupts only
	step("IER without THRE")
	ports.Out(devices.PortCOM1+1, 1, 0x02) // THRE interrupt: a write re-arms it
	step("THRE interrupt on", "0x3f8 false")
	ports.Out(devices.PortCOM1+1, 1, 0)
	step("THRE interrupt off", "0x3f8 true")
	ports.Out(devices.PortCOM1+4, 1, 0x10) // loopback: a write is received
	step("loopback", "0x3f8 false")
	ports.Out(devices.PortCOM1+4, 1, 0)
	refuse = true
	step("refused", "0x3f8 true")
	refuse = false
	ports.Out(devices.PortCOM1+1, 1, 0x02)
	step("after a refusal")
}
