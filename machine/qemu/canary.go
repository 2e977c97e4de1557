package qemu

import (
	"bytes"
	"time"

	"kvmboot/loader"
	"kvmboot/loader/memmap"
	"kvmboot/machine"
)

// canaryPeriod is the length of the canary pattern: byte a of guest RAM
// holds canaryPage[a % canaryPeriod]. It varies byte by byte so that a
// write of a constant (0, all-ones, a repeated word) changes every byte.
const canaryPeriod = 4096

var canaryPage = func() []byte {
	b := make([]byte, canaryPeriod)
	x := uint32(0x9E3779B9)
	for i := range b {
		// xorshift32, then keep away from 0x00 and 0xFF, the values
		// guests write most.
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		c := byte(x >> 24)
		if c == 0 || c == 0xFF {
			c = 0x5A
		}
		b[i] = c
	}
	return b
}()

// canaryByte is the canary at guest physical address a.
func canaryByte(a uint64) byte { return canaryPage[a%canaryPeriod] }

// fillCanary writes the canary into mem, which holds guest physical
// addresses [base, base+len(mem)).
func fillCanary(mem []byte, base uint64) {
	for i := 0; i < len(mem); {
		off := int((base + uint64(i)) % canaryPeriod)
		i += copy(mem[i:], canaryPage[off:])
	}
}

// canaryGap is how far apart two changed bytes may be and still count as
// one write: a byte the guest happened to write with the canary's own value
// must not split a 4-byte store in two.
const canaryGap = 4

// checkCanary returns the ranges of mem (at guest address base) that no
// longer hold the canary, as absolute guest ranges. Changed bytes fewer than
// canaryGap bytes apart are one range.
func checkCanary(mem []byte, base uint64) []memmap.Range {
	var out []memmap.Range
	for i := 0; i < len(mem); {
		off := int((base + uint64(i)) % canaryPeriod)
		n := min(len(mem)-i, canaryPeriod-off)
		if bytes.Equal(mem[i:i+n], canaryPage[off:off+n]) {
			i += n
			continue
		}
		for j := i; j < i+n; j++ {
			if mem[j] == canaryPage[(off+j-i)%canaryPeriod] {
				continue
			}
			a := base + uint64(j)
			if k := len(out) - 1; k >= 0 && a < out[k].End+canaryGap {
				out[k].End = a + 1
			} else {
				out = append(out, memmap.Range{Start: a, End: a + 1})
			}
		}
		i += n
	}
	return out
}

// canaryRanges is what gets a canary: the bad ranges inside guest RAM minus
// the placements (the loader writes those before the guest runs, and a
// placement's bss must stay zero).
func canaryRanges(bad []memmap.Range, placements []loader.Placement, memSize uint64) []memmap.Range {
	var inRAM []memmap.Range
	for _, r := range memmap.Merge(bad) {
		if r.End = min(r.End, memSize); r.Start < r.End {
			inRAM = append(inRAM, r)
		}
	}
	placed := make([]memmap.Range, len(placements))
	for i, p := range placements {
		placed[i] = p.Range()
	}
	return memmap.Subtract(inRAM, placed)
}

// canaryWatch checks the canaries of a run and turns changes into bad-RAM
// accesses, each reported once.
type canaryWatch struct {
	ram    []byte
	ranges []memmap.Range
	seen   []memmap.Range // changed ranges already reported
	cost   time.Duration  // how long the last check took
}

// check returns the accesses that are new since the last check.
func (w *canaryWatch) check() []machine.BadAccess {
	start := time.Now()
	defer func() { w.cost = time.Since(start) }()
	var found []machine.BadAccess
	for _, r := range w.ranges {
		for _, c := range checkCanary(w.ram[r.Start:r.End], r.Start) {
			if w.reported(c) {
				continue
			}
			w.seen = append(w.seen, c)
			found = append(found, machine.BadAccess{Addr: c.Start, Size: int(c.Size()), Write: true, CPU: -1}) // a canary cannot tell which CPU wrote
		}
	}
	return found
}

// reported says whether a change was reported before. A range that grew
// since (the guest wrote next to its earlier write) counts as new only for
// its new bytes' sake: it is reported again with its whole span.
func (w *canaryWatch) reported(c memmap.Range) bool {
	for _, s := range w.seen {
		if s == c || s.Contains(c) {
			return true
		}
	}
	return false
}

// interval is how long to wait before the next check: at least 25 ms, and
// at least four times what a check costs, so that watching takes at most
// a fifth of a core however large the bad ranges are.
func (w *canaryWatch) interval() time.Duration {
	return max(25*time.Millisecond, 4*w.cost)
}
