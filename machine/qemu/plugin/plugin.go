// Package plugin is kvmboot's QEMU TCG plugin and the protocol kvmboot
// speaks with it. The plugin (csrc/kvmboot-tcg.c, built by
// scripts/build-plugin.sh into kvmboot-tcg.so, which is committed and
// embedded here) watches the guest's accesses to bad and faulty RAM and
// traces its instructions; machine/qemu runs it and answers it. The
// messages are those of csrc/protocol.h: a header {u32 type, u32 length}, then
// the payload, little-endian.
package plugin

import (
	_ "embed"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// SharedObject is the plugin QEMU loads (-plugin).
//
//go:embed kvmboot-tcg.so
var SharedObject []byte

// The protocol's constants, as csrc/protocol.h defines them.
const (
	Version = 2

	MsgConfig  = 1
	MsgHello   = 2
	MsgStart   = 3
	MsgFault   = 4
	MsgDone    = 5
	MsgWritten = 6
	MsgBlock   = 7
	MsgExec    = 8

	ConfigBlocks = 1 // follow which block runs: FAULT carries it (bad RAM)
	ConfigTrace  = 2 // report translations and traced instructions

	ClassBad    = 1 // FAULT before and DONE after every access
	ClassFaulty = 2 // WRITTEN after every write
	ClassFlip   = 3 // FAULT and DONE around reads, WRITTEN after writes

	TraceBlock = 1 // reply to BLOCK: instrument its instructions
	TraceDone  = 2 // reply to BLOCK: tracing is over

	Window = 128 // the most bytes a WRITTEN window holds
)

// MaxInsns is the most instructions QEMU puts in a block.
const MaxInsns = 512

// MaxMessage bounds what kvmboot reads from the plugin: a block is at most
// MaxInsns instructions of 15 bytes.
const MaxMessage = 64 << 10

// Range is watched guest RAM and how.
type Range struct {
	Start, End uint64
	Class      uint32
}

// Config is what the plugin learns first: what to do and where guest RAM
// is (the RAM file's device and inode identify QEMU's mapping of it).
type Config struct {
	Flags              uint32
	RAMSize            uint64
	RAMMajor, RAMMinor uint32
	RAMInode           uint64
	Ranges             []Range // sorted, not overlapping
}

// Encode returns the CONFIG message.
func (c *Config) Encode() []byte {
	b := make([]byte, 8, 8+40+24*len(c.Ranges))
	le := binary.LittleEndian
	le.PutUint32(b, MsgConfig)
	le.PutUint32(b[4:], uint32(40+24*len(c.Ranges)))
	b = le.AppendUint32(b, Version)
	b = le.AppendUint32(b, c.Flags)
	b = le.AppendUint64(b, c.RAMSize)
	b = le.AppendUint32(b, c.RAMMajor)
	b = le.AppendUint32(b, c.RAMMinor)
	b = le.AppendUint64(b, c.RAMInode)
	b = le.AppendUint32(b, uint32(len(c.Ranges)))
	b = le.AppendUint32(b, 0)
	for _, r := range c.Ranges {
		b = le.AppendUint64(b, r.Start)
		b = le.AppendUint64(b, r.End)
		b = le.AppendUint32(b, r.Class)
		b = le.AppendUint32(b, 0)
	}
	return b
}

// Message is one message from the plugin.
type Message struct {
	Type    uint32
	Payload []byte
}

// ReadMessage reads one message, refusing one longer than MaxMessage.
func ReadMessage(r io.Reader) (Message, error) {
	var h [8]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return Message{}, err
	}
	m := Message{Type: binary.LittleEndian.Uint32(h[:])}
	n := binary.LittleEndian.Uint32(h[4:])
	if n > MaxMessage {
		return Message{}, fmt.Errorf("plugin message of type %d claims %d bytes", m.Type, n)
	}
	m.Payload = make([]byte, n)
	if _, err := io.ReadFull(r, m.Payload); err != nil {
		return Message{}, err
	}
	return m, nil
}

// Reply encodes an answer to a message that waits for one.
func Reply(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }

var errShort = errors.New("plugin message too short")

// Block is a translated block: its first instruction's guest (linear)
// address and each instruction's bytes.
type Block struct {
	Vaddr uint64
	Insns [][]byte
}

// Addr is the guest address of instruction i.
func (b *Block) Addr(i int) uint64 {
	a := b.Vaddr
	for _, in := range b.Insns[:i] {
		a += uint64(len(in))
	}
	return a
}

// parseBlock reads BLOCK (csrc/protocol.h).
func parseBlock(p []byte) (*Block, error) {
	le := binary.LittleEndian
	if len(p) < 16 {
		return nil, errShort
	}
	b := &Block{Vaddr: le.Uint64(p)}
	n, code := int(le.Uint32(p[8:])), int(le.Uint32(p[12:]))
	if len(p) != 16+n+code {
		return nil, fmt.Errorf("block of %d bytes claims %d instructions and %d code bytes", len(p), n, code)
	}
	lens, at := p[16:16+n], p[16+n:]
	for _, l := range lens {
		if int(l) > len(at) || l == 0 {
			return nil, errors.New("block's instruction lengths exceed its code")
		}
		b.Insns = append(b.Insns, at[:l:l])
		at = at[l:]
	}
	if len(at) != 0 {
		return nil, errors.New("block's code is longer than its instructions")
	}
	return b, nil
}

// Fault is an access about to happen (FAULT), with the block that runs:
// its first instruction's (linear) address and its instruction count (0:
// none is known, the configuration did not ask or no block ran yet), its
// serial, which changes each time a block starts, and the vCPU that runs
// it.
type Fault struct {
	Phys   uint64
	Write  bool
	Insns  int
	Serial uint64
	Vaddr  uint64
	CPU    int
}

// MaxCPUs bounds the vCPU index a FAULT may carry (QEMU's PC allows 288
// processors).
const MaxCPUs = 1024

// ParseFault reads FAULT's payload.
func ParseFault(p []byte) (Fault, error) {
	le := binary.LittleEndian
	if len(p) != 40 {
		return Fault{}, errShort
	}
	f := Fault{Phys: le.Uint64(p), Write: le.Uint32(p[8:]) != 0, Insns: int(le.Uint32(p[12:])), Serial: le.Uint64(p[16:]), Vaddr: le.Uint64(p[24:]), CPU: int(le.Uint32(p[32:]))}
	if f.Insns > MaxInsns {
		return Fault{}, fmt.Errorf("a block of %d instructions", f.Insns)
	}
	if f.CPU >= MaxCPUs {
		return Fault{}, fmt.Errorf("an access by vCPU %d", f.CPU)
	}
	return f, nil
}

// ParseDone reads DONE's payload: the address of the access.
func ParseDone(p []byte) (uint64, error) {
	if len(p) != 8 {
		return 0, errShort
	}
	return binary.LittleEndian.Uint64(p), nil
}

// Written is a write to faulty RAM that happened (WRITTEN): Before holds
// the bytes at Window before it.
type Written struct {
	Phys, Window uint64
	Before       []byte
}

// ParseWritten reads WRITTEN's payload.
func ParseWritten(p []byte) (Written, error) {
	le := binary.LittleEndian
	if len(p) < 24 {
		return Written{}, errShort
	}
	w := Written{Phys: le.Uint64(p), Window: le.Uint64(p[8:]), Before: p[24:]}
	if n := le.Uint32(p[16:]); uint64(n) != uint64(len(w.Before)) || n > Window || w.Phys < w.Window || w.Phys-w.Window >= uint64(n) {
		return Written{}, fmt.Errorf("malformed write report: %d bytes at %#x for an access at %#x", n, w.Window, w.Phys)
	}
	return w, nil
}

// ParseTraceBlock reads BLOCK's payload: the block's id and the block.
func ParseTraceBlock(p []byte) (uint32, *Block, error) {
	le := binary.LittleEndian
	if len(p) < 8 {
		return 0, nil, errShort
	}
	if n := le.Uint32(p[4:]); uint64(n) != uint64(len(p)-8) {
		return 0, nil, fmt.Errorf("block message carries %d bytes, claims %d", len(p)-8, n)
	}
	b, err := parseBlock(p[8:])
	return le.Uint32(p), b, err
}

// ParseExec reads EXEC's payload: block id and instruction index.
func ParseExec(p []byte) (id uint32, index int, err error) {
	if len(p) != 8 {
		return 0, 0, errShort
	}
	return binary.LittleEndian.Uint32(p), int(binary.LittleEndian.Uint32(p[4:])), nil
}

// ParseHello reads HELLO's payload and checks the version.
func ParseHello(p []byte) error {
	if len(p) != 8 {
		return errShort
	}
	if v := binary.LittleEndian.Uint32(p); v != Version {
		return fmt.Errorf("the plugin speaks version %d of the protocol, kvmboot %d", v, Version)
	}
	return nil
}
