//go:build !linux

package hugemem

// makeHuge is plain heap memory where there is no madvise(MADV_HUGEPAGE).
func makeHuge[T any](n int, _ uintptr) []T { return make([]T, n) }
