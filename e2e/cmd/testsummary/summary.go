package main

import (
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strings"
	"text/tabwriter"

	"kvmboot/e2e/hosttest"
)

// hostOnly is the row of tests that need nothing of the host.
const hostOnly hosttest.Need = "host only"

// rows are the table's rows, in order, with what each need means.
var rows = []struct {
	need hosttest.Need
	what string
}{
	{hosttest.KVM, "our KVM machine on /dev/kvm"},
	{hosttest.KVMPaging, "our KVM machine, 32-bit paging"},
	{hosttest.QEMU, "qemu-system-i386"},
	{hosttest.Kernel, "Debian's i386 kernel"},
	{hostOnly, "nothing of the host"},
}

// testRecord is what the events said of one test.
type testRecord struct {
	output  []string
	ran     map[hosttest.Need]bool
	skipped map[hosttest.Need]string // need -> reason, for the whole test or a part
	action  string                   // pass, fail or skip, once it ended
	skipMsg string                   // an untagged skip's last log line
}

// summary follows a stream of events.
type summary struct {
	w       io.Writer
	verbose bool
	tests   map[testKey]*testRecord
	order   []testKey
	failed  bool
}

func newSummary(w io.Writer, verbose bool) *summary {
	return &summary{w: w, verbose: verbose, tests: map[testKey]*testRecord{}}
}

func (s *summary) read(r io.Reader) error { return decodeLines(r, s.w, s.add) }

func (s *summary) record(k testKey) *testRecord {
	rec := s.tests[k]
	if rec == nil {
		rec = &testRecord{ran: map[hosttest.Need]bool{}, skipped: map[hosttest.Need]string{}}
		s.tests[k] = rec
		s.order = append(s.order, k)
	}
	return rec
}

// logPrefix is the "    file_test.go:12: " that testing puts before a log line.
var logPrefix = regexp.MustCompile(`^\s+\S+\.go:\d+: `)

func (s *summary) add(ev event) {
	switch {
	case ev.Action == "build-output":
		fmt.Fprint(s.w, ev.Output)
		return
	case ev.Action == "build-fail":
		s.failed = true
		return
	case ev.Test == "":
		if ev.Action == "output" && ev.Output != "PASS\n" {
			fmt.Fprint(s.w, ev.Output)
		}
		if ev.Action == "fail" {
			s.failed = true
		}
		return
	}
	rec := s.record(testKey{ev.Package, ev.Test})
	switch ev.Action {
	case "output":
		if s.verbose {
			fmt.Fprint(s.w, ev.Output)
		} else {
			rec.output = append(rec.output, ev.Output)
		}
		line := strings.TrimRight(ev.Output, "\n")
		if m := hosttest.TagPattern.FindStringSubmatch(line); m != nil {
			n := hosttest.Need(m[2])
			if m[1] == "ran" {
				rec.ran[n] = true
			} else {
				rec.skipped[n] = reason(m[3])
			}
		} else if logPrefix.MatchString(line) {
			rec.skipMsg = logPrefix.ReplaceAllString(line, "")
		}
	case "pass", "fail", "skip":
		rec.action = ev.Action
		if ev.Action == "fail" {
			s.failed = true
			for _, o := range rec.output {
				fmt.Fprint(s.w, o)
			}
		}
		rec.output = nil
	}
}

// reason is a skip's reason without the hint that follows it.
func reason(s string) string {
	for _, hint := range []string{" (set KVMBOOT_", " (required: KVMBOOT_", " (this part only)"} {
		if i := strings.Index(s, hint); i >= 0 {
			return s[:i]
		}
	}
	return s
}

// count is one row of the table.
type count struct {
	ran, skipped int
	why          map[string]int
}

// counts attributes every ended test to the needs it logged (a subtest
// with none of its own inherits its parent's), or to hostOnly.
func (s *summary) counts() map[hosttest.Need]*count {
	out := map[hosttest.Need]*count{}
	row := func(n hosttest.Need) *count {
		if out[n] == nil {
			out[n] = &count{why: map[string]int{}}
		}
		return out[n]
	}
	for _, k := range s.order {
		rec := s.tests[k]
		ran := rec.ran
		for p := k.parent(); len(ran) == 0 && len(rec.skipped) == 0 && p.name != ""; p = p.parent() {
			if pr := s.tests[p]; pr != nil {
				ran = pr.ran
			}
		}
		switch rec.action {
		case "pass", "fail":
			for n := range ran {
				row(n).ran++
			}
			note := " (part of a test)" // the rest of it ran
			if rec.action == "fail" {
				note = " (required here: the test failed)"
			}
			for n, why := range rec.skipped {
				row(n).skipped++
				row(n).why[why+note]++
			}
			if len(ran) == 0 && len(rec.skipped) == 0 {
				row(hostOnly).ran++
			}
		case "skip":
			for n, why := range rec.skipped {
				row(n).skipped++
				row(n).why[why]++
			}
			if len(rec.skipped) == 0 {
				c := row(hostOnly)
				c.skipped++
				c.why[rec.skipMsg]++
			}
		}
	}
	return out
}

// writeTable prints, per need, the tests that ran and skipped and the
// reasons for the skips, most frequent first.
func (s *summary) writeTable(w io.Writer) {
	counts := s.counts()
	fmt.Fprintln(w, "\nTests by what they need of this host:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  need\tran\tskipped\twhy skipped")
	for _, r := range rows {
		c := counts[r.need]
		if c == nil {
			c = &count{}
		}
		fmt.Fprintf(tw, "  %s (%s)\t%d\t%d\t%s\n", r.need, r.what, c.ran, c.skipped, reasons(c.why))
	}
	tw.Flush()
}

// reasons lists the distinct reasons with their counts, most frequent
// first, at most three.
func reasons(why map[string]int) string {
	keys := slices.SortedFunc(maps.Keys(why), func(a, b string) int {
		if why[a] != why[b] {
			return why[b] - why[a]
		}
		return strings.Compare(a, b)
	})
	var parts []string
	for i, k := range keys {
		if i == 3 {
			parts = append(parts, fmt.Sprintf("and %d more", len(keys)-3))
			break
		}
		parts = append(parts, fmt.Sprintf("%s (%d)", k, why[k]))
	}
	return strings.Join(parts, "; ")
}
