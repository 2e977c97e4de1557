// Package memmap is guest-physical memory as kvmboot plans it: half-open
// address ranges, a PC's memory map (RAM, reserved, ACPI and bad regions,
// typed as E820 entries), and the syntaxes users write sizes, ranges and
// bad RAM in (START-END, Linux memmap=, GRUB/memtest86+ badram=, GRUB
// cutmem). It imports nothing of kvmboot's, so that what needs only
// ranges (machine/faults) does not depend on the loader.
package memmap

import (
	"fmt"
	"slices"
	"sort"
)

// Range is the half-open address interval [Start, End). End is exclusive so
// that adjacent ranges share a boundary value and sizes are End-Start; as a
// consequence the last byte of the 64-bit space cannot be described, which
// no guest needs.
type Range struct{ Start, End uint64 }

// Size is the number of bytes in r, 0 for an empty or inverted range.
func (r Range) Size() uint64 {
	if r.End <= r.Start {
		return 0
	}
	return r.End - r.Start
}

// Empty reports whether r holds no bytes.
func (r Range) Empty() bool { return r.End <= r.Start }

// Overlaps reports whether r and o share at least one byte.
func (r Range) Overlaps(o Range) bool {
	return !r.Empty() && !o.Empty() && r.Start < o.End && o.Start < r.End
}

// Contains reports whether every byte of o is in r. An empty o has no bytes
// and so is contained in every range.
func (r Range) Contains(o Range) bool {
	return o.Empty() || r.Start <= o.Start && o.End <= r.End
}

// Intersect returns the bytes r and o share (empty if none).
func (r Range) Intersect(o Range) Range {
	return Range{max(r.Start, o.Start), min(r.End, o.End)}
}

// String renders r as "0x01000000-0x02000000": at least eight hex digits
// so that columns of 32-bit addresses line up, END exclusive as in ParseRange.
func (r Range) String() string {
	return fmt.Sprintf("0x%08x-0x%08x", r.Start, r.End)
}

// Kind is what a region of guest-physical memory is. The values are the
// E820 types, so a Kind goes into a Linux zero page or a Multiboot memory
// map unchanged.
type Kind uint8

const (
	KindRAM      Kind = 1 // usable RAM
	KindReserved Kind = 2 // firmware, ROM, holes: never hand out
	KindACPI     Kind = 3 // the ACPI tables (E820 "ACPI data"): never hand out
	KindBad      Kind = 5 // faulty RAM (E820 "unusable"): never hand out, trapped when touched
)

// kindNames are the kinds kvmboot names: the name in the result JSON and
// the words for a sentence.
var kindNames = []struct {
	kind         Kind
	name, phrase string
}{
	{KindRAM, "ram", "RAM"},
	{KindReserved, "reserved", "reserved memory"},
	{KindACPI, "acpi", "the ACPI tables"},
	{KindBad, "bad", "bad RAM"},
}

// String returns "ram", "reserved", "acpi" or "bad", the names used in
// the result JSON; other E820 types render as "e820-N".
func (k Kind) String() string {
	if name, _, ok := k.named(); ok {
		return name
	}
	return fmt.Sprintf("e820-%d", uint8(k))
}

// named looks k up in kindNames.
func (k Kind) named() (name, phrase string, ok bool) {
	for _, n := range kindNames {
		if n.kind == k {
			return n.name, n.phrase, true
		}
	}
	return "", "", false
}

// MarshalText makes a Kind a JSON string ("ram") rather than a number.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText reads what MarshalText writes, so result JSON round-trips.
func (k *Kind) UnmarshalText(b []byte) error {
	s := string(b)
	for _, n := range kindNames {
		if s == n.name {
			*k = n.kind
			return nil
		}
	}
	var n uint8
	if _, err := fmt.Sscanf(s, "e820-%d", &n); err != nil || Kind(n).String() != s {
		return fmt.Errorf("memory kind %q: want ram, reserved, acpi, bad or e820-N", s)
	}
	*k = Kind(n)
	return nil
}

// Describe names k in a sentence: "bad RAM", "reserved memory".
func (k Kind) Describe() string {
	if _, phrase, ok := k.named(); ok {
		return phrase
	}
	return fmt.Sprintf("E820 type %d memory", uint8(k))
}

// rank orders kinds for Map.Set: a byte that is bad stays bad
// whatever else is said about it, and reserved memory never becomes RAM.
// Other E820 types (ACPI tables, NVS) rank with reserved: firmware owns them.
func (k Kind) rank() int {
	switch k {
	case KindRAM:
		return 1
	case KindBad:
		return 3
	}
	return 2
}

// Region is a range of guest-physical memory of one kind.
type Region struct {
	Range
	Kind Kind
}

// Map is the guest's physical memory map: regions sorted by address,
// non-overlapping, with adjacent regions of the same kind coalesced, so
// that each region is maximal and the map reads like an E820 table.
type Map struct {
	regions []Region
	memSize uint64 // bytes of RAM the guest has; bad RAM exists only below it
}

// A PC's fixed layout below 1 MiB.
const (
	LowRAMEnd    = 0xA0000  // conventional memory ends at 640 KiB
	HighRAMStart = 0x100000 // extended memory starts at 1 MiB
)

// New returns the map of a PC with memSize bytes of RAM (at most
// firmware.Start): RAM in [0, 640K) and [1M, memSize), the legacy VGA/ROM
// window [640K, 1M) reserved (the BIOS ROM at 0xF0000 in it), and firmware,
// the firmware image's alias below 4 GiB (loader.FirmwareHigh), reserved, as
// a BIOS's E820 reports them. The window is reserved whatever memSize is; a
// guest of 1 MiB or less has only low RAM, cut at memSize. The firmware's
// range is a parameter so that this package knows nothing of the image.
func New(memSize uint64, firmware Range) *Map {
	m := &Map{memSize: memSize}
	if low := min(memSize, LowRAMEnd); low > 0 {
		m.regions = append(m.regions, Region{Range{0, low}, KindRAM})
	}
	m.regions = append(m.regions, Region{Range{LowRAMEnd, HighRAMStart}, KindReserved})
	if memSize > HighRAMStart {
		m.regions = append(m.regions, Region{Range{HighRAMStart, min(memSize, firmware.Start)}, KindRAM})
	}
	m.regions = append(m.regions, Region{firmware, KindReserved})
	return m
}

// NewWithBadRAM is New's map with the declared bad ranges marked bad.
func NewWithBadRAM(memSize uint64, firmware Range, bad []Range) *Map {
	m := New(memSize, firmware)
	for _, b := range bad {
		m.Set(b, KindBad)
	}
	return m
}

// Set marks r as kind k, except where a byte's current kind ranks higher
// (bad > reserved > RAM): Set never downgrades, so the order in which the
// map is built (bad-RAM specs, firmware areas, a RAM test's findings) does
// not matter.
// Set only relabels memory the map already has: bytes of r outside every
// region are ignored, and bad RAM is recorded only below memSize, since
// there is no memory beyond it to be faulty.
func (m *Map) Set(r Range, k Kind) {
	if k == KindBad {
		r.End = min(r.End, m.memSize)
	}
	if r.Empty() {
		return
	}
	// Regions [i, j) are the ones r touches; only they change, but their
	// untouched neighbours are rebuilt too so that they can coalesce.
	i := sort.Search(len(m.regions), func(n int) bool { return m.regions[n].End > r.Start })
	j := i
	for j < len(m.regions) && m.regions[j].Start < r.End {
		j++
	}
	if i == j {
		return
	}
	lo, hi := max(i-1, 0), min(j+1, len(m.regions))
	repl := make([]Region, 0, 3*(hi-lo))
	for n, g := range m.regions[lo:hi] {
		n += lo
		if n < i || n >= j || k == g.Kind || k.rank() < g.Kind.rank() {
			repl = appendRegion(repl, g)
			continue
		}
		in := g.Intersect(r)
		repl = appendRegion(repl, Region{Range{g.Start, in.Start}, g.Kind})
		repl = appendRegion(repl, Region{in, k})
		repl = appendRegion(repl, Region{Range{in.End, g.End}, g.Kind})
	}
	m.regions = slices.Replace(m.regions, lo, hi, repl...)
}

// appendRegion appends g to rs, dropping it if empty and merging it into the
// last region when they touch and have the same kind.
func appendRegion(rs []Region, g Region) []Region {
	if g.Empty() {
		return rs
	}
	if n := len(rs); n > 0 && rs[n-1].Kind == g.Kind && rs[n-1].End == g.Start {
		rs[n-1].End = g.End
		return rs
	}
	return append(rs, g)
}

// Regions returns a copy of the map, sorted by address.
func (m *Map) Regions() []Region { return slices.Clone(m.regions) }

// Ranges returns the ranges of kind k, sorted. Each is maximal, since
// same-kind neighbours are coalesced.
func (m *Map) Ranges(k Kind) []Range {
	var out []Range
	for _, g := range m.regions {
		if g.Kind == k {
			out = append(out, g.Range)
		}
	}
	return out
}

// KindAt returns the kind of the byte at addr, and false if addr is in no
// region (beyond the end of memory, or in a gap of a small guest).
func (m *Map) KindAt(addr uint64) (Kind, bool) {
	i := sort.Search(len(m.regions), func(n int) bool { return m.regions[n].End > addr })
	if i < len(m.regions) && m.regions[i].Start <= addr {
		return m.regions[i].Kind, true
	}
	return 0, false
}

// IsAll reports whether every byte of r is in a region of kind k (true for
// an empty r). Bytes in no region are not of any kind.
func (m *Map) IsAll(r Range, k Kind) bool {
	return m.FirstNot(r, k) == nil
}

// FirstNot returns the lowest stretch of r that is not of kind k: the
// whole offending region, or for bytes in no region the uncovered part of
// r (with Kind 0). It returns nil when every byte of r is of kind k.
func (m *Map) FirstNot(r Range, k Kind) *Region {
	if r.Empty() {
		return nil
	}
	at := r.Start
	i := sort.Search(len(m.regions), func(n int) bool { return m.regions[n].End > at })
	for ; at < r.End; i++ {
		if i == len(m.regions) || m.regions[i].Start > at {
			end := r.End
			if i < len(m.regions) {
				end = min(end, m.regions[i].Start)
			}
			return &Region{Range{at, end}, 0}
		}
		g := m.regions[i]
		if g.Kind != k {
			return &g
		}
		at = g.End
	}
	return nil
}

// Clone returns an independent copy of m.
func (m *Map) Clone() *Map {
	return &Map{regions: slices.Clone(m.regions), memSize: m.memSize}
}

// Size is the end of the highest region: the extent of the map, which for
// a guest of 1 MiB or less is the end of the reserved ROM window, not
// memSize.
func (m *Map) Size() uint64 {
	if len(m.regions) == 0 {
		return 0
	}
	return m.regions[len(m.regions)-1].End
}
