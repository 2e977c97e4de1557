package loader

import (
	"cmp"
	"fmt"
	"math/bits"
	"slices"
	"sort"
	"strings"

	"kvmboot/loader/memmap"
)

// Policy says where Find looks for room.
type Policy string

const (
	// PolicyPreferred honours the image's preferred address (Linux
	// pref_address, an ELF's link address) when it is free, and otherwise
	// moves up from it, as a bootloader keeps a kernel near where it was
	// linked to run.
	PolicyPreferred Policy = "preferred"
	// PolicyLowest takes the lowest fit, as kexec-tools' locate_hole does.
	PolicyLowest Policy = "lowest"
	// PolicyHighest takes the highest fit, as GRUB places an initrd, to
	// keep low memory free.
	PolicyHighest Policy = "highest"
)

// ParsePolicy parses a policy name (case-insensitive). The empty string
// means the default, PolicyPreferred, as in Request.
func ParsePolicy(s string) (Policy, error) {
	switch p := Policy(strings.ToLower(strings.TrimSpace(s))); p {
	case "":
		return PolicyPreferred, nil
	case PolicyPreferred, PolicyLowest, PolicyHighest:
		return p, nil
	}
	return "", fmt.Errorf("unknown placement policy %q: want preferred, lowest or highest", s)
}

// Request describes a piece for Find to place.
type Request struct {
	What  string // names the piece in reasons and errors: "kernel", "initrd"
	Size  uint64 // bytes, > 0
	Align uint64 // a power of two; 0 or 1 mean byte aligned
	// Min and Max bound the piece: it must lie inside [Min, Max). Max 0
	// means 4 GiB, the reach of a 32-bit kernel.
	Min, Max uint64
	Policy   Policy // "" means PolicyPreferred
	// Preferred is the address PolicyPreferred tries first; 0 means none.
	Preferred uint64
	// Region, when set, confines the piece to this range (intersected with
	// [Min, Max)) and takes the lowest aligned fit there whatever the
	// policy, as kexec loads a crash kernel into its reserved region. The
	// region is used where the map says RAM.
	Region *memmap.Range
}

// Claimed is a piece the Allocator has handed out.
type Claimed struct {
	What  string
	Range memmap.Range
}

// PlaceError is the error of Claim and Find: What is the piece, Msg the
// complete one-line message, which names the piece itself.
type PlaceError struct {
	What string
	Msg  string
	// Class is which of the sentinel errors (ErrNoRoom, ErrCannotMove,
	// ErrOverlapsBadRAM) this is, if any, for errors.Is.
	Class error
	// Err is the failure Msg reports on, if any (the claim that a kernel
	// that cannot move failed); Msg already includes its text.
	Err error
}

func (e *PlaceError) Error() string { return e.Msg }

// Is reports whether target is e's Class.
func (e *PlaceError) Is(target error) bool { return e.Class != nil && target == e.Class }

// Unwrap returns Err, so that errors.Is sees its Class too.
func (e *PlaceError) Unwrap() error { return e.Err }

// Allocator hands out non-overlapping pieces of good RAM from a memory
// map. Pieces never touch bad or reserved memory, nor each other. It works
// on free intervals (RAM minus claims), never on bytes, so its cost does
// not depend on the size of memory.
type Allocator struct {
	m      *memmap.Map
	claims []Claimed // in claim order
	byAddr []Claimed // the same, sorted by address
}

// NewAllocator returns an allocator over a copy of m: later changes to m do
// not affect it.
func NewAllocator(m *memmap.Map) *Allocator {
	return &Allocator{m: m.Clone()}
}

// clone returns an allocator holding a's claims, whose own claims do not
// change a (the map is shared: allocators only read it).
func (a *Allocator) clone() *Allocator {
	return &Allocator{m: a.m, claims: slices.Clone(a.claims), byAddr: slices.Clone(a.byAddr)}
}

// Claimed returns the pieces handed out so far, in claim order.
func (a *Allocator) Claimed() []Claimed { return slices.Clone(a.claims) }

// Claim takes exactly r for what: a fixed address, such as a
// non-relocatable kernel or a forced load address. It refuses, with a
// *PlaceError naming the first problem, if any byte of r is not RAM or is
// already claimed.
func (a *Allocator) Claim(what string, r memmap.Range) error {
	if r.Empty() {
		return &PlaceError{What: what, Msg: fmt.Sprintf("%s at %s is empty", name(what), r)}
	}
	if why, class := a.notFree(r); why != "" {
		return &PlaceError{What: what, Msg: fmt.Sprintf("%s at %s %s", name(what), r, why), Class: class}
	}
	a.add(what, r)
	return nil
}

// add records a claim.
func (a *Allocator) add(what string, r memmap.Range) {
	c := Claimed{what, r}
	a.claims = append(a.claims, c)
	i := sort.Search(len(a.byAddr), func(n int) bool { return a.byAddr[n].Range.Start >= r.Start })
	a.byAddr = slices.Insert(a.byAddr, i, c)
}

// notFree returns "" if every byte of r is RAM and unclaimed, and
// otherwise says why not, for a sentence about r: "overlaps bad RAM
// 0x01000000-0x02000000", with ErrOverlapsBadRAM as the class then.
func (a *Allocator) notFree(r memmap.Range) (string, error) {
	if g := a.m.FirstNot(r, memmap.KindRAM); g != nil {
		var class error
		switch g.Kind {
		case 0:
			return fmt.Sprintf("reaches %s, where the guest has no memory", g.Range), nil
		case memmap.KindBad:
			class = ErrOverlapsBadRAM
		}
		return fmt.Sprintf("overlaps %s %s", g.Kind.Describe(), g.Range), class
	}
	i := sort.Search(len(a.byAddr), func(n int) bool { return a.byAddr[n].Range.End > r.Start })
	if i < len(a.byAddr) && a.byAddr[i].Range.Start < r.End {
		c := a.byAddr[i]
		return fmt.Sprintf("overlaps %s at %s", name(c.What), c.Range), nil
	}
	return "", nil
}

// name is what for messages, or a stand-in when the caller gave none.
func name(what string) string {
	if what == "" {
		return "piece"
	}
	return what
}

// free returns the free intervals, RAM minus claims, in address order.
// Every claim lies inside one RAM range (Claim and Find see to it), and RAM
// ranges are maximal, so one pass over both sorted lists suffices.
func (a *Allocator) free() []memmap.Range {
	var out []memmap.Range
	c := a.byAddr
	for _, r := range a.m.Ranges(memmap.KindRAM) {
		at := r.Start
		for ; len(c) > 0 && c[0].Range.Start < r.End; c = c[1:] {
			if c[0].Range.Start > at {
				out = append(out, memmap.Range{Start: at, End: c[0].Range.Start})
			}
			at = c[0].Range.End
		}
		if at < r.End {
			out = append(out, memmap.Range{Start: at, End: r.End})
		}
	}
	return out
}

// Find chooses an address for req by its policy and claims it. It returns
// the address and a short reason for the choice, for people reading a
// plan. Errors are *PlaceError: a malformed request, or no room, in which
// case the message says what was needed and the largest free ranges there
// were.
func (a *Allocator) Find(req Request) (addr uint64, why string, err error) {
	fail := func(format string, args ...any) (uint64, string, error) {
		return 0, "", &PlaceError{What: req.What, Msg: fmt.Sprintf(format, args...)}
	}
	who := name(req.What)
	align := max(req.Align, 1)
	hi := req.Max
	if hi == 0 {
		hi = 1 << 32
	}
	policy := req.Policy
	if policy == "" {
		policy = PolicyPreferred
	}
	switch {
	case req.Size == 0:
		return fail("cannot place %s: size is 0", who)
	case align&(align-1) != 0:
		return fail("cannot place %s: alignment %#x is not a power of two", who, align)
	case req.Min >= hi:
		return fail("cannot place %s: window [%s, %s) is empty", who, addrString(req.Min), addrString(hi))
	case policy != PolicyPreferred && policy != PolicyLowest && policy != PolicyHighest:
		return fail("cannot place %s: unknown policy %q: want preferred, lowest or highest", who, policy)
	}
	window := memmap.Range{Start: req.Min, End: hi}
	free := a.free()

	if req.Region != nil {
		w := window.Intersect(*req.Region)
		if w.Empty() {
			return fail("cannot place %s: region %s is empty or outside the window [%s, %s)", who, *req.Region, addrString(req.Min), addrString(hi))
		}
		if at, ok := lowestFit(free, w, req.Size, align); ok {
			return a.found(req.What, at, req.Size, fmt.Sprintf("lowest %sfit in region %s", alignWords(align), w))
		}
		return a.noRoom(req, w, free, "region "+w.String())
	}

	switch policy {
	case PolicyLowest:
		if at, ok := lowestFit(free, window, req.Size, align); ok {
			return a.found(req.What, at, req.Size, fmt.Sprintf("lowest %sfit in %s", alignWords(align), windowString(window)))
		}
	case PolicyHighest:
		if at, ok := highestFit(free, window, req.Size, align); ok {
			return a.found(req.What, at, req.Size, fmt.Sprintf("highest %sfit in %s", alignWords(align), windowString(window)))
		}
	case PolicyPreferred:
		p := req.Preferred
		if p == 0 {
			if at, ok := lowestFit(free, window, req.Size, align); ok {
				return a.found(req.What, at, req.Size, fmt.Sprintf("no preferred address; lowest %sfit in %s", alignWords(align), windowString(window)))
			}
			break
		}
		miss := a.preferredMiss(p, req.Size, align, window)
		if miss == "" {
			return a.found(req.What, p, req.Size, fmt.Sprintf("preferred address %#x is free RAM", p))
		}
		if p < hi {
			if at, ok := lowestFit(free, memmap.Range{Start: max(p, req.Min), End: hi}, req.Size, align); ok {
				return a.found(req.What, at, req.Size, fmt.Sprintf("preferred %#x %s; lowest %sfit at or above it", p, miss, alignWords(align)))
			}
		}
		floor := req.Min
		if floor == 0 && p >= memmap.HighRAMStart {
			// A kernel that wants high memory must not land in the
			// first MiB, where real-mode code and BIOS data live.
			floor = memmap.HighRAMStart
		}
		if floor < hi {
			// The window really searched, for the error below.
			window = memmap.Range{Start: floor, End: hi}
			if at, ok := lowestFit(free, window, req.Size, align); ok {
				return a.found(req.What, at, req.Size, fmt.Sprintf("preferred %#x %s; nothing fits at or above it; lowest %sfit at or above %s", p, miss, alignWords(align), addrString(floor)))
			}
		}
	}
	return a.noRoom(req, window, free, windowString(window))
}

// preferredMiss returns "" if [p, p+size) is an aligned, free piece inside
// window, and otherwise why not, to follow "preferred 0x1000000".
func (a *Allocator) preferredMiss(p, size, align uint64, window memmap.Range) string {
	if p&(align-1) != 0 {
		return fmt.Sprintf("is not %s-aligned", memmap.FormatSize(align))
	}
	end, carry := bits.Add64(p, size, 0)
	r := memmap.Range{Start: p, End: end}
	if carry != 0 || !window.Contains(r) {
		return "does not fit in " + windowString(window)
	}
	why, _ := a.notFree(r)
	return why
}

// found claims the chosen piece and returns Find's results.
func (a *Allocator) found(what string, at, size uint64, why string) (uint64, string, error) {
	a.add(what, memmap.Range{Start: at, End: at + size})
	return at, why, nil
}

// noRoom builds Find's error when nothing fits in window: what was needed
// and the largest free ranges inside the window.
func (a *Allocator) noRoom(req Request, window memmap.Range, free []memmap.Range, where string) (uint64, string, error) {
	var in []memmap.Range
	for _, f := range free {
		if c := f.Intersect(window); !c.Empty() {
			in = append(in, c)
		}
	}
	// Largest first; equal sizes by address, so the message is stable.
	slices.SortStableFunc(in, func(x, y memmap.Range) int { return cmp.Compare(y.Size(), x.Size()) })
	var b strings.Builder
	fmt.Fprintf(&b, "no room for %s: need %s", name(req.What), memmap.FormatSize(req.Size))
	if req.Align > 1 {
		fmt.Fprintf(&b, " aligned to %s", memmap.FormatSize(req.Align))
	}
	fmt.Fprintf(&b, " in %s; ", where)
	if len(in) == 0 {
		b.WriteString("no free RAM in the window")
	} else {
		b.WriteString("largest free ranges: ")
		for i, r := range in[:min(len(in), 3)] {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%s (%s)", r, memmap.FormatSize(r.Size()))
		}
	}
	return 0, "", &PlaceError{What: req.What, Msg: b.String(), Class: ErrNoRoom}
}

// lowestFit returns the lowest address at which size bytes aligned to align
// fit in a free interval inside window. free is sorted.
func lowestFit(free []memmap.Range, window memmap.Range, size, align uint64) (uint64, bool) {
	for _, f := range free {
		c := f.Intersect(window)
		if c.Empty() {
			continue
		}
		at, ok := alignUp(c.Start, align)
		if ok && at < c.End && c.End-at >= size {
			return at, true
		}
	}
	return 0, false
}

// highestFit returns the highest such address.
func highestFit(free []memmap.Range, window memmap.Range, size, align uint64) (uint64, bool) {
	for i := len(free) - 1; i >= 0; i-- {
		c := free[i].Intersect(window)
		if c.Size() < size {
			continue
		}
		at := (c.End - size) &^ (align - 1)
		if at >= c.Start {
			return at, true
		}
	}
	return 0, false
}

// alignUp rounds x up to a multiple of the power of two align, reporting
// false if that does not fit in 64 bits.
func alignUp(x, align uint64) (uint64, bool) {
	sum, carry := bits.Add64(x, align-1, 0)
	return sum &^ (align - 1), carry == 0
}

// alignWords is "16M-aligned " for reasons, or "" when byte aligned.
func alignWords(align uint64) string {
	if align <= 1 {
		return ""
	}
	return memmap.FormatSize(align) + "-aligned "
}

// addrString writes a window bound the way people think of it: "16M" when
// it is a whole number of KiB, hex otherwise.
func addrString(x uint64) string {
	if x%1024 == 0 {
		return memmap.FormatSize(x)
	}
	return fmt.Sprintf("%#x", x)
}

// windowString is "[1M, 512M)".
func windowString(w memmap.Range) string {
	return fmt.Sprintf("[%s, %s)", addrString(w.Start), addrString(w.End))
}
