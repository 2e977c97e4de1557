package memtest

import (
	"encoding/binary"
	"hash/crc32"
	"io"

	"kvmboot/machine/devices"
)

// The COM2 protocol of the memtest guest (realmode/memtest.S). Every frame:
//
//	offset  size  field
//	0       1     0xA5 (SOF)
//	1       1     type: 'H' hello, 'F' fail, 'D' done
//	2       1     sequence number, 0, 1, 2, ... modulo 256
//	3       1     payload length N, at most MaxPayload
//	4       N     payload, little endian
//	4+N     4     check: CRC-32 (IEEE, as zlib and Ethernet) of bytes
//	              1..3+N, little endian
//
// Payloads:
//
//	'H' 16 bytes: u8 version (ProtocolVersion), u8 mode (0 quick,
//	              1 thorough), u16 ranges, u32 pages to test, u32 seed,
//	              u32 reserved
//	'F' 17 bytes: u32 failing address, u32 expected, u32 got, u8 test
//	              (realmode.MemtestTest*), u32 count: this page and the
//	              count-1 pages after it failed the same test (the details
//	              are the first page's)
//	'D' 12 bytes: u32 pages tested, u32 pages that failed the per-page
//	              test, u32 failures found by the range-wide passes
//
// The decoder is tolerant: bytes outside a frame are skipped, a length above
// MaxPayload or a bad check drops the frame's first byte and resynchronises
// on the next SOF inside what was buffered, and the buffer never holds more
// than one frame (MaxFrame bytes), so no input can make it grow, loop or
// panic. The 32-bit check makes a garbage header that passes it (and would
// swallow the good frame after it) a 1-in-4-billion event; an 8-bit sum,
// the first version of the protocol, let about 1 in 256 through.
const (
	SOF        = 0xA5
	MaxPayload = 32
	MaxFrame   = headerLen + MaxPayload + checkLen

	TypeHello = 'H'
	TypeFail  = 'F'
	TypeDone  = 'D'

	HelloLen = 16
	FailLen  = 17
	DoneLen  = 12

	ProtocolVersion = 2

	headerLen = 4 // SOF, type, seq, length
	checkLen  = 4 // CRC-32
)

// Frame is one decoded frame. Payload is the decoder's copy.
type Frame struct {
	Type    byte
	Seq     byte
	Payload []byte
}

// DecoderStats counts what the decoder saw besides good frames.
type DecoderStats struct {
	Frames      uint64 `json:"frames"`        // frames with a good check
	BadChecksum uint64 `json:"bad_checksum"`  // frames dropped for their check
	BadLength   uint64 `json:"bad_length"`    // headers with a length above MaxPayload
	Skipped     uint64 `json:"skipped_bytes"` // bytes that were not part of a good frame
	Truncated   uint64 `json:"truncated"`     // a frame cut off by the end of the stream
	SeqGaps     uint64 `json:"seq_gaps"`      // frames missing between good ones, by sequence number
}

// Decoder turns the COM2 byte stream into frames. It is an io.Writer, so
// the stream can come from any source: our KVM machine's UART, a QEMU
// chardev, a real serial line.
type Decoder struct {
	// OnFrame receives every frame with a good check, in order.
	OnFrame func(Frame)

	buf     [MaxFrame]byte
	n       int
	stats   DecoderStats
	lastSeq int
	seen    bool
}

// Write feeds bytes to the decoder. It never fails.
func (d *Decoder) Write(p []byte) (int, error) {
	for _, c := range p {
		d.WriteByte(c)
	}
	return len(p), nil
}

// WriteByte feeds one byte.
func (d *Decoder) WriteByte(c byte) error {
	if d.n == 0 && c != SOF {
		d.stats.Skipped++
		return nil
	}
	d.buf[d.n] = c // process keeps n < MaxFrame between bytes
	d.n++
	d.process()
	return nil
}

// process consumes what the buffer holds: a frame once complete, a bad
// header or check by resynchronising.
func (d *Decoder) process() {
	for d.n > 0 {
		if d.n < 4 {
			return
		}
		l := int(d.buf[3])
		if l > MaxPayload {
			d.stats.BadLength++
			d.resync()
			continue
		}
		total := headerLen + l + checkLen
		if d.n < total {
			return
		}
		if crc32.ChecksumIEEE(d.buf[1:headerLen+l]) != le.Uint32(d.buf[headerLen+l:]) {
			d.stats.BadChecksum++
			d.resync()
			continue
		}
		f := Frame{Type: d.buf[1], Seq: d.buf[2], Payload: append([]byte(nil), d.buf[headerLen:headerLen+l]...)}
		d.stats.Frames++
		if d.seen {
			d.stats.SeqGaps += uint64(byte(int(f.Seq) - d.lastSeq - 1))
		}
		d.seen, d.lastSeq = true, int(f.Seq)
		d.n = copy(d.buf[:], d.buf[total:d.n])
		d.skipToSOF(0)
		if d.OnFrame != nil {
			d.OnFrame(f)
		}
	}
}

// resync drops the first buffered byte and everything up to the next SOF.
func (d *Decoder) resync() { d.skipToSOF(1) }

// skipToSOF drops buf[0:from] and then bytes up to the next SOF.
func (d *Decoder) skipToSOF(from int) {
	k := from
	for k < d.n && d.buf[k] != SOF {
		k++
	}
	d.stats.Skipped += uint64(k)
	d.n = copy(d.buf[:], d.buf[k:d.n])
}

// Close ends the stream. What is still buffered is a frame cut off by the
// end, counted as truncated, or a garbage header whose claimed length ran
// past the end over good frames: those are decoded.
func (d *Decoder) Close() error {
	if d.n > 0 {
		d.stats.Truncated++
	}
	for d.n > 0 {
		d.resync()
		d.process()
	}
	return nil
}

// Stats returns the counts so far.
func (d *Decoder) Stats() DecoderStats { return d.stats }

// Encode builds a frame, as the guest does: for tests and for other
// senders of the protocol.
func Encode(typ, seq byte, payload []byte) []byte {
	if len(payload) > MaxPayload {
		panic("memtest: payload above MaxPayload")
	}
	b := append([]byte{SOF, typ, seq, byte(len(payload))}, payload...)
	return le.AppendUint32(b, crc32.ChecksumIEEE(b[1:]))
}

// Hello is the guest's first frame.
type Hello struct {
	Version, Mode byte
	Ranges        uint16
	Pages, Seed   uint32
}

// Fail is a run of pages that failed one test.
type Fail struct {
	Addr     uint32 `json:"addr"`
	Expected uint32 `json:"expected"`
	Got      uint32 `json:"got"`
	Test     byte   `json:"test"`
	TestName string `json:"test_name"`
	Pages    uint32 `json:"pages"`
}

// Done is the guest's last frame.
type Done struct {
	Tested, PageFailed, WideFailed uint32
}

var le = binary.LittleEndian

// ParseHello decodes a hello payload.
func ParseHello(p []byte) (Hello, bool) {
	if len(p) != HelloLen {
		return Hello{}, false
	}
	return Hello{Version: p[0], Mode: p[1], Ranges: le.Uint16(p[2:]), Pages: le.Uint32(p[4:]), Seed: le.Uint32(p[8:])}, true
}

// ParseFail decodes a fail payload.
func ParseFail(p []byte) (Fail, bool) {
	if len(p) != FailLen {
		return Fail{}, false
	}
	return Fail{Addr: le.Uint32(p), Expected: le.Uint32(p[4:]), Got: le.Uint32(p[8:]), Test: p[12], Pages: le.Uint32(p[13:])}, true
}

// ParseDone decodes a done payload.
func ParseDone(p []byte) (Done, bool) {
	if len(p) != DoneLen {
		return Done{}, false
	}
	return Done{Tested: le.Uint32(p), PageFailed: le.Uint32(p[4:]), WideFailed: le.Uint32(p[8:])}, true
}

// COM2 returns a 16550 UART for the ports at devices.PortCOM2 whose
// transmitted bytes go to w (a Decoder): the device to register on a
// devices.Bus for the memtest guest. It raises no interrupt; the guest polls.
func COM2(w io.Writer) devices.PortDevice {
	return devices.UARTPorts{UART: devices.NewUART(w, nil), Base: devices.PortCOM2}
}
