package machine

import (
	"bytes"
	"io"
	"regexp"
	"strings"
	"sync"
	"time"
)

// FailurePatterns are console lines that end a run as a crash at once: a
// kernel that printed one of them will not reach a debug-exit write.
var FailurePatterns = []string{
	"Kernel panic",
	"Oops:",
	"BUG:",
	"general protection fault",
	"Attempted to kill init",
}

// tailLines is how many console lines a Console keeps for reports.
const tailLines = 50

// maxLine bounds a line kept for matching: a guest that never prints a
// newline must not grow our memory.
const maxLine = 4096

// Console receives every byte the guest prints. It passes them on at once
// (to a file, a terminal), keeps the last lines for reports, and watches for
// the --expect pattern and for failure patterns. It is safe for concurrent
// use: the QEMU backend writes from a reader goroutine.
type Console struct {
	mu       sync.Mutex
	out      io.Writer
	expect   *regexp.Regexp
	failures []string
	line     []byte
	tail     []string
	total    int64
	verdict  *Verdict
	done     chan struct{}
	werr     error
	// idle checks an unterminated line against expect once output pauses:
	// prompts ("login: ") never end with a newline.
	idle *time.Timer
}

// promptIdle is how long output must pause before an unterminated line is
// matched against --expect.
const promptIdle = 50 * time.Millisecond

// Verdict is what the console saw that ends a run.
type Verdict struct {
	Expected bool   // the --expect pattern matched
	Line     string // the line that matched
	Pattern  string // the failure pattern, when not Expected
}

// NewConsole returns a console writing to out (may be nil) and matching
// expect (may be nil) and the default failure patterns.
func NewConsole(out io.Writer, expect *regexp.Regexp) *Console {
	if out == nil {
		out = io.Discard
	}
	return &Console{out: out, expect: expect, failures: FailurePatterns, done: make(chan struct{})}
}

// Write takes guest output. It never fails towards the guest: an error from
// the underlying writer is kept and reported by Err.
func (c *Console) Write(p []byte) (int, error) {
	n := len(p)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total += int64(n)
	if c.werr == nil {
		if _, err := c.out.Write(p); err != nil {
			c.werr = err
		}
	}
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			c.appendLine(p)
			break
		}
		c.appendLine(p[:i])
		c.endLine()
		p = p[i+1:]
	}
	if c.expect != nil && c.verdict == nil && len(c.line) > 0 {
		if c.idle == nil {
			c.idle = time.AfterFunc(promptIdle, c.matchPartial)
		} else {
			c.idle.Reset(promptIdle)
		}
	}
	return n, nil
}

// matchPartial matches the unterminated last line against expect.
func (c *Console) matchPartial() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.verdict == nil && len(c.line) > 0 && c.expect.Match(c.line) {
		c.decide(&Verdict{Expected: true, Line: strings.TrimRight(string(c.line), "\r")})
	}
}

func (c *Console) appendLine(p []byte) {
	if room := maxLine - len(c.line); room > 0 {
		c.line = append(c.line, p[:min(room, len(p))]...)
	}
}

func (c *Console) endLine() {
	line := strings.TrimRight(string(c.line), "\r")
	c.line = c.line[:0]
	c.tail = append(c.tail, line)
	if len(c.tail) > tailLines {
		c.tail = c.tail[len(c.tail)-tailLines:]
	}
	if c.verdict != nil {
		return
	}
	if c.expect != nil && c.expect.MatchString(line) {
		c.decide(&Verdict{Expected: true, Line: line})
		return
	}
	for _, f := range c.failures {
		if strings.Contains(line, f) {
			c.decide(&Verdict{Line: line, Pattern: f})
			return
		}
	}
}

func (c *Console) decide(v *Verdict) {
	c.verdict = v
	close(c.done)
}

// Done is closed when the console has seen a line that ends the run.
func (c *Console) Done() <-chan struct{} { return c.done }

// Verdict returns what ended the run, or nil.
func (c *Console) Verdict() *Verdict {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.verdict
}

// Tail returns the last lines printed (at most 50), including an
// unterminated last line.
func (c *Console) Tail() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := append([]string(nil), c.tail...)
	if len(c.line) > 0 {
		t = append(t, string(c.line))
	}
	return t
}

// Bytes is how many bytes the guest printed.
func (c *Console) Bytes() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}

// Err reports a failure to pass output on (a full disk, say).
func (c *Console) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.werr
}

// Result turns the verdict into a run result, or nil if there is none.
func (v *Verdict) Result() *Result {
	if v == nil {
		return nil
	}
	if v.Expected {
		return &Result{Outcome: Pass, Reason: "expected pattern seen: " + v.Line}
	}
	return Crashed("console: %s", v.Line)
}
