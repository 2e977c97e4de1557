package realmode

import (
	"encoding/binary"
	"math/bits"
)

// The primes of XXH32 (xxHash's 32-bit hash, by Yann Collet; the
// algorithm is public: github.com/Cyan4973/xxHash, doc/xxhash_spec.md).
const (
	xxhP1 uint32 = 0x9E3779B1
	xxhP2 uint32 = 0x85EBCA77
	xxhP3 uint32 = 0xC2B2AE3D
	xxhP4 uint32 = 0x27D4EB2F
	xxhP5 uint32 = 0x165667B1
)

// XXH32 is the checksum the stub computes over every placed piece: XXH32
// with seed 0, as firmware.S computes it.
func XXH32(b []byte) uint32 {
	n := len(b)
	h := xxhP5
	if len(b) >= 16 {
		p1 := xxhP1 // a variable: the lanes' start values wrap around
		v1, v2, v3, v4 := p1+xxhP2, xxhP2, uint32(0), -p1
		for ; len(b) >= 16; b = b[16:] {
			s := b[:16:16]
			v1 = xxhRound(v1, binary.LittleEndian.Uint32(s[0:4]))
			v2 = xxhRound(v2, binary.LittleEndian.Uint32(s[4:8]))
			v3 = xxhRound(v3, binary.LittleEndian.Uint32(s[8:12]))
			v4 = xxhRound(v4, binary.LittleEndian.Uint32(s[12:16]))
		}
		h = bits.RotateLeft32(v1, 1) + bits.RotateLeft32(v2, 7) + bits.RotateLeft32(v3, 12) + bits.RotateLeft32(v4, 18)
	}
	h += uint32(n)
	for ; len(b) >= 4; b = b[4:] {
		h = bits.RotateLeft32(h+binary.LittleEndian.Uint32(b)*xxhP3, 17) * xxhP4
	}
	for _, c := range b {
		h = bits.RotateLeft32(h+uint32(c)*xxhP5, 11) * xxhP1
	}
	h ^= h >> 15
	h *= xxhP2
	h ^= h >> 13
	h *= xxhP3
	h ^= h >> 16
	return h
}

func xxhRound(acc, input uint32) uint32 {
	return bits.RotateLeft32(acc+input*xxhP2, 13) * xxhP1
}
