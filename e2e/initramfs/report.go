package initramfs

import (
	"fmt"
	"strconv"
	"strings"
)

// A Range is a physical address range [Start, End): End is exclusive, one
// past the inclusive end that /proc/iomem prints.
type Range struct {
	Start, End uint64
}

// Size is the range's length in bytes.
func (r Range) Size() uint64 { return r.End - r.Start }

// IsZero reports whether the range was never set.
func (r Range) IsZero() bool { return r == Range{} }

// Overlaps reports whether r and o share at least one byte.
func (r Range) Overlaps(o Range) bool { return r.Start < o.End && o.Start < r.End }

// Contains reports whether o lies wholly inside r.
func (r Range) Contains(o Range) bool { return r.Start <= o.Start && o.End <= r.End }

func (r Range) String() string { return fmt.Sprintf("%#x-%#x", r.Start, r.End) }

// A GuestReport is what e2e/guestinit printed on the console: its "gi: "
// lines, parsed.
type GuestReport struct {
	Cmdline string
	// The /proc/iomem ranges, in the order printed.
	SystemRAM []Range
	Unusable  []Range // "Unusable memory": E820 type 5 (bad RAM)
	Reserved  []Range // "Reserved": E820 type 2, memmap=nn$ss
	// The kernel's image, zero when not printed.
	KernelCode, KernelRodata, KernelData, KernelBss Range

	MemTotalKB, MemAvailableKB uint64

	// ACPITables are the tables the kernel found (nil when the init did
	// not say; empty for "none"); ACPIProblems the kernel log's ACPI and
	// firmware complaints the init printed, ACPIProblemCount all of them.
	ACPITables       []string
	ACPIProblems     []string
	ACPIProblemCount int

	// CPUsOnline are the processors Linux runs (nil when the init did
	// not say).
	CPUsOnline []int
	// Tainted is the kernel's taint mask (-1 when the init did not say):
	// not 0 after a kernel warning, for one.
	Tainted int

	MemtestSkipped bool
	MemtestBytes   uint64
	MemtestErrors  uint64
	MemtestMillis  uint64
	// MemtestErrorLines are the first failing words, as printed
	// ("addr=0x... got=0x... want=0x...").
	MemtestErrorLines []string

	Result string // "pass", "fail", or "" when the init did not get there
	Pass   bool   // Result == "pass"
	Exit   int    // the status the init wrote to the exit port; -1 if not printed
	// Errors are the init's "gi: error" lines, without the prefix.
	Errors []string
	// Lines are every report line after "gi: hello", without the prefix.
	Lines []string
}

// RAMOverlapping returns the System RAM ranges that share a byte with r.
func (g *GuestReport) RAMOverlapping(r Range) []Range {
	var out []Range
	for _, ram := range g.SystemRAM {
		if ram.Overlaps(r) {
			out = append(out, ram)
		}
	}
	return out
}

const reportPrefix = "gi: "

// reportLine finds a report line in one console line: the text after "gi: "
// once terminal escapes and carriage returns are removed. The prefix need
// not start the line: the kernel or firmware may leave text (a clear-screen
// sequence, "Booting from ROM..") before init's first write.
func reportLine(line string) (string, bool) {
	line = stripEscapes(line)
	i := strings.Index(line, reportPrefix)
	if i < 0 {
		return "", false
	}
	return strings.TrimRight(line[i+len(reportPrefix):], " \t"), true
}

// stripEscapes removes carriage returns, NULs and ANSI escape sequences
// (ESC [ ... final, and two-byte ESC x).
func stripEscapes(s string) string {
	if !strings.ContainsAny(s, "\x1b\r\x00") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\r' || c == 0:
		case c == 0x1b && i+1 < len(s) && s[i+1] == '[':
			i += 2
			for i < len(s) && (s[i] < 0x40 || s[i] > 0x7e) {
				i++
			}
		case c == 0x1b:
			i++
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// ParseGuestReport parses the report that e2e/guestinit printed in a
// captured console. It returns an error when the init never started (no
// "gi: hello"), started twice, printed a malformed line, reported "gi:
// error" lines, or stopped before its "gi: result" line; in every case
// after "gi: hello" it also returns the report so far, for diagnostics.
// Lines with an unknown keyword are kept in Lines and otherwise ignored.
func ParseGuestReport(console string) (*GuestReport, error) {
	var g *GuestReport
	for _, raw := range strings.Split(console, "\n") {
		text, ok := reportLine(raw)
		if !ok {
			continue
		}
		key, rest, _ := strings.Cut(text, " ")
		if key == "hello" {
			if g != nil {
				return g, fmt.Errorf("guest init started twice (a second \"gi: hello\"): did the guest reboot?")
			}
			g = &GuestReport{Exit: -1, Tainted: -1}
			continue
		}
		if g == nil {
			continue // a stray match before the init started
		}
		g.Lines = append(g.Lines, text)
		if err := g.parseLine(key, rest); err != nil {
			return g, fmt.Errorf("guest report line %q: %w", reportPrefix+text, err)
		}
	}
	if g == nil {
		return nil, fmt.Errorf("no guest init report on the console (no %q line)", reportPrefix+"hello")
	}
	if len(g.Errors) > 0 {
		return g, fmt.Errorf("guest init reported an error: %s", g.Errors[0])
	}
	if g.Result == "" {
		last := "gi: hello"
		if n := len(g.Lines); n > 0 {
			last = reportPrefix + g.Lines[n-1]
		}
		return g, fmt.Errorf("guest report incomplete: no \"gi: result\" line (last: %q)", last)
	}
	return g, nil
}

func (g *GuestReport) parseLine(key, rest string) error {
	switch key {
	case "cmdline":
		g.Cmdline = rest
	case "iomem":
		return g.parseIomem(rest)
	case "memtotal":
		return parseUint(rest, &g.MemTotalKB)
	case "memavailable":
		return parseUint(rest, &g.MemAvailableKB)
	case "memtest":
		return g.parseMemtest(rest)
	case "acpi":
		return g.parseACPI(rest)
	case "cpus":
		list, ok := strings.CutPrefix(rest, "online ")
		if !ok {
			return fmt.Errorf("unknown cpus line %q", rest)
		}
		cpus, err := ParseCPUList(list)
		g.CPUsOnline = cpus
		return err
	case "result":
		if rest != "pass" && rest != "fail" {
			return fmt.Errorf("result %q is neither pass nor fail", rest)
		}
		g.Result = rest
		g.Pass = rest == "pass"
	case "tainted":
		n, err := strconv.Atoi(rest)
		if err != nil || n < 0 {
			return fmt.Errorf("taint mask %q is not a number", rest)
		}
		g.Tainted = n
	case "exit":
		n, err := strconv.Atoi(rest)
		if err != nil {
			return fmt.Errorf("exit status %q is not a number", rest)
		}
		g.Exit = n
	case "error":
		g.Errors = append(g.Errors, rest)
	}
	return nil
}

func parseUint(s string, dst *uint64) error {
	v, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return fmt.Errorf("%q is not a number", s)
	}
	*dst = v
	return nil
}

// parseIomem reads "0d000000-0d91bc7f Kernel code".
func (g *GuestReport) parseIomem(s string) error {
	rng, name, ok := strings.Cut(s, " ")
	if !ok {
		return fmt.Errorf("iomem line has no name")
	}
	st, en, ok := strings.Cut(rng, "-")
	if !ok {
		return fmt.Errorf("iomem range %q has no '-'", rng)
	}
	start, err1 := strconv.ParseUint(st, 16, 64)
	end, err2 := strconv.ParseUint(en, 16, 64)
	if err1 != nil || err2 != nil || end < start {
		return fmt.Errorf("bad iomem range %q", rng)
	}
	r := Range{Start: start, End: end + 1}
	switch name {
	case "System RAM":
		g.SystemRAM = append(g.SystemRAM, r)
	case "Unusable memory":
		g.Unusable = append(g.Unusable, r)
	case "Reserved", "reserved":
		g.Reserved = append(g.Reserved, r)
	case "Kernel code":
		g.KernelCode = r
	case "Kernel rodata":
		g.KernelRodata = r
	case "Kernel data":
		g.KernelData = r
	case "Kernel bss":
		g.KernelBss = r
	}
	return nil
}

// parseACPI reads "tables NAME...", "tables none", "problem LINE" and
// "problems N".
func (g *GuestReport) parseACPI(s string) error {
	key, rest, _ := strings.Cut(s, " ")
	switch key {
	case "tables":
		g.ACPITables = []string{}
		if rest != "none" {
			g.ACPITables = strings.Fields(rest)
		}
	case "problem":
		g.ACPIProblems = append(g.ACPIProblems, rest)
	case "problems":
		n, err := strconv.Atoi(rest)
		if err != nil || n < 0 {
			return fmt.Errorf("acpi problems %q is not a count", rest)
		}
		g.ACPIProblemCount = n
	default:
		return fmt.Errorf("unknown acpi line %q", s)
	}
	return nil
}

// parseMemtest reads "skipped", "bytes=N errors=M ms=T",
// "error addr=... got=... want=..." and informational lines.
func (g *GuestReport) parseMemtest(s string) error {
	switch {
	case s == "skipped":
		g.MemtestSkipped = true
		return nil
	case strings.HasPrefix(s, "error "):
		g.MemtestErrorLines = append(g.MemtestErrorLines, strings.TrimPrefix(s, "error "))
		return nil
	case !strings.HasPrefix(s, "bytes="):
		return nil // e.g. "mapped N of M bytes: ..."
	}
	for _, f := range strings.Fields(s) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return fmt.Errorf("memtest field %q has no '='", f)
		}
		var dst *uint64
		switch k {
		case "bytes":
			dst = &g.MemtestBytes
		case "errors":
			dst = &g.MemtestErrors
		case "ms":
			dst = &g.MemtestMillis
		default:
			continue
		}
		if err := parseUint(v, dst); err != nil {
			return fmt.Errorf("memtest %s: %w", k, err)
		}
	}
	return nil
}

// ParseCPUList reads a list of processors as Linux prints them in sysfs
// ("0-3,6,8-9"): the numbers, in order.
func ParseCPUList(s string) ([]int, error) {
	cpus := []int{}
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		first, err1 := strconv.Atoi(lo)
		last, err2 := first, error(nil)
		if isRange {
			last, err2 = strconv.Atoi(hi)
		}
		if err1 != nil || err2 != nil || first < 0 || last < first || last-first > 4096 {
			return nil, fmt.Errorf("CPU list %q: %q is not N or N-M", s, part)
		}
		for c := first; c <= last; c++ {
			cpus = append(cpus, c)
		}
	}
	return cpus, nil
}
