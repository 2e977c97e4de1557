package realmode

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestXXH32 checks the sums xxhsum -H0 (xxHash 0.8.1) prints: the
// published strings, and lengths on both sides of the 16-byte stripes
// and the 4-byte words of a counting pattern.
func TestXXH32(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint32
	}{
		{"", 0x02CC5D05},
		{"a", 0x550D7456},
		{"abc", 0x32D153FF},
		{"123456789", 0x937BAD67},
		{"Nobody inspects the spammish repetition", 0xE2293B2F},
		{string(make([]byte, 1000)), 0x7F288CD0},
	} {
		if got := XXH32([]byte(tc.in)); got != tc.want {
			t.Errorf("XXH32(%.20q) = %#08x, want %#08x", tc.in, got, tc.want)
		}
	}
	pattern := make([]byte, 100)
	for i := range pattern {
		pattern[i] = byte(i * 7 % 251)
	}
	for _, tc := range []struct {
		n    int
		want uint32
	}{
		{1, 0xCF65B03E}, {3, 0x14744175}, {4, 0xC8F60FC5}, {15, 0x8807D6B2}, {16, 0xB59B7E13},
		{17, 0x20DD4529}, {31, 0xDC5B7443}, {32, 0xD7F70F45}, {33, 0xE5B60F32}, {63, 0x2AE99AD5},
		{64, 0x6507D430}, {100, 0xB0582DAE},
	} {
		if got := XXH32(pattern[:tc.n]); got != tc.want {
			t.Errorf("XXH32 of %d pattern bytes = %#08x, want %#08x", tc.n, got, tc.want)
		}
	}
}

// TestXXH32SingleFlips: the stub's check must catch every one-bit error,
// which a word-wise hash guarantees only because each step is a bijection
// of its lane. Every bit of a piece with a ragged tail, flipped in turn.
func TestXXH32SingleFlips(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, 1027)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	want := XXH32(b)
	for i := range len(b) * 8 {
		b[i/8] ^= 1 << (i % 8)
		if XXH32(b) == want {
			t.Fatalf("flipping bit %d of byte %d left the sum unchanged", i%8, i/8)
		}
		b[i/8] ^= 1 << (i % 8)
	}
	// A piece of zeros and one of all-ones (what unbacked memory reads as)
	// differ, unlike under a ones'-complement sum.
	if XXH32(make([]byte, 4096)) == XXH32(bytes.Repeat([]byte{0xff}, 4096)) {
		t.Error("zeros and all-ones share a sum")
	}
}

// BenchmarkXXH32 is the host side of the stub's check: the planner sums
// every placed piece. MB/s should not fall with the size.
func BenchmarkXXH32(b *testing.B) {
	for _, size := range []int{64 << 10, 1 << 20, 16 << 20} {
		data := make([]byte, size)
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			b.SetBytes(int64(size))
			for b.Loop() {
				XXH32(data)
			}
		})
	}
}
