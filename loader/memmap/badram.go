package memmap

import (
	"cmp"
	"fmt"
	"math/bits"
	"slices"
	"strconv"
	"strings"
)

// badRAMForms lists what ParseBadRAM accepts, for error messages.
const badRAMForms = "want START-END, START+SIZE, memmap=SIZE$START[,...] ($, ! or #), badram=ADDR,MASK[,...] (or GRUB's badram ADDR,MASK[,...]) or cutmem FROM TO"

const (
	patternForms = "want badram=ADDR,MASK[,ADDR,MASK...] with hex ADDR and MASK"
	memmapForms  = "want memmap=SIZE$START[,SIZE$START...] ($, ! or # all mean bad here)"
	cutmemForms  = "want cutmem FROM TO (TO exclusive, K/M/G suffixes allowed)"
)

// badRAMChunk is GRUB's badram granularity: the low 10 bits of a mask are
// ignored, so a pattern matches whole 1 KiB blocks. A partly faulty KiB is
// discarded entirely; there is no point in finer bookkeeping.
const badRAMChunk = 1 << 10

// maxBadRanges bounds how many separate ranges one spec may expand to. A
// BadRAM pattern with many free mask bits describes a fine stripe set (a
// mask of 0x400 marks every other KiB of a 4 GiB space, 2 million
// ranges); nothing downstream can use that many (a Linux zero page holds
// 128 E820 entries, a KVM VM at most 32764 memory slots, 509 on older
// hosts), and the bound keeps parsing fast and small for any input.
const maxBadRanges = 1 << 20

// ParseBadRAM parses one --bad-ram spec into the bad ranges it declares
// inside a guest of memSize bytes: sorted, merged, within [0, memSize).
// Parts beyond memSize are dropped (there is no memory there to be bad), so
// a spec can yield no ranges at all. The accepted forms are those users
// paste from the tools that find bad RAM:
//
//   - "START-END" (END exclusive) or "START+SIZE", as ParseRange.
//   - Linux "memmap=SIZE$START[,SIZE$START...]"; '!' and '#' (persistent
//     memory, ACPI data to Linux) are accepted in place of '$' and mean bad
//     here too, a backslash before '$' (grub.cfg quoting) is ignored, and the
//     "memmap=" prefix is optional. SIZE and START are ParseSize values; the
//     bytes are taken exactly, unrounded, as memtest86+ prints them.
//   - GRUB/memtest86+ BadRAM patterns, "badram=ADDR,MASK[,ADDR,MASK...]" or
//     GRUB's command form "badram ADDR,MASK[,...]", hex with or without 0x.
//     Address a is bad when a&MASK == ADDR&MASK, with GRUB's rules: MASK is a
//     64-bit value whose low 10 bits are ignored (a match is a 1 KiB block,
//     larger when the mask has more trailing zeros), so a 32-bit mask from a
//     32-bit memtest86+ leaves the high bits free and repeats every 4 GiB.
//     Whitespace and newlines between values and a trailing comma are
//     allowed, since memtest86+ wraps long lines.
//   - GRUB "cutmem FROM TO": ParseSize values, TO exclusive. GRUB's manual
//     does not say; its code clips each map entry to [FROM, TO), so the
//     byte at TO is kept.
func ParseBadRAM(spec string, memSize uint64) ([]Range, error) {
	rs, err := parseBadRAM(spec, memSize)
	return rs, syntax(err)
}

// parseBadRAM is ParseBadRAM without the ErrSyntax class.
func parseBadRAM(spec string, memSize uint64) ([]Range, error) {
	s := strings.TrimSpace(spec)
	var (
		rs  []Range
		err error
	)
	switch {
	case s == "":
		return nil, fmt.Errorf("empty bad-RAM spec: %s", badRAMForms)
	case hasPrefixFold(s, "badram="):
		return parsePatterns(s[len("badram="):], memSize)
	case hasWordPrefix(s, "badram"):
		return parsePatterns(s[len("badram"):], memSize)
	case hasWordPrefix(s, "cutmem"):
		rs, err = parseCutmem(s[len("cutmem"):])
	case hasPrefixFold(s, "memmap="):
		rs, err = parseMemmap(s[len("memmap="):])
	case strings.ContainsAny(s, "$!#@%"):
		rs, err = parseMemmap(s)
	case strings.ContainsAny(s, "+-"):
		var r Range
		r, err = parseRange(s)
		rs = []Range{r}
	default:
		return nil, fmt.Errorf("unrecognised bad-RAM spec %q: %s", s, badRAMForms)
	}
	if err != nil {
		return nil, err
	}
	for i := range rs {
		rs[i].End = min(rs[i].End, memSize)
	}
	return mergeInPlace(rs), nil
}

// hasPrefixFold reports whether s starts with the ASCII prefix p, ignoring case.
func hasPrefixFold(s, p string) bool {
	return len(s) >= len(p) && strings.EqualFold(s[:len(p)], p)
}

// hasWordPrefix reports whether s is the command word w, alone or followed
// by white space and its arguments.
func hasWordPrefix(s, w string) bool {
	return hasPrefixFold(s, w) && (len(s) == len(w) || isSpace(s[len(w)]))
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// splitList splits a comma-separated list, trimming white space (line
// wraps) around every item and allowing one trailing comma. An empty item
// elsewhere is reported by the caller's parser as an invalid value.
func splitList(s string) []string {
	items := strings.Split(s, ",")
	for i := range items {
		items[i] = strings.TrimSpace(items[i])
	}
	if n := len(items); n > 1 && items[n-1] == "" {
		items = items[:n-1]
	}
	return items
}

// parseMemmap parses the body of Linux memmap= items into exact ranges.
func parseMemmap(s string) ([]Range, error) {
	s = strings.ReplaceAll(s, `\$`, "$")
	var rs []Range
	for _, item := range splitList(s) {
		i := strings.IndexAny(item, "$!#@%")
		if i < 0 {
			if strings.EqualFold(item, "exactmap") {
				return nil, fmt.Errorf("memmap=exactmap replaces the whole memory map and declares no bad RAM; %s", memmapForms)
			}
			return nil, fmt.Errorf("memmap item %q has no $, ! or # (memmap=SIZE alone limits memory, it declares no bad RAM); %s", item, memmapForms)
		}
		switch item[i] {
		case '@':
			return nil, fmt.Errorf("memmap item %q declares usable RAM ('@'), not bad RAM; %s", item, memmapForms)
		case '%':
			return nil, fmt.Errorf("memmap item %q converts memory types ('%%'), which kvmboot does not support; %s", item, memmapForms)
		}
		size, err := parseSize(item[:i])
		if err != nil {
			return nil, fmt.Errorf("memmap item %q: size: %v", item, err)
		}
		start, err := parseSize(item[i+1:])
		if err != nil {
			return nil, fmt.Errorf("memmap item %q: start: %v", item, err)
		}
		if size == 0 {
			return nil, fmt.Errorf("memmap item %q has size 0; %s", item, memmapForms)
		}
		end, carry := bits.Add64(start, size, 0)
		if carry != 0 {
			return nil, fmt.Errorf("memmap item %q: START+SIZE does not fit in 64 bits", item)
		}
		rs = append(rs, Range{start, end})
	}
	return rs, nil
}

// parseCutmem parses the arguments of GRUB's "cutmem FROM TO".
func parseCutmem(s string) ([]Range, error) {
	args := strings.Fields(s)
	if len(args) != 2 {
		return nil, fmt.Errorf("cutmem takes 2 arguments, got %d; %s", len(args), cutmemForms)
	}
	from, err := parseSize(args[0])
	if err != nil {
		return nil, fmt.Errorf("cutmem FROM: %v", err)
	}
	to, err := parseSize(args[1])
	if err != nil {
		return nil, fmt.Errorf("cutmem TO: %v", err)
	}
	if to <= from {
		return nil, fmt.Errorf("cutmem %s %s is empty: TO must be above FROM; %s", args[0], args[1], cutmemForms)
	}
	return []Range{{from, to}}, nil
}

// parsePatterns parses and expands the ADDR,MASK pairs of a badram spec.
func parsePatterns(s string, memSize uint64) ([]Range, error) {
	items := splitList(s)
	if len(items) == 1 && items[0] == "" {
		return nil, fmt.Errorf("badram has no patterns; %s", patternForms)
	}
	if len(items)%2 != 0 {
		return nil, fmt.Errorf("badram has %d values, an odd number: the last address %q has no mask; %s", len(items), items[len(items)-1], patternForms)
	}
	var rs []Range
	for i := 0; i < len(items); i += 2 {
		addr, err := parseHex(items[i])
		if err != nil {
			return nil, fmt.Errorf("badram address %v; %s", err, patternForms)
		}
		mask, err := parseHex(items[i+1])
		if err != nil {
			return nil, fmt.Errorf("badram mask %v; %s", err, patternForms)
		}
		mask &^= badRAMChunk - 1
		if mask == 0 {
			return nil, fmt.Errorf("badram mask %q has no bits above the 1 KiB granularity, so it would mark all memory bad; %s", items[i+1], patternForms)
		}
		p := badPattern{addr & mask, mask}
		n := p.countBelow(memSize)
		if n > maxBadRanges-uint64(len(rs)) {
			earlier := ""
			if len(rs) > 0 {
				earlier = fmt.Sprintf(" (plus %d from earlier patterns)", len(rs))
			}
			return nil, fmt.Errorf("badram pattern %s,%s matches %d separate %s blocks below %s%s, more than the %d bad ranges kvmboot supports: use masks with fewer free bits, or ranges", items[i], items[i+1], n, FormatSize(p.block()), FormatSize(memSize), earlier, maxBadRanges)
		}
		rs = p.expand(slices.Grow(rs, int(n)), memSize)
	}
	return mergeInPlace(rs), nil
}

// parseHex parses a GRUB-style hex number, with or without 0x. On error
// it returns the value quoted and what is wrong with it.
func parseHex(s string) (uint64, error) {
	digits := s
	if len(s) >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') {
		digits = s[2:]
	}
	if digits == "" {
		return 0, fmt.Errorf("%q is empty", s)
	}
	for i := 0; i < len(digits); i++ {
		if !isHexDigit(digits[i]) {
			return 0, fmt.Errorf("%q is not a hex number", s)
		}
	}
	v, err := strconv.ParseUint(digits, 16, 64)
	if err != nil {
		return 0, fmt.Errorf("%q does not fit in 64 bits", s)
	}
	return v, nil
}

// badPattern is one normalised BadRAM pattern: addr has bits only where
// mask does, and mask's low 10 bits are clear and it is not zero.
type badPattern struct{ addr, mask uint64 }

// block is the size of one matching block: every bit below the mask's
// lowest set bit is free, so matches come in aligned runs of that size.
func (p badPattern) block() uint64 { return p.mask & -p.mask }

// free is the set of free mask bits above the block: each subset of them,
// added to addr, gives the start of one matching block. Since the lowest
// set mask bit separates any two such starts, no two blocks touch.
func (p badPattern) free() uint64 { return ^p.mask &^ (p.block() - 1) }

// countBelow returns how many matching blocks start below limit, without
// enumerating them: it walks the bits from the top, as in counting the
// numbers below limit whose bits are fixed except in free.
func (p badPattern) countBelow(limit uint64) uint64 {
	free := p.free()
	var n uint64
	for i := 63; i >= 0; i-- {
		bit := uint64(1) << i
		below := uint64(1) << bits.OnesCount64(free&(bit-1))
		lb := limit&bit != 0
		if free&bit != 0 {
			// 0 here with limit's bit 1: every completion is below limit.
			// Then follow the choice equal to limit's bit.
			if lb {
				n += below
			}
			continue
		}
		if fixed := p.addr&bit != 0; fixed != lb {
			if lb {
				n += below
			}
			return n
		}
	}
	return n // the only remaining candidate equals limit: not below it
}

// expand appends the matching blocks below limit to rs, in address order,
// clipping the last to limit. It steps through the subsets of the free bits
// in increasing order (s = (s - free) & free), so the cost is the number of
// blocks, not the size of memory.
func (p badPattern) expand(rs []Range, limit uint64) []Range {
	block, free := p.block(), p.free()
	for s := uint64(0); ; s = (s - free) & free {
		a := p.addr | s
		if a >= limit {
			break
		}
		end := a + block // wraps only to 0 (2^64), since a is block-aligned
		if end == 0 || end > limit {
			end = limit
		}
		rs = append(rs, Range{a, end})
		if s == free {
			break
		}
	}
	return rs
}

// Merge returns rs sorted by start with overlapping and adjacent
// ranges merged and empty ones dropped. rs is not modified.
func Merge(rs []Range) []Range { return mergeInPlace(slices.Clone(rs)) }

// Subtract returns the parts of rs that lie in none of cut, in the
// order of rs.
func Subtract(rs, cut []Range) []Range {
	var out []Range
	for _, r := range rs {
		pieces := []Range{r}
		for _, c := range cut {
			var next []Range
			for _, p := range pieces {
				if !p.Overlaps(c) {
					next = append(next, p)
					continue
				}
				if p.Start < c.Start {
					next = append(next, Range{Start: p.Start, End: c.Start})
				}
				if c.End < p.End {
					next = append(next, Range{Start: c.End, End: p.End})
				}
			}
			pieces = next
		}
		out = append(out, pieces...)
	}
	return out
}

// mergeInPlace is Merge reusing rs for the result. Input that is
// already sorted, as one expanded pattern is, skips the sort.
func mergeInPlace(rs []Range) []Range {
	byStart := func(a, b Range) int { return cmp.Compare(a.Start, b.Start) }
	if !slices.IsSortedFunc(rs, byStart) {
		slices.SortFunc(rs, byStart)
	}
	out := rs[:0]
	for _, r := range rs {
		if r.Empty() {
			continue
		}
		if n := len(out); n > 0 && r.Start <= out[n-1].End {
			out[n-1].End = max(out[n-1].End, r.End)
			continue
		}
		out = append(out, r)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// FormatBadRAM renders rs as a GRUB/memtest86+ "badram=ADDR,MASK,..."
// string that ParseBadRAM (and GRUB) read back as the same ranges widened
// to whole KiB. Each range is cut into naturally aligned power-of-two
// blocks, one exact pattern each, with full 64-bit masks so that nothing
// repeats every 4 GiB. It returns "" when rs has no bytes.
func FormatBadRAM(rs []Range) string {
	var b strings.Builder
	for _, r := range widenRanges(rs) {
		// Work in KiB units: at most 2^54 of them, so no step overflows.
		lo, hi := r.Start/badRAMChunk, r.End/badRAMChunk
		for lo < hi {
			// The largest aligned block at lo that fits, at most 2^63
			// bytes so that the mask never becomes 0 (which means "all").
			k := uint(min(bits.TrailingZeros64(lo), 53))
			for lo+(1<<k) > hi {
				k--
			}
			if b.Len() == 0 {
				b.WriteString("badram=")
			} else {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "%#x,%#x", lo*badRAMChunk, ^uint64(0)<<(k+10))
			lo += 1 << k
		}
	}
	return b.String()
}

// widenRanges rounds each range out to whole KiB (the BadRAM granularity)
// and merges the result. An end inside the last KiB of the 64-bit space
// cannot be rounded up (a Range cannot end at 2^64) and is rounded down.
func widenRanges(rs []Range) []Range {
	w := make([]Range, 0, len(rs))
	for _, r := range rs {
		if r.Empty() {
			continue
		}
		endKiB := r.End / badRAMChunk
		if r.End%badRAMChunk != 0 && endKiB < (^uint64(0))/badRAMChunk {
			endKiB++
		}
		w = append(w, Range{r.Start &^ (badRAMChunk - 1), endKiB * badRAMChunk})
	}
	return mergeInPlace(w)
}

// FormatMemmap renders rs as a Linux "memmap=SIZE$ADDR[,...]" option
// (hex, sorted, merged), exact to the byte. It returns "" when rs has no
// bytes. On a kernel command line inside grub.cfg the '$' needs quoting.
func FormatMemmap(rs []Range) string {
	var b strings.Builder
	for _, r := range Merge(rs) {
		if b.Len() == 0 {
			b.WriteString("memmap=")
		} else {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%#x$%#x", r.Size(), r.Start)
	}
	return b.String()
}
