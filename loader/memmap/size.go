package memmap

import (
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"strings"
)

// ErrSyntax is the class of every error of ParseSize, ParseRange and
// ParseBadRAM: input that is none of the forms they accept, or that
// describes no memory they can mark. The message says which form and what
// is wrong; errors.Is matches this.
var ErrSyntax = errors.New("not a size, range or bad-RAM spec")

// syntaxError gives err the class ErrSyntax, its message unchanged.
type syntaxError struct{ err error }

func (e syntaxError) Error() string        { return e.err.Error() }
func (e syntaxError) Unwrap() error        { return e.err }
func (e syntaxError) Is(target error) bool { return target == ErrSyntax }

// syntax wraps a parser's error, if any, as a syntaxError.
func syntax(err error) error {
	if err == nil {
		return nil
	}
	return syntaxError{err}
}

// sizeForms is what ParseSize accepts, for error messages.
const sizeForms = "want a decimal or 0x-hex number with an optional K, M, G or T suffix (e.g. 256M, 16MiB, 0x1000000)"

// sizeUnits are the binary multipliers ParseSize and FormatSize know,
// largest first so that FormatSize picks the shortest exact form.
var sizeUnits = []struct {
	suffix byte
	shift  uint
}{
	{'T', 40},
	{'G', 30},
	{'M', 20},
	{'K', 10},
}

// ParseSize parses a byte count the way users write them on command lines
// and in bootloader configs: "256M", "4k", "1G", "16MiB", "0x1000000",
// "0x10M", "16777216". Suffixes K, M, G and T are binary (powers of 1024)
// and case-insensitive, and may be followed by "B" or "iB". A hex number
// takes its digits greedily, so "0x1B" is 27 bytes, not one.
//
// Decimal numbers with a leading zero ("0100") are refused rather than
// guessed at: the tools these values are copied from (Linux memparse, GRUB's
// strtoul with base 0) read them as octal, so either reading would surprise
// someone. Values that do not fit in 64 bits are an error, never wrapped.
func ParseSize(s string) (uint64, error) {
	n, err := parseSize(s)
	return n, syntax(err)
}

// parseSize is ParseSize without the ErrSyntax class.
func parseSize(s string) (uint64, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, fmt.Errorf("empty size: %s", sizeForms)
	}
	base, digits, rest := 10, t, ""
	if len(t) >= 2 && t[0] == '0' && (t[1] == 'x' || t[1] == 'X') {
		base = 16
		end := 2
		for end < len(t) && isHexDigit(t[end]) {
			end++
		}
		digits, rest = t[2:end], t[end:]
	} else {
		end := 0
		for end < len(t) && t[end] >= '0' && t[end] <= '9' {
			end++
		}
		digits, rest = t[:end], t[end:]
		if len(digits) > 1 && digits[0] == '0' {
			return 0, fmt.Errorf("size %q has a leading zero, which C tools read as octal: write it in decimal without the zero or as 0x hex", s)
		}
	}
	if digits == "" {
		return 0, fmt.Errorf("invalid size %q: %s", s, sizeForms)
	}
	n, err := strconv.ParseUint(digits, base, 64)
	if err != nil {
		// digits holds only valid digits, so the only failure is range.
		return 0, fmt.Errorf("size %q does not fit in 64 bits", s)
	}
	shift, ok := parseSizeSuffix(rest)
	if !ok {
		return 0, fmt.Errorf("invalid size %q: %s", s, sizeForms)
	}
	if shift > 0 && n > (^uint64(0))>>shift {
		return 0, fmt.Errorf("size %q does not fit in 64 bits", s)
	}
	return n << shift, nil
}

// parseSizeSuffix returns the shift for a unit suffix: "", "B", "K", "KB",
// "KiB", ... (case-insensitive).
func parseSizeSuffix(s string) (uint, bool) {
	if s == "" || strings.EqualFold(s, "B") {
		return 0, true
	}
	c := s[0] &^ 0x20 // ASCII upper case
	tail := s[1:]
	if tail != "" && !strings.EqualFold(tail, "B") && !strings.EqualFold(tail, "iB") {
		return 0, false
	}
	for _, u := range sizeUnits {
		if c == u.suffix {
			return u.shift, true
		}
	}
	return 0, false
}

func isHexDigit(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// FormatSize renders n in the shortest exact form ParseSize reads back:
// the largest of T, G, M, K that divides n, else plain bytes. It never
// rounds, so 1536 stays "1536" rather than becoming a misleading "1.5K".
func FormatSize(n uint64) string {
	if n != 0 {
		tz := uint(bits.TrailingZeros64(n))
		for _, u := range sizeUnits {
			if tz >= u.shift {
				return strconv.FormatUint(n>>u.shift, 10) + string(u.suffix)
			}
		}
	}
	return strconv.FormatUint(n, 10)
}

// rangeForms is what ParseRange accepts, for error messages.
const rangeForms = "want START-END (END exclusive) or START+SIZE, e.g. 16M-32M or 16M+16M"

// ParseRange parses "START-END" (END exclusive) or "START+SIZE", each side
// a ParseSize value. The range must not be empty and its end must fit in 64
// bits: a range that silently wrapped would mark the wrong memory.
func ParseRange(s string) (Range, error) {
	r, err := parseRange(s)
	return r, syntax(err)
}

// parseRange is ParseRange without the ErrSyntax class.
func parseRange(s string) (Range, error) {
	i := strings.IndexAny(s, "+-")
	if i < 0 {
		return Range{}, fmt.Errorf("invalid range %q: %s", s, rangeForms)
	}
	if strings.ContainsAny(s[i+1:], "+-") {
		return Range{}, fmt.Errorf("invalid range %q: more than one '-' or '+'; %s", s, rangeForms)
	}
	start, err := parseSize(s[:i])
	if err != nil {
		return Range{}, fmt.Errorf("invalid range %q: start: %v", s, err)
	}
	side := "end"
	if s[i] == '+' {
		side = "size"
	}
	v, err := parseSize(s[i+1:])
	if err != nil {
		return Range{}, fmt.Errorf("invalid range %q: %s: %v", s, side, err)
	}
	end := v
	if s[i] == '+' {
		var carry uint64
		end, carry = bits.Add64(start, v, 0)
		if carry != 0 {
			return Range{}, fmt.Errorf("invalid range %q: START+SIZE does not fit in 64 bits", s)
		}
	}
	if end <= start {
		return Range{}, fmt.Errorf("invalid range %q: empty, the end %#x is not above the start %#x; %s", s, end, start, rangeForms)
	}
	return Range{start, end}, nil
}
