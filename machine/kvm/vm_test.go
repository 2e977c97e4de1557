package kvm

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"kvmboot/internal/hugemem"
	"kvmboot/loader/memmap"
)

const tMiB = 1 << 20

// backedRanges decides which guest pages get memory slots: every page with
// a bad byte must be left out (so that touching it exits), and no good page
// may be (or the guest takes a spurious bad-RAM exit).
func TestBackedRanges(t *testing.T) {
	const mem = 64 * tMiB
	type R struct{ start, end uint64 } // local: memmap.Range literals would need keys
	ranges := func(rs []R) []memmap.Range {
		var out []memmap.Range
		for _, r := range rs {
			out = append(out, memmap.Range{Start: r.start, End: r.end})
		}
		return out
	}
	for _, tc := range []struct {
		name string
		bad  []R
		want []R
	}{
		{"no bad RAM: RAM minus the 640K-1M hole", nil,
			[]R{{0, 0xA0000}, {0x100000, mem}}},
		{"bad bytes inside one page: the whole page goes",
			[]R{{0x1000100, 0x1000200}},
			[]R{{0, 0xA0000}, {0x100000, 0x1000000}, {0x1001000, mem}}},
		{"a range crossing a page boundary by one byte: two pages",
			[]R{{0x1000FFF, 0x1001001}},
			[]R{{0, 0xA0000}, {0x100000, 0x1000000}, {0x1002000, mem}}},
		{"page-aligned range: exactly its pages",
			[]R{{16 * tMiB, 32 * tMiB}},
			[]R{{0, 0xA0000}, {0x100000, 16 * tMiB}, {32 * tMiB, mem}}},
		{"bad at the very bottom",
			[]R{{0, 0x10}},
			[]R{{0x1000, 0xA0000}, {0x100000, mem}}},
		{"bad last byte of RAM",
			[]R{{mem - 1, mem}},
			[]R{{0, 0xA0000}, {0x100000, mem - 0x1000}}},
		{"bad beyond RAM changes nothing",
			[]R{{mem, mem + tMiB}},
			[]R{{0, 0xA0000}, {0x100000, mem}}},
		{"bad straddling the end of RAM",
			[]R{{mem - 0x1001, 2 * mem}},
			[]R{{0, 0xA0000}, {0x100000, mem - 0x2000}}},
		{"adjacent bad ranges in one page",
			[]R{{0x2000000, 0x2000800}, {0x2000800, 0x2001000}},
			[]R{{0, 0xA0000}, {0x100000, 0x2000000}, {0x2001000, mem}}},
		{"bad ranges in adjacent pages leave no empty piece between",
			[]R{{0x2000000, 0x2000010}, {0x2001FF0, 0x2002000}},
			[]R{{0, 0xA0000}, {0x100000, 0x2000000}, {0x2002000, mem}}},
		{"overlapping bad ranges, unsorted",
			[]R{{0x3400000, 0x3C00001}, {0x3000000, 0x3800000}},
			[]R{{0, 0xA0000}, {0x100000, 0x3000000}, {0x3C01000, mem}}},
		{"two separate holes",
			[]R{{0x200000, 0x201000}, {0x400000, 0x400004}},
			[]R{{0, 0xA0000}, {0x100000, 0x200000}, {0x201000, 0x400000}, {0x401000, mem}}},
		{"bad RAM across the 640K-1M hole",
			[]R{{0x9F800, 0x100800}},
			[]R{{0, 0x9F000}, {0x101000, mem}}},
		{"bad RAM only inside the hole changes nothing",
			[]R{{0xA0000, 0x100000}},
			[]R{{0, 0xA0000}, {0x100000, mem}}},
		{"bad RAM ending at 640K",
			[]R{{0x9FFFF, 0xA0000}},
			[]R{{0, 0x9F000}, {0x100000, mem}}},
		{"bad RAM starting at 1M",
			[]R{{0x100000, 0x100001}},
			[]R{{0, 0xA0000}, {0x101000, mem}}},
		{"everything bad",
			[]R{{0, mem}},
			nil},
	} {
		bad, want := ranges(tc.bad), ranges(tc.want)
		got := backedRanges(mem, bad)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s:\n got %v\nwant %v", tc.name, got, want)
		}
		checkBacked(t, tc.name, mem, bad, got)
	}
}

// checkBacked checks backedRanges' contract page by page: sorted,
// disjoint, non-empty, page-aligned pieces; a page is backed exactly when
// it is RAM outside the legacy hole and holds no bad byte.
func checkBacked(t *testing.T, name string, mem uint64, bad, got []memmap.Range) {
	t.Helper()
	for i, r := range got {
		if r.Start%pageSize != 0 || r.End%pageSize != 0 || r.Start >= r.End {
			t.Errorf("%s: piece %v is empty or not page-aligned", name, r)
		}
		if i > 0 && got[i-1].End > r.Start {
			t.Errorf("%s: pieces %v and %v out of order or overlapping", name, got[i-1], r)
		}
	}
	backed := func(page uint64) bool {
		for _, r := range got {
			if page >= r.Start && page < r.End {
				return true
			}
		}
		return false
	}
	for page := uint64(0); page < mem; page += pageSize {
		want := page < 0xA0000 || page >= 0x100000
		for _, b := range bad {
			if b.Overlaps(memmap.Range{Start: page, End: page + pageSize}) {
				want = false
			}
		}
		if backed(page) != want {
			t.Errorf("%s: page %#x backed=%v, want %v", name, page, backed(page), want)
			return
		}
	}
}

// Random bad-RAM sets against the page-by-page definition.
func TestBackedRangesRandom(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	const mem = 16 * tMiB
	for iter := 0; iter < 200; iter++ {
		var bad []memmap.Range
		for n := rng.Intn(6); n > 0; n-- {
			start := uint64(rng.Int63n(mem + tMiB))
			size := uint64(1 + rng.Int63n(int64([]uint64{16, 4096, 3 * tMiB}[rng.Intn(3)])))
			bad = append(bad, memmap.Range{Start: start, End: start + size})
		}
		got := backedRanges(mem, bad)
		checkBacked(t, fmt.Sprintf("iteration %d, bad %v", iter, bad), mem, bad, got)
		if t.Failed() {
			return
		}
	}
}

// lostInterrupts fires after three seconds of HLT exits without one
// injected interrupt, then counts again, and never for a guest whose
// interrupts arrive or that sleeps.
func TestLostInterrupts(t *testing.T) {
	for _, tc := range []struct {
		name              string
		halts, injections []uint64
		want              int // times it fires
	}{
		{"hlt loop", []uint64{0, 100, 5000, 9000, 20000, 30000, 40000}, []uint64{7, 7, 7, 7, 7, 7, 7}, 2},
		{"one second short", []uint64{0, 5000, 9000}, []uint64{7, 7, 7}, 0},
		{"ticking", []uint64{0, 250, 500, 750, 1000, 1250, 1500}, []uint64{0, 250, 500, 750, 1000, 1250, 1500}, 0},
		{"asleep", []uint64{3, 3, 3, 3, 3, 3, 3}, []uint64{0, 0, 0, 0, 0, 0, 0}, 0},
		{"a slow second breaks the run", []uint64{0, 1000, 2000, 2050, 3000, 4000}, []uint64{1, 1, 1, 1, 1, 1}, 0},
	} {
		var l lostInterrupts
		got := 0
		for i := range tc.halts {
			if l.sample(tc.halts[i], tc.injections[i]) {
				got++
			}
		}
		if got != tc.want {
			t.Errorf("%s: fired %d times, want %d", tc.name, got, tc.want)
		}
	}
}

// holeRanges is the hole between 640K and the firmware image, whole pages
// of declared bad RAM left out (to stay trapped).
func TestHoleRanges(t *testing.T) {
	if got, want := holeRanges(nil), []memmap.Range{{Start: 0xA0000, End: 0xF0000}}; !slices.Equal(got, want) {
		t.Errorf("no bad RAM: %v, want %v", got, want)
	}
	got := holeRanges([]memmap.Range{{Start: 0xB8010, End: 0xB8020}, {Start: 16 << 20, End: 32 << 20}})
	if want := []memmap.Range{{Start: 0xA0000, End: 0xB8000}, {Start: 0xB9000, End: 0xF0000}}; !slices.Equal(got, want) {
		t.Errorf("bad RAM in the hole: %v, want %v", got, want)
	}
}

// TestGuestRAMOnHugePages: guest RAM starts on a 2 MiB boundary of the host
// (guest-physical 0 and the host agree modulo 2 MiB, so KVM can map huge
// pages), has the size asked for, and lies inside what is unmapped.
func TestGuestRAMOnHugePages(t *testing.T) {
	for _, size := range []uint64{1 * tMiB, 16 * tMiB, 256*tMiB + 4096} {
		mapping, ram, err := mapGuestRAM(size)
		if err != nil {
			t.Fatal(err)
		}
		start, end := hostAddr(ram), hostAddr(mapping)+uint64(len(mapping))
		if start%hugemem.PageSize != 0 || uint64(len(ram)) != size || uint64(cap(ram)) != size || start+size > end {
			t.Errorf("%s: RAM at %#x+%#x in a mapping to %#x", memmap.FormatSize(size), start, len(ram), end)
		}
		ram[0], ram[size-1] = 1, 2
		if err := unix.Munmap(mapping); err != nil {
			t.Error(err)
		}
	}
}

// TestPCGSIRouting: the table KVM_SET_GSI_ROUTING gets is a PC's, in the
// kernel's layout: every ISA IRQ but the cascade to its 8259 pin and to the
// I/O APIC pin of its number, IRQ 0 to pin 2, GSIs 16-23 to the I/O APIC.
func TestPCGSIRouting(t *testing.T) {
	b := pcGSIRouting()
	le := binary.LittleEndian
	n := int(le.Uint32(b))
	if len(b) != irqRoutingHeaderSize+n*irqRoutingEntrySize || le.Uint32(b[4:]) != 0 {
		t.Fatalf("%d bytes for %d entries, flags %#x", len(b), n, le.Uint32(b[4:]))
	}
	routes := map[uint32][]string{}
	for i := range n {
		e := b[irqRoutingHeaderSize+i*irqRoutingEntrySize:]
		if le.Uint32(e[4:]) != irqRoutingIRQChip || le.Uint32(e[8:]) != 0 || !bytes.Equal(e[24:irqRoutingEntrySize], make([]byte, 24)) {
			t.Errorf("entry %d: % x", i, e[:irqRoutingEntrySize])
		}
		chip := map[uint32]string{irqchipPICMaster: "pic0", irqchipPICSlave: "pic1", irqchipIOAPIC: "ioapic"}[le.Uint32(e[16:])]
		routes[le.Uint32(e)] = append(routes[le.Uint32(e)], fmt.Sprintf("%s:%d", chip, le.Uint32(e[20:])))
	}
	for gsi, want := range map[uint32]string{
		0: "pic0:0 ioapic:2", 1: "pic0:1 ioapic:1", 2: "", 4: "pic0:4 ioapic:4",
		8: "pic1:0 ioapic:8", 9: "pic1:1 ioapic:9", 15: "pic1:7 ioapic:15", 16: "ioapic:16", 23: "ioapic:23",
	} {
		if got := strings.Join(routes[gsi], " "); got != want {
			t.Errorf("GSI %d goes to %q, want %q", gsi, got, want)
		}
	}
	if len(routes) != ioapicPins-1 {
		t.Errorf("%d GSIs routed, want %d", len(routes), ioapicPins-1)
	}
}
