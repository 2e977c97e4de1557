package memmap

import (
	"errors"
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want uint64
	}{
		{"0", 0},
		{"0M", 0},
		{"1", 1},
		{"512B", 512},
		{"4K", 4096},
		{"4k", 4096},
		{"4KB", 4096},
		{"4KiB", 4096},
		{"16m", 16 << 20},
		{"16MiB", 16 << 20},
		{"16mib", 16 << 20},
		{"16MB", 16 << 20},
		{"256M", 268435456},
		{"1G", 1073741824},
		{"3g", 3221225472},
		{"1T", 1099511627776},
		{"16777216", 16777216},
		{"0x1000000", 16777216},
		{"0X1000000", 16777216},
		{"0xA0000", 655360},
		{"0x10M", 16 << 20},
		{"0x10k", 16384},
		{"0x1B", 27}, // B is a hex digit here, not "bytes"
		{" 4K ", 4096},
		{"18446744073709551615", 1<<64 - 1},
		{"0xffffffffffffffff", 1<<64 - 1},
		{"16777215T", 1<<64 - 1<<40},
		{"17179869183G", 1<<64 - 1<<30},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestParseSizeErrors(t *testing.T) {
	tests := []struct {
		in, want string // want: a substring of the error
	}{
		{"", "empty size"},
		{"   ", "empty size"},
		{"M", "invalid size"},
		{"0x", "invalid size"},
		{"0xM", "invalid size"},
		{"12Q", "invalid size"},
		{"1.5M", "invalid size"},
		{"-1", "invalid size"},
		{"+4", "invalid size"},
		{"16 M", "invalid size"},
		{"4KiBB", "invalid size"},
		{"4KX", "invalid size"},
		{"4iB", "invalid size"},
		{"016", "leading zero"},
		{"00", "leading zero"},
		{"18446744073709551616", "does not fit in 64 bits"},
		{"0x10000000000000000", "does not fit in 64 bits"},
		{"16777216T", "does not fit in 64 bits"},
		{"17179869184G", "does not fit in 64 bits"},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error containing %q", tt.in, got, tt.want)
			continue
		}
		// The reason, in one line, is the message's contract; the class is ErrSyntax.
		if msg := err.Error(); !errors.Is(err, ErrSyntax) || !strings.Contains(msg, tt.want) || strings.Contains(msg, "\n") {
			t.Errorf("ParseSize(%q) error %q, want one line containing %q", tt.in, msg, tt.want)
		}
	}
}

func TestFormatSize(t *testing.T) {
	tests := []struct {
		in   uint64
		want string
	}{
		{0, "0"},
		{1, "1"},
		{1023, "1023"},
		{1024, "1K"},
		{1536, "1536"},
		{4096, "4K"},
		{0xA0000, "640K"},
		{16777216, "16M"},
		{3 << 30, "3G"},
		{1 << 32, "4G"},
		{1<<32 + 1<<20, "4097M"},
		{1 << 40, "1T"},
		{1 << 50, "1024T"},
		{1<<64 - 1024, "18014398509481983K"},
		{1<<64 - 1, "18446744073709551615"},
	}
	for _, tt := range tests {
		if got := FormatSize(tt.in); got != tt.want {
			t.Errorf("FormatSize(%d) = %q, want %q", tt.in, got, tt.want)
		}
		if back, err := ParseSize(tt.want); err != nil || back != tt.in {
			t.Errorf("ParseSize(FormatSize(%d)) = %d, %v", tt.in, back, err)
		}
	}
}

func TestParseRange(t *testing.T) {
	tests := []struct {
		in   string
		want Range
	}{
		{"16M-32M", Range{16 << 20, 32 << 20}},
		{"16M+16M", Range{16 << 20, 32 << 20}},
		{"0x1000000-0x2000000", Range{16 << 20, 32 << 20}},
		{"0x1000000+0x1000000", Range{16 << 20, 32 << 20}},
		{"0-4K", Range{0, 4096}},
		{"640K-1M", Range{0xA0000, 0x100000}},
		{"0xfffffffffffff000+0xfff", Range{1<<64 - 4096, 1<<64 - 1}},
	}
	for _, tt := range tests {
		got, err := ParseRange(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseRange(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestParseRangeErrors(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"16M", "want START-END"},
		{"", "want START-END"},
		{"32M-16M", "not above the start"},
		{"16M-16M", "not above the start"},
		{"16M+0", "not above the start"},
		{"1-2-3", "more than one"},
		{"1+2-3", "more than one"},
		{"-16M", "start: empty size"},
		{"16M-", "end: empty size"},
		{"16M+", "size: empty size"},
		{"x-y", "start: invalid size"},
		{"0xfffffffffffff000+4K", "does not fit in 64 bits"},
	}
	for _, tt := range tests {
		got, err := ParseRange(tt.in)
		if err == nil {
			t.Errorf("ParseRange(%q) = %v, want an error containing %q", tt.in, got, tt.want)
			continue
		}
		// The reason, in one line, is the message's contract; the class is ErrSyntax.
		if msg := err.Error(); !errors.Is(err, ErrSyntax) || !strings.Contains(msg, tt.want) || strings.Contains(msg, "\n") {
			t.Errorf("ParseRange(%q) error %q, want one line containing %q", tt.in, msg, tt.want)
		}
	}
}

// FuzzParseSizeRange: sizes and ranges from the command line never panic,
// a parsed size formats back to itself, and a parsed range is not empty.
func FuzzParseSizeRange(f *testing.F) {
	for _, s := range []string{"256M", "0x1000000", "16MiB", "1G", "4k", "16M-32M", "0x1000000+0x800000", "18446744073709551615", "0x10M", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if n, err := ParseSize(s); err == nil {
			if back, err := ParseSize(FormatSize(n)); err != nil || back != n {
				t.Fatalf("%q = %d, formats as %q, reads back %d %v", s, n, FormatSize(n), back, err)
			}
		} else if strings.Contains(err.Error(), "\n") || !errors.Is(err, ErrSyntax) {
			t.Fatalf("multi-line error, or not ErrSyntax: %q", err)
		}
		if r, err := ParseRange(s); err == nil && r.End <= r.Start {
			t.Fatalf("%q gives empty range %v", s, r)
		}
	})
}
