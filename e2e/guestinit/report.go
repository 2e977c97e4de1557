// Command guestinit is the /init of the initramfs that kvmboot's e2e tests
// boot Debian's i386 kernel into. It mounts /proc, /sys and devtmpfs on /dev,
// prints a machine-readable report to the console, tests a part of free
// memory, and ends the VM by writing its status to the debug-exit port 0xf4
// through /dev/port.
//
// Build it static for the guest:
//
//	GOOS=linux GOARCH=386 CGO_ENABLED=0 go build -trimpath -ldflags=-s ./e2e/guestinit
//
// (e2e/initramfs.GuestInit does this at test time.)
//
// # Report
//
// Every line starts with "gi: ", in this order:
//
//	gi: hello
//	gi: cmdline <the text of /proc/cmdline>
//	gi: iomem <start>-<end> <name>     one per System RAM, Kernel code/rodata/data/bss,
//	                                   Unusable memory and Reserved range of /proc/iomem
//	                                   (hex as there, end inclusive, indentation dropped)
//	gi: acpi tables <names>            the tables in /sys/firmware/acpi/tables, sorted,
//	                                   or "none"
//	gi: acpi problem <line>            a kernel log line reporting an ACPI error or
//	                                   warning or a firmware bug (at most 8)
//	gi: acpi problems <N>              how many such lines the kernel log holds
//	gi: cpus online <list>             the processors Linux runs, as
//	                                   /sys/devices/system/cpu/online lists them ("0-3")
//	gi: tainted <N>                    /proc/sys/kernel/tainted: 0, or what made the
//	                                   kernel distrust itself (a warning, an
//	                                   unsuitable CPU, ...)
//	gi: memtotal <kB>
//	gi: memavailable <kB>
//	gi: memtest bytes=<N> errors=<M> ms=<T>    or "gi: memtest skipped"
//	gi: memtest error addr=0x... got=0x... want=0x...   (at most 8)
//	gi: result pass|fail
//	gi: exit <status>
//	gi: poweroff <why>                 only when the port write did not end the VM
//
// A failure of the init itself prints "gi: error <what>" and exits with
// status 2. The status is 0 for pass and 1 for fail unless gi.exit= says
// otherwise; QEMU's isa-debug-exit turns status v into process status
// (v<<1)|1.
//
// # Options (kernel command line)
//
//	gi.memtest=0        skip the memory pattern test
//	gi.memtest=P        test P percent (1-90) of MemAvailable (default 50)
//	gi.exit=N           write N (0-255) to the exit port whatever the result
//	gi.panic=1          after the report, exit init instead (the kernel panics:
//	                    "Attempted to kill init")
//	gi.timeout=S        watchdog: after S seconds (default 300) print an error
//	                    and exit with status 2
//	gi.peek=ADDR        read the 32-bit word at physical address ADDR through
//	                    /dev/mem (the kernel maps it, with paging on) and
//	                    print "gi: peek ADDR=VALUE"; ADDR as strconv reads it
//	                    (0x for hex)
//
// The parsing and formatting below are plain Go, tested on the host; the
// parts that need a Linux guest are in main_linux.go.
package main

import (
	"bufio"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Prefix starts every report line.
const Prefix = "gi: "

// Exit statuses written to the debug-exit port.
const (
	StatusPass  = 0
	StatusFail  = 1
	StatusError = 2
)

// Options are the gi.* settings from the kernel command line.
type Options struct {
	// MemtestPercent is the share of MemAvailable to test; 0 skips the test.
	MemtestPercent int
	// Exit, when >= 0, is the status to write instead of pass/fail.
	Exit int
	// Panic makes init exit after the report, so the kernel panics.
	Panic bool
	// Timeout bounds the whole run.
	Timeout time.Duration
	// Peek, when not 0, is a physical address to read through /dev/mem.
	Peek uint64
}

// DefaultOptions are the settings with no gi.* option given.
func DefaultOptions() Options {
	return Options{MemtestPercent: 50, Exit: -1, Timeout: 300 * time.Second}
}

// splitCmdline splits a kernel command line into words the way the kernel
// does (next_arg in lib/cmdline.c): on spaces, with double quotes grouping
// and removed.
func splitCmdline(s string) []string {
	var words []string
	var b strings.Builder
	in, quoted := false, false
	for _, r := range s {
		switch {
		case r == '"':
			quoted = !quoted
			in = true
		case !quoted && (r == ' ' || r == '\t' || r == '\n' || r == '\r'):
			if in {
				words = append(words, b.String())
				b.Reset()
				in = false
			}
		default:
			b.WriteRune(r)
			in = true
		}
	}
	if in {
		words = append(words, b.String())
	}
	return words
}

// ParseOptions reads the gi.* options from a kernel command line. Words
// after a bare "--" belong to init's argv and are ignored, as are words
// without the gi. prefix. An unknown gi.* option or a bad value is an error,
// so a typo in a test does not pass silently.
func ParseOptions(cmdline string) (Options, error) {
	o := DefaultOptions()
	for _, w := range splitCmdline(cmdline) {
		if w == "--" {
			break
		}
		if !strings.HasPrefix(w, "gi.") {
			continue
		}
		key, val, ok := strings.Cut(w, "=")
		if !ok {
			return o, fmt.Errorf("option %q has no value (want %s=VALUE)", w, w)
		}
		if key == "gi.peek" {
			a, err := strconv.ParseUint(val, 0, 64)
			if err != nil || a == 0 || a%4 != 0 {
				return o, fmt.Errorf("option gi.peek=%s: want a 4-byte aligned physical address above 0", val)
			}
			o.Peek = a
			continue
		}
		n, err := strconv.Atoi(val)
		if err != nil {
			return o, fmt.Errorf("option %s: %q is not a number", key, val)
		}
		switch key {
		case "gi.memtest":
			if n < 0 || n > 90 {
				return o, fmt.Errorf("option gi.memtest=%d: want 0 (skip) or a percentage 1-90", n)
			}
			o.MemtestPercent = n
		case "gi.exit":
			if n < 0 || n > 255 {
				return o, fmt.Errorf("option gi.exit=%d: want 0-255", n)
			}
			o.Exit = n
		case "gi.panic":
			if n != 0 && n != 1 {
				return o, fmt.Errorf("option gi.panic=%d: want 0 or 1", n)
			}
			o.Panic = n == 1
		case "gi.timeout":
			if n <= 0 {
				return o, fmt.Errorf("option gi.timeout=%d: want seconds > 0", n)
			}
			o.Timeout = time.Duration(n) * time.Second
		default:
			return o, fmt.Errorf("unknown option %s (known: gi.memtest, gi.exit, gi.panic, gi.timeout, gi.peek)", key)
		}
	}
	return o, nil
}

// An IomemEntry is one line of /proc/iomem.
type IomemEntry struct {
	Start, End uint64 // End is inclusive, as /proc/iomem prints it
	Name       string
	Depth      int // nesting level: leading spaces / 2
	// StartText and EndText are the hex digits as /proc/iomem printed them.
	StartText, EndText string
}

// ParseIomem parses the text of /proc/iomem ("  00100000-0fffffff : System
// RAM", two spaces per nesting level).
func ParseIomem(text string) ([]IomemEntry, error) {
	var out []IomemEntry
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		trimmed := strings.TrimLeft(line, " ")
		depth := (len(line) - len(trimmed)) / 2
		rng, name, ok := strings.Cut(trimmed, " : ")
		if !ok {
			return nil, fmt.Errorf("/proc/iomem line %d: no \" : \" in %q", n, line)
		}
		st, en, ok := strings.Cut(rng, "-")
		if !ok {
			return nil, fmt.Errorf("/proc/iomem line %d: range %q has no '-'", n, rng)
		}
		s, err1 := strconv.ParseUint(st, 16, 64)
		e, err2 := strconv.ParseUint(en, 16, 64)
		if err1 != nil || err2 != nil || e < s {
			return nil, fmt.Errorf("/proc/iomem line %d: bad range %q", n, rng)
		}
		out = append(out, IomemEntry{Start: s, End: e, Name: name, Depth: depth, StartText: st, EndText: en})
	}
	return out, sc.Err()
}

// reportedIomem says which /proc/iomem names go into the report.
var reportedIomem = map[string]bool{
	"System RAM":      true,
	"Kernel code":     true,
	"Kernel rodata":   true,
	"Kernel data":     true,
	"Kernel bss":      true,
	"Unusable memory": true,
	"Reserved":        true,
	"reserved":        true,
}

// IomemLines are the report lines for the entries worth reporting.
func IomemLines(entries []IomemEntry) []string {
	var lines []string
	for _, e := range entries {
		if reportedIomem[e.Name] {
			lines = append(lines, fmt.Sprintf("iomem %s-%s %s", e.StartText, e.EndText, e.Name))
		}
	}
	return lines
}

// ACPITableNames are the names of the tables in /sys/firmware/acpi/tables
// from its entries: the regular files (its directories hold dynamic
// tables and data), sorted.
func ACPITableNames(entries []fs.DirEntry) []string {
	var names []string
	for _, e := range entries {
		if e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	return names
}

// acpiProblemMarks are what ACPICA and the kernel print for trouble with
// the firmware's tables: "ACPI Error", "ACPI BIOS Error (bug)", their
// warnings, and FW_BUG/FW_WARN.
var acpiProblemMarks = []string{"ACPI Error", "ACPI BIOS Error", "ACPI Warning", "ACPI BIOS Warning", "[Firmware Bug]", "[Firmware Warn]"}

// MaxACPIProblemLines is how many problem lines the report prints.
const MaxACPIProblemLines = 8

// ACPIProblems returns the lines of the kernel log (as syslog(2) reads it:
// "<level>[time] text") that report an ACPI or firmware problem, the
// level and time stamp dropped.
func ACPIProblems(klog string) []string {
	var out []string
	for _, line := range strings.Split(klog, "\n") {
		if _, rest, ok := strings.Cut(line, "] "); ok && strings.HasPrefix(line, "<") {
			line = rest
		}
		for _, m := range acpiProblemMarks {
			if strings.Contains(line, m) {
				out = append(out, line)
				break
			}
		}
	}
	return out
}

// ParseMeminfo returns the kB values of /proc/meminfo by field name
// ("MemTotal", "MemAvailable", ...).
func ParseMeminfo(text string) (map[string]uint64, error) {
	m := map[string]uint64{}
	for _, line := range strings.Split(text, "\n") {
		key, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("/proc/meminfo: %s: %q is not a number", key, f[0])
		}
		m[key] = v
	}
	if _, ok := m["MemTotal"]; !ok {
		return nil, fmt.Errorf("/proc/meminfo has no MemTotal")
	}
	return m, nil
}

// MemtestBytes is how much of avail kB to test at percent, in whole chunks.
func MemtestBytes(availKB uint64, percent int, chunk uint64) uint64 {
	b := availKB * 1024 / 100 * uint64(percent)
	return b / chunk * chunk
}

// Pattern is the word the memory test writes at virtual address addr: an
// odd multiplier makes it a bijection of the address, so two words that
// alias each other read back different values.
func Pattern(addr uint32) uint32 {
	return addr*0x9E3779B1 ^ 0xA5A5A5A5
}

// ExitStatus is the status to write to the exit port.
func ExitStatus(o Options, pass bool) int {
	if o.Exit >= 0 {
		return o.Exit
	}
	if pass {
		return StatusPass
	}
	return StatusFail
}
