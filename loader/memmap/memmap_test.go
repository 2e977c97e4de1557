package memmap

import (
	"encoding/json"
	"slices"
	"testing"
)

const (
	kib = uint64(1) << 10
	mib = uint64(1) << 20
	gib = uint64(1) << 30
)

func ram(s, e uint64) Region      { return Region{Range{s, e}, KindRAM} }
func reserved(s, e uint64) Region { return Region{Range{s, e}, KindReserved} }
func bad(s, e uint64) Region      { return Region{Range{s, e}, KindBad} }

// pcFirmware is where a PC's firmware sits below 4 GiB (loader.FirmwareHigh
// for kvmboot's 64 KiB image).
var pcFirmware = Range{0xFFFF0000, 1 << 32}

// pcMap is rs followed by what every PC map ends with: the firmware
// below 4 GiB, reserved.
func pcMap(rs ...Region) []Region { return append(rs, Region{pcFirmware, KindReserved}) }

func TestRangeMethods(t *testing.T) {
	a := Range{16 * mib, 32 * mib}
	tests := []struct {
		name          string
		o             Range
		overlaps      bool
		aContainsO    bool
		oSize         uint64
		intersectSize uint64
	}{
		{"same", a, true, true, 16 * mib, 16 * mib},
		{"inside", Range{20 * mib, 24 * mib}, true, true, 4 * mib, 4 * mib},
		{"straddles start", Range{8 * mib, 17 * mib}, true, false, 9 * mib, 1 * mib},
		{"straddles end", Range{31 * mib, 40 * mib}, true, false, 9 * mib, 1 * mib},
		{"touches below", Range{8 * mib, 16 * mib}, false, false, 8 * mib, 0},
		{"touches above", Range{32 * mib, 40 * mib}, false, false, 8 * mib, 0},
		{"covers", Range{0, 64 * mib}, true, false, 64 * mib, 16 * mib},
		{"empty inside", Range{20 * mib, 20 * mib}, false, true, 0, 0},
		{"inverted", Range{24 * mib, 20 * mib}, false, true, 0, 0},
	}
	for _, tt := range tests {
		if got := a.Overlaps(tt.o); got != tt.overlaps {
			t.Errorf("%s: Overlaps = %v, want %v", tt.name, got, tt.overlaps)
		}
		if got := tt.o.Overlaps(a); got != tt.overlaps {
			t.Errorf("%s: reverse Overlaps = %v, want %v", tt.name, got, tt.overlaps)
		}
		if got := a.Contains(tt.o); got != tt.aContainsO {
			t.Errorf("%s: Contains = %v, want %v", tt.name, got, tt.aContainsO)
		}
		if got := tt.o.Size(); got != tt.oSize {
			t.Errorf("%s: Size = %d, want %d", tt.name, got, tt.oSize)
		}
		if got := a.Intersect(tt.o).Size(); got != tt.intersectSize {
			t.Errorf("%s: intersect size = %d, want %d", tt.name, got, tt.intersectSize)
		}
	}
	for _, tt := range []struct {
		r    Range
		want string
	}{
		{a, "0x01000000-0x02000000"},
		{Range{0, 0xA0000}, "0x00000000-0x000a0000"},
		{Range{4 * gib, 5 * gib}, "0x100000000-0x140000000"},
	} {
		if got := tt.r.String(); got != tt.want {
			t.Errorf("%v.String() = %q, want %q", tt.r, got, tt.want)
		}
	}
}

func TestKindStringAndJSON(t *testing.T) {
	for _, tt := range []struct {
		k    Kind
		want string
	}{
		{KindRAM, "ram"}, {KindReserved, "reserved"}, {KindACPI, "acpi"}, {KindBad, "bad"}, {Kind(4), "e820-4"},
	} {
		if got := tt.k.String(); got != tt.want {
			t.Errorf("Kind(%d).String() = %q, want %q", tt.k, got, tt.want)
		}
	}
	b, err := json.Marshal(struct {
		Type Kind `json:"type"`
	}{KindBad})
	if err != nil || string(b) != `{"type":"bad"}` {
		t.Errorf("json.Marshal = %s, %v; want {\"type\":\"bad\"}", b, err)
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		memSize  uint64
		want     []Region
		wantSize uint64
	}{
		{256 * mib, pcMap(ram(0, 0xA0000), reserved(0xA0000, 0x100000), ram(0x100000, 256*mib)), 4 * gib},
		{0x180000, pcMap(ram(0, 0xA0000), reserved(0xA0000, 0x100000), ram(0x100000, 0x180000)), 4 * gib},
		{mib, pcMap(ram(0, 0xA0000), reserved(0xA0000, 0x100000)), 4 * gib},
		{512 * kib, pcMap(ram(0, 0x80000), reserved(0xA0000, 0x100000)), 4 * gib},
		{0, pcMap(reserved(0xA0000, 0x100000)), 4 * gib},
	}
	for _, tt := range tests {
		m := New(tt.memSize, pcFirmware)
		if got := m.Regions(); !slices.Equal(got, tt.want) {
			t.Errorf("New(%#x) = %v, want %v", tt.memSize, got, tt.want)
		}
		if got := m.Size(); got != tt.wantSize {
			t.Errorf("New(%#x).Size() = %#x, want %#x", tt.memSize, got, tt.wantSize)
		}
	}
}

// set is one Map.Set call.
type set struct {
	r Range
	k Kind
}

// TestMapSet checks Set's precedence (bad > reserved > RAM), that it
// only relabels memory the map has, and that it coalesces.
func TestMapSet(t *testing.T) {
	tests := []struct {
		name    string
		memSize uint64
		sets    []set
		want    []Region
	}{
		{
			name: "bad splits RAM", memSize: 256 * mib,
			sets: []set{{Range{16 * mib, 32 * mib}, KindBad}},
			want: pcMap(ram(0, 0xA0000), reserved(0xA0000, mib), ram(mib, 16*mib), bad(16*mib, 32*mib), ram(32*mib, 256*mib)),
		},
		{
			name: "RAM never downgrades bad", memSize: 256 * mib,
			sets: []set{{Range{16 * mib, 32 * mib}, KindBad}, {Range{0, 256 * mib}, KindRAM}},
			want: pcMap(ram(0, 0xA0000), reserved(0xA0000, mib), ram(mib, 16*mib), bad(16*mib, 32*mib), ram(32*mib, 256*mib)),
		},
		{
			name: "RAM never downgrades reserved", memSize: 256 * mib,
			sets: []set{{Range{0, mib}, KindRAM}},
			want: pcMap(ram(0, 0xA0000), reserved(0xA0000, mib), ram(mib, 256*mib)),
		},
		{
			name: "reserved does not override bad", memSize: 256 * mib,
			sets: []set{{Range{16 * mib, 32 * mib}, KindBad}, {Range{20 * mib, 40 * mib}, KindReserved}},
			want: pcMap(ram(0, 0xA0000), reserved(0xA0000, mib), ram(mib, 16*mib), bad(16*mib, 32*mib), reserved(32*mib, 40*mib), ram(40*mib, 256*mib)),
		},
		{
			name: "bad overrides reserved", memSize: 256 * mib,
			sets: []set{{Range{0xF0000, 0x100000}, KindBad}},
			want: pcMap(ram(0, 0xA0000), reserved(0xA0000, 0xF0000), bad(0xF0000, mib), ram(mib, 256*mib)),
		},
		{
			name: "bad beyond memSize is dropped", memSize: 256 * mib,
			sets: []set{{Range{255 * mib, 300 * mib}, KindBad}},
			want: pcMap(ram(0, 0xA0000), reserved(0xA0000, mib), ram(mib, 255*mib), bad(255*mib, 256*mib)),
		},
		{
			name: "reserved beyond the map is ignored", memSize: 256 * mib,
			sets: []set{{Range{256 * mib, 4 * gib}, KindReserved}},
			want: pcMap(ram(0, 0xA0000), reserved(0xA0000, mib), ram(mib, 256*mib)),
		},
		{
			name: "adjacent bad ranges coalesce", memSize: 256 * mib,
			sets: []set{{Range{24 * mib, 32 * mib}, KindBad}, {Range{16 * mib, 24 * mib}, KindBad}},
			want: pcMap(ram(0, 0xA0000), reserved(0xA0000, mib), ram(mib, 16*mib), bad(16*mib, 32*mib), ram(32*mib, 256*mib)),
		},
		{
			name: "bad across the ROM window joins reserved neighbours", memSize: 256 * mib,
			sets: []set{{Range{0x9F000, 0x101000}, KindBad}},
			want: pcMap(ram(0, 0x9F000), bad(0x9F000, 0x101000), ram(0x101000, 256*mib)),
		},
		{
			name: "reserved then RAM restores nothing", memSize: 256 * mib,
			sets: []set{{Range{100 * mib, 101 * mib}, KindReserved}, {Range{100 * mib, 101 * mib}, KindRAM}},
			want: pcMap(ram(0, 0xA0000), reserved(0xA0000, mib), ram(mib, 100*mib), reserved(100*mib, 101*mib), ram(101*mib, 256*mib)),
		},
		{
			name: "empty and inverted ranges change nothing", memSize: 256 * mib,
			sets: []set{{Range{16 * mib, 16 * mib}, KindBad}, {Range{32 * mib, 16 * mib}, KindBad}},
			want: pcMap(ram(0, 0xA0000), reserved(0xA0000, mib), ram(mib, 256*mib)),
		},
		{
			name: "small guest: no bad in the gap or the ROM window beyond memSize", memSize: 512 * kib,
			sets: []set{{Range{0x70000, 0xC0000}, KindBad}},
			want: pcMap(ram(0, 0x70000), bad(0x70000, 0x80000), reserved(0xA0000, mib)),
		},
		{
			name: "small guest: reserved in the gap is ignored", memSize: 512 * kib,
			sets: []set{{Range{0x90000, 0x9F000}, KindReserved}},
			want: pcMap(ram(0, 0x80000), reserved(0xA0000, mib)),
		},
		{
			name: "whole memory bad", memSize: 4 * mib,
			sets: []set{{Range{0, 1<<64 - 1}, KindBad}},
			want: pcMap(bad(0, 4*mib)),
		},
	}
	for _, tt := range tests {
		m := New(tt.memSize, pcFirmware)
		for _, s := range tt.sets {
			m.Set(s.r, s.k)
		}
		if got := m.Regions(); !slices.Equal(got, tt.want) {
			t.Errorf("%s:\n got %v\nwant %v", tt.name, got, tt.want)
		}
	}
}

// TestMapSetOrderIndependent checks that, because Set never
// downgrades, every order of the same Set calls builds the same map.
func TestMapSetOrderIndependent(t *testing.T) {
	sets := []set{
		{Range{16 * mib, 32 * mib}, KindBad},
		{Range{24 * mib, 48 * mib}, KindReserved},
		{Range{0, 64 * mib}, KindRAM},
		{Range{0x9F000, 0x180000}, KindBad},
		{Range{40 * mib, 41 * mib}, KindBad},
	}
	want := pcMap(
		ram(0, 0x9F000), bad(0x9F000, 0x180000), ram(0x180000, 16*mib), bad(16*mib, 32*mib),
		reserved(32*mib, 40*mib), bad(40*mib, 41*mib), reserved(41*mib, 48*mib), ram(48*mib, 64*mib),
	)
	perm := []int{0, 1, 2, 3, 4}
	var permute func(k int)
	permute = func(k int) {
		if k == len(perm) {
			m := New(64*mib, pcFirmware)
			for _, i := range perm {
				m.Set(sets[i].r, sets[i].k)
			}
			if got := m.Regions(); !slices.Equal(got, want) {
				t.Errorf("order %v:\n got %v\nwant %v", perm, got, want)
			}
			return
		}
		for i := k; i < len(perm); i++ {
			perm[k], perm[i] = perm[i], perm[k]
			permute(k + 1)
			perm[k], perm[i] = perm[i], perm[k]
		}
	}
	permute(0)
}

// TestMapSetManySorted checks that marking many sorted bad stripes,
// as ParseBadRAM returns them, stays cheap (each Set splits only the
// trailing RAM region) and correct.
func TestMapSetManySorted(t *testing.T) {
	const n = 100000
	m := New(1*gib, pcFirmware)
	for i := uint64(0); i < n; i++ {
		start := 2*mib + i*8*kib
		m.Set(Range{start, start + kib}, KindBad)
	}
	rs := m.Ranges(KindBad)
	if len(rs) != n {
		t.Fatalf("got %d bad ranges, want %d", len(rs), n)
	}
	if rs[0] != (Range{2 * mib, 2*mib + kib}) || rs[n-1] != (Range{2*mib + (n-1)*8*kib, 2*mib + (n-1)*8*kib + kib}) {
		t.Errorf("first/last bad ranges %v %v", rs[0], rs[n-1])
	}
	if got := len(m.Regions()); got != 2*n+4 { // low RAM, ROM window, firmware below 4G
		t.Errorf("got %d regions, want %d", got, 2*n+4)
	}
}

func TestMapQueries(t *testing.T) {
	m := New(256*mib, pcFirmware)
	m.Set(Range{16 * mib, 32 * mib}, KindBad)

	for _, tt := range []struct {
		addr uint64
		kind Kind
		ok   bool
	}{
		{0, KindRAM, true},
		{0x9FFFF, KindRAM, true},
		{0xA0000, KindReserved, true},
		{0xFFFFF, KindReserved, true},
		{mib, KindRAM, true},
		{16*mib - 1, KindRAM, true},
		{16 * mib, KindBad, true},
		{32*mib - 1, KindBad, true},
		{32 * mib, KindRAM, true},
		{256*mib - 1, KindRAM, true},
		{256 * mib, 0, false},
		{1<<64 - 1, 0, false},
	} {
		k, ok := m.KindAt(tt.addr)
		if k != tt.kind || ok != tt.ok {
			t.Errorf("KindAt(%#x) = %v, %v; want %v, %v", tt.addr, k, ok, tt.kind, tt.ok)
		}
	}

	for _, tt := range []struct {
		r    Range
		k    Kind
		want bool
	}{
		{Range{mib, 16 * mib}, KindRAM, true},
		{Range{mib, 16*mib + 1}, KindRAM, false},
		{Range{20 * mib, 24 * mib}, KindBad, true},
		{Range{0, 0xA0000}, KindRAM, true},
		{Range{0, 0xA0001}, KindRAM, false},
		{Range{0x9F000, 0x101000}, KindRAM, false},
		{Range{32 * mib, 256 * mib}, KindRAM, true},
		{Range{32 * mib, 256*mib + 1}, KindRAM, false}, // beyond memory is no kind
		{Range{300 * mib, 400 * mib}, KindRAM, false},
		{Range{5, 5}, KindBad, true}, // empty: vacuously true
	} {
		if got := m.IsAll(tt.r, tt.k); got != tt.want {
			t.Errorf("IsAll(%v, %v) = %v, want %v", tt.r, tt.k, got, tt.want)
		}
	}

	if got, want := m.Ranges(KindRAM), []Range{{0, 0xA0000}, {mib, 16 * mib}, {32 * mib, 256 * mib}}; !slices.Equal(got, want) {
		t.Errorf("Ranges(ram) = %v, want %v", got, want)
	}
	if got, want := m.Ranges(KindBad), []Range{{16 * mib, 32 * mib}}; !slices.Equal(got, want) {
		t.Errorf("Ranges(bad) = %v, want %v", got, want)
	}
	if got := m.Ranges(Kind(3)); got != nil {
		t.Errorf("Ranges(3) = %v, want none", got)
	}
}

func TestMapCopiesAreIndependent(t *testing.T) {
	m := New(64*mib, pcFirmware)
	c := m.Clone()
	regs := m.Regions()
	regs[0].Kind = KindBad
	c.Set(Range{16 * mib, 32 * mib}, KindBad)
	if got := m.Ranges(KindBad); got != nil {
		t.Errorf("original changed through Clone or Regions: bad ranges %v", got)
	}
	if got := c.Ranges(KindBad); !slices.Equal(got, []Range{{16 * mib, 32 * mib}}) {
		t.Errorf("clone bad ranges %v", got)
	}
	// The clone keeps memSize: bad RAM beyond it is still dropped.
	c.Set(Range{60 * mib, 80 * mib}, KindBad)
	if got := c.Ranges(KindBad); !slices.Equal(got, []Range{{16 * mib, 32 * mib}, {60 * mib, 64 * mib}}) {
		t.Errorf("clone bad ranges %v, want them cut at 64M", got)
	}
}

func TestKindTextRoundTrip(t *testing.T) {
	for _, k := range []Kind{KindRAM, KindReserved, KindACPI, KindBad, 4} {
		b, _ := k.MarshalText()
		var got Kind
		if err := got.UnmarshalText(b); err != nil || got != k {
			t.Errorf("%v: round trip gave %v, %v", k, got, err)
		}
	}
	var k Kind
	if err := k.UnmarshalText([]byte("flash")); err == nil {
		t.Error("unknown kind accepted")
	}
}
