package memtest

import (
	"slices"
	"testing"

	"kvmboot/loader/memmap"
	"kvmboot/realmode"
)

const mib = 1 << 20

func TestCoalescePages(t *testing.T) {
	for _, tc := range []struct {
		pages []uint64
		want  []memmap.Range
	}{
		{nil, nil},
		{[]uint64{0x1400000}, []memmap.Range{{Start: 0x1400000, End: 0x1401000}}},
		// unsorted, duplicated, inside the page, contiguous
		{[]uint64{0x1402010, 0x1400000, 0x1401ffc, 0x1400004, 0x1405000},
			[]memmap.Range{{Start: 0x1400000, End: 0x1403000}, {Start: 0x1405000, End: 0x1406000}}},
	} {
		if got := CoalescePages(tc.pages); !slices.Equal(got, tc.want) {
			t.Errorf("CoalescePages(%#x) = %v, want %v", tc.pages, got, tc.want)
		}
	}
}

func TestTestRanges(t *testing.T) {
	got, err := TestRanges(Config{MemSize: 64 * mib})
	if err != nil {
		t.Fatal(err)
	}
	want := []memmap.Range{{Start: 0, End: realmode.StubLow}, {Start: realmode.StubHigh, End: realmode.MemtestAddr},
		{Start: realmode.MemtestEnd, End: 0xA0000}, {Start: mib, End: 64 * mib}}
	if !slices.Equal(got, want) {
		t.Errorf("default ranges %v, want %v", got, want)
	}
	// Declared bad RAM is left out, and so are partial pages.
	got, _ = TestRanges(Config{MemSize: 64 * mib, BadRAM: []memmap.Range{{Start: 20*mib + 0x400, End: 21*mib + 0x800}},
		Ranges: []memmap.Range{{Start: 16 * mib, End: 24 * mib}, {Start: 100 * mib, End: 200 * mib}}})
	want = []memmap.Range{{Start: 16 * mib, End: 20 * mib}, {Start: 21*mib + 0x1000, End: 24 * mib}}
	if !slices.Equal(got, want) {
		t.Errorf("limited ranges %v, want %v", got, want)
	}
	if _, err := TestRanges(Config{MemSize: 64 * mib, Ranges: []memmap.Range{{Start: 0xA0000, End: 0x100000}}}); err == nil {
		t.Error("a range with no RAM accepted")
	}
	if Pages(want) != 4*256+3*256-1 {
		t.Errorf("Pages = %d", Pages(want))
	}
}

func TestPlan(t *testing.T) {
	plan, ranges, err := Plan(Config{Mode: Thorough, Seed: 3, MemSize: 64 * mib, Ranges: []memmap.Range{{Start: 16 * mib, End: 17 * mib}}, Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(ranges) != 1 || plan.Entry.EIP != realmode.MemtestAddr || plan.Entry.EBX != realmode.MemtestTable {
		t.Errorf("ranges %v entry %+v", ranges, plan.Entry)
	}
	if len(plan.Checks()) != 2 {
		t.Errorf("%d checks, want the guest and its table", len(plan.Checks()))
	}
	if _, _, err := Plan(Config{Mode: "slow", MemSize: 64 * mib}); err == nil {
		t.Error("mode slow accepted")
	}
}

func TestSession(t *testing.T) {
	tested := []memmap.Range{{Start: 16 * mib, End: 24 * mib}}
	s := NewSession(tested)
	// A fail before hello is out of place.
	s.Frame(Frame{Type: TypeFail, Payload: failPayload(20*mib, 1, 0, 1, 1)})
	s.Frame(Frame{Type: TypeHello, Payload: helloPayload(0, 1, 2048, 0)})
	s.Frame(Frame{Type: TypeFail, Payload: failPayload(20*mib+0x10, 1, 0, 2, 256)})
	s.Frame(Frame{Type: TypeFail, Payload: failPayload(20*mib, 1, 0, 7, 1)})     // duplicate page
	s.Frame(Frame{Type: TypeFail, Payload: failPayload(30*mib, 1, 0, 7, 1)})     // outside the test
	s.Frame(Frame{Type: TypeFail, Payload: failPayload(23*mib, 1, 0, 7, 1<<30)}) // run clipped to the test
	s.Frame(Frame{Type: TypeFail, Payload: failPayload(22*mib, 1, 0, 7, 0)})     // zero pages
	s.Frame(Frame{Type: TypeFail, Payload: []byte{1, 2, 3}})                     // short
	s.Frame(Frame{Type: TypeDone, Payload: donePayload(2048, 256, 0)})
	s.Frame(Frame{Type: TypeFail, Payload: failPayload(17*mib, 1, 0, 7, 1)}) // after done
	want := []memmap.Range{{Start: 20 * mib, End: 21 * mib}, {Start: 23 * mib, End: 24 * mib}}
	if got := s.Failing(); !slices.Equal(got, want) {
		t.Errorf("failing %v, want %v", got, want)
	}
	if !s.Complete() || s.ignored != 5 || len(s.details) != 3 {
		t.Errorf("complete %v ignored %d details %d", s.Complete(), s.ignored, len(s.details))
	}
}

// TestSessionBounded: a guest that sends a million fail frames cannot make
// the host keep a million ranges.
func TestSessionBounded(t *testing.T) {
	s := NewSession([]memmap.Range{{Start: 0, End: 64 * mib}})
	s.Frame(Frame{Type: TypeHello, Payload: helloPayload(0, 1, 16384, 0)})
	p := failPayload(0, 1, 0, 1, 1)
	for i := 0; i < 1_000_000; i++ {
		p[1] = byte(i) // addresses within the first 64 KiB... spread over 16 pages
		s.Frame(Frame{Type: TypeFail, Payload: p})
		if len(s.failing) > 4096 {
			t.Fatalf("%d ranges held after %d frames", len(s.failing), i)
		}
	}
	if len(s.details) != MaxFailures {
		t.Errorf("%d details", len(s.details))
	}
}
