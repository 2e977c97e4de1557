package hugemem

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"
)

func TestMake(t *testing.T) {
	for _, n := range []int{0, 1, Threshold - 1, Threshold, PageSize + 3, 5 * PageSize} {
		b := Make[byte](n)
		if len(b) != n || cap(b) != n {
			t.Fatalf("Make(%d): len %d cap %d", n, len(b), cap(b))
		}
		if bytes.ContainsFunc(b, func(r rune) bool { return r != 0 }) {
			t.Fatalf("Make(%d) is not zeroed", n)
		}
		if n >= Threshold && uintptr(unsafe.Pointer(unsafe.SliceData(b)))%PageSize != 0 {
			t.Errorf("Make(%d) does not start on a huge-page boundary", n)
		}
	}
	w := Make[uint32](Threshold) // 4 bytes each: aligned too
	if len(w) != Threshold || uintptr(unsafe.Pointer(unsafe.SliceData(w)))%PageSize != 0 {
		t.Errorf("Make[uint32]: len %d at %p", len(w), unsafe.SliceData(w))
	}
	w[len(w)-1] = 7 // the whole slice is usable
}

// TestMakeAdvised: where the kernel takes the advice (THP "madvise" or
// "always"), the buffer lies in a mapping marked for huge pages ("hg" in
// /proc/self/smaps' VmFlags).
func TestMakeAdvised(t *testing.T) {
	mode, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	if err != nil || strings.Contains(string(mode), "[never]") {
		t.Skipf("no transparent huge pages here (%q, %v)", mode, err)
	}
	b := Make[byte](2 * PageSize)
	addr := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Skip(err)
	}
	var inside bool
	for _, line := range strings.Split(string(smaps), "\n") {
		var lo, hi uintptr
		if n, _ := fmt.Sscanf(line, "%x-%x ", &lo, &hi); n == 2 { // a mapping's first line
			inside = lo <= addr && addr < hi
		}
		if inside && strings.HasPrefix(line, "VmFlags:") {
			if !strings.Contains(line, " hg") {
				t.Errorf("the buffer's mapping is not advised: %s", line)
			}
			return
		}
	}
	t.Errorf("no mapping holds %#x", addr)
}

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []int{0, 10, Threshold + 5} {
		want := bytes.Repeat([]byte{0xA5}, n)
		p := filepath.Join(dir, "f")
		if err := os.WriteFile(p, want, 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := ReadFile(p)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("ReadFile of %d bytes: %d bytes, %v", n, len(got), err)
		}
	}
	if b, err := ReadFile("/proc/self/status"); err != nil || !bytes.Contains(b, []byte("Name:")) {
		t.Errorf("a /proc file (no size): %q, %v", b, err)
	}
	if _, err := ReadFile(filepath.Join(dir, "missing")); !os.IsNotExist(err) {
		t.Errorf("missing file: %v", err)
	}
}

// BenchmarkReadFile is the read stage of a boot (boot.ReadInput): a
// kernel or initrd from the page cache into a buffer from Make. MB/s must
// not fall as files grow.
func BenchmarkReadFile(b *testing.B) {
	for _, mib := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("%dMiB", mib), func(b *testing.B) {
			p := filepath.Join(b.TempDir(), "f")
			if err := os.WriteFile(p, make([]byte, mib<<20), 0o600); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(mib << 20))
			for b.Loop() {
				if _, err := ReadFile(p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
