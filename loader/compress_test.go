package loader

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"
)

var update = flag.Bool("update", false, "rewrite testdata/sample.* with the xz, lzma, bzip2, lz4, zstd and gzip tools")

// samplePayload returns n deterministic bytes that compress about like
// kernel code: short x86 instruction sequences and strings, with near calls
// (E8 rel32) for the xz BCJ filter to convert. It uses its own xorshift
// generator so that the golden files stay valid whatever math/rand does.
func samplePayload(n int) []byte {
	x := uint64(0x9e3779b97f4a7c15)
	next := func() uint64 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		return x
	}
	vocab := [][]byte{
		{0x55, 0x89, 0xe5},       // push ebp; mov ebp, esp
		{0x8b, 0x45, 0x08},       // mov eax, [ebp+8]
		{0x83, 0xec, 0x10},       // sub esp, 16
		{0x31, 0xc0},             // xor eax, eax
		{0x5d, 0xc3},             // pop ebp; ret
		{0x85, 0xc0, 0x74, 0x0a}, // test eax, eax; jz
		{0x90},
		[]byte("kvmboot: bad RAM at "),
		[]byte("\x00kernel"),
	}
	out := make([]byte, 0, n+32)
	for len(out) < n {
		if r := next(); r%5 == 0 {
			out = append(out, 0xe8)
			out = binary.LittleEndian.AppendUint32(out, uint32(r>>40)%0x10000-0x8000)
		} else if r%7 == 0 {
			out = binary.LittleEndian.AppendUint32(out, uint32(r>>32))
		} else {
			out = append(out, vocab[r>>32%uint64(len(vocab))]...)
		}
	}
	return out[:n]
}

// goldenPlain is what every testdata/sample.* file decompresses to.
var goldenPlain = samplePayload(16 << 10)

// goldenFiles were written once by the real tools (go test -update), with the
// options Linux's Makefiles use, so that the tests check the decoders against
// them without needing the tools installed.
var goldenFiles = []struct {
	name string
	c    Compression
	tool []string
}{
	{"sample.xz", XZ, []string{"xz", "--check=crc32", "--x86", "--lzma2=,dict=32MiB", "-c"}},
	{"sample.lzma", LZMA, []string{"lzma", "-9", "-c"}},
	{"sample.bz2", Bzip2, []string{"bzip2", "-9", "-c"}},
	{"sample.lz4", LZ4, []string{"lz4", "-l", "-9", "-c"}},
	{"sample.zst", Zstd, []string{"zstd", "-22", "--ultra", "-c"}},
	{"sample.gz", Gzip, []string{"gzip", "-n", "-9", "-c"}},
}

// runTool compresses in with a command-line tool reading stdin, as Linux's
// Makefiles do (which matters: lzma then writes an unknown size and an end
// marker). It skips the test when the tool is not installed.
func runTool(t testing.TB, in []byte, argv ...string) []byte {
	t.Helper()
	if _, err := exec.LookPath(argv[0]); err != nil {
		t.Skipf("%s is not installed (apt-get install %s)", argv[0], argv[0])
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(argv, " "), err, stderr.String())
	}
	return out
}

func readGolden(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatalf("%v (regenerate with go test -run TestGoldenFiles -update)", err)
	}
	return b
}

func TestGoldenFiles(t *testing.T) {
	for _, g := range goldenFiles {
		t.Run(g.name, func(t *testing.T) {
			if *update {
				if err := os.WriteFile(filepath.Join("testdata", g.name), runTool(t, goldenPlain, g.tool...), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			src := readGolden(t, g.name)
			if c := Sniff(src); c != g.c {
				t.Fatalf("Sniff = %q, want %q", c, g.c)
			}
			out, err := Decompress(g.c, src, DefaultLimit)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out, goldenPlain) {
				t.Fatalf("output differs from the sample (%d bytes, want %d)", len(out), len(goldenPlain))
			}
		})
	}
}

// Compressors available in Go, for round trips of any size.

func gzipBytes(t testing.TB, in []byte, level int) []byte {
	var b bytes.Buffer
	w, err := gzip.NewWriterLevel(&b, level)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(in); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func zstdBytes(t testing.TB, in []byte) []byte {
	w, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBetterCompression))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	return w.EncodeAll(in, nil)
}

// xzBytes writes xz without a BCJ filter, which ulikunitz/xz cannot write;
// the golden file and the CLI test cover BCJ.
func xzBytes(t testing.TB, in []byte) []byte {
	var b bytes.Buffer
	w, err := xz.WriterConfig{CheckSum: xz.CRC32, DictCap: 8 << 20}.NewWriter(&b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(in); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// lzmaBytes writes the classic format as lzma(1) does from a pipe: unknown
// size and an end marker.
func lzmaBytes(t testing.TB, in []byte) []byte {
	var b bytes.Buffer
	w, err := lzma.WriterConfig{EOSMarker: true, Size: -1}.NewWriter(&b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(in); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// lz4LegacyBytes writes Linux's LZ4 legacy framing with the block API, in
// blocks of blockSize (at most 8 MiB).
func lz4LegacyBytes(t testing.TB, in []byte, blockSize int) []byte {
	out := bytes.Clone(magicLZ4Legacy)
	buf := make([]byte, lz4.CompressBlockBound(blockSize))
	for len(in) > 0 {
		chunk := in[:min(blockSize, len(in))]
		in = in[len(chunk):]
		n, err := lz4.CompressBlock(chunk, buf, nil)
		if err != nil || n == 0 {
			t.Fatalf("CompressBlock: %d, %v", n, err)
		}
		out = binary.LittleEndian.AppendUint32(out, uint32(n))
		out = append(out, buf[:n]...)
	}
	return out
}

func lz4FrameBytes(t testing.TB, in []byte) []byte {
	var b bytes.Buffer
	w := lz4.NewWriter(&b)
	if err := w.Apply(lz4.BlockChecksumOption(true), lz4.ChecksumOption(true), lz4.SizeOption(uint64(len(in)))); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(in); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// streamCase is one compressed sample for the round-trip, trailer, limit and
// damage tests.
type streamCase struct {
	name  string
	c     Compression
	src   []byte
	plain []byte
	// checked formats carry a checksum, so any damage is detected.
	checked bool
}

func streamCases(t testing.TB) []streamCase {
	plain := samplePayload(200 << 10)
	big := samplePayload(9 << 20) // more than one 8 MiB LZ4 legacy block
	cases := []streamCase{
		{"gzip", Gzip, gzipBytes(t, plain, gzip.BestCompression), plain, true},
		{"zstd", Zstd, zstdBytes(t, plain), plain, true},
		{"xz", XZ, xzBytes(t, plain), plain, true},
		{"lzma", LZMA, lzmaBytes(t, plain), plain, false},
		{"lz4-legacy", LZ4, lz4LegacyBytes(t, plain, 64<<10), plain, false},
		{"lz4-legacy-8M-blocks", LZ4, lz4LegacyBytes(t, big, 8<<20), big, false},
		{"lz4-frame", LZ4, lz4FrameBytes(t, plain), plain, true},
	}
	for _, g := range goldenFiles {
		cases = append(cases, streamCase{"golden-" + g.name, g.c, readGolden(t, g.name), goldenPlain, g.c != LZ4 && g.c != LZMA})
	}
	return cases
}

func le32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }

// wantFormatError fails unless err is a *FormatError whose message contains
// want, and returns it.
func wantFormatError(t *testing.T, err error, want string) *FormatError {
	t.Helper()
	var fe *FormatError
	if !errors.As(err, &fe) {
		t.Fatalf("error %v (%T), want a *FormatError", err, err)
	}
	// Where the stream broke (format, bytes of output) is the message's contract.
	if !strings.Contains(fe.Error(), want) {
		t.Fatalf("error %q, want it to contain %q", fe.Error(), want)
	}
	if strings.Contains(fe.Error(), "\n") {
		t.Fatalf("error %q spans lines", fe.Error())
	}
	return fe
}

func TestSniff(t *testing.T) {
	for _, tc := range []struct {
		in   []byte
		want Compression
	}{
		{[]byte{0x1f, 0x8b, 0x08, 0x00}, Gzip},
		{[]byte{0xfd, '7', 'z', 'X', 'Z', 0x00, 0x00}, XZ},
		{[]byte{0xfd, '7', 'z', 'X', 'Z'}, CompressionNone}, // magic cut short
		{[]byte{0x28, 0xb5, 0x2f, 0xfd, 0x04}, Zstd},
		{[]byte{0x02, 0x21, 0x4c, 0x18, 0x00}, LZ4},
		{[]byte{0x04, 0x22, 0x4d, 0x18, 0x64}, LZ4},
		{[]byte{0x5d, 0x00, 0x00, 0x80, 0x00}, LZMA},
		{[]byte{0x5d, 0x00, 0x01}, CompressionNone}, // not a power-of-two dictionary
		{[]byte("BZh9"), Bzip2},
		{[]byte("BZ0"), CompressionNone},
		{[]byte("\x7fELF\x01\x01\x01"), CompressionNone},
		{nil, CompressionNone},
		{[]byte{0x1f}, CompressionNone},
	} {
		if got := Sniff(tc.in); got != tc.want {
			t.Errorf("Sniff(% x) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestDecompressTrailers checks that bytes after a complete stream are
// ignored, whatever they look like: Linux's size trailer (which for xz may
// start with zero bytes that look like stream padding, and for bzip2 with
// "BZ"), zero padding, garbage.
func TestDecompressTrailers(t *testing.T) {
	for _, tc := range streamCases(t) {
		for _, tr := range []struct {
			name string
			b    []byte
		}{
			{"none", nil},
			{"size", le32(uint32(len(tc.plain)))},
			{"size-16M", le32(16 << 20)}, // 00 00 00 01
			{"BZ", []byte{'B', 'Z', 0x01, 0x00}},
			{"padding", make([]byte, 512)},
			{"garbage", []byte("this is not compressed data, it is a trailer")},
		} {
			t.Run(tc.name+"/"+tr.name, func(t *testing.T) {
				src := append(bytes.Clone(tc.src), tr.b...)
				if c := Sniff(src); c != tc.c {
					t.Fatalf("Sniff = %q, want %q", c, tc.c)
				}
				out, err := Decompress(tc.c, src, DefaultLimit)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(out, tc.plain) {
					t.Fatalf("output differs (%d bytes, want %d)", len(out), len(tc.plain))
				}
			})
		}
	}
}

// TestDecompressLimit checks the cap at its exact boundary.
func TestDecompressLimit(t *testing.T) {
	for _, tc := range streamCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			n := int64(len(tc.plain))
			if _, err := Decompress(tc.c, tc.src, n); err != nil {
				t.Fatalf("limit = output size: %v", err)
			}
			_, err := Decompress(tc.c, tc.src, n-1)
			fe := wantFormatError(t, err, "output exceeds the ")
			if fe.Context != string(tc.c) {
				t.Errorf("Context = %q, want %q", fe.Context, tc.c)
			}
		})
	}
}

func TestDecompressTruncated(t *testing.T) {
	for _, tc := range streamCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			for _, cut := range []int{len(tc.src) / 2, len(tc.src) - 9} {
				_, err := Decompress(tc.c, tc.src[:cut], DefaultLimit)
				if fe := wantFormatError(t, err, "truncated stream after "); !errors.Is(fe, ErrTruncated) {
					t.Errorf("%v is not ErrTruncated", fe)
				}
			}
		})
	}
}

// TestDecompressCorrupt flips bytes in the middle of each stream: formats
// with checksums must notice; the others must at least not fail other than
// with a FormatError.
func TestDecompressCorrupt(t *testing.T) {
	for _, tc := range streamCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			src := bytes.Clone(tc.src)
			for i := len(src) / 2; i < len(src)/2+16; i++ {
				src[i] ^= 0x55
			}
			out, err := Decompress(tc.c, src, DefaultLimit)
			if err == nil {
				if tc.checked || bytes.Equal(out, tc.plain) {
					t.Fatalf("damage not detected (%d bytes of output)", len(out))
				}
				return
			}
			wantFormatError(t, err, string(tc.c)+": ")
		})
	}
}

// TestDecompressBomb decompresses 1 GiB of zeros gzip'd (1 MiB) and expects
// a quick refusal at the limit, having allocated little more than the
// limit.
func TestDecompressBomb(t *testing.T) {
	if testing.Short() {
		t.Skip("compresses 1 GiB")
	}
	var b bytes.Buffer
	w, _ := gzip.NewWriterLevel(&b, gzip.BestSpeed)
	if _, err := io.CopyN(w, zeroReader{}, 1<<30); err != nil {
		t.Fatal(err)
	}
	w.Close()
	bomb := b.Bytes()

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	_, err := Decompress(Gzip, bomb, DefaultLimit)
	elapsed := time.Since(start)
	runtime.ReadMemStats(&after)
	wantFormatError(t, err, "gzip: output exceeds the 256M limit")
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("%d-byte bomb refused in %v, %d MiB allocated", len(bomb), elapsed, alloc>>20)
	if alloc > 3*DefaultLimit {
		t.Errorf("allocated %d MiB, want at most %d", alloc>>20, 3*DefaultLimit>>20)
	}
	if elapsed > 2*time.Minute { // a hang guard; speed is BenchmarkDecompress's
		t.Errorf("took %v", elapsed)
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestDecompressCLI checks streams made by the real tools from a larger
// sample, with Linux's size trailer, as a kernel build makes them.
func TestDecompressCLI(t *testing.T) {
	plain := samplePayload(1 << 20)
	trailer := le32(uint32(len(plain)))
	for _, g := range goldenFiles {
		t.Run(g.tool[0], func(t *testing.T) {
			src := append(runTool(t, plain, g.tool...), trailer...)
			out, err := Decompress(Sniff(src), src, DefaultLimit)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out, plain) {
				t.Fatalf("output differs (%d bytes, want %d)", len(out), len(plain))
			}
		})
	}
}

func TestDecompressErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    Compression
		src  []byte
		want string
	}{
		{"unknown", Compression("lzo"), []byte("x"), `decompress: unknown compression "lzo"`},
		{"none over limit", CompressionNone, make([]byte, 11), "none: output exceeds the 10 limit"},
		{"gzip empty", Gzip, nil, "gzip: truncated stream after 0 bytes of output"},
		{"gzip bad header", Gzip, []byte{0x1f, 0x8b, 0x07, 0, 0, 0, 0, 0, 0, 0}, "gzip: corrupt stream"},
		{"xz empty", XZ, nil, "xz: "},
		{"xz bad magic", XZ, []byte("not xz at all, not even close to it"), "xz: corrupt stream after 0 bytes of output"},
		{"zstd bad magic", Zstd, []byte("not zstd"), "zstd: "},
		{"lz4 not lz4", LZ4, []byte("not lz4"), "lz4: "},
		{"lz4 legacy short block", LZ4, append(bytes.Clone(magicLZ4Legacy), 0x10, 0, 0, 0, 1, 2), "lz4: truncated stream after 0 bytes of output"},
		{"lzma short", LZMA, []byte{0x5d, 0, 0}, "lzma: truncated stream after 0 bytes of output"},
		{"lzma bad properties", LZMA, append([]byte{0xff, 0, 0, 1, 0}, make([]byte, 20)...), "lzma: corrupt stream after 0 bytes of output"},
		{"bzip2 no header", Bzip2, []byte("BZx9"), "bzip2: no BZh1..BZh9 stream header"},
		{"bzip2 header only", Bzip2, []byte("BZh9"), "bzip2: truncated stream after 0 bytes of output"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decompress(tc.c, tc.src, 10)
			wantFormatError(t, err, tc.want)
		})
	}
}

func TestDecompressNoneReturnsInput(t *testing.T) {
	in := []byte("\x7fELF")
	out, err := Decompress(CompressionNone, in, 0)
	if err != nil || &out[0] != &in[0] {
		t.Fatalf("Decompress(none) = %p, %v; want the input itself", out, err)
	}
}

func FuzzSniffDecompress(f *testing.F) {
	for _, g := range goldenFiles {
		f.Add(readGolden(f, g.name))
	}
	plain := samplePayload(4 << 10)
	f.Add(lz4LegacyBytes(f, plain, 1<<10))
	f.Add(lz4FrameBytes(f, plain))
	f.Add(xzBytes(f, plain))
	const limit = 1 << 20
	f.Fuzz(func(t *testing.T, src []byte) {
		c := Sniff(src)
		out, err := Decompress(c, src, limit)
		if err != nil {
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v (%T), want a *FormatError", err, err)
			}
			// One line is the contract of every error kvmboot prints.
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q spans lines", err)
			}
			return
		}
		if len(out) > limit {
			t.Fatalf("%s: %d bytes of output, over the %d limit", c, len(out), limit)
		}
	})
}
