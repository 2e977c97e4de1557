// Package realmode holds the guest-side boot stub (a 64 KiB firmware image
// that starts at the x86 reset vector) and its ABI: the parameter block the
// loader fills and the stub reads.
//
// Guest memory used by the stub (all below 0x8000, reserved in every plan):
//
//	0x6000  GDT (copied from ROM: the CPU sets the TSS busy bit in it)
//	        0x10 flat code, 0x18 flat data, 0x20 32-bit TSS, 0x28 and
//	        0x30 16-bit code and data for the way back to real mode
//	0x6080  TSS, 104 bytes
//	0x7000  parameter block, 4 KiB; the stack grows down from here
//
// Parameter block (little endian, offsets in bytes):
//
//	0x00 u32 magic "KVMB" (0x424d564b)
//	0x04 u32 version (2: XXH32 checks; 1 had CRC-32C)
//	0x08 u32 EIP   kernel entry, flat 32-bit protected mode, paging off
//	0x0c u32 EAX   (Multiboot: 0x2BADB002)
//	0x10 u32 EBX   (Multiboot: info address)
//	0x14 u32 ESI   (Linux: zero page address)
//	0x18 u32 ESP   0 = 0x7000
//	0x1c u32 flags bit 0: verify checksums before the jump
//	0x20 u32 status, written by the stub (Status*)
//	0x24 u32 detail: index of the failed check
//	0x28 u32 the checksum the stub computed for it
//	0x2c u32 number of checks (at most MaxChecks)
//	0x30 u32 real-mode call, seg<<16|off: far-called in real mode after
//	         the checks, with the BIOS up; it returns with lret (0 = none)
//	0x34 u32 real-mode entry, seg<<16|off: jumped to in real mode instead
//	         of the 32-bit entry, with DS=ES=FS=GS=SS=0x38 and SP=0x3a
//	         (the Linux 16-bit boot protocol; 0 = none)
//	0x38 u16 segment for the real-mode entry
//	0x3a u16 stack pointer for the real-mode entry
//	0x40     checks: {u32 addr, u32 len, u32 xxh32} each (XXH32, seed 0)
//
// On entry ECX, EDX, EDI and EBP are 0; interrupts are off; the IDT is empty
// so that an early fault is a triple fault rather than a jump through the
// real-mode vector table. A failed check or a missing parameter block prints
// a line on COM1 and writes ExitStubFailed (125) to the debug-exit port.
package realmode

import (
	"encoding/binary"
	"fmt"
)

// Guest physical addresses the stub uses.
const (
	ROMBase    = 0xF0000    // the image below 1 MiB
	ROMHigh    = 0xFFFF0000 // the image below 4 GiB (reset vector)
	ROMSize    = 0x10000    // 64 KiB
	GDTAddr    = 0x6000     // GDT, TSS
	ParamsAddr = 0x7000     // parameter block; stack below it
	ParamsSize = 0x1000     // bytes reserved for the block
	StubLow    = GDTAddr    // first byte of RAM the stub writes
	StubHigh   = ParamsAddr + ParamsSize
)

// Parameter block offsets.
const (
	OffMagic   = 0x00
	OffVersion = 0x04
	OffEIP     = 0x08
	OffEAX     = 0x0c
	OffEBX     = 0x10
	OffESI     = 0x14
	OffESP     = 0x18
	OffFlags   = 0x1c
	OffStatus  = 0x20
	OffDetail  = 0x24
	OffGot     = 0x28
	OffNChecks = 0x2c
	OffRMCall  = 0x30
	OffRMEntry = 0x34
	OffRMSeg   = 0x38
	OffRMSP    = 0x3a
	OffChecks  = 0x40

	Magic   = 0x424d564b
	Version = 2

	FlagVerify = 1

	checkSize = 12
	// MaxChecks is how many pieces the stub can verify.
	MaxChecks = (ParamsSize - OffChecks) / checkSize

	// ExitStubFailed is what the stub writes to the debug-exit port when it
	// cannot boot: a value no guest uses (guests report 0..123).
	ExitStubFailed = 125
)

// Status values the stub leaves at OffStatus.
const (
	StatusNone     = 0 // the stub never reached 32-bit code
	StatusStarted  = 1
	StatusJumped   = 2 // registers loaded, jumping to the entry
	StatusBadSum   = 3
	StatusNoParams = 4
)

// Check is one piece the stub verifies before the jump.
type Check struct {
	Addr uint32
	Len  uint32
	Sum  uint32 // XXH32
}

// NewCheck computes the check for data placed at addr.
func NewCheck(addr uint32, data []byte) Check {
	return Check{Addr: addr, Len: uint32(len(data)), Sum: XXH32(data)}
}

// Params is the content of the parameter block.
type Params struct {
	EIP, EAX, EBX, ESI, ESP uint32
	Verify                  bool
	Checks                  []Check
	// RMCall and RMEntry are seg<<16|off real-mode addresses, 0 for none.
	RMCall, RMEntry uint32
	RMSeg, RMSP     uint16
}

// Encode returns the parameter block bytes.
func (p *Params) Encode() ([]byte, error) {
	if len(p.Checks) > MaxChecks {
		return nil, fmt.Errorf("%d pieces to verify, the stub takes at most %d", len(p.Checks), MaxChecks)
	}
	b := make([]byte, OffChecks+checkSize*len(p.Checks))
	le := binary.LittleEndian
	le.PutUint32(b[OffMagic:], Magic)
	le.PutUint32(b[OffVersion:], Version)
	le.PutUint32(b[OffEIP:], p.EIP)
	le.PutUint32(b[OffEAX:], p.EAX)
	le.PutUint32(b[OffEBX:], p.EBX)
	le.PutUint32(b[OffESI:], p.ESI)
	le.PutUint32(b[OffESP:], p.ESP)
	var flags uint32
	if p.Verify {
		flags |= FlagVerify
	}
	le.PutUint32(b[OffFlags:], flags)
	le.PutUint32(b[OffRMCall:], p.RMCall)
	le.PutUint32(b[OffRMEntry:], p.RMEntry)
	le.PutUint16(b[OffRMSeg:], p.RMSeg)
	le.PutUint16(b[OffRMSP:], p.RMSP)
	le.PutUint32(b[OffNChecks:], uint32(len(p.Checks)))
	for i, c := range p.Checks {
		o := OffChecks + i*checkSize
		le.PutUint32(b[o:], c.Addr)
		le.PutUint32(b[o+4:], c.Len)
		le.PutUint32(b[o+8:], c.Sum)
	}
	return b, nil
}

// StubState is what the stub left in the parameter block.
type StubState struct {
	Status uint32
	Detail uint32 // failed check index
	Got    uint32 // the checksum computed for it
}

// ReadStubState decodes the stub's status words from the parameter block.
func ReadStubState(block []byte) StubState {
	if len(block) < OffNChecks {
		return StubState{}
	}
	le := binary.LittleEndian
	return StubState{
		Status: le.Uint32(block[OffStatus:]),
		Detail: le.Uint32(block[OffDetail:]),
		Got:    le.Uint32(block[OffGot:]),
	}
}
