package boot

import (
	"slices"
	"strings"
	"testing"

	"kvmboot/loader/memmap"
	"kvmboot/machine/faults"
)

func TestXorImage(t *testing.T) {
	for _, tc := range []struct {
		r    memmap.Range
		bit  uint64
		want []memmap.Range
	}{
		{memmap.Range{Start: 0x6000, End: 0x8000}, 1 << 24, []memmap.Range{{Start: 0x1006000, End: 0x1008000}}},
		{memmap.Range{Start: 0x6000, End: 0x8000}, 1 << 12, []memmap.Range{{Start: 0x7000, End: 0x8000}, {Start: 0x6000, End: 0x7000}}},
		{memmap.Range{Start: 0x6000, End: 0x6004}, 1, []memmap.Range{{Start: 0x6001, End: 0x6002}, {Start: 0x6000, End: 0x6001}, {Start: 0x6003, End: 0x6004}, {Start: 0x6002, End: 0x6003}}},
	} {
		if got := xorImage(tc.r, tc.bit); !slices.Equal(got, tc.want) {
			t.Errorf("xorImage(%v, %#x) = %v, want %v", tc.r, tc.bit, got, tc.want)
		}
	}
}

func TestCheckFaulty(t *testing.T) {
	parse := func(specs ...string) []faults.Range {
		var out []faults.Range
		for _, s := range specs {
			rs, err := faults.Parse(s, DefaultMemSize)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, rs...)
		}
		return out
	}
	for _, tc := range []struct {
		cfg  Config
		want string // "" = accepted
	}{
		{Config{Faulty: parse("20M-21M:stuck0")}, ""},
		{Config{Faulty: parse("20M-21M:alias@24"), Memtest: "quick"}, ""},
		{Config{Faulty: parse("0x1006000+4K:alias@24")}, "aliased writes"},               // lands on the stub
		{Config{Faulty: parse("0x1010000+4K:alias@24"), Memtest: "thorough"}, "aliased"}, // lands on the memtest guest
		{Config{Faulty: parse("0x1010000+4K:alias@24")}, ""},                             // no memtest: nothing there
		{Config{Faulty: parse("0x7000+4:stuck1")}, "entry stub"},
		{Config{Faulty: parse("0x11000+4K"), Memtest: "quick"}, "memtest guest"},
		{Config{Faulty: parse("0xF0000+4K")}, "legacy hole"},
		{Config{MemtestRanges: []memmap.Range{{Start: 0, End: 1 << 20}}}, "need --memtest"},
		{Config{Memtest: "quick", MemtestRanges: []memmap.Range{{Start: 300 << 20, End: 400 << 20}}}, "no whole page"},
	} {
		err := checkFaulty(tc.cfg)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%+v: %v", tc.cfg, err)
		// The message names what the faulty RAM collides with: its contract.
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%+v: %v, want an error about %q", tc.cfg, err, tc.want)
		}
	}
}
