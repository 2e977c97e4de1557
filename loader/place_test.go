package loader

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"kvmboot/loader/memmap"
)

const (
	kib = uint64(1) << 10
	mib = uint64(1) << 20
	gib = uint64(1) << 30
)

func TestParsePolicy(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Policy
	}{
		{"", PolicyPreferred},
		{"preferred", PolicyPreferred},
		{"lowest", PolicyLowest},
		{"Highest", PolicyHighest},
		{" lowest ", PolicyLowest},
	} {
		if got, err := ParsePolicy(tt.in); err != nil || got != tt.want {
			t.Errorf("ParsePolicy(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	// Listing the choices is the message's contract.
	if _, err := ParsePolicy("first-fit"); err == nil || !strings.Contains(err.Error(), "want preferred, lowest or highest") {
		t.Errorf("ParsePolicy(first-fit) error = %v", err)
	}
}

// testMap is a 256M PC with [16M, 32M) bad:
// ram [0,640K) reserved [640K,1M) ram [1M,16M) bad [16M,32M) ram [32M,256M).
func testMap() *memmap.Map {
	m := memmap.New(256*mib, FirmwareHigh)
	m.Set(memmap.Range{Start: 16 * mib, End: 32 * mib}, memmap.KindBad)
	return m
}

func TestAllocatorFind(t *testing.T) {
	tests := []struct {
		name     string
		claims   []Claimed // made first, with Claim
		req      Request
		wantAddr uint64
		wantWhy  string
	}{
		{
			name:     "preferred free",
			req:      Request{What: "kernel", Size: 16 * mib, Align: 16 * mib, Preferred: 48 * mib},
			wantAddr: 48 * mib, wantWhy: "preferred address 0x3000000 is free RAM",
		},
		{
			name:     "preferred bad: next aligned fit",
			req:      Request{What: "kernel", Size: 16 * mib, Align: 16 * mib, Preferred: 16 * mib},
			wantAddr: 32 * mib, wantWhy: "preferred 0x1000000 overlaps bad RAM 0x01000000-0x02000000; lowest 16M-aligned fit at or above it",
		},
		{
			name:     "preferred partly bad",
			req:      Request{What: "kernel", Size: 20 * mib, Align: 4 * kib, Preferred: 0xC00000},
			wantAddr: 32 * mib, wantWhy: "preferred 0xc00000 overlaps bad RAM 0x01000000-0x02000000; lowest 4K-aligned fit at or above it",
		},
		{
			name:     "preferred unaligned",
			req:      Request{What: "kernel", Size: mib, Align: 16 * mib, Preferred: 0x1100000},
			wantAddr: 32 * mib, wantWhy: "preferred 0x1100000 is not 16M-aligned; lowest 16M-aligned fit at or above it",
		},
		{
			name:     "preferred claimed",
			claims:   []Claimed{{"initrd", memmap.Range{Start: 32 * mib, End: 48 * mib}}},
			req:      Request{What: "kernel", Size: 16 * mib, Align: 16 * mib, Preferred: 32 * mib},
			wantAddr: 48 * mib,
			wantWhy:  "preferred 0x2000000 overlaps initrd at 0x02000000-0x03000000; lowest 16M-aligned fit at or above it",
		},
		{
			name:     "preferred beyond memory: lowest at or above 1M",
			req:      Request{What: "kernel", Size: 32 * mib, Align: 16 * mib, Preferred: 240 * mib},
			wantAddr: 32 * mib,
			wantWhy:  "preferred 0xf000000 reaches 0x10000000-0x11000000, where the guest has no memory; nothing fits at or above it; lowest 16M-aligned fit at or above 1M",
		},
		{
			name:     "preferred above Max: lowest at or above 1M",
			req:      Request{What: "kernel", Size: mib, Align: mib, Max: 32 * mib, Preferred: 48 * mib},
			wantAddr: mib,
			wantWhy:  "preferred 0x3000000 does not fit in [0, 32M); nothing fits at or above it; lowest 1M-aligned fit at or above 1M",
		},
		{
			name:     "preferred fallback honours Min",
			req:      Request{What: "kernel", Size: mib, Align: mib, Min: 2 * mib, Max: 32 * mib, Preferred: 48 * mib},
			wantAddr: 2 * mib,
			wantWhy:  "preferred 0x3000000 does not fit in [2M, 32M); nothing fits at or above it; lowest 1M-aligned fit at or above 2M",
		},
		{
			name:     "preferred below 1M may use low memory",
			req:      Request{What: "setup", Size: 32 * kib, Align: 4 * kib, Preferred: 0x90000, Max: mib},
			wantAddr: 0x90000, wantWhy: "preferred address 0x90000 is free RAM",
		},
		{
			name:     "no preferred address",
			req:      Request{What: "stub", Size: 4 * kib, Align: 4 * kib},
			wantAddr: 0, wantWhy: "no preferred address; lowest 4K-aligned fit in [0, 4G)",
		},
		{
			name:     "lowest",
			req:      Request{What: "initrd", Size: mib, Align: 4 * kib, Min: mib, Policy: PolicyLowest},
			wantAddr: mib, wantWhy: "lowest 4K-aligned fit in [1M, 4G)",
		},
		{
			name:     "lowest skips bad RAM",
			req:      Request{What: "initrd", Size: mib, Align: 4 * kib, Min: 20 * mib, Policy: PolicyLowest},
			wantAddr: 32 * mib, wantWhy: "lowest 4K-aligned fit in [20M, 4G)",
		},
		{
			name:     "lowest skips the ROM window",
			req:      Request{What: "blob", Size: 1024 * kib, Policy: PolicyLowest},
			wantAddr: mib, wantWhy: "lowest fit in [0, 4G)",
		},
		{
			name:     "lowest byte aligned, odd Min",
			req:      Request{What: "cmdline", Size: 100, Min: 0x1234, Policy: PolicyLowest},
			wantAddr: 0x1234, wantWhy: "lowest fit in [0x1234, 4G)",
		},
		{
			name:     "highest",
			req:      Request{What: "initrd", Size: mib, Align: 4 * kib, Policy: PolicyHighest},
			wantAddr: 255 * mib, wantWhy: "highest 4K-aligned fit in [0, 4G)",
		},
		{
			name:     "highest below Max skips bad RAM",
			req:      Request{What: "initrd", Size: mib, Align: 4 * kib, Max: 32 * mib, Policy: PolicyHighest},
			wantAddr: 15 * mib, wantWhy: "highest 4K-aligned fit in [0, 32M)",
		},
		{
			name:     "highest aligned",
			req:      Request{What: "initrd", Size: mib, Align: 16 * mib, Policy: PolicyHighest},
			wantAddr: 240 * mib, wantWhy: "highest 16M-aligned fit in [0, 4G)",
		},
		{
			name:     "highest below a claim at the top",
			claims:   []Claimed{{"initrd", memmap.Range{Start: 250 * mib, End: 256 * mib}}},
			req:      Request{What: "modules", Size: 10 * mib, Policy: PolicyHighest},
			wantAddr: 240 * mib, wantWhy: "highest fit in [0, 4G)",
		},
		{
			name:     "region",
			req:      Request{What: "crash kernel", Size: 16 * mib, Align: 16 * mib, Region: &memmap.Range{Start: 100 * mib, End: 200 * mib}, Policy: PolicyHighest},
			wantAddr: 112 * mib, wantWhy: "lowest 16M-aligned fit in region 0x06400000-0x0c800000",
		},
		{
			name:     "region around bad RAM",
			req:      Request{What: "crash kernel", Size: 8 * mib, Align: 8 * mib, Region: &memmap.Range{Start: 8 * mib, End: 64 * mib}},
			wantAddr: 8 * mib, wantWhy: "lowest 8M-aligned fit in region 0x00800000-0x04000000",
		},
		{
			name:     "region intersected with the window",
			req:      Request{What: "crash kernel", Size: 16 * mib, Align: 16 * mib, Min: 64 * mib, Region: &memmap.Range{Start: 8 * mib, End: 128 * mib}},
			wantAddr: 64 * mib, wantWhy: "lowest 16M-aligned fit in region 0x04000000-0x08000000",
		},
	}
	for _, tt := range tests {
		a := NewAllocator(testMap())
		for _, c := range tt.claims {
			if err := a.Claim(c.What, c.Range); err != nil {
				t.Fatalf("%s: Claim: %v", tt.name, err)
			}
		}
		addr, why, err := a.Find(tt.req)
		if err != nil || addr != tt.wantAddr || why != tt.wantWhy {
			t.Errorf("%s:\n got %#x, %q, %v\nwant %#x, %q", tt.name, addr, why, err, tt.wantAddr, tt.wantWhy)
			continue
		}
		cl := a.Claimed()
		want := Claimed{tt.req.What, memmap.Range{Start: addr, End: addr + tt.req.Size}}
		if len(cl) != len(tt.claims)+1 || cl[len(cl)-1] != want {
			t.Errorf("%s: Claimed() = %v, want it to end with %v", tt.name, cl, want)
		}
	}
}

func TestAllocatorFindErrors(t *testing.T) {
	tests := []struct {
		name   string
		claims []Claimed
		req    Request
		want   string // the whole message
	}{
		{
			name: "no room, largest free ranges",
			req:  Request{What: "kernel", Size: 512 * mib, Align: 16 * mib, Min: mib, Max: 512 * mib},
			want: "no room for kernel: need 512M aligned to 16M in [1M, 512M); largest free ranges: 0x02000000-0x10000000 (224M), 0x00100000-0x01000000 (15M)",
		},
		{
			name:   "no room, three largest, claims excluded",
			claims: []Claimed{{"initrd", memmap.Range{Start: 32 * mib, End: 256 * mib}}},
			req:    Request{What: "kernel", Size: 16 * mib, Align: 16 * mib, Policy: PolicyLowest},
			want:   "no room for kernel: need 16M aligned to 16M in [0, 4G); largest free ranges: 0x00100000-0x01000000 (15M), 0x00000000-0x000a0000 (640K)",
		},
		{
			name: "no room, byte aligned",
			req:  Request{What: "blob", Size: 300 * mib, Policy: PolicyHighest},
			want: "no room for blob: need 300M in [0, 4G); largest free ranges: 0x02000000-0x10000000 (224M), 0x00100000-0x01000000 (15M), 0x00000000-0x000a0000 (640K)",
		},
		{
			name: "preferred high: no room reported above 1M",
			req:  Request{What: "kernel", Size: 20 * mib, Align: 16 * mib, Max: 32 * mib, Preferred: 16 * mib},
			want: "no room for kernel: need 20M aligned to 16M in [1M, 32M); largest free ranges: 0x00100000-0x01000000 (15M)",
		},
		{
			name: "no free RAM in the window",
			req:  Request{What: "kernel", Size: 16 * mib, Align: 16 * mib, Min: 256 * mib, Max: 512 * mib, Preferred: 256 * mib},
			want: "no room for kernel: need 16M aligned to 16M in [256M, 512M); no free RAM in the window",
		},
		{
			name: "region without RAM",
			req:  Request{What: "crash", Size: 16 * mib, Align: 16 * mib, Region: &memmap.Range{Start: 300 * mib, End: 400 * mib}},
			want: "no room for crash: need 16M aligned to 16M in region 0x12c00000-0x19000000; no free RAM in the window",
		},
		{
			name: "region too small",
			req:  Request{What: "crash", Size: 16 * mib, Region: &memmap.Range{Start: 40 * mib, End: 50 * mib}},
			want: "no room for crash: need 16M in region 0x02800000-0x03200000; largest free ranges: 0x02800000-0x03200000 (10M)",
		},
		{
			name: "region outside the window",
			req:  Request{What: "crash", Size: mib, Max: 64 * mib, Region: &memmap.Range{Start: 100 * mib, End: 200 * mib}},
			want: "cannot place crash: region 0x06400000-0x0c800000 is empty or outside the window [0, 64M)",
		},
		{
			name: "size 0",
			req:  Request{What: "kernel"},
			want: "cannot place kernel: size is 0",
		},
		{
			name: "alignment not a power of two",
			req:  Request{What: "kernel", Size: mib, Align: 3 * mib},
			want: "cannot place kernel: alignment 0x300000 is not a power of two",
		},
		{
			name: "Min above Max",
			req:  Request{What: "kernel", Size: mib, Min: 32 * mib, Max: 16 * mib},
			want: "cannot place kernel: window [32M, 16M) is empty",
		},
		{
			name: "Min equals default Max",
			req:  Request{Size: mib, Min: 4 * gib},
			want: "cannot place piece: window [4G, 4G) is empty",
		},
		{
			name: "unknown policy",
			req:  Request{What: "kernel", Size: mib, Policy: "random"},
			want: `cannot place kernel: unknown policy "random": want preferred, lowest or highest`,
		},
		{
			name: "huge size",
			req:  Request{What: "kernel", Size: 1<<64 - 1, Align: 1 << 63, Max: 1<<64 - 1, Preferred: 1 << 63},
			want: "no room for kernel: need 18446744073709551615 aligned to 8388608T in [1M, 0xffffffffffffffff); largest free ranges: 0x02000000-0x10000000 (224M), 0x00100000-0x01000000 (15M)",
		},
	}
	for _, tt := range tests {
		a := NewAllocator(testMap())
		for _, c := range tt.claims {
			if err := a.Claim(c.What, c.Range); err != nil {
				t.Fatalf("%s: Claim: %v", tt.name, err)
			}
		}
		before := a.Claimed()
		addr, why, err := a.Find(tt.req)
		var pe *PlaceError
		if !errors.As(err, &pe) {
			t.Errorf("%s: Find = %#x, %q, %v; want a *PlaceError", tt.name, addr, why, err)
			continue
		}
		if pe.Error() != tt.want || pe.What != tt.req.What {
			t.Errorf("%s:\n got %q (What %q)\nwant %q", tt.name, pe.Error(), pe.What, tt.want)
		}
		if got := a.Claimed(); !slices.Equal(got, before) {
			t.Errorf("%s: a failed Find changed the claims: %v", tt.name, got)
		}
	}
}

func TestAllocatorClaim(t *testing.T) {
	tests := []struct {
		name string
		what string
		r    memmap.Range
		want string // "" for success
	}{
		{"free", "kernel", memmap.Range{Start: 32 * mib, End: 48 * mib}, ""},
		{"bad", "kernel", memmap.Range{Start: 16 * mib, End: 24 * mib}, "kernel at 0x01000000-0x01800000 overlaps bad RAM 0x01000000-0x02000000"},
		{"partly bad", "kernel", memmap.Range{Start: 8 * mib, End: 24 * mib}, "kernel at 0x00800000-0x01800000 overlaps bad RAM 0x01000000-0x02000000"},
		{"reserved", "setup", memmap.Range{Start: 0x9F000, End: 0xA1000}, "setup at 0x0009f000-0x000a1000 overlaps reserved memory 0x000a0000-0x00100000"},
		{"beyond memory", "initrd", memmap.Range{Start: 255 * mib, End: 257 * mib}, "initrd at 0x0ff00000-0x10100000 reaches 0x10000000-0x10100000, where the guest has no memory"},
		{"claimed", "kernel", memmap.Range{Start: 70 * mib, End: 80 * mib}, "kernel at 0x04600000-0x05000000 overlaps initrd at 0x04000000-0x04800000"},
		{"claimed, touching is fine", "kernel", memmap.Range{Start: 72 * mib, End: 80 * mib}, ""},
		{"empty", "kernel", memmap.Range{Start: 5 * mib, End: 5 * mib}, "kernel at 0x00500000-0x00500000 is empty"},
		{"unnamed", "", memmap.Range{Start: 16 * mib, End: 17 * mib}, "piece at 0x01000000-0x01100000 overlaps bad RAM 0x01000000-0x02000000"},
	}
	for _, tt := range tests {
		a := NewAllocator(testMap())
		if err := a.Claim("initrd", memmap.Range{Start: 64 * mib, End: 72 * mib}); err != nil {
			t.Fatal(err)
		}
		err := a.Claim(tt.what, tt.r)
		if tt.want == "" {
			if err != nil {
				t.Errorf("%s: Claim(%v) = %v", tt.name, tt.r, err)
			}
			continue
		}
		var pe *PlaceError
		if !errors.As(err, &pe) || pe.Error() != tt.want || pe.What != tt.what {
			t.Errorf("%s:\n got %v\nwant %q", tt.name, err, tt.want)
		}
		if n := len(a.Claimed()); n != 1 {
			t.Errorf("%s: a refused Claim left %d claims", tt.name, n)
		}
	}
}

// TestAllocatorAgainstBruteForce runs random small placements through Find
// and compares each answer with trying every aligned address in order.
func TestAllocatorAgainstBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	page := func(n uint64) uint64 { return rng.Uint64N(n) * 4 * kib }
	policies := []Policy{"", PolicyPreferred, PolicyLowest, PolicyHighest}
	for iter := 0; iter < 2000; iter++ {
		memSize := page(4096) + 4*kib // up to 16M
		m := memmap.New(memSize, FirmwareHigh)
		for range rng.IntN(4) {
			s := page(4096)
			m.Set(memmap.Range{Start: s, End: s + page(512) + 4*kib}, memmap.KindBad)
		}
		a := NewAllocator(m)
		for range 8 {
			req := Request{
				What:   "piece",
				Size:   page(256) + 1 + rng.Uint64N(4*kib),
				Align:  4 * kib << rng.IntN(8),
				Policy: policies[rng.IntN(len(policies))],
			}
			if rng.IntN(2) == 0 {
				req.Min = page(4096)
			}
			if rng.IntN(2) == 0 {
				req.Max = req.Min + page(4096) + 4*kib
			}
			if rng.IntN(2) == 0 {
				req.Preferred = page(4096) + rng.Uint64N(2)*kib
			}
			if rng.IntN(5) == 0 {
				s := page(4096)
				req.Region = &memmap.Range{Start: s, End: s + page(2048) + 4*kib}
			}
			before := a.Claimed()
			addr, _, err := a.Find(req)
			if err == nil {
				checkFind(t, req, memmap.Range{Start: addr, End: addr + req.Size})
				checkAllocatorState(t, m, a, before, err, memmap.Range{Start: addr, End: addr + req.Size})
			}
			checkFindOracle(t, m, before, req, addr, err)
		}
	}
}

func TestAllocatorIgnoresLaterMapChanges(t *testing.T) {
	m := memmap.New(64*mib, FirmwareHigh)
	a := NewAllocator(m)
	m.Set(memmap.Range{Start: 0, End: 64 * mib}, memmap.KindBad)
	if addr, _, err := a.Find(Request{Size: mib, Align: mib, Policy: PolicyLowest, Min: mib}); err != nil || addr != mib {
		t.Errorf("Find = %#x, %v; want 0x100000 from the map as it was", addr, err)
	}
}

func TestAllocatorClaimOrder(t *testing.T) {
	a := NewAllocator(testMap())
	steps := []Claimed{
		{"kernel", memmap.Range{Start: 48 * mib, End: 64 * mib}},
		{"initrd", memmap.Range{Start: 200 * mib, End: 210 * mib}},
		{"cmdline", memmap.Range{Start: 0x20000, End: 0x21000}},
	}
	for _, c := range steps {
		if err := a.Claim(c.What, c.Range); err != nil {
			t.Fatal(err)
		}
	}
	addr, _, err := a.Find(Request{What: "boot_params", Size: 4 * kib, Align: 4 * kib, Min: 0x10000, Max: mib, Policy: PolicyLowest})
	if err != nil || addr != 0x10000 {
		t.Fatalf("Find = %#x, %v", addr, err)
	}
	steps = append(steps, Claimed{"boot_params", memmap.Range{Start: 0x10000, End: 0x11000}})
	if got := a.Claimed(); !slices.Equal(got, steps) {
		t.Errorf("Claimed() = %v, want %v", got, steps)
	}
}

// fuzzReader decodes fuzz bytes into numbers biased towards the values
// placement code gets wrong: small ones, page and MiB multiples, powers of
// two and their neighbours, and raw 64-bit values.
type fuzzReader struct{ b []byte }

func (r *fuzzReader) byte() byte {
	if len(r.b) == 0 {
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *fuzzReader) u64() uint64 {
	switch tag := r.byte(); tag % 5 {
	case 0:
		return uint64(r.byte())
	case 1:
		return uint64(r.byte()) << 12
	case 2:
		return uint64(r.byte()) << 20
	case 3:
		v := uint64(1) << (r.byte() % 64)
		switch tag / 5 % 3 {
		case 1:
			v--
		case 2:
			v++
		}
		return v
	default:
		var buf [8]byte
		for i := range buf {
			buf[i] = r.byte()
		}
		return binary.LittleEndian.Uint64(buf[:])
	}
}

func FuzzAllocator(f *testing.F) {
	f.Add([]byte{2, 0, 1, 2, 16, 2, 32, 1, 3, 2, 16, 3, 24, 2, 16, 4, 2, 48, 24, 1})
	f.Add([]byte{2, 64, 0, 1, 4, 1, 1, 0, 0, 1, 2, 1, 3, 1, 12, 2, 1, 4, 1, 1, 2, 3, 3, 20, 0, 0})
	f.Add([]byte{3, 63, 3, 3, 63, 3, 63, 1, 4, 255, 255, 255, 255, 255, 255, 255, 255, 3, 63, 7, 3, 63, 3, 63, 3, 63, 255, 4})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := &fuzzReader{data}
		memSize := r.u64()
		m := memmap.New(memSize, FirmwareHigh)
		var sets []memmap.Region
		for range r.byte() % 4 {
			k := memmap.KindBad
			if r.byte()%3 == 0 {
				k = memmap.KindReserved
			}
			s := r.u64()
			g := memmap.Region{Range: memmap.Range{Start: s, End: s + r.u64()}, Kind: k}
			sets = append(sets, g)
			m.Set(g.Range, g.Kind)
		}
		checkMapInvariants(t, m, memSize)
		rev := memmap.New(memSize, FirmwareHigh)
		for i := len(sets) - 1; i >= 0; i-- {
			rev.Set(sets[i].Range, sets[i].Kind)
		}
		if !slices.Equal(rev.Regions(), m.Regions()) {
			t.Fatalf("Set order matters: %v gave %v, reversed %v", sets, m.Regions(), rev.Regions())
		}
		a := NewAllocator(m)
		for len(r.b) > 0 {
			before := a.Claimed()
			if r.byte()%4 == 0 {
				s := r.u64()
				cr := memmap.Range{Start: s, End: s + r.u64()}
				err := a.Claim("claim", cr)
				checkAllocatorState(t, m, a, before, err, cr)
				continue
			}
			// Optional fields are mostly left zero, as callers leave them.
			req := Request{What: "find", Size: r.u64()}
			flags := r.byte()
			if flags&1 != 0 {
				req.Min = r.u64()
			}
			if flags&2 != 0 {
				req.Max = r.u64()
			}
			if flags&4 != 0 {
				req.Preferred = r.u64()
			}
			if flags&0x18 == 0x18 {
				s := r.u64()
				req.Region = &memmap.Range{Start: s, End: s + r.u64()}
			}
			switch c := r.byte(); {
			case c < 200:
				req.Align = 1 << (c % 32)
			default:
				req.Align = r.u64()
			}
			req.Policy = []Policy{"", PolicyPreferred, PolicyLowest, PolicyHighest, "bogus"}[r.byte()%5]
			addr, why, err := a.Find(req)
			var got memmap.Range
			if err == nil {
				got = memmap.Range{Start: addr, End: addr + req.Size}
				if why == "" {
					t.Fatalf("Find(%+v) gave no reason", req)
				}
				checkFind(t, req, got)
			}
			checkAllocatorState(t, m, a, before, err, got)
			checkFindOracle(t, m, before, req, addr, err)
		}
	})
}

// checkMapInvariants checks that m is sorted, non-overlapping and
// coalesced, that its RAM and bad RAM lie below memSize, and that it still
// has the ROM window (nothing downgrades reserved).
func checkMapInvariants(t *testing.T, m *memmap.Map, memSize uint64) {
	t.Helper()
	rs := m.Regions()
	for i, g := range rs {
		if g.Empty() {
			t.Fatalf("empty region %v in %v", g, rs)
		}
		if g.Kind != memmap.KindReserved && g.End > memSize {
			t.Fatalf("%v region %v beyond memSize %#x", g.Kind, g.Range, memSize)
		}
		if i > 0 && (g.Start < rs[i-1].End || g.Start == rs[i-1].End && g.Kind == rs[i-1].Kind) {
			t.Fatalf("regions %v and %v overlap, are unsorted or not coalesced", rs[i-1], g)
		}
	}
	for a := uint64(memmap.LowRAMEnd); a < memmap.HighRAMStart; a += 4 * kib {
		if k, ok := m.KindAt(a); !ok || k == memmap.KindRAM {
			t.Fatalf("ROM window byte %#x is %v, %v", a, k, ok)
		}
	}
}

// checkFind checks that a Find result honours the request.
func checkFind(t *testing.T, req Request, got memmap.Range) {
	t.Helper()
	hi := req.Max
	if hi == 0 {
		hi = 1 << 32
	}
	if got.End < got.Start || got.Size() != req.Size {
		t.Fatalf("Find(%+v) = %v: size wrong or wraps", req, got)
	}
	if req.Align > 1 && got.Start%req.Align != 0 {
		t.Fatalf("Find(%+v) = %v: not aligned", req, got)
	}
	if !(memmap.Range{Start: req.Min, End: hi}).Contains(got) {
		t.Fatalf("Find(%+v) = %v: outside the window", req, got)
	}
	if req.Region != nil && !req.Region.Contains(got) {
		t.Fatalf("Find(%+v) = %v: outside the region", req, got)
	}
}

// checkAllocatorState checks a Claim or Find outcome: on success the new
// claim is RAM in the map and overlaps no earlier claim; on failure the
// error is a one-line *PlaceError and nothing changed.
func checkAllocatorState(t *testing.T, m *memmap.Map, a *Allocator, before []Claimed, err error, r memmap.Range) {
	t.Helper()
	after := a.Claimed()
	if err != nil {
		var pe *PlaceError
		if !errors.As(err, &pe) || pe.Msg == "" || strings.Contains(pe.Msg, "\n") {
			t.Fatalf("error %q is not a one-line *PlaceError", err)
		}
		if !slices.Equal(after, before) {
			t.Fatalf("failed call changed claims: %v -> %v", before, after)
		}
		return
	}
	if len(after) != len(before)+1 || after[len(after)-1].Range != r {
		t.Fatalf("claims %v after claiming %v", after, r)
	}
	if r.Empty() || !m.IsAll(r, memmap.KindRAM) {
		t.Fatalf("claimed %v, which is empty or not all RAM", r)
	}
	for _, c := range before {
		if c.Range.Overlaps(r) {
			t.Fatalf("claimed %v over %v", r, c)
		}
	}
}

// checkFindOracle recomputes Find's answer by trying every aligned address
// in order, when the request is small enough for that, and compares.
func checkFindOracle(t *testing.T, m *memmap.Map, claims []Claimed, req Request, addr uint64, err error) {
	t.Helper()
	align := max(req.Align, 1)
	hi := req.Max
	if hi == 0 {
		hi = 1 << 32
	}
	if req.Size == 0 || align&(align-1) != 0 || req.Min >= hi {
		if err == nil {
			t.Fatalf("Find(%+v) accepted a malformed request", req)
		}
		return
	}
	switch req.Policy {
	case "", PolicyPreferred, PolicyLowest, PolicyHighest:
	default:
		return
	}
	free := func(s uint64) bool {
		e := s + req.Size
		if e < s {
			return false
		}
		r := memmap.Range{Start: s, End: e}
		if !m.IsAll(r, memmap.KindRAM) {
			return false
		}
		for _, c := range claims {
			if c.Range.Overlaps(r) {
				return false
			}
		}
		return true
	}
	const maxTries = 4096
	// scan returns the first (or last) aligned free start in w, and
	// whether the scan was small enough to be trusted.
	scan := func(w memmap.Range, highest bool) (uint64, bool, bool) {
		w.End = min(w.End, m.Size()) // no RAM beyond the map
		if w.Empty() || w.Size() < req.Size {
			return 0, false, true
		}
		lo, ok := alignUp(w.Start, align)
		if !ok || lo > w.End-req.Size {
			return 0, false, true
		}
		last := (w.End - req.Size) &^ (align - 1)
		if (last-lo)/align >= maxTries {
			return 0, false, false
		}
		for i := uint64(0); i <= (last-lo)/align; i++ {
			s := lo + i*align
			if highest {
				s = last - i*align
			}
			if free(s) {
				return s, true, true
			}
		}
		return 0, false, true
	}
	window := memmap.Range{Start: req.Min, End: hi}
	var want uint64
	var found, trusted bool
	switch {
	case req.Region != nil:
		w := window.Intersect(*req.Region)
		want, found, trusted = scan(w, false)
	case req.Policy == PolicyLowest:
		want, found, trusted = scan(window, false)
	case req.Policy == PolicyHighest:
		want, found, trusted = scan(window, true)
	case req.Preferred == 0:
		want, found, trusted = scan(window, false)
	default:
		p := req.Preferred
		if p%align == 0 && p+req.Size >= p && window.Contains(memmap.Range{Start: p, End: p + req.Size}) && free(p) {
			want, found, trusted = p, true, true
			break
		}
		trusted = true
		if p < hi {
			want, found, trusted = scan(memmap.Range{Start: max(p, req.Min), End: hi}, false)
		}
		if trusted && !found {
			floor := req.Min
			if floor == 0 && p >= mib {
				floor = mib
			}
			if floor < hi {
				want, found, trusted = scan(memmap.Range{Start: floor, End: hi}, false)
			}
		}
	}
	if !trusted {
		return
	}
	switch {
	case found && err != nil:
		t.Fatalf("Find(%+v) failed (%v), but %#x fits", req, err, want)
	case !found && err == nil:
		t.Fatalf("Find(%+v) = %#x, but nothing should fit", req, addr)
	case found && addr != want:
		t.Fatalf("Find(%+v) = %#x, want %#x", req, addr, want)
	}
}
