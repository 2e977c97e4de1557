package loader

import (
	"errors"

	"kvmboot/internal/oneline"
)

// The classes of failure that callers and tests tell apart with errors.Is,
// as u-root's multiboot has ErrHeaderNotFound. A *FormatError or
// *PlaceError carries one as its Class; the message the user sees says the
// same in full and is not changed by it.
var (
	ErrEmptyFile          = errors.New("empty file")
	ErrNotELF             = errors.New("not an ELF")
	ErrNoBootHeader       = errors.New("no Multiboot header and not a Linux bzImage")
	ErrTruncated          = errors.New("truncated")
	ErrChecksum           = errors.New("checksum mismatch")
	ErrUnknownCompression = errors.New("unknown compression")
	ErrNoRoom             = errors.New("no room")
	ErrCannotMove         = errors.New("the kernel cannot move")
	ErrLoadAddress        = errors.New("--load-address refused")
	ErrOverlapsBadRAM     = errors.New("overlaps bad RAM")
)

// A FormatError reports a malformed or unsupported kernel image: a bad
// header, a corrupt or truncated compressed stream, a relocation that cannot
// be applied. Callers tell such input errors apart from I/O and planning
// failures with errors.As, and show Error() to the user as is, so every
// message is a single line that names where the problem is.
type FormatError struct {
	// Context says which part of the image is at fault, e.g. "xz payload",
	// "bzImage", "relocations".
	Context string
	// Msg says what is wrong, e.g. "truncated stream after 1048576 bytes of output".
	Msg string
	// Err is the underlying error from a decoder or parser, if any.
	Err error
	// Class is which of the sentinel errors above this is, if any: it is
	// matched by errors.Is and not part of the message.
	Class error
}

// Error returns "<Context>: <Msg>", followed by ": <Err>" when an underlying
// error is known. Messages quote the image's own bytes (section names,
// strings), so control characters are escaped here: the message stays one
// line whatever the image holds.
func (e *FormatError) Error() string {
	s := e.Msg
	if e.Context != "" {
		s = e.Context + ": " + s
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return oneline.Escape(s)
}

// Unwrap returns the underlying error, so that errors.Is can match it.
func (e *FormatError) Unwrap() error { return e.Err }

// Is reports whether target is e's Class.
func (e *FormatError) Is(target error) bool { return e.Class != nil && target == e.Class }
