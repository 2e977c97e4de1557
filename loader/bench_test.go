package loader

import (
	"debug/elf"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/klauspost/compress/gzip"

	"kvmboot/e2e/hosttest"
	"kvmboot/loader/kcache"
)

// benchPlain is the synthetic input: 16 MiB, about the size of Debian's 686
// vmlinux, compressing about as well.
var benchPlain = sync.OnceValue(func() []byte { return samplePayload(16 << 20) })

// benchSources caches compressed inputs across benchmark runs (-count):
// compressing 16 MiB with xz takes seconds.
var benchSources sync.Map // string -> []byte

func cachedSource(key string, build func() []byte) []byte {
	if v, ok := benchSources.Load(key); ok {
		return v.([]byte)
	}
	src := build()
	benchSources.Store(key, src)
	return src
}

// realVmlinux returns a real kernel ELF: $KVMBOOT_KERNEL_DIR/vmlinux if
// present, else the payload of vmlinuz; it skips when there is neither.
func realVmlinux(b *testing.B) []byte {
	if elf, err := os.ReadFile(filepath.Join(hosttest.KernelDir(), "vmlinux")); err == nil {
		return elf
	}
	return cachedSource("kernel", func() []byte { return loadRealKernel(b).blob })
}

// benchDecompress measures Decompress on the synthetic input and on a real
// kernel, compressed by compress. MB/s counts output bytes.
func benchDecompress(b *testing.B, c Compression, compress func(testing.TB, []byte) []byte) {
	run := func(b *testing.B, src []byte, plainLen int) {
		// Linux's size trailer, as in a bzImage payload.
		src = binary.LittleEndian.AppendUint32(src[:len(src):len(src)], uint32(plainLen))
		b.SetBytes(int64(plainLen))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Decompress(c, src, DefaultLimit); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("synthetic", func(b *testing.B) {
		plain := benchPlain()
		run(b, cachedSource(string(c)+"/synthetic", func() []byte { return compress(b, plain) }), len(plain))
	})
	b.Run("kernel", func(b *testing.B) {
		plain := realVmlinux(b)
		run(b, cachedSource(string(c)+"/kernel", func() []byte { return compress(b, plain) }), len(plain))
	})
}

func BenchmarkDecompressGzip(b *testing.B) {
	benchDecompress(b, Gzip, func(t testing.TB, p []byte) []byte { return gzipBytes(t, p, gzip.BestCompression) })
}

func BenchmarkDecompressXZ(b *testing.B) {
	benchDecompress(b, XZ, xzBytes)
	// Linux's own payload, BCJ filter included, when a real kernel uses xz.
	b.Run("payload", func(b *testing.B) {
		bz, err := ParseBzImage(realVmlinuz(b))
		if err != nil {
			b.Fatal(err)
		}
		if bz.Compression != XZ {
			b.Skipf("the real kernel's payload is %s", bz.Compression)
		}
		b.SetBytes(int64(binary.LittleEndian.Uint32(bz.Payload[len(bz.Payload)-4:])))
		for b.Loop() {
			if _, err := Decompress(XZ, bz.Payload, DefaultLimit); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkDecompressZstd(b *testing.B) { benchDecompress(b, Zstd, zstdBytes) }

func BenchmarkDecompressLZ4(b *testing.B) {
	benchDecompress(b, LZ4, func(t testing.TB, p []byte) []byte { return lz4LegacyBytes(t, p, 8<<20) })
}

func BenchmarkDecompressLZMA(b *testing.B) { benchDecompress(b, LZMA, lzmaBytes) }

func BenchmarkDecompressBzip2(b *testing.B) {
	benchDecompress(b, Bzip2, func(t testing.TB, p []byte) []byte { return runTool(t, p, "bzip2", "-9", "-c") })
}

// linuxSites is the relocation count of Debian's 6.1 686 kernel.
const linuxSites = 276083

// BenchmarkRelocApply measures Apply on a 16 MiB image with as many sites
// as Debian's kernel, spread in ascending order as relocs writes them, and
// on the real table. MB/s counts image bytes.
func BenchmarkRelocApply(b *testing.B) {
	run := func(b *testing.B, r *Relocs, img []byte, base uint64) {
		b.SetBytes(int64(len(img)))
		b.ReportAllocs()
		b.ReportMetric(float64(len(r.Sites)), "sites")
		for b.Loop() {
			if err := r.Apply(img, base, 0x2000000); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("synthetic", func(b *testing.B) {
		const base = 0x1000000
		img := make([]byte, 16<<20)
		r := &Relocs{Sites: make([]uint32, linuxSites)}
		step := uint32(len(img)-4) / linuxSites
		x := uint32(1)
		for i := range r.Sites {
			x = x*1664525 + 1013904223
			r.Sites[i] = base + uint32(i)*step + x%step
		}
		run(b, r, img, base)
	})
	b.Run("kernel", func(b *testing.B) {
		k := loadRealKernel(b)
		run(b, k.sites, k.img, k.base)
	})
}

// linuxShaped is a bzImage like Debian's in all but size: a gzip payload
// holding an ELF of one PT_LOAD of size bytes at 16 MiB and Linux's
// appended relocation table with a site every 64 bytes (Debian's kernel:
// 276,083 sites in 16 MiB), its decompressed size appended.
func linuxShaped(t testing.TB, size int) []byte {
	const base = 0x1000000
	img := samplePayload(size)
	elfFile := e32File{entry: base, segs: []e32Seg{{typ: elf.PT_LOAD, off: 0x1000, vaddr: base, paddr: base, memsz: uint32(size), align: 0x1000, flags: elf.PF_R | elf.PF_X, data: img}}}.bytes()
	blob := binary.LittleEndian.AppendUint32(elfFile, 0) // the table's terminator, then its sites
	for off := 0; off+4 <= size; off += 64 {
		blob = binary.LittleEndian.AppendUint32(blob, uint32(base+off)+linuxPageOffset)
	}
	payload := binary.LittleEndian.AppendUint32(gzipBytes(t, blob, gzip.BestSpeed), uint32(len(blob)))
	spec := linuxSpec(payload)
	spec.initSize = uint32(size) + 0x100000
	return spec.bytes()
}

// BenchmarkBuildWarm is the loader's share of a warm boot of a Linux
// kernel: the decompression cache's hash, lookup and verification,
// parsing, relocation, placement and the checksums, for images of 1, 4
// and 16 MiB. MB/s counts the image, and must not fall as it grows: no
// stage costs more than its input. The stages report their part
// (Plan.Stages) per op.
func BenchmarkBuildWarm(b *testing.B) {
	for _, mib := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("%dMiB", mib), func(b *testing.B) {
			kernel := cachedSource(fmt.Sprintf("linux-shaped/%d", mib), func() []byte { return linuxShaped(b, mib<<20) })
			cfg := Config{Kernel: kernel, MemSize: 256 << 20, Verify: true, Cache: &kcache.Cache{Dir: b.TempDir()}}
			if _, err := Build(cfg); err != nil { // fills the cache
				b.Fatal(err)
			}
			cfg.Cache.Wait()
			var st Stages
			b.SetBytes(int64(mib << 20))
			for b.Loop() {
				p, err := Build(cfg)
				if err != nil {
					b.Fatal(err)
				}
				st.Cache += p.Stages.Cache
				st.Relocate += p.Stages.Relocate
				st.Build += p.Stages.Build
			}
			n := float64(b.N)
			b.ReportMetric(float64(st.Cache.Microseconds())/n, "cache-us/op")
			b.ReportMetric(float64(st.Relocate.Microseconds())/n, "relocate-us/op")
			b.ReportMetric(float64((st.Build-st.Cache-st.Relocate).Microseconds())/n, "plan-us/op")
		})
	}
}
