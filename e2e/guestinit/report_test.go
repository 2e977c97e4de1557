package main

import (
	"io/fs"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

// /proc/iomem of Debian's 686 kernel under qemu-system-i386 -kernel, 256 MiB,
// memmap=32M$16M (trimmed).
const sampleIomem = `00000000-00000fff : Reserved
00001000-0009fbff : System RAM
0009fc00-0009ffff : Reserved
000a0000-000bffff : PCI Bus 0000:00
000c0000-000c95ff : Video ROM
000f0000-000fffff : Reserved
  000f0000-000fffff : System ROM
00100000-00ffffff : System RAM
01000000-02ffffff : Reserved
03000000-0ffdffff : System RAM
  0d000000-0d91bc7f : Kernel code
  0d91c000-0dc38fff : Kernel rodata
  0dc39000-0dd70bbf : Kernel data
  0de72000-0dee5fff : Kernel bss
0ffe0000-0fffffff : Reserved
10000000-febfffff : PCI Bus 0000:00
  fd000000-fdffffff : 0000:00:02.0
fee00000-fee00fff : Local APIC
  fee00000-fee00fff : Reserved
fffc0000-ffffffff : Reserved
`

func TestParseIomem(t *testing.T) {
	e, err := ParseIomem(sampleIomem)
	if err != nil {
		t.Fatal(err)
	}
	if len(e) != 20 {
		t.Fatalf("%d entries, want 20", len(e))
	}
	if got, want := e[10], (IomemEntry{Start: 0xd000000, End: 0xd91bc7f, Name: "Kernel code", Depth: 1, StartText: "0d000000", EndText: "0d91bc7f"}); got != want {
		t.Errorf("entry 10 = %+v, want %+v", got, want)
	}
	if e[19].Start != 0xfffc0000 || e[19].End != 0xffffffff || e[19].Depth != 0 {
		t.Errorf("last entry %+v", e[19])
	}
	want := []string{
		"iomem 00000000-00000fff Reserved",
		"iomem 00001000-0009fbff System RAM",
		"iomem 0009fc00-0009ffff Reserved",
		"iomem 000f0000-000fffff Reserved",
		"iomem 00100000-00ffffff System RAM",
		"iomem 01000000-02ffffff Reserved",
		"iomem 03000000-0ffdffff System RAM",
		"iomem 0d000000-0d91bc7f Kernel code",
		"iomem 0d91c000-0dc38fff Kernel rodata",
		"iomem 0dc39000-0dd70bbf Kernel data",
		"iomem 0de72000-0dee5fff Kernel bss",
		"iomem 0ffe0000-0fffffff Reserved",
		"iomem fee00000-fee00fff Reserved",
		"iomem fffc0000-ffffffff Reserved",
	}
	if got := IomemLines(e); !reflect.DeepEqual(got, want) {
		t.Errorf("IomemLines:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// Type 5 E820 entries and 64-bit addresses (PAE kernels print 16 digits).
	e, err = ParseIomem("01000000-02ffffff : Unusable memory\n100000000-13fffffff : System RAM\n\n")
	if err != nil {
		t.Fatal(err)
	}
	if got := IomemLines(e); !reflect.DeepEqual(got, []string{"iomem 01000000-02ffffff Unusable memory", "iomem 100000000-13fffffff System RAM"}) {
		t.Errorf("IomemLines = %q", got)
	}

	for _, bad := range []string{"00000000-00000fff Reserved", "0000-zzzz : x", "2000-1000 : x", "10000 : x"} {
		if _, err := ParseIomem(bad); err == nil {
			t.Errorf("ParseIomem(%q) accepted it", bad)
		}
	}
}

func TestParseOptions(t *testing.T) {
	def := DefaultOptions()
	for _, tc := range []struct {
		cmdline string
		want    Options
	}{
		{"console=ttyS0 quiet", def},
		{"", def},
		{"gi.memtest=0", Options{MemtestPercent: 0, Exit: -1, Timeout: def.Timeout}},
		{"console=ttyS0 gi.memtest=75 gi.exit=3 gi.timeout=20", Options{MemtestPercent: 75, Exit: 3, Timeout: 20 * time.Second}},
		{"gi.panic=1 gi.exit=0", Options{MemtestPercent: 50, Exit: 0, Panic: true, Timeout: def.Timeout}},
		{`acpi=off foo="a gi.exit=9 b" gi.exit=4`, Options{MemtestPercent: 50, Exit: 4, Timeout: def.Timeout}},
		{"gi.exit=5 -- gi.exit=6 gi.bogus", Options{MemtestPercent: 50, Exit: 5, Timeout: def.Timeout}},
		{"gi.exit=1\n", Options{MemtestPercent: 50, Exit: 1, Timeout: def.Timeout}},
		{"gi.peek=0x4800000", Options{MemtestPercent: 50, Exit: -1, Timeout: def.Timeout, Peek: 0x4800000}},
	} {
		got, err := ParseOptions(tc.cmdline)
		if err != nil {
			t.Errorf("ParseOptions(%q): %v", tc.cmdline, err)
			continue
		}
		if got != tc.want {
			t.Errorf("ParseOptions(%q) = %+v, want %+v", tc.cmdline, got, tc.want)
		}
	}
	for cmdline, want := range map[string]string{
		"gi.memtest":        "no value",
		"gi.memtest=yes":    "not a number",
		"gi.memtest=95":     "1-90",
		"gi.exit=256":       "0-255",
		"gi.exit=-1":        "0-255",
		"gi.panic=2":        "0 or 1",
		"gi.peek=0x4800002": "aligned",
		"gi.peek=0":         "above 0",
		"gi.peek=x":         "physical address",
		"gi.timeout=0":      "seconds > 0",
		"gi.memtset=0":      "unknown option gi.memtset",
		"quiet gi.exit=x":   "not a number",
	} {
		// The message states the option's rule: its contract.
		if _, err := ParseOptions(cmdline); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseOptions(%q): error %v, want one containing %q", cmdline, err, want)
		}
	}
}

func TestSplitCmdline(t *testing.T) {
	got := splitCmdline(`  a b="c d"  "e f" g=` + "\t" + `h` + "\n")
	want := []string{"a", "b=c d", "e f", "g=", "h"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("splitCmdline = %q, want %q", got, want)
	}
}

func TestParseMeminfo(t *testing.T) {
	m, err := ParseMeminfo("MemTotal:         243536 kB\nMemFree:          229000 kB\nMemAvailable:     228752 kB\nHugePages_Total:       0\n")
	if err != nil {
		t.Fatal(err)
	}
	if m["MemTotal"] != 243536 || m["MemAvailable"] != 228752 || m["HugePages_Total"] != 0 {
		t.Errorf("ParseMeminfo = %v", m)
	}
	if _, err := ParseMeminfo("MemFree: 5 kB\n"); err == nil {
		t.Error("accepted meminfo without MemTotal")
	}
	if _, err := ParseMeminfo("MemTotal: lots kB\n"); err == nil {
		t.Error("accepted a non-number")
	}
}

func TestMemtestBytes(t *testing.T) {
	if got := MemtestBytes(228752, 50, 1<<20); got != 111<<20 {
		t.Errorf("MemtestBytes(228752 kB, 50%%) = %d, want %d", got, 111<<20)
	}
	if got := MemtestBytes(1000, 50, 1<<20); got != 0 {
		t.Errorf("MemtestBytes below a chunk = %d, want 0", got)
	}
}

func TestPattern(t *testing.T) {
	// Distinct for nearby words and for addresses 1 MiB apart.
	seen := map[uint32]uint32{}
	for _, base := range []uint32{0x08000000, 0x08100000, 0xb7f00000} {
		for a := base; a < base+4096; a += 4 {
			p := Pattern(a)
			if prev, dup := seen[p]; dup {
				t.Fatalf("Pattern(%#x) == Pattern(%#x)", a, prev)
			}
			seen[p] = a
		}
	}
}

func TestExitStatus(t *testing.T) {
	o := DefaultOptions()
	if ExitStatus(o, true) != StatusPass || ExitStatus(o, false) != StatusFail {
		t.Error("default statuses")
	}
	o.Exit = 9
	if ExitStatus(o, false) != 9 || ExitStatus(o, true) != 9 {
		t.Error("gi.exit does not override")
	}
}

func TestACPITableNames(t *testing.T) {
	sys := fstest.MapFS{
		"tables/FACP": {}, "tables/APIC": {}, "tables/DSDT": {}, "tables/FACS": {},
		"tables/dynamic/SSDT1": {}, "tables/data/BERT": {},
	}
	entries, err := fs.ReadDir(sys, "tables")
	if err != nil {
		t.Fatal(err)
	}
	if got := ACPITableNames(entries); !slices.Equal(got, []string{"APIC", "DSDT", "FACP", "FACS"}) {
		t.Errorf("names %q", got)
	}
}

// TestACPIProblems: the kernel log's ACPI errors and warnings and
// firmware bugs, and nothing else, without level and time stamp.
func TestACPIProblems(t *testing.T) {
	klog := "<6>[    0.000000] ACPI: RSDP 0x00000000000FFF80 000024 (v02 KVMBT )\n" +
		"<3>[    0.000000] ACPI BIOS Error (bug): A valid RSDP was not found (20220331/tbxfroot-210)\n" +
		"<4>[    0.012000] ACPI Warning: FADT (revision 6) is longer than ACPI 5.0 version\n" +
		"<4>[    0.700000] acpi PNP0A03:00: [Firmware Bug]: no secondary bus range in _CRS\n" +
		"<6>[    0.900000] ACPI: Interpreter enabled\n" +
		"ACPI Error: a line without a prefix\n"
	want := []string{
		"ACPI BIOS Error (bug): A valid RSDP was not found (20220331/tbxfroot-210)",
		"ACPI Warning: FADT (revision 6) is longer than ACPI 5.0 version",
		"acpi PNP0A03:00: [Firmware Bug]: no secondary bus range in _CRS",
		"ACPI Error: a line without a prefix",
	}
	if got := ACPIProblems(klog); !slices.Equal(got, want) {
		t.Errorf("problems\n%q\nwant\n%q", got, want)
	}
}
