package loader

import (
	"errors"
	"testing"
)

// TestFormatErrorOneLine: whatever bytes of the image a message quotes
// (a section name holding newlines, say), Error() is one line.
func TestFormatErrorOneLine(t *testing.T) {
	for _, tc := range []struct {
		err  *FormatError
		want string
	}{
		{&FormatError{Context: "relocations", Msg: "bad .rel.text"}, "relocations: bad .rel.text"},
		{&FormatError{Context: "relocations", Msg: "bad \n.rel\r\x00x"}, `relocations: bad \x0a.rel\x0d\x00x`},
		{&FormatError{Msg: "cannot read", Err: errors.New("a\nb")}, `cannot read: a\x0ab`},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
}
