// Package hugemem allocates the large buffers kvmboot fills (kernel
// images, decompressed kernels, cache entries, relocation tables) so that
// the kernel can back them with transparent huge pages.
//
// A process's first touch of each 4 KiB page is a page fault. On the hosts
// this project runs on (paravirtual guests) a fault taken in user mode
// costs 10-15 us: filling a fresh 16 MiB buffer cost 43 ms of faults
// alone, against 1.7 ms backed by 2 MiB pages (README, Facts learned
// here). Go's runtime no longer asks for huge pages itself, and under
// THP's default "madvise" mode heap memory gets none unless asked.
package hugemem

import (
	"io"
	"os"
)

// PageSize is the size of a transparent huge page on x86-64.
const PageSize = 2 << 20

// Threshold is the smallest buffer, in bytes, that Make asks huge pages
// for. A smaller one would take a whole huge page of memory for a few
// faults' worth of time; from 512 KiB on, one huge page costs less time
// than the faults it saves (0.8 against 1.8 ms here).
const Threshold = 512 << 10

// ReadFile is os.ReadFile into a buffer from Make: the file as long as
// it was when opened (a file that claims no size, as /proc's do, is read
// to its end).
func ReadFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() == 0 {
		return io.ReadAll(f)
	}
	b := Make[byte](int(st.Size()))
	n, err := io.ReadFull(f, b)
	if err == io.ErrUnexpectedEOF { // the file shrank meanwhile
		err = nil
	}
	return b[:n], err
}
