package loader

import (
	"bytes"
	"compress/bzip2"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/therootcompany/xz"
	"github.com/ulikunitz/xz/lzma"

	"kvmboot/internal/hugemem"
	"kvmboot/loader/memmap"
)

// Compression names the compression of a kernel, a bzImage payload or an
// initrd. The values are the names users see in `kvmboot inspect` and in the
// result JSON ("xz+elf32").
type Compression string

// The compressions Linux can use for its payload (CONFIG_KERNEL_*), which are
// also the ones a compressed vmlinux or initrd is likely to come in.
const (
	CompressionNone Compression = "none"
	Gzip            Compression = "gzip"
	XZ              Compression = "xz"
	Zstd            Compression = "zstd"
	LZ4             Compression = "lz4"
	LZMA            Compression = "lzma"
	Bzip2           Compression = "bzip2"
)

// DefaultLimit is the output cap the loader passes to Decompress: it is far
// above any i386 kernel (Debian's 686 vmlinux is 16 MiB, and a relocated
// 32-bit kernel must end below 512 MiB anyway) yet small enough that a
// malicious or corrupt image cannot exhaust the host's memory.
const DefaultLimit = 256 << 20

// Magic numbers, as in Linux's lib/decompress.c. LZMA has no magic: Linux
// takes the properties byte 0x5D (lc=3 lp=0 pb=2, the only one lzma(1)
// writes) and a 0; we also want the next byte 0, since lzma(1) dictionary
// sizes are at least 64 KiB and so have 16 low zero bits.
var (
	magicGzip      = []byte{0x1f, 0x8b}
	magicXZ        = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
	magicZstd      = []byte{0x28, 0xb5, 0x2f, 0xfd}
	magicLZ4Legacy = []byte{0x02, 0x21, 0x4c, 0x18}
	magicLZ4Frame  = []byte{0x04, 0x22, 0x4d, 0x18}
	magicLZMA      = []byte{0x5d, 0x00, 0x00}
	magicBzip2     = []byte{'B', 'Z', 'h'}
)

// Sniff identifies the compression of b from its first bytes. It returns
// CompressionNone when no magic matches, which is also the answer for an
// uncompressed ELF file.
func Sniff(b []byte) Compression {
	switch {
	case bytes.HasPrefix(b, magicGzip):
		return Gzip
	case bytes.HasPrefix(b, magicXZ):
		return XZ
	case bytes.HasPrefix(b, magicZstd):
		return Zstd
	case bytes.HasPrefix(b, magicLZ4Legacy), bytes.HasPrefix(b, magicLZ4Frame):
		return LZ4
	case bytes.HasPrefix(b, magicLZMA):
		return LZMA
	case bytes.HasPrefix(b, magicBzip2):
		return Bzip2
	}
	return CompressionNone
}

// Decompress inflates src, which is compressed with c, and returns at most
// limit bytes (limit <= 0 means DefaultLimit). It decodes the first stream
// (for xz, the streams up to the last complete one) and ignores any bytes
// after it, because Linux appends the decompressed size as 4 little-endian
// bytes to its payloads and initrds are often padded.
//
// A stream that would produce more than limit bytes, a truncated stream and a
// corrupt one are reported as *FormatError whose Context is the format name.
// For CompressionNone, Decompress returns src itself.
//
// Format notes: xz may use the x86 BCJ filter (Linux payloads do). LZ4 comes
// in Linux's legacy framing (see lz4Legacy) or the standard frame
// format. A bzip2 stream must not be followed by bytes that start a bzip2
// header ("BZh1".."BZh9"): like bzip2(1), Decompress reads those as a
// concatenated stream (Linux's size trailer never looks like one below 784
// MiB).
func Decompress(c Compression, src []byte, limit int64) ([]byte, error) {
	if limit <= 0 {
		limit = DefaultLimit
	}
	d := &decoder{c: c, src: src, limit: limit}
	switch c {
	case CompressionNone:
		if int64(len(src)) > limit {
			return nil, d.tooBig()
		}
		return src, nil
	case Gzip:
		return d.gzip()
	case XZ:
		return d.xz()
	case Zstd:
		return d.zstd()
	case LZ4:
		return d.lz4()
	case LZMA:
		return d.lzma()
	case Bzip2:
		return d.bzip2()
	}
	return nil, &FormatError{Context: "decompress", Msg: fmt.Sprintf("unknown compression %q", string(c)), Class: ErrUnknownCompression}
}

// A decoder holds what every format's decode needs: the input, the output cap
// and the error wording.
type decoder struct {
	c     Compression
	src   []byte
	limit int64
	// eof, if set, is the error with which the format's library reports
	// running out of input, when that is not io.ErrUnexpectedEOF.
	eof error
}

func (d *decoder) tooBig() error {
	return &FormatError{Context: string(d.c), Msg: "output exceeds the " + memmap.FormatSize(uint64(d.limit)) + " limit"}
}

func (d *decoder) truncated(produced int) error {
	return &FormatError{Context: string(d.c), Msg: fmt.Sprintf("truncated stream after %d bytes of output", produced), Class: ErrTruncated}
}

func (d *decoder) corrupt(produced int, err error) error {
	return &FormatError{Context: string(d.c), Msg: fmt.Sprintf("corrupt stream after %d bytes of output", produced), Err: err}
}

// fail turns a decoder library's error into a FormatError, telling a
// truncated stream from a corrupt one. (io.EOF comes from the readers'
// constructors, which read the stream header.)
func (d *decoder) fail(produced int, err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || (d.eof != nil && errors.Is(err, d.eof)) {
		return d.truncated(produced)
	}
	return d.corrupt(produced, err)
}

// maxHintRatio bounds the size hint relative to the input: kernels compress
// 2-5x, so a trailer claiming more than this is not a size trailer (or the
// stream is a bomb) and is not worth allocating for up front.
const maxHintRatio = 32

// initialCap returns the capacity of the first output buffer. The last four
// bytes of src are Linux's decompressed-size trailer (or gzip's ISIZE, which
// is the same number): when plausible, sizing the buffer from them makes the
// decode allocate once. Otherwise start at a few times the input and let the
// buffer double. The +1 leaves room for the read that sees io.EOF without
// growing a buffer that is exactly full.
func (d *decoder) initialCap() int {
	if n := len(d.src); n >= 4 {
		hint := int64(binary.LittleEndian.Uint32(d.src[n-4:]))
		if hint > 0 && hint <= d.limit && hint <= maxHintRatio*int64(n) {
			return int(hint) + 1
		}
	}
	return int(min(max(4*int64(len(d.src)), 64<<10), d.limit+1))
}

// readAll reads r to io.EOF into one buffer that never grows beyond limit+1
// bytes, so that a decompression bomb costs at most that much memory.
func (d *decoder) readAll(r io.Reader) ([]byte, error) {
	buf := hugemem.Make[byte](d.initialCap())[:0]
	for {
		if len(buf) == cap(buf) {
			grown := hugemem.Make[byte](int(min(2*int64(cap(buf)), d.limit+1)))[:len(buf)]
			copy(grown, buf)
			buf = grown
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > d.limit {
			return nil, d.tooBig()
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, d.fail(len(buf), err)
		}
	}
}

func (d *decoder) gzip() ([]byte, error) {
	z, err := gzip.NewReader(bytes.NewReader(d.src))
	if err != nil {
		return nil, d.fail(0, err)
	}
	// One member only: anything after it is a trailer, not another member.
	z.Multistream(false)
	return d.readAll(z)
}

// xzDictMax is the largest LZMA2 dictionary accepted: xz -9 uses 64 MiB and
// Linux 32 MiB. The xz decoder allocates the whole dictionary up front and
// refuses larger ones rather than shrinking them, so a larger limit raises it.
const xzDictMax = xz.DefaultDictMax

func (d *decoder) xz() ([]byte, error) {
	end, complete := xzStreamsEnd(d.src)
	if !complete {
		// xz reports running out of input as ErrBuf, "truncated or
		// corrupt"; with no stream footer in sight, it is truncation.
		d.eof = xz.ErrBuf
	}
	dictMax := uint32(min(max(d.limit, xzDictMax), 1<<32-1))
	z, err := xz.NewReader(bytes.NewReader(d.src[:end]), dictMax)
	if err != nil {
		return nil, d.fail(0, err)
	}
	return d.readAll(z)
}

// xzStreamsEnd returns the end of the last xz stream footer in src and true,
// or len(src) and false when there is none. The xz decoder rejects bytes
// after a stream unless they are zero padding in multiples of four, which
// Linux's size trailer is not, so the input must stop at the footer. The
// footer ends in "YZ" and holds a CRC32 of its middle six bytes and a copy of
// the stream flags from the header, which together leave no room for a false
// match.
func xzStreamsEnd(src []byte) (int, bool) {
	const headerLen, footerLen = 12, 12
	if len(src) < headerLen+footerLen {
		return len(src), false
	}
	flags := src[6:8]
	for end := len(src); ; {
		i := bytes.LastIndex(src[headerLen:end], []byte("YZ"))
		if i < 0 {
			return len(src), false
		}
		footerEnd := headerLen + i + 2
		if footerEnd-footerLen >= headerLen {
			f := src[footerEnd-footerLen : footerEnd]
			if bytes.Equal(f[8:10], flags) && crc32.ChecksumIEEE(f[4:10]) == binary.LittleEndian.Uint32(f) {
				return footerEnd, true
			}
		}
		end = headerLen + i + 1
	}
}

func (d *decoder) zstd() ([]byte, error) {
	// Decode the first frame only: the decoder would take Linux's size
	// trailer for the start of another frame and fail. Linux does the same
	// (zstd_find_frame_compressed_size in decompress_unzstd.c).
	frame := d.src
	if end, ok := zstdFrameEnd(d.src); ok {
		frame = d.src[:end]
	}
	// The decoder refuses a frame whose window exceeds its output cap,
	// though the window only bounds how far back matches reach, and
	// `zstd -22 --ultra` (Linux's choice) declares a 128 MiB window however
	// small the output. So let the decoder's cap reach the window, up to
	// that much, and check the limit on the result.
	maxOut := d.limit
	var h zstd.Header
	if h.Decode(frame) == nil {
		maxOut = max(maxOut, min(int64(h.WindowSize), zstdMaxWindow))
	}
	z, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderMaxMemory(uint64(maxOut)))
	if err != nil {
		return nil, err
	}
	defer z.Close()
	out, err := z.DecodeAll(frame, make([]byte, 0, d.initialCap()))
	switch {
	case errors.Is(err, zstd.ErrDecoderSizeExceeded), errors.Is(err, zstd.ErrWindowSizeExceeded):
		return nil, d.tooBig()
	case err != nil:
		return nil, d.fail(len(out), err)
	case int64(len(out)) > d.limit:
		return nil, d.tooBig()
	}
	return out, nil
}

// zstdMaxWindow is the window of zstd's strongest levels (--ultra -20..-22,
// window log 27), the largest a kernel build produces.
const zstdMaxWindow = 128 << 20

// zstdFrameEnd returns the length of the zstd frame that starts src, walking
// its block headers (RFC 8878 section 3.1.1), and false if src ends before
// the frame does or the frame is malformed; the decoder then sees all of src
// and reports the problem.
func zstdFrameEnd(src []byte) (int, bool) {
	if len(src) < 5 {
		return 0, false
	}
	fhd := src[4]
	single := fhd>>5&1 == 1
	pos := 5
	if !single {
		pos++ // window descriptor
	}
	pos += [4]int{0, 1, 2, 4}[fhd&3] // dictionary ID
	switch fcs := fhd >> 6; {
	case fcs == 0 && single:
		pos++
	case fcs > 0:
		pos += 1 << fcs // 2, 4 or 8 bytes of content size
	}
	for {
		if pos+3 > len(src) {
			return 0, false
		}
		h := uint32(src[pos]) | uint32(src[pos+1])<<8 | uint32(src[pos+2])<<16
		pos += 3
		switch h >> 1 & 3 {
		case 0, 2: // raw, compressed
			pos += int(h >> 3)
		case 1: // RLE: one byte repeated
			pos++
		default:
			return 0, false
		}
		if h&1 == 1 { // last block
			break
		}
	}
	if fhd>>2&1 == 1 {
		pos += 4 // content checksum
	}
	return pos, pos <= len(src)
}

// LZ4 legacy framing, as written by `lz4 -l` and used for Linux payloads
// (lib/decompress_unlz4.c): the magic, then blocks of a little-endian u32
// compressed size followed by that many bytes, each decompressing to at most
// 8 MiB. There is no end mark.
const (
	lz4LegacyMagic = 0x184C2102
	lz4LegacyBlock = 8 << 20
)

// lz4LegacyBound is the largest compressed size of a legacy block. A larger
// "size" cannot start a block: lz4(1) takes it as the end of the stream, and
// so do we, which is what makes Linux's size trailer end a kernel payload.
var lz4LegacyBound = uint32(lz4.CompressBlockBound(lz4LegacyBlock))

func (d *decoder) lz4() ([]byte, error) {
	if bytes.HasPrefix(d.src, magicLZ4Legacy) {
		return d.lz4Legacy()
	}
	frame := d.src
	if end, ok := lz4FrameEnd(d.src); ok {
		frame = d.src[:end]
	}
	return d.readAll(lz4.NewReader(bytes.NewReader(frame)))
}

// lz4Legacy decodes the legacy framing itself: pierrec/lz4 reads it too, but
// only recognizes Linux's size trailer when it equals the output size and
// fails on any other trailing bytes. The stream ends when fewer than 4 bytes
// remain, when exactly 4 do (the size trailer), or at a block size of 0
// (padding) or above the bound; a repeated magic starts a concatenated
// stream, which Linux and lz4(1) accept.
//
// Blocks decode straight into the output buffer. A block's output size is
// only known once decoded, so a block first tries the room left, which with
// Linux's size trailer as the hint is exactly enough for the last block, and
// only when that fails does the buffer grow to hold a whole block.
func (d *decoder) lz4Legacy() ([]byte, error) {
	src := d.src[len(magicLZ4Legacy):]
	out := make([]byte, 0, d.initialCap())
	for len(src) > 4 {
		n := binary.LittleEndian.Uint32(src)
		if n == lz4LegacyMagic {
			src = src[4:]
			continue
		}
		if n == 0 || n > lz4LegacyBound {
			break
		}
		src = src[4:]
		if int(n) > len(src) {
			return nil, d.truncated(len(out))
		}
		room := min(cap(out)-len(out), lz4LegacyBlock)
		m, err := lz4.UncompressBlock(src[:n], out[len(out):len(out)+room])
		if err != nil && room < lz4LegacyBlock {
			// At most one block beyond the limit: the check below
			// catches a bomb one block late.
			c := min(max(2*int64(cap(out)), int64(len(out))+lz4LegacyBlock), d.limit+lz4LegacyBlock)
			grown := make([]byte, len(out), c)
			copy(grown, out)
			out = grown
			m, err = lz4.UncompressBlock(src[:n], out[len(out):len(out)+lz4LegacyBlock])
		}
		if err != nil {
			return nil, d.corrupt(len(out), err)
		}
		out = out[:len(out)+m]
		if int64(len(out)) > d.limit {
			return nil, d.tooBig()
		}
		src = src[n:]
	}
	return out, nil
}

// lz4FrameEnd returns the length of the LZ4 frame that starts src (LZ4 Frame
// Format 1.6.x), and false if src ends first; the decoder then sees all of
// src and reports the truncation.
func lz4FrameEnd(src []byte) (int, bool) {
	if len(src) < 7 {
		return 0, false
	}
	flg := src[4]
	pos := 7 // magic, FLG, BD, HC
	if flg&0x08 != 0 {
		pos += 8 // content size
	}
	if flg&0x01 != 0 {
		pos += 4 // dictionary ID
	}
	for {
		if pos+4 > len(src) {
			return 0, false
		}
		n := binary.LittleEndian.Uint32(src[pos:])
		pos += 4
		if n == 0 { // end mark
			break
		}
		pos += int(n & 0x7fffffff)
		if flg&0x10 != 0 {
			pos += 4 // block checksum
		}
	}
	if flg&0x04 != 0 {
		pos += 4 // content checksum
	}
	return pos, pos <= len(src)
}

func (d *decoder) lzma() ([]byte, error) {
	const headerLen = 13 // properties, u32 dictionary size, u64 output size
	if len(d.src) < headerLen {
		return nil, d.truncated(0)
	}
	// No match can reach further back than the output is long, so a
	// dictionary larger than the limit is never needed. The decoder
	// allocates the whole dictionary up front: shrink it in a copy of the
	// header.
	header := bytes.Clone(d.src[:headerLen])
	if int64(binary.LittleEndian.Uint32(header[1:])) > d.limit {
		binary.LittleEndian.PutUint32(header[1:], uint32(max(d.limit, lzma.MinDictCap)))
	}
	z, err := lzma.NewReader(io.MultiReader(bytes.NewReader(header), bytes.NewReader(d.src[headerLen:])))
	if err != nil {
		return nil, d.corrupt(0, err)
	}
	return d.readAll(z)
}

// bzip2 continuation errors: the standard library reader checks each
// stream's CRC, then expects "BZh1".."BZh9" or the end of input, and fails
// with one of these when the bytes after the stream are something else. We
// check the first header ourselves, so they can only mean trailing bytes.
var bzip2TrailingErrors = []error{
	bzip2.StructuralError("bad magic value in continuation file"),
	bzip2.StructuralError("non-Huffman entropy encoding"),
	bzip2.StructuralError("invalid compression level"),
}

func (d *decoder) bzip2() ([]byte, error) {
	if len(d.src) < 4 || !bytes.HasPrefix(d.src, magicBzip2) || d.src[3] < '1' || d.src[3] > '9' {
		return nil, &FormatError{Context: string(d.c), Msg: "no BZh1..BZh9 stream header"}
	}
	return d.readAll(bzip2Stream{bzip2.NewReader(bytes.NewReader(d.src))})
}

// bzip2Stream ends a bzip2 stream at trailing bytes instead of failing.
type bzip2Stream struct{ r io.Reader }

func (s bzip2Stream) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if slices.Contains(bzip2TrailingErrors, err) {
		return n, io.EOF
	}
	return n, err
}
