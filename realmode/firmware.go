package realmode

import (
	_ "embed"
	"encoding/binary"
	"errors"
)

// Firmware is the 64 KiB firmware image built from firmware.S by
// scripts/build-stubs.sh. Its last 16 bytes hold the reset vector.
//
//go:embed firmware.bin
var Firmware []byte

// Layout says where the image's code lies, from the table the image carries
// at LayoutOffset: every byte in Code16 is 16-bit code, every byte in Code32
// is 32-bit code, Reset is the reset vector (16-bit).
type Layout struct {
	Code16, Code32, Reset [2]uint16
}

// LayoutOffset is where firmware.ld puts the layout table.
const LayoutOffset = 0xFFD0

// ReadLayout reads the layout table from a firmware image.
func ReadLayout(img []byte) (Layout, error) {
	if len(img) != ROMSize {
		return Layout{}, errors.New("firmware image is not 64 KiB")
	}
	t := img[LayoutOffset:]
	if string(t[:8]) != "KVMBLAYT" {
		return Layout{}, errors.New("firmware image has no layout table")
	}
	w := func(i int) uint16 { return binary.LittleEndian.Uint16(t[8+2*i:]) }
	return Layout{
		Code16: [2]uint16{w(0), w(1)},
		Code32: [2]uint16{w(2), w(3)},
		Reset:  [2]uint16{w(4), w(5)},
	}, nil
}

// Probe is the probe guest built from probe.S: flat 32-bit code loaded at
// ProbeAddr. EAX=ProbeSpin runs a loop EBX times, EAX=ProbePaging turns on
// 32-bit paging; both then write 0 to the debug-exit port.
//
//go:embed probe.bin
var Probe []byte

// Probe guest constants (probe.S).
const (
	ProbeAddr   = 0x100000
	ProbeSpin   = 0
	ProbePaging = 1
	// ProbeScratchEnd is the end of the memory the paging test writes
	// (page directory and table at 2 MiB).
	ProbeScratchEnd = 0x202000
)
