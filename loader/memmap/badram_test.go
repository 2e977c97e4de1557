package memmap

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseBadRAM(t *testing.T) {
	r := func(s, e uint64) Range { return Range{s, e} }
	tests := []struct {
		name    string
		spec    string
		memSize uint64
		want    []Range
	}{
		// START-END and START+SIZE.
		{"range", "16M-32M", 256 * mib, []Range{r(16*mib, 32*mib)}},
		{"range plus", "16M+16M", 256 * mib, []Range{r(16*mib, 32*mib)}},
		{"range hex", "0x1000000-0x2000000", 256 * mib, []Range{r(16*mib, 32*mib)}},
		{"range clipped at memSize", "250M-300M", 256 * mib, []Range{r(250*mib, 256*mib)}},
		{"range beyond memSize", "300M-400M", 256 * mib, nil},
		{"surrounding white space", "  16M-32M\n", 256 * mib, []Range{r(16*mib, 32*mib)}},

		// Linux memmap.
		{"memmap $", "memmap=16M$16M", 256 * mib, []Range{r(16*mib, 32*mib)}},
		{"memmap !", "memmap=16M!16M", 256 * mib, []Range{r(16*mib, 32*mib)}},
		{"memmap #", "memmap=16M#16M", 256 * mib, []Range{r(16*mib, 32*mib)}},
		{"memmap without prefix", "16M$16M", 256 * mib, []Range{r(16*mib, 32*mib)}},
		{"memmap grub.cfg quoting", `memmap=16M\$16M`, 256 * mib, []Range{r(16*mib, 32*mib)}},
		{"memmap upper-case prefix", "MEMMAP=16M$16M", 256 * mib, []Range{r(16*mib, 32*mib)}},
		{"memmap list", "memmap=0x1000$0x2000000,0x1000$0x3000000", 256 * mib,
			[]Range{r(32*mib, 32*mib+4*kib), r(48*mib, 48*mib+4*kib)}},
		{"memmap adjacent items merge", "memmap=4K$0x2000000,4K$0x2001000", 256 * mib,
			[]Range{r(32*mib, 32*mib+8*kib)}},
		{"memmap unrounded (memtest86+)", "memmap=0x123$0x1000000", 256 * mib,
			[]Range{r(0x1000000, 0x1000123)}},
		{"memmap wrapped with trailing comma", "memmap=4K$16M,\n   4K$32M,\n", 256 * mib,
			[]Range{r(16*mib, 16*mib+4*kib), r(32*mib, 32*mib+4*kib)}},
		{"memmap unsorted overlapping", "memmap=8M$20M,8M$16M", 256 * mib, []Range{r(16*mib, 28*mib)}},
		{"memmap clipped", "memmap=16M$248M", 256 * mib, []Range{r(248*mib, 256*mib)}},

		// GRUB / memtest86+ patterns. 0xff000000 fixes bits 24-31: one
		// 16M block per 4 GiB, since the 32-bit mask leaves bits 32-63 free.
		{"badram one block", "badram=0x01000000,0xff000000", 256 * mib, []Range{r(16*mib, 32*mib)}},
		{"badram 4 GiB repeat", "badram=0x01000000,0xff000000", 8 * gib,
			[]Range{r(16*mib, 32*mib), r(4*gib+16*mib, 4*gib+32*mib)}},
		{"badram 64-bit mask does not repeat", "badram=0x01000000,0xffffffffff000000", 8 * gib,
			[]Range{r(16*mib, 32*mib)}},
		{"badram GRUB command form", "badram 0x01000000,0xff000000", 256 * mib, []Range{r(16*mib, 32*mib)}},
		{"badram hex without 0x", "badram=01000000,FF000000", 256 * mib, []Range{r(16*mib, 32*mib)}},
		{"badram ADDR bits outside MASK ignored", "badram=0x01abcdef,0xff000000", 256 * mib, []Range{r(16*mib, 32*mib)}},
		// 0xffeff000: block 4K (lowest set bit 12), bit 20 free: two stripes.
		{"badram hole in mask", "badram=0x5000,0xffeff000", 256 * mib,
			[]Range{r(0x5000, 0x6000), r(0x105000, 0x106000)}},
		{"badram hole in mask, 4 GiB repeat", "badram=0x5000,0xffeff000", 5 * gib,
			[]Range{r(0x5000, 0x6000), r(0x105000, 0x106000), r(0x100005000, 0x100006000), r(0x100105000, 0x100106000)}},
		// 0x0f000000: bits 24-27 must be 0, 28-31 free: the first 16M of
		// every 256M.
		{"badram stripes", "badram=0,0x0f000000", 1 * gib,
			[]Range{r(0, 16*mib), r(256*mib, 272*mib), r(512*mib, 528*mib), r(768*mib, 784*mib)}},
		// memtest86+ masks single addresses to the word; GRUB cuts to 1K.
		{"badram 32-bit single address", "badram=0x12345678,0xfffffffc", 512 * mib,
			[]Range{r(0x12345400, 0x12345800)}},
		{"badram 64-bit single address", "badram=0x0000000012345678,0xfffffffffffffff8", 512 * mib,
			[]Range{r(0x12345400, 0x12345800)}},
		{"badram memtest86+ wrapped lines", "badram=0x01000000,0xff000000,\n       0x12345678,0xfffffffc,\n", 512 * mib,
			[]Range{r(16*mib, 32*mib), r(0x12345400, 0x12345800)}},
		{"badram spaces around commas", "badram=0x01000000 , 0xff000000", 256 * mib, []Range{r(16*mib, 32*mib)}},
		{"badram beyond memSize", "badram=0x20000000,0xff000000", 256 * mib, nil},
		{"badram last block clipped", "badram=0x01000000,0xfffffc00", 16*mib + 512,
			[]Range{r(16*mib, 16*mib+512)}},
		{"badram overlapping patterns merge", "badram=0x01000000,0xff000000,0x01800000,0xff800000", 256 * mib,
			[]Range{r(16*mib, 32*mib)}},

		// GRUB cutmem: TO is exclusive.
		{"cutmem", "cutmem 16M 32M", 256 * mib, []Range{r(16*mib, 32*mib)}},
		{"cutmem hex", "cutmem 0x1000000 0x2000000", 256 * mib, []Range{r(16*mib, 32*mib)}},
		{"cutmem lower case, tabs", "cutmem\t16m\t32m", 256 * mib, []Range{r(16*mib, 32*mib)}},
	}
	for _, tt := range tests {
		got, err := ParseBadRAM(tt.spec, tt.memSize)
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("%s: ParseBadRAM(%q, %#x) = %v, %v; want %v", tt.name, tt.spec, tt.memSize, got, err, tt.want)
		}
	}
}

func TestParseBadRAMErrors(t *testing.T) {
	tests := []struct {
		spec    string
		memSize uint64
		want    string // substring of the one-line error
	}{
		{"", 256 * mib, "empty bad-RAM spec"},
		{"hello", 256 * mib, "unrecognised bad-RAM spec"},
		{"16M", 256 * mib, "unrecognised bad-RAM spec"},
		{"32M-16M", 256 * mib, "not above the start"},
		{"16M-0x", 256 * mib, "invalid size"},
		{"badram=", 256 * mib, "no patterns"},
		{"badram", 256 * mib, "no patterns"},
		{"badram=0x1000000", 256 * mib, "odd number"},
		{"badram=0x1000000,0xff000000,0x1", 256 * mib, "odd number"},
		{"badram=0x1000000,0xzz", 256 * mib, `mask "0xzz" is not a hex number`},
		{"badram=0xg,0xff000000", 256 * mib, `address "0xg" is not a hex number`},
		{"badram=0x,0xff000000", 256 * mib, `address "0x" is empty`},
		{"badram=0x1,,0x2,0x3", 256 * mib, `mask "" is empty`},
		{"badram = 0x01000000,0xff000000", 256 * mib, `address "= 0x01000000" is not a hex number`},
		{"badram=0x1000000,0x3ff", 256 * mib, "1 KiB granularity"},
		{"badram=0x1000000,0", 256 * mib, "1 KiB granularity"},
		{"badram=0x1,0x10000000000000000", 256 * mib, "does not fit in 64 bits"},
		{"badram=0,0x400", 3 * gib, "more than the 1048576 bad ranges"},
		{"memmap=16M@16M", 256 * mib, "usable RAM"},
		{"memmap=exactmap", 256 * mib, "exactmap"},
		{"memmap=16M", 256 * mib, "has no $, ! or #"},
		{"memmap=0$16M", 256 * mib, "size 0"},
		{"memmap=16M$", 256 * mib, "start: empty size"},
		{"memmap=x$16M", 256 * mib, "size: invalid size"},
		{"memmap=1%2", 256 * mib, "converts memory types"},
		{"memmap=16M$16M,,16M$64M", 256 * mib, "has no $, ! or #"},
		{"memmap=0xffffffffffffffff$1", 256 * mib, "does not fit in 64 bits"},
		{"memmap=016M$16M", 256 * mib, "leading zero"},
		{"cutmem 16M", 256 * mib, "cutmem takes 2 arguments, got 1"},
		{"cutmem", 256 * mib, "cutmem takes 2 arguments, got 0"},
		{"cutmem 32M 16M", 256 * mib, "TO must be above FROM"},
		{"cutmem 010 020", 256 * mib, "leading zero"},
	}
	for _, tt := range tests {
		got, err := ParseBadRAM(tt.spec, tt.memSize)
		if err == nil {
			t.Errorf("ParseBadRAM(%q) = %v, want an error containing %q", tt.spec, got, tt.want)
			continue
		}
		// The reason, in one line, is the message's contract; the class is ErrSyntax.
		if msg := err.Error(); !errors.Is(err, ErrSyntax) || !strings.Contains(msg, tt.want) || strings.Contains(msg, "\n") {
			t.Errorf("ParseBadRAM(%q) error %q, want one line containing %q", tt.spec, msg, tt.want)
		}
	}
}

// TestParseBadRAMManyBlocks checks that expansion costs the number of
// matching blocks, not the size of memory: mask 0xc00 fixes only bits 10
// and 11, so the first KiB of every 4 KiB is bad, 786432 blocks in 3 GiB.
func TestParseBadRAMManyBlocks(t *testing.T) {
	const memSize = 3 * gib
	got, err := ParseBadRAM("badram=0,0xc00", memSize)
	if err != nil {
		t.Fatal(err)
	}
	if want := int(memSize / (4 * kib)); len(got) != want {
		t.Fatalf("got %d ranges, want %d", len(got), want)
	}
	if got[0] != (Range{0, kib}) || got[len(got)-1] != (Range{memSize - 4*kib, memSize - 3*kib}) {
		t.Errorf("first/last ranges %v %v", got[0], got[len(got)-1])
	}

	// Too many blocks is refused by counting, without enumerating them
	// (2^53 blocks would never finish: the guard is for a hang, not speed).
	start := time.Now()
	if _, err := ParseBadRAM("badram=0,0x400", 1<<64-1); err == nil {
		t.Error("a mask with 53 free bits in a 2^64 guest was accepted")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("refusing a huge pattern took %v: it enumerated the blocks", d)
	}
}

// BenchmarkParseBadRAMManyBlocks: a 3 GiB guest with a mask that frees
// many bits (786,432 blocks); about 10 ms here.
func BenchmarkParseBadRAMManyBlocks(b *testing.B) {
	for b.Loop() {
		if _, err := ParseBadRAM("badram=0,0xc00", 3*gib); err != nil {
			b.Fatal(err)
		}
	}
}

// TestBadPatternAgainstBruteForce compares pattern expansion and counting
// with testing every KiB of a 16 MiB space for random patterns.
func TestBadPatternAgainstBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for iter := 0; iter < 300; iter++ {
		memSize := rng.Uint64N(16*mib) + 1
		// Masks with a few free bits in the low 24, all bits above fixed
		// (half the time) or free (the 4 GiB repeat case).
		mask := rng.Uint64() | rng.Uint64()
		if iter%2 == 0 {
			mask |= ^uint64(1<<24 - 1)
		} else {
			mask &= 1<<32 - 1
		}
		mask &^= kib - 1
		if mask == 0 {
			continue
		}
		addr := rng.Uint64N(32 * mib)
		p := badPattern{addr & mask, mask}

		var want []Range
		for a := uint64(0); a < memSize; a += kib {
			if a&mask == addr&mask {
				want = append(want, Range{a, min(a+kib, memSize)})
			}
		}
		want = Merge(want)
		got := p.expand(nil, memSize)
		if !slices.Equal(got, want) {
			t.Fatalf("pattern %#x,%#x in %#x: got %v, want %v", addr, mask, memSize, got, want)
		}
		if n := p.countBelow(memSize); n != uint64(len(got)) {
			t.Fatalf("pattern %#x,%#x in %#x: countBelow = %d, expand gave %d", addr, mask, memSize, n, len(got))
		}
	}
}

func TestMerge(t *testing.T) {
	tests := []struct {
		in, want []Range
	}{
		{nil, nil},
		{[]Range{{5, 5}}, nil},
		{[]Range{{5, 10}, {0, 5}}, []Range{{0, 10}}},
		{[]Range{{0, 10}, {5, 15}}, []Range{{0, 15}}},
		{[]Range{{0, 20}, {5, 15}}, []Range{{0, 20}}},
		{[]Range{{30, 40}, {0, 10}, {11, 20}}, []Range{{0, 10}, {11, 20}, {30, 40}}},
		{[]Range{{10, 5}, {0, 1}}, []Range{{0, 1}}},
		{[]Range{{0, 1<<64 - 1}, {5, 6}}, []Range{{0, 1<<64 - 1}}},
	}
	for _, tt := range tests {
		in := slices.Clone(tt.in)
		if got := Merge(in); !slices.Equal(got, tt.want) {
			t.Errorf("Merge(%v) = %v, want %v", tt.in, got, tt.want)
		}
		if !slices.Equal(in, tt.in) {
			t.Errorf("Merge modified its input: %v", in)
		}
	}
}

func TestFormatBadRAMAndMemmap(t *testing.T) {
	tests := []struct {
		in         []Range
		badram     string
		memmap     string
		widened    []Range
		memmapBack []Range
	}{
		{nil, "", "", nil, nil},
		{
			in:      []Range{{16 * mib, 32 * mib}},
			badram:  "badram=0x1000000,0xffffffffff000000",
			memmap:  "memmap=0x1000000$0x1000000",
			widened: []Range{{16 * mib, 32 * mib}},
		},
		{
			// KiB 4..12: a 4K block at 4K (aligned to 4K only), then 4K at 8K.
			in:      []Range{{0x1000, 0x3000}},
			badram:  "badram=0x1000,0xfffffffffffff000,0x2000,0xfffffffffffff000",
			memmap:  "memmap=0x2000$0x1000",
			widened: []Range{{0x1000, 0x3000}},
		},
		{
			// Widened to [0, 2K): one 2K block.
			in:      []Range{{0x100, 0x500}},
			badram:  "badram=0x0,0xfffffffffffff800",
			memmap:  "memmap=0x400$0x100",
			widened: []Range{{0, 0x800}},
		},
		{
			// [1K, 7K): 1K at 1K, 2K at 2K, 2K at 4K, 1K at 6K.
			in:      []Range{{0x400, 0x1c00}},
			badram:  "badram=0x400,0xfffffffffffffc00,0x800,0xfffffffffffff800,0x1000,0xfffffffffffff800,0x1800,0xfffffffffffffc00",
			memmap:  "memmap=0x1800$0x400",
			widened: []Range{{0x400, 0x1c00}},
		},
		{
			// Unsorted, overlapping and unrounded input.
			in:         []Range{{0x2000000, 0x2001000}, {0x1000000, 0x1000123}, {0x1000100, 0x1000200}},
			badram:     "badram=0x1000000,0xfffffffffffffc00,0x2000000,0xfffffffffffff000",
			memmap:     "memmap=0x200$0x1000000,0x1000$0x2000000",
			widened:    []Range{{0x1000000, 0x1000400}, {0x2000000, 0x2001000}},
			memmapBack: []Range{{0x1000000, 0x1000200}, {0x2000000, 0x2001000}},
		},
	}
	for _, tt := range tests {
		if got := FormatBadRAM(tt.in); got != tt.badram {
			t.Errorf("FormatBadRAM(%v) = %q, want %q", tt.in, got, tt.badram)
		}
		if got := FormatMemmap(tt.in); got != tt.memmap {
			t.Errorf("FormatMemmap(%v) = %q, want %q", tt.in, got, tt.memmap)
		}
		if tt.badram == "" {
			continue
		}
		if got, err := ParseBadRAM(tt.badram, 4*gib); err != nil || !slices.Equal(got, tt.widened) {
			t.Errorf("ParseBadRAM(%q) = %v, %v; want %v", tt.badram, got, err, tt.widened)
		}
		back := tt.memmapBack
		if back == nil {
			back = tt.in
		}
		if got, err := ParseBadRAM(tt.memmap, 4*gib); err != nil || !slices.Equal(got, back) {
			t.Errorf("ParseBadRAM(%q) = %v, %v; want %v", tt.memmap, got, err, back)
		}
	}
}

// TestFormatRoundTripRandom round-trips random range sets through both
// formats and ParseBadRAM.
func TestFormatRoundTripRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for iter := 0; iter < 500; iter++ {
		memSize := rng.Uint64N(8*gib) + 1
		var rs []Range
		for range rng.IntN(6) {
			s := rng.Uint64N(memSize)
			rs = append(rs, Range{s, s + 1 + rng.Uint64N(min(memSize-s, 64*mib))})
		}
		checkFormatRoundTrip(t, rs, memSize)
	}
	// Ranges near the top of the 64-bit space.
	checkFormatRoundTrip(t, []Range{{^uint64(0) - 3*kib - 4, ^uint64(0) - 1}}, ^uint64(0))
	checkFormatRoundTrip(t, []Range{{0, 1<<64 - 1}}, ^uint64(0))
}

// checkFormatRoundTrip checks that rs, inside [0, memSize), survives
// FormatMemmap exactly and FormatBadRAM widened to whole KiB.
func checkFormatRoundTrip(t *testing.T, rs []Range, memSize uint64) {
	t.Helper()
	if got, err := parseFormatted(FormatMemmap(rs), memSize); err != nil || !slices.Equal(got, Merge(rs)) {
		t.Errorf("memmap round trip of %v in %#x: got %v, %v", rs, memSize, got, err)
	}
	want := widenRanges(rs)
	for i := range want {
		want[i].End = min(want[i].End, memSize)
	}
	want = Merge(want)
	if got, err := parseFormatted(FormatBadRAM(rs), memSize); err != nil || !slices.Equal(got, want) {
		t.Errorf("badram round trip of %v in %#x: %q gave %v, %v; want %v", rs, memSize, FormatBadRAM(rs), got, err, want)
	}
}

// parseFormatted is ParseBadRAM, except that "" (nothing to declare) is no
// ranges.
func parseFormatted(s string, memSize uint64) ([]Range, error) {
	if s == "" {
		return nil, nil
	}
	return ParseBadRAM(s, memSize)
}

func FuzzParseBadRAM(f *testing.F) {
	for _, s := range []string{
		"16M-32M", "16M+16M", "memmap=16M$16M", "memmap=0x123$0x1000000,4K!32M,", `16M\$16M`,
		"badram=0x01000000,0xff000000", "badram 0x5000,0xffeff000", "badram=0,0x0f000000",
		"badram=0x12345678,0xfffffffc,\n 0x0000000012345678,0xfffffffffffffff8,",
		"cutmem 16M 32M", "badram=0,0x400", "memmap=exactmap", "0xfffffffffffff000+0xfff",
	} {
		f.Add(s, uint64(256*mib))
		f.Add(s, uint64(5*gib))
	}
	f.Fuzz(func(t *testing.T, spec string, memSize uint64) {
		rs, err := ParseBadRAM(spec, memSize)
		if err != nil {
			if msg := err.Error(); msg == "" || strings.Contains(msg, "\n") {
				t.Fatalf("error is not one line: %q", msg)
			}
			if !errors.Is(err, ErrSyntax) {
				t.Fatalf("error %q is not ErrSyntax", err)
			}
			return
		}
		if len(rs) > maxBadRanges {
			t.Fatalf("%d ranges, more than %d", len(rs), maxBadRanges)
		}
		for i, r := range rs {
			if r.Empty() || r.End > memSize {
				t.Fatalf("range %v empty or beyond memSize %#x", r, memSize)
			}
			if i > 0 && r.Start <= rs[i-1].End {
				t.Fatalf("ranges %v and %v unsorted, overlapping or unmerged", rs[i-1], r)
			}
		}
		if len(rs) <= 1000 {
			checkFormatRoundTrip(t, rs, memSize)
		}
	})
}
