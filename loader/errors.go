package loader

import "kvmboot/internal/oneline"

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
