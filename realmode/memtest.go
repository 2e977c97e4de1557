package realmode

import (
	_ "embed"
	"encoding/binary"
	"errors"
	"fmt"
)

// Memtest is the memory-test guest built from memtest.S: flat 32-bit code
// loaded at MemtestAddr and entered through the entry stub with EBX = the
// address of its table (EncodeMemtestTable). It tests the table's ranges
// page by page, reports failures as frames on COM2 (0x2f8) and writes to
// the debug-exit port: 0 when it sent its done frame, else a MemtestExit*
// value. machine/memtest decodes the frames and runs it.
//
//go:embed memtest.bin
var Memtest []byte

// Memtest guest layout and ABI (memtest.S must agree: TestMemtestMatchesSource).
const (
	MemtestAddr  = 0x10000 // the program (at most 4 KiB, with its variables)
	MemtestTable = 0x11000 // its table, one page
	MemtestEnd   = 0x12000 // first byte after what the memtest guest occupies

	MemtestMagic     = 0x5453544d // "MTST"
	MemtestVersion   = 1
	MemtestMaxRanges = 508 // (4096 - 0x20) / 8

	MemtestQuick    = 0
	MemtestThorough = 1

	// Debug-exit values of the memtest guest.
	MemtestExitOK        = 0
	MemtestExitBadTable  = 1 // no valid table at EBX
	MemtestExitNoUART    = 2 // nothing answers at COM2
	MemtestExitUARTStuck = 3 // COM2 stopped accepting bytes: frames were lost

	// MemtestSeedMul turns the seed into the pattern offset R that the
	// address-in-address patterns add: R = seed * MemtestSeedMul (mod 2^32).
	MemtestSeedMul = 0x9e3779b1
)

// Table offsets.
const (
	memtestTMagic   = 0x00
	memtestTVersion = 0x04
	memtestTMode    = 0x08
	memtestTSeed    = 0x0c
	memtestTNRanges = 0x10
	memtestTRanges  = 0x20
)

// Test numbers in the guest's fail frames.
const (
	MemtestTestQuickAddr = 1 // sampled words, address in address
	MemtestTestQuickInv  = 2 // sampled words, inverse
	MemtestTestAddr      = 3 // every word, address in address
	MemtestTestInv       = 4 // every word, inverse
	MemtestTestWalk1     = 5 // every word, walking ones
	MemtestTestWalk0     = 6 // every word, walking zeros
	MemtestTestWideUp    = 7 // word 0 of every page, ascending
	MemtestTestWideDown  = 8 // word 0 of every page, inverse, written descending
)

// MemtestTestName names a test number for reports.
func MemtestTestName(t byte) string {
	switch t {
	case MemtestTestQuickAddr:
		return "sampled address-in-address"
	case MemtestTestQuickInv:
		return "sampled inverse address"
	case MemtestTestAddr:
		return "address-in-address"
	case MemtestTestInv:
		return "inverse address"
	case MemtestTestWalk1:
		return "walking ones"
	case MemtestTestWalk0:
		return "walking zeros"
	case MemtestTestWideUp:
		return "range-wide address (ascending)"
	case MemtestTestWideDown:
		return "range-wide inverse address (descending)"
	}
	return fmt.Sprintf("test %d", t)
}

// MemtestSampleOffsets are the words of a page the quick test checks: the
// first, the power-of-two offsets (one per in-page address line) and the last.
var MemtestSampleOffsets = []uint32{0, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4092}

// EncodeMemtestTable returns the table for the memtest guest: mode, seed
// and the ranges to test, which must be page aligned, ascending, not
// overlapping and below 4 GiB.
func EncodeMemtestTable(mode, seed uint32, ranges [][2]uint64) ([]byte, error) {
	if mode != MemtestQuick && mode != MemtestThorough {
		return nil, fmt.Errorf("memtest mode %d", mode)
	}
	if len(ranges) > MemtestMaxRanges {
		return nil, fmt.Errorf("%d ranges to test, the memtest guest takes at most %d", len(ranges), MemtestMaxRanges)
	}
	b := make([]byte, memtestTRanges+8*len(ranges))
	le := binary.LittleEndian
	le.PutUint32(b[memtestTMagic:], MemtestMagic)
	le.PutUint32(b[memtestTVersion:], MemtestVersion)
	le.PutUint32(b[memtestTMode:], mode)
	le.PutUint32(b[memtestTSeed:], seed)
	le.PutUint32(b[memtestTNRanges:], uint32(len(ranges)))
	var prev uint64
	for i, r := range ranges {
		if r[0]%4096 != 0 || r[1]%4096 != 0 || r[1] < r[0] || r[0] < prev || r[1] > 1<<32-4096 {
			return nil, fmt.Errorf("memtest range %#x-%#x: want page-aligned, ascending ranges below 4 GiB", r[0], r[1])
		}
		prev = r[1]
		le.PutUint32(b[memtestTRanges+8*i:], uint32(r[0]))
		le.PutUint32(b[memtestTRanges+8*i+4:], uint32(r[1]))
	}
	return b, nil
}

// MemtestLayout reads the header memtest.S puts after its first jump: the
// offsets of its code (its variables follow the code).
func MemtestLayout(img []byte) (start, end int, err error) {
	if len(img) < 20 || string(img[4:12]) != "KVMBMEMT" {
		return 0, 0, errors.New("memtest image has no header")
	}
	start = int(binary.LittleEndian.Uint32(img[12:]))
	end = int(binary.LittleEndian.Uint32(img[16:]))
	if start < 20 || end <= start || end > len(img) {
		return 0, 0, fmt.Errorf("memtest header says code %#x-%#x in %d bytes", start, end, len(img))
	}
	return start, end, nil
}
