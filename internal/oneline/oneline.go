// Package oneline keeps messages on one line: kvmboot's errors quote file
// names and the bytes of the images it reads, and any of them can hold a
// newline or an escape sequence.
package oneline

import (
	"fmt"
	"strings"
	"unicode"
)

// Escape returns s with every control character (newlines, tabs, escape
// sequences, C1 codes) written as \xNN, and s itself when it has none.
func Escape(s string) string {
	if strings.IndexFunc(s, unicode.IsControl) < 0 {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if unicode.IsControl(r) {
			fmt.Fprintf(&b, "\\x%02x", r)
		} else {
			b.WriteRune(r)
		}
	}
	return b.String()
}
