//go:build !linux

package hugemem

// Make is plain heap memory where there is no madvise(MADV_HUGEPAGE).
func Make[T any](n int) []T { return make([]T, n) }
