package lab

import (
	"fmt"
	"io"
	"strconv"
	"strings"
)

// testFraming starts the lines a test binary run with -test.v=test2json
// prints about its tests (=== RUN, --- PASS, the final PASS), as opposed to
// what the tests print.
const testFraming = "\x16"

// Collector turns the results channel's lines into each step's output,
// across attempts: a step that an outer-VM freeze interrupted goes on in
// the next attempt, into the same output. A test step's output is held per
// top-level test until that test's result line, then written whole, so the
// output never holds half a test; the binary's own closing PASS or FAIL is
// replaced by one for all attempts together.
type Collector struct {
	steps []Step
	open  func(step int) io.WriteCloser
	notes func(string)

	status map[int]int      // steps that ended, with their exit status
	ended  map[int][]string // top-level tests that ended, per step
	failed map[int]bool     // a top-level test of the step failed
	outs   map[int]io.WriteCloser

	step    int // running, or -1
	held    map[string][]string
	order   []string // held tests in the order they started
	current string   // the top-level test the last framing line named
	blank   bool     // an empty line held back: the job script's, before a marker
}

// NewCollector collects job's output: open returns the writer of a step's
// output (closed when the step ends), notes receives the lab's own lines.
func NewCollector(job Job, open func(step int) io.WriteCloser, notes func(string)) *Collector {
	return &Collector{steps: job.Steps, open: open, notes: notes, status: map[int]int{}, ended: map[int][]string{},
		failed: map[int]bool{}, outs: map[int]io.WriteCloser{}, step: -1, held: map[string][]string{}}
}

// Line takes one line of the results channel, without its newline.
func (c *Collector) Line(s string) {
	i := strings.Index(s, markerPrefix)
	if i == 0 {
		c.blank = false // the job script's, before its marker
		c.marker(strings.Fields(s[len(markerPrefix):]))
		return
	}
	if c.blank {
		c.blank = false
		c.output("")
	}
	if i > 0 { // a last line without a newline, then the marker
		c.output(s[:i])
		c.marker(strings.Fields(s[i+len(markerPrefix):]))
		return
	}
	if s == "" && c.step >= 0 {
		c.blank = true
		return
	}
	c.output(s)
}

func (c *Collector) marker(f []string) {
	if len(f) == 0 {
		return
	}
	idx := -1
	if len(f) >= 2 {
		if n, err := strconv.Atoi(f[1]); err == nil && n >= 0 && n < len(c.steps) {
			idx = n
		}
	}
	switch {
	case f[0] == markerBegin && idx >= 0:
		c.step = idx
		c.held, c.order, c.current = map[string][]string{}, nil, ""
	case f[0] == markerEnd && idx >= 0 && idx == c.step && len(f) == 3:
		status, err := strconv.Atoi(f[2])
		if err != nil {
			status = 1
		}
		c.endStep(status)
	default:
		c.notes(strings.Join(f, " "))
	}
}

// output routes one line of the running step.
func (c *Collector) output(s string) {
	if c.step < 0 {
		if strings.TrimSpace(s) != "" {
			c.notes("outside any step: " + s)
		}
		return
	}
	if !c.steps[c.step].Tests {
		c.write(s)
		return
	}
	if text, ok := strings.CutPrefix(s, testFraming); ok {
		if c.framing(s, text) {
			return
		}
	}
	if c.current == "" {
		c.write(s)
		return
	}
	c.held[c.current] = append(c.held[c.current], s)
}

// framing follows the test a framing line is about; it reports whether it
// dealt with the line itself.
func (c *Collector) framing(line, text string) bool {
	for _, p := range []string{"=== RUN   ", "=== CONT  ", "=== NAME  ", "=== PAUSE "} {
		if name, ok := strings.CutPrefix(text, p); ok {
			c.current, _, _ = strings.Cut(name, "/")
			if c.current != "" {
				if _, held := c.held[c.current]; !held {
					c.order = append(c.order, c.current)
				}
			}
			return false
		}
	}
	for _, p := range []string{"--- PASS: ", "--- FAIL: ", "--- SKIP: "} {
		rest, ok := strings.CutPrefix(text, p)
		name, _, _ := strings.Cut(rest, " ")
		if !ok || strings.Contains(name, "/") {
			continue
		}
		if _, held := c.held[name]; !held {
			c.order = append(c.order, name)
		}
		c.held[name] = append(c.held[name], line)
		c.flush(name)
		c.ended[c.step] = append(c.ended[c.step], name)
		if p == "--- FAIL: " {
			c.failed[c.step] = true
		}
		c.current = ""
		return true
	}
	if text == "PASS" || text == "FAIL" {
		return true // the binary's closing line: endStep writes the job's
	}
	return false
}

func (c *Collector) flush(name string) {
	for _, l := range c.held[name] {
		c.write(l)
	}
	delete(c.held, name)
}

func (c *Collector) write(s string) {
	w := c.outs[c.step]
	if w == nil {
		w = c.open(c.step)
		c.outs[c.step] = w
	}
	io.WriteString(w, s+"\n")
}

// endStep writes what the step still holds (a binary that crashed leaves
// tests without a result line) and, for a test step, the closing line.
func (c *Collector) endStep(status int) {
	for _, name := range c.order {
		if _, ok := c.held[name]; ok {
			c.flush(name)
		}
	}
	if c.steps[c.step].Tests {
		closing := "PASS"
		if status != 0 || c.failed[c.step] {
			closing = "FAIL"
		}
		c.write(testFraming + closing)
	}
	if w := c.outs[c.step]; w != nil {
		w.Close()
	} else {
		c.open(c.step).Close()
	}
	delete(c.outs, c.step)
	c.status[c.step] = status
	c.step = -1
}

// Abort drops what the interrupted attempt held: its running test goes
// again in the next attempt.
func (c *Collector) Abort() {
	if c.step >= 0 && c.steps[c.step].Tests {
		for _, name := range c.order {
			if _, ok := c.held[name]; ok {
				c.notes(fmt.Sprintf("%s: %s interrupted, to run again", c.steps[c.step].Name, name))
			}
		}
	}
	c.step, c.held, c.order, c.current, c.blank = -1, map[string][]string{}, nil, "", false
}

// Remaining is the first step that has not ended (len(steps) when all
// have) and the top-level tests of it that ended.
func (c *Collector) Remaining() (int, []string) {
	for i := range c.steps {
		if _, ok := c.status[i]; !ok {
			return i, c.ended[i]
		}
	}
	return len(c.steps), nil
}

// Status is the exit status of step i, and whether it ended.
func (c *Collector) Status(i int) (int, bool) {
	s, ok := c.status[i]
	return s, ok
}
