// Package faults models RAM that misbehaves without being declared bad:
// kvmboot's --faulty-ram fault injection. The guest is not told: the range
// stays RAM in its memory map, and only a test that reads back what it
// wrote can find it. Backends apply the models in one of two ways:
//
//   - A backend that traps every access before it happens (machine/kvm
//     leaves faulty RAM out of its memory slots, so each access exits as
//     MMIO) calls Set.Access, which serves the access from the memory
//     contents the VMM keeps, through the range's model.
//   - A backend whose guest reads RAM directly and which learns of writes
//     after they happen (machine/qemu's TCG plugin) keeps memory as reads
//     must see it: Set.Materialize once before the guest runs, Set.Wrote
//     after each write (stuck bits applied, dead bytes back to all-ones,
//     aliased bytes copied), and Set.FlipRead around reads of flip ranges.
//     Two approximations: a write of the very bytes memory held is not
//     copied to an alias (the backend sees no change), and a read of a
//     flip range draws as a read of its aligned 32-bit word.
//
// Grammar of a --faulty-ram value (Parse):
//
//	SPEC[:MODEL]
//
// SPEC is any memmap.ParseBadRAM range syntax (START-END, START+SIZE,
// memmap=SIZE$START[,...], badram=ADDR,MASK[,...], cutmem FROM TO); none of
// them contains a ':', so the model is whatever follows the last one.
// MODEL is one of (default stuck0):
//
//	stuck0[@BITS]  the bits read as 0
//	stuck1[@BITS]  the bits read as 1
//	               BITS is a '+'-separated list of bit numbers 0..31 in
//	               each aligned little-endian 32-bit word of the range
//	               (bit 8 is bit 0 of the word's second byte), or "all".
//	               Default: bit 31, the top bit, which an address-in-address
//	               pattern never sets below 2 GiB, so that only a data
//	               pattern (walking ones, inversions) finds a stuck0 there.
//	flip[@P]       each read access returns one bit flipped with
//	               probability P (0 < P <= 1, default 0.01); which reads
//	               and which bit follow from the seed, deterministically
//	alias[@LINE]   address line LINE (0..31, default 10) stuck: a write to
//	               an address A of the range also lands at A xor (1<<LINE),
//	               the aliased copy, which therefore holds the last value
//	               written to either; reads are exact
//	dead           reads return all-ones, writes are lost
package faults

import (
	"cmp"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"sort"
	"strconv"
	"strings"

	"kvmboot/loader/memmap"
)

// Kind is a fault model's name.
type Kind string

const (
	Stuck0 Kind = "stuck0"
	Stuck1 Kind = "stuck1"
	Flip   Kind = "flip"
	Alias  Kind = "alias"
	Dead   Kind = "dead"
)

// Defaults of the model parameters.
const (
	DefaultStuckBits = 1 << 31
	DefaultFlipP     = 0.01
	DefaultAliasLine = 10
)

// Model is how a faulty range misbehaves.
type Model struct {
	Kind Kind `json:"model"`
	// Bits (stuck0, stuck1) is the mask of stuck bits in each aligned
	// 32-bit word.
	Bits uint32 `json:"bits,omitempty"`
	// P (flip) is the probability that a read access gets a bit flipped.
	P float64 `json:"p,omitempty"`
	// Line (alias) is the stuck address line.
	Line uint `json:"line,omitempty"`
}

// String renders m as Parse reads it, with every parameter explicit.
func (m Model) String() string {
	switch m.Kind {
	case Stuck0, Stuck1:
		if m.Bits == math.MaxUint32 {
			return string(m.Kind) + "@all"
		}
		var parts []string
		for b := m.Bits; b != 0; b &= b - 1 {
			parts = append(parts, strconv.Itoa(bits.TrailingZeros32(b)))
		}
		return string(m.Kind) + "@" + strings.Join(parts, "+")
	case Flip:
		return "flip@" + strconv.FormatFloat(m.P, 'g', -1, 64)
	case Alias:
		return fmt.Sprintf("alias@%d", m.Line)
	}
	return string(m.Kind)
}

// Range is a faulty range and its model.
type Range struct {
	memmap.Range
	Model Model
}

// String renders r as a --faulty-ram value.
func (r Range) String() string {
	return fmt.Sprintf("%#x-%#x:%s", r.Start, r.End, r.Model)
}

const modelForms = "want stuck0[@BITS], stuck1[@BITS] (BITS: 0..31 joined by '+', or all), flip[@P] (0 < P <= 1), alias[@LINE] (0..31) or dead"

// Parse reads one --faulty-ram value into the ranges it names inside a
// guest of memSize bytes (see the package comment for the grammar). Parts
// beyond memSize are dropped, as for --bad-ram.
func Parse(spec string, memSize uint64) ([]Range, error) {
	where, model := spec, ""
	if i := strings.LastIndexByte(spec, ':'); i >= 0 {
		where, model = spec[:i], spec[i+1:]
	}
	m, err := ParseModel(model)
	if err != nil {
		return nil, err
	}
	rs, err := memmap.ParseBadRAM(where, memSize)
	if err != nil {
		return nil, err
	}
	out := make([]Range, 0, len(rs))
	for _, r := range rs {
		out = append(out, Range{Range: r, Model: m})
	}
	return out, nil
}

// ParseModel reads MODEL; "" is the default, stuck0 at bit 31.
func ParseModel(s string) (Model, error) {
	s = strings.TrimSpace(s)
	name, arg, hasArg := strings.Cut(s, "@")
	name = strings.ToLower(name)
	if hasArg && arg == "" {
		return Model{}, fmt.Errorf("fault model %q: nothing after '@'; %s", s, modelForms)
	}
	switch Kind(name) {
	case "", Stuck0, Stuck1:
		m := Model{Kind: Kind(name), Bits: DefaultStuckBits}
		if m.Kind == "" {
			if hasArg {
				return Model{}, fmt.Errorf("fault model %q has no name; %s", s, modelForms)
			}
			m.Kind = Stuck0
		}
		if hasArg {
			mask, err := parseBits(arg)
			if err != nil {
				return Model{}, fmt.Errorf("fault model %q: %v; %s", s, err, modelForms)
			}
			m.Bits = mask
		}
		return m, nil
	case Flip:
		m := Model{Kind: Flip, P: DefaultFlipP}
		if hasArg {
			p, err := strconv.ParseFloat(arg, 64)
			if err != nil || !(p > 0 && p <= 1) {
				return Model{}, fmt.Errorf("fault model %q: probability %q is not in (0, 1]; %s", s, arg, modelForms)
			}
			m.P = p
		}
		return m, nil
	case Alias:
		m := Model{Kind: Alias, Line: DefaultAliasLine}
		if hasArg {
			n, err := strconv.ParseUint(arg, 10, 8)
			if err != nil || n > 31 {
				return Model{}, fmt.Errorf("fault model %q: address line %q is not 0..31; %s", s, arg, modelForms)
			}
			m.Line = uint(n)
		}
		return m, nil
	case Dead:
		if hasArg {
			return Model{}, fmt.Errorf("fault model %q: dead takes no parameter; %s", s, modelForms)
		}
		return Model{Kind: Dead}, nil
	}
	return Model{}, fmt.Errorf("unknown fault model %q; %s", s, modelForms)
}

func parseBits(s string) (uint32, error) {
	if strings.EqualFold(s, "all") {
		return math.MaxUint32, nil
	}
	var mask uint32
	for _, p := range strings.Split(s, "+") {
		n, err := strconv.ParseUint(strings.TrimSpace(p), 10, 8)
		if err != nil || n > 31 {
			return 0, fmt.Errorf("bit %q is not 0..31", p)
		}
		mask |= 1 << n
	}
	return mask, nil
}

// Check verifies that rs can form a Set: ranges of one model each, none
// overlapping another.
func Check(rs []Range) error { return checkSorted(sortedByStart(rs)) }

// sortedByStart returns a copy of rs sorted by start address.
func sortedByStart(rs []Range) []Range {
	s := slices.Clone(rs)
	slices.SortFunc(s, func(a, b Range) int { return cmp.Compare(a.Start, b.Start) })
	return s
}

// checkSorted is Check for ranges already sorted by start.
func checkSorted(s []Range) error {
	for i := 1; i < len(s); i++ {
		if s[i].Start < s[i-1].End {
			return fmt.Errorf("faulty ranges %s and %s overlap: give each byte one model", s[i-1], s[i])
		}
	}
	return nil
}

// Ranges returns the address ranges of rs, merged.
func Ranges(rs []Range) []memmap.Range {
	out := make([]memmap.Range, 0, len(rs))
	for _, r := range rs {
		out = append(out, r.Range)
	}
	return memmap.Merge(out)
}

// Subtract returns rs without the bytes in cut (declared bad RAM, which
// stays bad rather than faulty).
func Subtract(rs []Range, cut []memmap.Range) []Range {
	cut = memmap.Merge(cut)
	var out []Range
	for _, r := range rs {
		for _, p := range memmap.Subtract([]memmap.Range{r.Range}, cut) {
			out = append(out, Range{Range: p, Model: r.Model})
		}
	}
	return out
}

// MaxEvents is how many corrupting accesses Stats keeps in detail.
const MaxEvents = 16

// Stats is what the guest did to faulty RAM.
type Stats struct {
	Reads  uint64 `json:"reads"`  // read accesses that touched faulty bytes
	Writes uint64 `json:"writes"` // write accesses that touched faulty bytes
	// CorruptedReads returned something other than the memory holds.
	CorruptedReads uint64 `json:"corrupted_reads"`
	// LostWrites (dead) and AliasedWrites (alias) changed memory other
	// than what was written.
	LostWrites    uint64 `json:"lost_writes"`
	AliasedWrites uint64 `json:"aliased_writes"`
	// CorruptedWrites (stuck bits) left memory other than what was
	// written: counted by backends that keep memory as reads see it
	// (Wrote), where a stuck bit shows at the write rather than at
	// each read.
	CorruptedWrites uint64  `json:"corrupted_writes"`
	Events          []Event `json:"events"` // the first MaxEvents of those
}

// Event is one access the model changed.
type Event struct {
	Addr  uint64 `json:"addr"`
	Size  int    `json:"size"`
	Write bool   `json:"write"`
	Model string `json:"model"`
	// Held is what memory holds (for a write: what was written),
	// Returned what the read gave; little endian.
	Held     uint64 `json:"held"`
	Returned uint64 `json:"returned"`
	// AliasAddr is where an aliased write also landed.
	AliasAddr uint64 `json:"alias_addr,omitempty"`
}

// Set is the faulty RAM of one run: its ranges and their state (the flip
// model's draw counter, the statistics). It is not safe for concurrent use:
// a backend calls it from the vCPU loop.
type Set struct {
	ranges []Range // sorted, not overlapping
	seed   uint64
	draws  uint64
	stats  Stats
}

// NewSet returns the Set for rs (which must pass Check); seed drives the
// flip model. A nil or empty rs gives a nil Set, on which every method is a
// no-op.
func NewSet(rs []Range, seed uint64) (*Set, error) {
	if len(rs) == 0 {
		return nil, nil
	}
	sorted := sortedByStart(rs)
	if err := checkSorted(sorted); err != nil {
		return nil, err
	}
	return &Set{ranges: sorted, seed: seed}, nil
}

// Ranges is the faulty memory, merged: what a backend leaves unbacked.
func (s *Set) Ranges() []memmap.Range {
	if s == nil {
		return nil
	}
	return Ranges(s.ranges)
}

// List returns the ranges and their models, sorted (nil for a nil Set).
func (s *Set) List() []Range {
	if s == nil {
		return nil
	}
	return slices.Clone(s.ranges)
}

// Stats returns a copy of the statistics so far (nil for a nil Set).
func (s *Set) Stats() *Stats {
	if s == nil {
		return nil
	}
	st := s.stats
	st.Events = slices.Clone(s.stats.Events)
	if st.Events == nil {
		st.Events = []Event{}
	}
	return &st
}

// find returns the range holding a, or nil.
func (s *Set) find(a uint64) *Range {
	i := sort.Search(len(s.ranges), func(n int) bool { return s.ranges[n].End > a })
	if i < len(s.ranges) && s.ranges[i].Start <= a {
		return &s.ranges[i]
	}
	return nil
}

// Access performs one guest access of len(data) bytes (at most 8) at addr
// against mem, the memory contents the VMM keeps (index = guest physical
// address): a write takes data, a read fills it. Only the bytes inside a
// faulty range are handled, through their model; the returned mask has
// bit i set for each such data[i], and the caller handles the others as it
// would without faults.
func (s *Set) Access(mem []byte, addr uint64, data []byte, write bool) (handled uint8) {
	if s == nil || len(data) == 0 || len(data) > 8 {
		return 0
	}
	var rs [8]*Range
	for i := range data {
		if r := s.find(addr + uint64(i)); r != nil && addr+uint64(i) < uint64(len(mem)) {
			rs[i] = r
			handled |= 1 << i
		}
	}
	if handled == 0 {
		return 0
	}
	if write {
		s.write(mem, addr, data, rs[:len(data)])
	} else {
		s.read(mem, addr, data, rs[:len(data)])
	}
	return handled
}

func (s *Set) write(mem []byte, addr uint64, data []byte, rs []*Range) {
	s.stats.Writes++
	var ev *Event
	for i, r := range rs {
		if r == nil {
			continue
		}
		a := addr + uint64(i)
		switch r.Model.Kind {
		case Dead:
			if ev == nil {
				s.stats.LostWrites++
				ev = &Event{Addr: addr, Size: len(data), Write: true, Model: r.Model.String(), Held: le(data)}
			}
			continue
		case Alias:
			p := a ^ 1<<r.Model.Line
			if p < uint64(len(mem)) {
				mem[p] = data[i]
				if ev == nil {
					s.stats.AliasedWrites++
					ev = &Event{Addr: addr, Size: len(data), Write: true, Model: r.Model.String(), Held: le(data), AliasAddr: addr ^ 1<<r.Model.Line}
				}
			}
		}
		mem[a] = data[i]
	}
	if ev != nil {
		s.event(*ev)
	}
}

// view is what a read of byte a of r returns when memory holds v. The
// flip model's draws are not part of it (drawFlip).
func (r *Range) view(a uint64, v byte) byte {
	switch r.Model.Kind {
	case Stuck0:
		return v &^ byte(r.Model.Bits>>(8*(a&3)))
	case Stuck1:
		return v | byte(r.Model.Bits>>(8*(a&3)))
	case Dead:
		return 0xFF
	}
	return v
}

// drawFlip is one read access's draw over nflip bytes of flip ranges with
// probability p: whether a bit flips, and which of the 8*nflip. Both come
// from the seed and the draw number, so the same guest run flips the same
// bits.
func (s *Set) drawFlip(p float64, nflip int) (bit uint64, ok bool) {
	u := mix(s.seed, s.draws)
	s.draws++
	if float64(u>>11)/(1<<53) >= p {
		return 0, false
	}
	return mix(^s.seed, u) % uint64(8*nflip), true
}

func (s *Set) read(mem []byte, addr uint64, data []byte, rs []*Range) {
	s.stats.Reads++
	var flip *Range
	nflip := 0
	for i, r := range rs {
		if r == nil {
			continue
		}
		a := addr + uint64(i)
		data[i] = r.view(a, mem[a])
		if r.Model.Kind == Flip {
			flip = r
			nflip++
		}
	}
	if flip != nil {
		// One draw per read access: flip with probability P one bit of
		// the access's flip-model bytes.
		if k, ok := s.drawFlip(flip.Model.P, nflip); ok {
			for i, r := range rs {
				if r == nil || r.Model.Kind != Flip {
					continue
				}
				if k < 8 {
					data[i] ^= 1 << k
					break
				}
				k -= 8
			}
		}
	}
	var held [8]byte
	corrupted := false
	for i, r := range rs {
		held[i] = data[i]
		if r != nil {
			held[i] = mem[addr+uint64(i)]
			corrupted = corrupted || held[i] != data[i]
		}
	}
	if corrupted {
		s.stats.CorruptedReads++
		m := ""
		for _, r := range rs {
			if r != nil {
				m = r.Model.String()
				break
			}
		}
		s.event(Event{Addr: addr, Size: len(data), Model: m, Held: le(held[:len(data)]), Returned: le(data)})
	}
}

// Materialize makes mem (index = guest physical address) hold what reads
// of each faulty byte return: stuck bits applied, dead bytes all-ones.
// A backend that learns of writes after they happen calls it once, before
// the guest runs, and Wrote after each write.
func (s *Set) Materialize(mem []byte) {
	if s == nil {
		return
	}
	for i := range s.ranges {
		r := &s.ranges[i]
		for a := r.Start; a < min(r.End, uint64(len(mem))); a++ {
			mem[a] = r.view(a, mem[a])
		}
	}
}

// Wrote applies the models to one guest write that has landed in mem:
// before holds the bytes at window as they were before it, and the faulty
// bytes that changed since are what the guest wrote. Afterwards memory
// holds what reads return again: stuck bits applied, dead bytes back to
// all-ones, and written alias bytes copied to their aliased address.
func (s *Set) Wrote(mem []byte, window uint64, before []byte) {
	if s == nil {
		return
	}
	s.stats.Writes++
	first, last := -1, -1
	for i := range before {
		if a := window + uint64(i); a < uint64(len(mem)) && mem[a] != before[i] && s.find(a) != nil {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first < 0 {
		return // the guest wrote what memory held
	}
	addr, n := window+uint64(first), last-first+1
	written := make([]byte, n)
	copy(written, mem[addr:])
	var ev *Event
	for i := range n {
		a := addr + uint64(i)
		r := s.find(a)
		if r == nil {
			continue
		}
		switch r.Model.Kind {
		case Alias:
			if p := a ^ 1<<r.Model.Line; p < uint64(len(mem)) {
				mem[p] = written[i]
				if ev == nil {
					s.stats.AliasedWrites++
					ev = &Event{Model: r.Model.String(), AliasAddr: addr ^ 1<<r.Model.Line}
				}
			}
		case Dead, Stuck0, Stuck1:
			v := r.view(a, written[i])
			if v != written[i] && ev == nil {
				if r.Model.Kind == Dead {
					s.stats.LostWrites++
				} else {
					s.stats.CorruptedWrites++
				}
				ev = &Event{Model: r.Model.String()}
			}
			mem[a] = v
		}
	}
	if ev != nil {
		ev.Addr, ev.Size, ev.Write, ev.Held = addr, n, true, le(written[:min(n, 8)])
		ev.Returned = le(mem[addr : addr+uint64(min(n, 8))])
		s.event(*ev)
	}
}

// FlipRead draws for one read of flip RAM at addr, taken as a read of its
// aligned 32-bit word (a backend whose guest reads memory directly cannot
// know the read's size): it returns the byte whose bit flips and the bit
// (mask 0: no flip). The backend XORs the mask into memory for the read
// and out again after it.
func (s *Set) FlipRead(addr uint64) (at uint64, mask byte) {
	if s == nil {
		return 0, 0
	}
	word := addr &^ 3
	var flips []uint64
	var p float64
	for a := word; a < word+4; a++ {
		if r := s.find(a); r != nil && r.Model.Kind == Flip {
			flips = append(flips, a)
			p = r.Model.P
		}
	}
	if len(flips) == 0 {
		return 0, 0
	}
	s.stats.Reads++
	k, ok := s.drawFlip(p, len(flips))
	if !ok {
		return 0, 0
	}
	at, mask = flips[k/8], 1<<(k%8)
	s.stats.CorruptedReads++
	s.event(Event{Addr: at, Size: 1, Model: s.find(at).Model.String(), Returned: uint64(mask)})
	return at, mask
}

func (s *Set) event(e Event) {
	if len(s.stats.Events) < MaxEvents {
		s.stats.Events = append(s.stats.Events, e)
	}
}

func le(b []byte) uint64 {
	var v uint64
	for i, c := range b {
		v |= uint64(c) << (8 * i)
	}
	return v
}

// mix is SplitMix64's output function of seed+n: a counter-based generator,
// so draw n does not depend on how the earlier draws were used.
func mix(seed, n uint64) uint64 {
	z := seed + (n+1)*0x9e3779b97f4a7c15
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}
