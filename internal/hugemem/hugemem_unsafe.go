//go:build linux

package hugemem

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Make returns a zeroed slice of n elements. When it takes at least
// Threshold bytes, its memory starts on a huge-page boundary and the
// kernel is asked (madvise MADV_HUGEPAGE) to back it with huge pages;
// elsewhere, or when the kernel refuses, it is plain heap memory. The
// slice belongs to Go's heap either way: the garbage collector frees it.
func Make[T any](n int) []T {
	var zero T
	size := uintptr(n) * unsafe.Sizeof(zero)
	if size < Threshold || unsafe.Sizeof(zero) == 0 {
		return make([]T, n)
	}
	return makeHuge[T](n, size)
}

// makeHuge allocates n elements (size bytes) rounded up to whole huge
// pages plus one page of slack, takes the huge-page-aligned part and
// advises it. A large allocation fresh from the operating system is not
// touched by the runtime (it knows the memory is zero), so the advice
// comes before the first fault; memory the heap reuses is already backed,
// and the advice changes nothing.
func makeHuge[T any](n int, size uintptr) []T {
	var zero T
	elem := unsafe.Sizeof(zero)
	rounded := (size + PageSize - 1) &^ (PageSize - 1)
	s := make([]T, (rounded+PageSize)/elem+1)
	p := uintptr(unsafe.Pointer(unsafe.SliceData(s)))
	aligned := (p + PageSize - 1) &^ (PageSize - 1)
	if (aligned-p)%elem != 0 {
		return s[:n:n] // no element starts on the boundary: plain memory
	}
	s = s[(aligned-p)/elem:]
	// Advice only: refused, the memory works as it is.
	_ = unix.Madvise(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), rounded), unix.MADV_HUGEPAGE)
	return s[:n:n]
}
