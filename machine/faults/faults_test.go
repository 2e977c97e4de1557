package faults

import (
	"encoding/binary"
	"slices"
	"strings"
	"testing"

	"kvmboot/loader/memmap"
)

const mib = 1 << 20

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		spec string
		want []Range
	}{
		{"20M-21M", []Range{{memmap.Range{Start: 20 * mib, End: 21 * mib}, Model{Kind: Stuck0, Bits: 1 << 31}}}},
		{"20M-21M:stuck0", []Range{{memmap.Range{Start: 20 * mib, End: 21 * mib}, Model{Kind: Stuck0, Bits: 1 << 31}}}},
		{"20M+4K:stuck1@0+7+31", []Range{{memmap.Range{Start: 20 * mib, End: 20*mib + 4096}, Model{Kind: Stuck1, Bits: 1 | 1<<7 | 1<<31}}}},
		{"20M+4K:STUCK0@all", []Range{{memmap.Range{Start: 20 * mib, End: 20*mib + 4096}, Model{Kind: Stuck0, Bits: 0xFFFFFFFF}}}},
		{"memmap=1M$20M:flip@0.5", []Range{{memmap.Range{Start: 20 * mib, End: 21 * mib}, Model{Kind: Flip, P: 0.5}}}},
		{"memmap=1M$20M,1M$30M:flip", []Range{
			{memmap.Range{Start: 20 * mib, End: 21 * mib}, Model{Kind: Flip, P: DefaultFlipP}},
			{memmap.Range{Start: 30 * mib, End: 31 * mib}, Model{Kind: Flip, P: DefaultFlipP}}}},
		{"badram=0x1400000,0xfffffffffff00000:alias@12", []Range{{memmap.Range{Start: 20 * mib, End: 21 * mib}, Model{Kind: Alias, Line: 12}}}},
		{"0x1400000-0x1401000:alias", []Range{{memmap.Range{Start: 20 * mib, End: 20*mib + 4096}, Model{Kind: Alias, Line: DefaultAliasLine}}}},
		{"cutmem 20M 21M:dead", []Range{{memmap.Range{Start: 20 * mib, End: 21 * mib}, Model{Kind: Dead}}}},
		{"250M-300M:dead", []Range{{memmap.Range{Start: 250 * mib, End: 256 * mib}, Model{Kind: Dead}}}},
	} {
		got, err := Parse(tc.spec, 256*mib)
		if err != nil {
			t.Errorf("%q: %v", tc.spec, err)
			continue
		}
		if len(got) != len(tc.want) {
			t.Errorf("%q: %v, want %v", tc.spec, got, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("%q: %v, want %v", tc.spec, got[i], tc.want[i])
			}
			// String round-trips.
			back, err := Parse(got[i].String(), 256*mib)
			if err != nil || len(back) != 1 || back[0] != got[i] {
				t.Errorf("%q: String %q parses back as %v, %v", tc.spec, got[i].String(), back, err)
			}
		}
	}
	for _, bad := range []string{
		"20M-21M:stuck2", "20M-21M:stuck0@32", "20M-21M:stuck0@", "20M-21M:stuck0@1+x", "20M-21M:flip@0",
		"20M-21M:flip@1.5", "20M-21M:flip@nan", "20M-21M:alias@32", "20M-21M:alias@-1", "20M-21M:dead@1",
		"20M:stuck0", "", ":stuck0", "20M-21M:@3",
	} {
		if _, err := Parse(bad, 256*mib); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	// Listing the models is the message's contract.
	if _, err := Parse("20M-21M:bogus", 256*mib); err == nil || !strings.Contains(err.Error(), "stuck0[@BITS]") {
		t.Errorf("unknown model error does not list the models: %v", err)
	}
}

func TestCheckAndSubtract(t *testing.T) {
	a := Range{memmap.Range{Start: 0x1000, End: 0x3000}, Model{Kind: Dead}}
	b := Range{memmap.Range{Start: 0x2000, End: 0x4000}, Model{Kind: Stuck0, Bits: 1}}
	if err := Check([]Range{b, a}); err == nil {
		t.Error("overlapping ranges accepted")
	}
	if _, err := NewSet([]Range{a, b}, 0); err == nil {
		t.Error("NewSet took overlapping ranges")
	}
	got := Subtract([]Range{a}, []memmap.Range{{Start: 0x1800, End: 0x2000}})
	want := []Range{{memmap.Range{Start: 0x1000, End: 0x1800}, a.Model}, {memmap.Range{Start: 0x2000, End: 0x3000}, a.Model}}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("Subtract = %v, want %v", got, want)
	}
	if got := Subtract([]Range{a}, []memmap.Range{{Start: 0, End: 0x10000}}); len(got) != 0 {
		t.Errorf("all cut away: %v", got)
	}
}

// access runs one access of n bytes through s against mem.
func access(s *Set, mem []byte, addr uint64, v uint32, n int, write bool) (uint32, uint8) {
	var b [8]byte
	binary.LittleEndian.PutUint32(b[:], v)
	h := s.Access(mem, addr, b[:n], write)
	return binary.LittleEndian.Uint32(b[:]), h
}

func newSet(t *testing.T, seed uint64, rs ...Range) *Set {
	t.Helper()
	s, err := NewSet(rs, seed)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestStuck(t *testing.T) {
	mem := make([]byte, 0x3000)
	r := memmap.Range{Start: 0x1000, End: 0x2000}
	s0 := newSet(t, 0, Range{r, Model{Kind: Stuck0, Bits: 1<<31 | 1<<8 | 1}})
	access(s0, mem, 0x1000, 0xFFFFFFFF, 4, true)
	if got, h := access(s0, mem, 0x1000, 0, 4, false); got != 0x7FFFFEFE || h != 0xF {
		t.Errorf("stuck0 read %#x (handled %#x), want 0x7ffffefe", got, h)
	}
	// The VMM keeps what was written; only the read is masked.
	if binary.LittleEndian.Uint32(mem[0x1000:]) != 0xFFFFFFFF {
		t.Errorf("memory holds % x", mem[0x1000:0x1004])
	}
	// A byte access sees the bits of its own byte of the word.
	if got, _ := access(s0, mem, 0x1001, 0, 1, false); got != 0xFE {
		t.Errorf("stuck0 byte 1 read %#x, want 0xfe", got)
	}
	if got, _ := access(s0, mem, 0x1002, 0, 1, false); got != 0xFF {
		t.Errorf("stuck0 byte 2 read %#x, want 0xff", got)
	}
	// A pattern that has the stuck bits clear reads back exactly.
	access(s0, mem, 0x1004, 0x12345602, 4, true)
	if got, _ := access(s0, mem, 0x1004, 0, 4, false); got != 0x12345602 {
		t.Errorf("stuck0 read %#x of a pattern without the stuck bits", got)
	}
	s1 := newSet(t, 0, Range{r, Model{Kind: Stuck1, Bits: 1 << 31}})
	access(s1, mem, 0x1ffc, 0, 4, true)
	if got, _ := access(s1, mem, 0x1ffc, 0, 4, false); got != 0x80000000 {
		t.Errorf("stuck1 read %#x", got)
	}
	st := s1.Stats()
	if st.Reads != 1 || st.Writes != 1 || st.CorruptedReads != 1 || len(st.Events) != 1 || st.Events[0].Returned != 0x80000000 || st.Events[0].Held != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestStraddle(t *testing.T) {
	// An access half in, half out: only the faulty bytes are handled.
	mem := make([]byte, 0x3000)
	s := newSet(t, 0, Range{memmap.Range{Start: 0x1002, End: 0x2000}, Model{Kind: Dead}})
	_, h := access(s, mem, 0x1000, 0x11223344, 4, true)
	if h != 0xC {
		t.Errorf("handled %#x, want 0xc", h)
	}
	if mem[0x1002] != 0 || mem[0x1003] != 0 {
		t.Error("dead bytes were written")
	}
	if mem[0x1000] != 0 {
		t.Error("Access wrote a byte it did not handle")
	}
	if _, h := access(s, mem, 0x0ff8, 0, 4, false); h != 0 {
		t.Errorf("an access outside every range was handled: %#x", h)
	}
	var nilSet *Set
	if h := nilSet.Access(mem, 0x1000, make([]byte, 4), false); h != 0 || nilSet.Ranges() != nil || nilSet.Stats() != nil {
		t.Error("a nil Set does something")
	}
}

func TestDead(t *testing.T) {
	mem := make([]byte, 0x3000)
	mem[0x1000] = 0x42
	s := newSet(t, 0, Range{memmap.Range{Start: 0x1000, End: 0x2000}, Model{Kind: Dead}})
	access(s, mem, 0x1000, 0, 4, true)
	if mem[0x1000] != 0x42 {
		t.Error("a write to dead RAM landed")
	}
	if got, _ := access(s, mem, 0x1000, 0, 4, false); got != 0xFFFFFFFF {
		t.Errorf("dead read %#x", got)
	}
	if st := s.Stats(); st.LostWrites != 1 || st.CorruptedReads != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestAlias(t *testing.T) {
	mem := make([]byte, 0x10000)
	// Line 12: the faulty page 0x2000 aliases 0x3000, which is good RAM.
	s := newSet(t, 0, Range{memmap.Range{Start: 0x2000, End: 0x3000}, Model{Kind: Alias, Line: 12}})
	access(s, mem, 0x2010, 0xCAFEBABE, 4, true)
	if got := binary.LittleEndian.Uint32(mem[0x3010:]); got != 0xCAFEBABE {
		t.Errorf("aliased copy holds %#x", got)
	}
	if got, _ := access(s, mem, 0x2010, 0, 4, false); got != 0xCAFEBABE {
		t.Errorf("the written address reads %#x: reads must be exact", got)
	}
	st := s.Stats()
	if st.AliasedWrites != 1 || st.CorruptedReads != 0 || st.Events[0].AliasAddr != 0x3010 {
		t.Errorf("stats %+v", st)
	}

	// In-page line 10, both halves faulty: the last write wins in both.
	s = newSet(t, 0, Range{memmap.Range{Start: 0x4000, End: 0x5000}, Model{Kind: Alias, Line: 10}})
	access(s, mem, 0x4000, 0x11111111, 4, true)
	access(s, mem, 0x4400, 0x22222222, 4, true)
	if got, _ := access(s, mem, 0x4000, 0, 4, false); got != 0x22222222 {
		t.Errorf("0x4000 reads %#x after a write to its alias 0x4400", got)
	}
	// An aliased copy beyond memory is dropped, not a panic.
	s = newSet(t, 0, Range{memmap.Range{Start: 0x8000, End: 0x9000}, Model{Kind: Alias, Line: 31}})
	access(s, mem, 0x8000, 1, 4, true)
}

func TestFlip(t *testing.T) {
	run := func(seed uint64, p float64) ([]uint32, *Stats) {
		mem := make([]byte, 0x3000)
		s := newSet(t, seed, Range{memmap.Range{Start: 0x1000, End: 0x2000}, Model{Kind: Flip, P: p}})
		var out []uint32
		for a := uint64(0x1000); a < 0x2000; a += 4 {
			access(s, mem, a, uint32(a), 4, true)
			v, _ := access(s, mem, a, 0, 4, false)
			out = append(out, v^uint32(a))
		}
		return out, s.Stats()
	}
	a, sa := run(7, 0.1)
	b, _ := run(7, 0.1)
	c, _ := run(8, 0.1)
	same, flips := true, 0
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("seed 7 read %d differs between runs: %#x vs %#x", i, a[i], b[i])
		}
		if a[i] != c[i] {
			same = false
		}
		if a[i] != 0 {
			flips++
			if a[i]&(a[i]-1) != 0 {
				t.Errorf("read %d has more than one bit flipped: %#x", i, a[i])
			}
		}
	}
	if same {
		t.Error("seeds 7 and 8 flip the same bits")
	}
	// 1024 reads at P = 0.1: about 102 flips (binomial, sd about 10).
	if flips < 60 || flips > 150 || sa.CorruptedReads != uint64(flips) {
		t.Errorf("%d flips (stats %d) in 1024 reads at P=0.1", flips, sa.CorruptedReads)
	}
	all, _ := run(1, 1)
	for i, v := range all {
		if v == 0 {
			t.Fatalf("P=1: read %d not flipped", i)
		}
	}
	// The memory itself is never changed by a flip.
	mem := make([]byte, 0x3000)
	s := newSet(t, 3, Range{memmap.Range{Start: 0x1000, End: 0x2000}, Model{Kind: Flip, P: 1}})
	access(s, mem, 0x1000, 0xA5A5A5A5, 4, true)
	access(s, mem, 0x1000, 0, 4, false)
	if binary.LittleEndian.Uint32(mem[0x1000:]) != 0xA5A5A5A5 {
		t.Error("a flipped read changed memory")
	}
}

func TestModelString(t *testing.T) {
	for _, s := range []string{"stuck0@31", "stuck1@0+7+31", "stuck0@all", "flip@0.25", "alias@3", "dead"} {
		m, err := ParseModel(s)
		if err != nil || m.String() != s {
			t.Errorf("%q -> %v -> %q (%v)", s, m, m.String(), err)
		}
	}
}

func TestEventsBounded(t *testing.T) {
	mem := make([]byte, 0x3000)
	s := newSet(t, 0, Range{memmap.Range{Start: 0x1000, End: 0x2000}, Model{Kind: Dead}})
	for a := uint64(0x1000); a < 0x2000; a += 4 {
		access(s, mem, a, 0, 4, false)
	}
	if st := s.Stats(); len(st.Events) != MaxEvents || st.CorruptedReads != 1024 {
		t.Errorf("%d events kept, %d corrupted reads", len(st.Events), st.CorruptedReads)
	}
}

// TestWroteMatchesAccess: a backend that keeps memory as reads see it
// (Materialize, then Wrote after each write) gives every read the value
// Access gives a backend that traps it, for the same writes.
func TestWroteMatchesAccess(t *testing.T) {
	r := memmap.Range{Start: 0x1000, End: 0x2000}
	for _, m := range []Model{
		{Kind: Stuck0, Bits: 1<<31 | 1<<8 | 1}, {Kind: Stuck1, Bits: 1<<31 | 1<<4}, {Kind: Dead},
		{Kind: Alias, Line: 10}, {Kind: Alias, Line: 13},
	} {
		t.Run(m.String(), func(t *testing.T) {
			trapped, direct := make([]byte, 0x4000), make([]byte, 0x4000)
			for i := range trapped {
				trapped[i] = byte(i * 7)
			}
			copy(direct, trapped)
			st, sd := newSet(t, 0, Range{r, m}), newSet(t, 0, Range{r, m})
			sd.Materialize(direct)
			x := uint32(0x9E3779B9)
			for i := range 4000 {
				x ^= x << 13
				x ^= x >> 17
				x ^= x << 5
				size := []int{1, 2, 4}[x%3]
				a := 0x0ff0 + uint64(x>>8)%0x1020&^uint64(size-1) // some straddle the range's ends
				// Each write changes every byte it writes (the one case
				// Wrote cannot see is a write of what memory held).
				v := uint32(i+1) * 0x01010101
				var b [4]byte
				binary.LittleEndian.PutUint32(b[:], v)
				h := st.Access(trapped, a, b[:size], true)
				for k := range size {
					if h&(1<<k) == 0 { // what a trapping backend writes itself
						trapped[a+uint64(k)] = b[k]
					}
				}
				window := a &^ 63
				before := append([]byte(nil), direct[window:window+wroteWindow]...)
				for k := range size {
					direct[a+uint64(k)] = byte(v >> (8 * k))
				}
				if (Range{r, m}).Overlaps(memmap.Range{Start: a, End: a + uint64(size)}) {
					sd.Wrote(direct, window, before)
				}
			}
			for a := uint64(0x0f00); a < 0x3100; a += 4 {
				b := make([]byte, 4)
				h := st.Access(trapped, a, b, false)
				for k := range 4 {
					if h&(1<<k) == 0 {
						b[k] = trapped[a+uint64(k)]
					}
				}
				if got, want := binary.LittleEndian.Uint32(b), binary.LittleEndian.Uint32(direct[a:]); got != want {
					t.Fatalf("%#x: a trapped read gives %#x, memory holds %#x", a, got, want)
				}
			}
			if s := sd.Stats(); s.Writes == 0 || (m.Kind == Alias) != (s.AliasedWrites > 0) || (m.Kind == Dead) != (s.LostWrites > 0) ||
				(m.Kind == Stuck0 || m.Kind == Stuck1) != (s.CorruptedWrites > 0) {
				t.Errorf("stats %+v", s)
			}
		})
	}
}

// wroteWindow is the largest window machine/qemu passes to Wrote.
const wroteWindow = 128

// TestFlipRead: one draw per read, deterministic for a seed, about P of
// them flipping one bit of the word's flip bytes, none outside flip RAM.
func TestFlipRead(t *testing.T) {
	run := func(seed uint64) []uint64 {
		s := newSet(t, seed, Range{memmap.Range{Start: 0x1002, End: 0x2000}, Model{Kind: Flip, P: 0.25}})
		var out []uint64
		for a := uint64(0x1000); a < 0x2000; a += 4 {
			at, mask := s.FlipRead(a)
			if mask != 0 && (at < 0x1002 || at >= a+4 || at < a || mask&(mask-1) != 0) {
				t.Fatalf("read at %#x flips %#x at %#x", a, mask, at)
			}
			out = append(out, at<<8|uint64(mask))
		}
		if st := s.Stats(); st.Reads != 1024 || st.CorruptedReads < 180 || st.CorruptedReads > 330 {
			t.Errorf("stats %+v: want 1024 reads, about 256 flipped", st)
		}
		return out
	}
	if a, b := run(5), run(5); !slices.Equal(a, b) {
		t.Error("the same seed flips differently")
	}
	if a, c := run(5), run(6); slices.Equal(a, c) {
		t.Error("seeds 5 and 6 flip the same bits")
	}
	s := newSet(t, 1, Range{memmap.Range{Start: 0x1000, End: 0x2000}, Model{Kind: Stuck0, Bits: 1}})
	if at, mask := s.FlipRead(0x1000); mask != 0 || at != 0 {
		t.Error("a stuck range flipped")
	}
}
