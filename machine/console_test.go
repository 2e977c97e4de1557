package machine

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// done reports whether c's Done channel is closed.
func done(c *Console) bool {
	select {
	case <-c.Done():
		return true
	default:
		return false
	}
}

// Bytes reach the sink unchanged and at once, whatever they are: control
// characters, NULs, invalid UTF-8, CRLF.
func TestConsolePassThrough(t *testing.T) {
	var out bytes.Buffer
	c := NewConsole(&out, nil)
	chunks := []string{"hello", "\r\n", "\x00\xff\xfe", "no newline yet", "\n\x1b[0m\n", ""}
	var want strings.Builder
	for _, s := range chunks {
		n, err := c.Write([]byte(s))
		if n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
		want.WriteString(s)
		if out.String() != want.String() {
			t.Fatalf("sink has %q, want %q (passed on at once)", out.String(), want.String())
		}
	}
	if c.Bytes() != int64(want.Len()) {
		t.Errorf("Bytes() = %d, want %d", c.Bytes(), want.Len())
	}
	// A nil sink is allowed.
	d := NewConsole(nil, nil)
	if n, err := d.Write([]byte("x\n")); n != 2 || err != nil {
		t.Errorf("Write to a nil sink = %d, %v", n, err)
	}
	if done(c) || c.Verdict() != nil || c.Err() != nil {
		t.Errorf("plain output ended the run: verdict %+v, err %v", c.Verdict(), c.Err())
	}
}

// Tail keeps the last 50 lines, CR stripped, plus an unterminated last
// line; lines split across writes are joined.
func TestConsoleTail(t *testing.T) {
	c := NewConsole(nil, nil)
	if got := c.Tail(); len(got) != 0 {
		t.Errorf("Tail of a new console = %q", got)
	}
	for i := 0; i < 120; i++ {
		fmt.Fprintf(c, "line %d\r\n", i)
	}
	c.Write([]byte("par"))
	c.Write([]byte("tial"))
	got := c.Tail()
	if len(got) != 51 {
		t.Fatalf("Tail has %d lines, want 50 complete + 1 partial", len(got))
	}
	if got[0] != "line 70" || got[49] != "line 119" || got[50] != "partial" {
		t.Errorf("Tail = %q ... %q, %q", got[0], got[49], got[50])
	}
	// Tail is a copy.
	got[0] = "changed"
	if c.Tail()[0] != "line 70" {
		t.Errorf("Tail shares memory with the console")
	}
	// A line split across writes, and empty lines.
	c = NewConsole(nil, nil)
	c.Write([]byte("ab"))
	c.Write([]byte("c\n\nd"))
	c.Write([]byte("\n"))
	if got := c.Tail(); fmt.Sprintf("%q", got) != `["abc" "" "d"]` {
		t.Errorf("Tail = %q", got)
	}
}

// A guest that never prints a newline must not grow our memory: the line
// kept for matching stops at 4096 bytes, but every byte is passed on.
func TestConsoleLongLine(t *testing.T) {
	var out bytes.Buffer
	c := NewConsole(&out, regexp.MustCompile(`END`))
	long := bytes.Repeat([]byte("x"), 10000)
	c.Write(long)
	c.Write([]byte("END\n"))
	if out.Len() != 10004 {
		t.Errorf("sink got %d bytes, want 10004 (the whole line)", out.Len())
	}
	tail := c.Tail()
	if len(tail) != 1 || len(tail[0]) != 4096 || strings.Trim(tail[0], "x") != "" {
		t.Errorf("Tail holds %d lines, the first %d bytes long; want one line of 4096 x", len(tail), len(tail[0]))
	}
	// The pattern was past the cut: not seen.
	if done(c) {
		t.Errorf("a pattern beyond 4096 bytes of a line matched")
	}
	// Exactly 4096 bytes then the pattern on the next line: seen.
	c.Write(append(bytes.Repeat([]byte("y"), 4096), "\nEND\n"...))
	if !done(c) || c.Verdict().Line != "END" {
		t.Errorf("verdict %+v after a 4096-byte line and END", c.Verdict())
	}
	// A 5000-byte unterminated line in Tail is cut too.
	c = NewConsole(nil, nil)
	c.Write(bytes.Repeat([]byte("z"), 5000))
	if tail := c.Tail(); len(tail) != 1 || len(tail[0]) != 4096 {
		t.Errorf("unterminated long line kept as %d bytes", len(tail[0]))
	}
}

// --expect: a matching line ends the run as a pass; Done closes once even
// if more lines match or fail later (a second close would panic).
func TestConsoleExpect(t *testing.T) {
	c := NewConsole(nil, regexp.MustCompile(`^login: ok (\d+)$`))
	c.Write([]byte("booting\nlogin: ok\n"))
	if done(c) {
		t.Fatalf("a line that does not match the anchored pattern ended the run")
	}
	c.Write([]byte("login: ok 42\r\n"))
	if !done(c) {
		t.Fatalf("Done not closed after the expected line")
	}
	want := Verdict{Expected: true, Line: "login: ok 42"}
	if v := c.Verdict(); v == nil || *v != want {
		t.Fatalf("Verdict = %+v, want %+v", v, want)
	}
	c.Write([]byte("login: ok 43\nKernel panic - not syncing: late\n"))
	if v := c.Verdict(); *v != want {
		t.Errorf("a later line changed the verdict to %+v", v)
	}
	r := c.Verdict().Result()
	if r.Outcome != Pass || r.Status != 0 || !strings.Contains(r.Reason, "login: ok 42") {
		t.Errorf("Result = %+v, want a pass naming the line", r)
	}
	// No verdict, no result.
	var nv *Verdict
	if nv.Result() != nil {
		t.Errorf("nil Verdict gave a result")
	}
}

// Every failure pattern ends the run as a crash naming the line; the
// expect pattern is checked first, so a line matching both passes.
func TestConsoleFailurePatterns(t *testing.T) {
	lines := map[string]string{
		"Kernel panic":             "[    1.234] Kernel panic - not syncing: VFS: Unable to mount root fs",
		"Oops:":                    "Oops: 0002 [#1] SMP",
		"BUG:":                     "BUG: unable to handle page fault for address: 00000000",
		"general protection fault": "traps: init[1] general protection fault ip:b7f1 sp:bf80 error:0",
		"Attempted to kill init":   "Kernel panic - not syncing: Attempted to kill init! exitcode=0x0000000b",
	}
	for _, p := range FailurePatterns {
		line, ok := lines[p]
		if !ok {
			t.Errorf("failure pattern %q has no test line", p)
			continue
		}
		c := NewConsole(nil, regexp.MustCompile(`never`))
		c.Write([]byte("ok\n" + line + "\r\nafter\n"))
		if !done(c) {
			t.Errorf("%q: Done not closed", p)
			continue
		}
		v := c.Verdict()
		if v.Expected || v.Line != line {
			t.Errorf("%q: verdict %+v", p, v)
		}
		// "Attempted to kill init" lines are also "Kernel panic" lines:
		// the first pattern in the list wins.
		if p != "Attempted to kill init" && v.Pattern != p {
			t.Errorf("%q: verdict pattern %q", p, v.Pattern)
		}
		r := v.Result()
		if r.Outcome != Crash || r.Status != StatusCrash || !strings.Contains(r.Reason, line) {
			t.Errorf("%q: Result = %+v", p, r)
		}
	}
	// Expected wins over a failure on the same line.
	c := NewConsole(nil, regexp.MustCompile(`Kernel panic`))
	c.Write([]byte("Kernel panic - not syncing: expected by the test\n"))
	if v := c.Verdict(); v == nil || !v.Expected {
		t.Errorf("verdict %+v, want the expect pattern to win", v)
	}
	// A pattern only in an unterminated line is not acted on yet.
	c = NewConsole(nil, nil)
	c.Write([]byte("Kernel panic - half a line"))
	if done(c) {
		t.Errorf("an unterminated line ended the run")
	}
	c.Write([]byte("\n"))
	if !done(c) {
		t.Errorf("the completed panic line did not end the run")
	}
}

type failingWriter struct {
	n     int // successful writes before failing
	calls int
}

var errDiskFull = errors.New("no space left on device")

func (w *failingWriter) Write(p []byte) (int, error) {
	w.calls++
	if w.calls > w.n {
		return 0, errDiskFull
	}
	return len(p), nil
}

// A sink that fails does not fail the guest: Write reports success, the
// first error is kept, matching goes on, and the sink is not retried.
func TestConsoleSinkError(t *testing.T) {
	w := &failingWriter{n: 1}
	c := NewConsole(w, regexp.MustCompile(`^done$`))
	for _, s := range []string{"one\n", "two\n", "done\n"} {
		if n, err := c.Write([]byte(s)); n != len(s) || err != nil {
			t.Errorf("Write(%q) = %d, %v; want %d, nil", s, n, err, len(s))
		}
	}
	if !errors.Is(c.Err(), errDiskFull) {
		t.Errorf("Err() = %v, want %v", c.Err(), errDiskFull)
	}
	if w.calls != 2 {
		t.Errorf("sink called %d times, want 2 (not again after it failed)", w.calls)
	}
	if !done(c) {
		t.Errorf("matching stopped with the sink")
	}
	if c.Bytes() != 13 {
		t.Errorf("Bytes() = %d, want 13", c.Bytes())
	}
}

// lockedBuffer is a sink that is safe for concurrent use, so that the race
// detector checks the console and not the test's buffer.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// Concurrent writers (the QEMU backend's reader goroutine, the KVM vCPU)
// and readers (Tail, Verdict, Bytes from the run loop) under -race. Each
// goroutine writes whole lines, so every line must come out intact, and
// exactly one verdict is reached.
func TestConsoleConcurrent(t *testing.T) {
	var sink lockedBuffer
	c := NewConsole(&sink, regexp.MustCompile(`^w3 line 99$`))
	const writers, lines = 8, 200
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < lines; i++ {
				fmt.Fprintf(c, "w%d line %d\n", w, i)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 200; i++ {
			c.Tail()
			c.Verdict()
			c.Bytes()
			c.Err()
		}
	}()
	wg.Wait()
	if !done(c) {
		t.Fatalf("the expected line was missed")
	}
	if v := c.Verdict(); v.Line != "w3 line 99" {
		t.Errorf("verdict %+v", v)
	}
	got := strings.Split(strings.TrimSuffix(sink.b.String(), "\n"), "\n")
	if len(got) != writers*lines {
		t.Fatalf("sink has %d lines, want %d", len(got), writers*lines)
	}
	seen := map[string]bool{}
	for _, l := range got {
		seen[l] = true
	}
	for w := 0; w < writers; w++ {
		for i := 0; i < lines; i++ {
			if l := fmt.Sprintf("w%d line %d", w, i); !seen[l] {
				t.Fatalf("line %q missing or torn in the sink", l)
			}
		}
	}
	for _, l := range c.Tail() {
		if !regexp.MustCompile(`^w\d line \d+$`).MatchString(l) {
			t.Errorf("torn line in Tail: %q", l)
		}
	}
}

// TestConsoleExpectPrompt: a prompt without a newline matches once the
// output pauses.
func TestConsoleExpectPrompt(t *testing.T) {
	c := NewConsole(nil, regexp.MustCompile(`login: $`))
	c.Write([]byte("Debian GNU/Linux\nhost login: "))
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("prompt never matched")
	}
	if v := c.Verdict(); v == nil || !v.Expected || v.Line != "host login: " {
		t.Fatalf("verdict %+v", v)
	}
}
