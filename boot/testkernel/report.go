package testkernel

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MmapEntry is one "kt: mmap" line: a Multiboot memory map entry.
type MmapEntry struct {
	Base, Len uint64
	Type      uint32 // 1 available, 2 reserved, 3 ACPI, 4 NVS, 5 bad RAM
}

// Module is one "kt: module" line: a Multiboot module.
type Module struct {
	Index      int
	Start, End uint32
	String     string
}

// Report is what the test kernel printed. Lines that did not appear leave
// their fields zero (for example when the loader did not relocate the
// kernel, it prints only hello, one failure and the result).
type Report struct {
	Magic, Info, Flags      uint32 // EAX, EBX and the info's flags at entry
	Base, Link, Delta, Size uint32 // where the image ran, kt_link_base as the code saw it, their difference, image size

	Cmdline, BootLoader string

	MemLower, MemUpper uint32 // KiB, when HasMem
	HasMem             bool

	Mmap    []MmapEntry
	Modules []Module

	// RealMode is what the kernel's real-mode part reported: nil when the
	// loader did not run it ("kt: realmode none").
	RealMode *RealModeReport

	RelocsChecked, RelocsOK int
	AbsChecked, AbsOK       int
	BSSZero                 bool

	// SMP is what kt.smp found: nil without it.
	SMP *SMPReport

	// Failures holds each "kt: fail CHECK: DETAIL" line as "CHECK: DETAIL".
	Failures []string
	Pass     bool

	// Lines holds the other "kt: " lines, the first word as the key and the
	// rest as the value: "poke" -> "0x05000000 done", "peek" ->
	// "0x05000000=0xdeadbeef", "flood" -> "done", "ports" -> "done". A key
	// seen twice keeps its last value.
	Lines map[string]string
}

// Errors that ParseReport wraps when a required line is missing.
var (
	ErrNoHello  = errors.New(`no "kt: hello" line: the test kernel did not start (or printed nothing)`)
	ErrNoResult = errors.New(`no "kt: result" line: the report is incomplete`)
)

const linePrefix = "kt: "

// ParseReport parses the test kernel's report out of a serial console
// capture. Only lines that start with "kt: " count; anything else (firmware
// output, flood lines, a panic message) is ignored, and "\r\n" line ends are
// fine.
//
// It returns an error wrapping ErrNoHello if there is no hello line, and one
// wrapping ErrNoResult if the hello line is not followed by a result line;
// in the latter case the partial report is returned too. A malformed line,
// a second hello or result, or a failure count that disagrees with the
// "kt: fail" lines is an error with a nil report.
func ParseReport(console string) (*Report, error) {
	var p reportParser
	for i, raw := range strings.Split(console, "\n") {
		line := strings.TrimRight(raw, "\r")
		rest, ok := strings.CutPrefix(line, linePrefix)
		if !ok {
			continue
		}
		if err := p.line(rest); err != nil {
			return nil, fmt.Errorf("testkernel: console line %d %q: %w", i+1, line, err)
		}
	}
	if p.r == nil {
		return nil, fmt.Errorf("testkernel: %w", ErrNoHello)
	}
	if !p.result {
		return p.r, fmt.Errorf("testkernel: %w", ErrNoResult)
	}
	return p.r, nil
}

// reportParser is ParseReport between lines: the report once the hello
// line came, and whether the result line did.
type reportParser struct {
	r      *Report
	result bool
}

// line reads one "kt: " line, rest being what follows the prefix.
func (p *reportParser) line(rest string) error {
	// The key is the first word, up to a space or '=': "relocs checked=..",
	// "cmdline=..", "magic=0x.. info=..". val is what follows that separator.
	key := rest[:strings.IndexAny(rest+" ", " =")]
	val := rest[min(len(key)+1, len(rest)):]
	switch {
	case key == "hello" && p.r != nil:
		return errors.New("second hello line (did the guest reboot?)")
	case key == "hello" && val != "kvmboot-testkernel "+Version:
		return fmt.Errorf("want \"kvmboot-testkernel %s\"", Version)
	case key == "hello":
		p.r = &Report{Lines: map[string]string{}}
		return nil
	case p.r == nil:
		return errors.New("before the hello line")
	case p.result && isReportKey(key):
		return errors.New("after the result line")
	case key == "result":
		p.result = true
		return p.r.parseResult(val)
	}
	return p.r.parseLine(key, rest, val)
}

// parseLine reads a report line other than hello and result.
func (r *Report) parseLine(key, rest, val string) error {
	switch key {
	case "magic":
		return parseFields(rest, []string{"magic", "info", "flags"}, hex32(&r.Magic), hex32(&r.Info), hex32(&r.Flags))
	case "base":
		return parseFields(rest, []string{"base", "link", "delta", "size"},
			hex32(&r.Base), hex32(&r.Link), hex32(&r.Delta), hex32(&r.Size))
	case "cmdline":
		r.Cmdline = val
	case "bootloader":
		r.BootLoader = val
	case "mem":
		if val == "none" {
			return nil
		}
		if err := parseFields(val, []string{"lower", "upper"}, dec32(&r.MemLower), dec32(&r.MemUpper)); err != nil {
			return err
		}
		r.HasMem = true
	case "mmap":
		e, err := parseMmapEntry(val)
		r.Mmap = append(r.Mmap, e)
		return err
	case "module":
		return r.parseModule(val)
	case "realmode":
		return r.parseRealMode(val)
	case "smp":
		return r.parseSMP(val)
	case "ap":
		if r.SMP == nil {
			return errors.New("ap line without an smp line before it")
		}
		var id uint32
		err := parseFields(val, []string{"apic"}, dec32(&id))
		r.SMP.APs = append(r.SMP.APs, id)
		return err
	case "e820":
		if r.RealMode == nil {
			return errors.New("e820 line without a realmode line before it")
		}
		e, err := parseMmapEntry(val)
		r.RealMode.E820 = append(r.RealMode.E820, e)
		return err
	case "relocs":
		return parseFields(val, []string{"checked", "ok"}, decInt(&r.RelocsChecked), decInt(&r.RelocsOK))
	case "abs":
		return parseFields(val, []string{"checked", "ok"}, decInt(&r.AbsChecked), decInt(&r.AbsOK))
	case "bss":
		return parseFields(val, []string{"zero"}, yesNo(&r.BSSZero))
	case "fail":
		if check, detail, ok := strings.Cut(val, ": "); !ok || check == "" || detail == "" {
			return errors.New("want \"fail CHECK: DETAIL\"")
		}
		r.Failures = append(r.Failures, val)
	case "":
		return errors.New("empty kt: line")
	default:
		r.Lines[key] = val
	}
	return nil
}

// parseModule reads "index=N start=0x... end=0x... string=S", where S may
// hold spaces.
func (r *Report) parseModule(val string) error {
	parts := strings.SplitN(val, " ", 4)
	if len(parts) < 4 {
		return errors.New("want the fields index, start, end and string")
	}
	str, ok := strings.CutPrefix(parts[3], "string=")
	if !ok {
		return errors.New("want the string field last")
	}
	m := Module{String: str}
	err := parseFields(strings.Join(parts[:3], " "), []string{"index", "start", "end"},
		decInt(&m.Index), hex32(&m.Start), hex32(&m.End))
	r.Modules = append(r.Modules, m)
	return err
}

// parseResult reads "pass failures=N" or "fail failures=N", which must
// agree with the "kt: fail" lines before it.
func (r *Report) parseResult(val string) error {
	word, counts, _ := strings.Cut(val, " ")
	if word != "pass" && word != "fail" {
		return errors.New("want result pass or result fail")
	}
	r.Pass = word == "pass"
	failures := -1
	if err := parseFields(counts, []string{"failures"}, decInt(&failures)); err != nil {
		return err
	}
	if failures != len(r.Failures) {
		return fmt.Errorf("says %d failures, but %d \"kt: fail\" lines came before it", failures, len(r.Failures))
	}
	if r.Pass != (failures == 0) {
		return fmt.Errorf("%s with %d failures", word, failures)
	}
	return nil
}

// isReportKey reports whether key names a line of the report proper, which
// must come before the result line (action output comes after it).
func isReportKey(key string) bool {
	switch key {
	case "magic", "base", "cmdline", "bootloader", "mem", "mmap", "module",
		"realmode", "e820", "relocs", "abs", "bss", "smp", "ap", "fail", "result":
		return true
	}
	return false
}

// parseMmapEntry reads "base=0x... len=0x... type=N", the shape of both
// the Multiboot ("mmap") and the E820 ("e820") entries.
func parseMmapEntry(val string) (MmapEntry, error) {
	var e MmapEntry
	err := parseFields(val, []string{"base", "len", "type"}, hex64(&e.Base), hex64(&e.Len), dec32(&e.Type))
	return e, err
}

// A fieldParser parses the value of one key=value field.
type fieldParser func(string) error

// parseFields parses "k1=v1 k2=v2 ...": exactly the keys given, in order.
func parseFields(s string, keys []string, parsers ...fieldParser) error {
	words := strings.Split(s, " ")
	if len(words) != len(keys) {
		return fmt.Errorf("want the fields %s", strings.Join(keys, " "))
	}
	for i, w := range words {
		v, ok := strings.CutPrefix(w, keys[i]+"=")
		if !ok {
			return fmt.Errorf("field %d: want %s", i+1, keys[i])
		}
		if err := parsers[i](v); err != nil {
			return fmt.Errorf("%s: %w", keys[i], err)
		}
	}
	return nil
}

func parseHex(s string, bits int) (uint64, error) {
	digits, ok := strings.CutPrefix(s, "0x")
	if !ok || digits == "" {
		return 0, fmt.Errorf("%q is not 0x hex", s)
	}
	v, err := strconv.ParseUint(digits, 16, bits)
	if err != nil {
		return 0, fmt.Errorf("%q: not a %d-bit hex number", s, bits)
	}
	return v, nil
}

func parseDec(s string, bits int) (uint64, error) {
	v, err := strconv.ParseUint(s, 10, bits)
	if err != nil || s[0] == '+' {
		return 0, fmt.Errorf("%q: not a %d-bit decimal number", s, bits)
	}
	return v, nil
}

func hex32(p *uint32) fieldParser {
	return func(s string) error {
		v, err := parseHex(s, 32)
		*p = uint32(v)
		return err
	}
}

func hex64(p *uint64) fieldParser {
	return func(s string) error {
		v, err := parseHex(s, 64)
		*p = v
		return err
	}
}

func dec32(p *uint32) fieldParser {
	return func(s string) error {
		v, err := parseDec(s, 32)
		*p = uint32(v)
		return err
	}
}

func decInt(p *int) fieldParser {
	return func(s string) error {
		v, err := parseDec(s, 31)
		*p = int(v)
		return err
	}
}

func yesNo(p *bool) fieldParser {
	return func(s string) error {
		switch s {
		case "yes", "no":
			*p = s == "yes"
			return nil
		}
		return fmt.Errorf("%q: want yes or no", s)
	}
}

// RealModeReport is what the test kernel's real-mode part found: the memory
// map int 15h E820 gave it, and whether that matched the Multiboot one.
type RealModeReport struct {
	At      uint32 // where the loader placed the part
	Status  uint32 // 0: E820 answered
	Entries int
	E820    []MmapEntry
	Match   bool // "kt: realmode match=yes"
}

// parseRealMode reads "none", "at=0x... status=N entries=N" or "match=yes".
func (r *Report) parseRealMode(val string) error {
	switch {
	case val == "none":
		return nil
	case strings.HasPrefix(val, "match="):
		if r.RealMode == nil {
			return errors.New("realmode match before realmode at=")
		}
		return parseFields(val, []string{"match"}, yesNo(&r.RealMode.Match))
	}
	rm := &RealModeReport{}
	if err := parseFields(val, []string{"at", "status", "entries"}, hex32(&rm.At), dec32(&rm.Status), decInt(&rm.Entries)); err != nil {
		return err
	}
	r.RealMode = rm
	return nil
}

// SMPReport is what kt.smp reported: the MP table's processors, the
// bootstrap processor's APIC ID, the page of the start-up code, the APIC
// IDs of the APs that came, in the order they printed them, and how many
// counted themselves in (Arrived) of how many the table lists (Expected).
type SMPReport struct {
	CPUs              int
	BSP               uint32
	Trampoline        uint32
	APs               []uint32
	Arrived, Expected int
}

// parseSMP reads "cpus=N bsp=ID trampoline=0x..." or "arrived=M of=N".
func (r *Report) parseSMP(val string) error {
	if strings.HasPrefix(val, "arrived=") {
		if r.SMP == nil {
			return errors.New("smp arrived before smp cpus=")
		}
		return parseFields(val, []string{"arrived", "of"}, decInt(&r.SMP.Arrived), decInt(&r.SMP.Expected))
	}
	s := &SMPReport{}
	if err := parseFields(val, []string{"cpus", "bsp", "trampoline"}, decInt(&s.CPUs), dec32(&s.BSP), hex32(&s.Trampoline)); err != nil {
		return err
	}
	r.SMP = s
	return nil
}
