package initramfs

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// The golden console: Debian's 686 kernel (6.1.0-50-686) under
// `qemu-system-i386 -kernel` (SeaBIOS, TCG), 256 MiB, memmap=32M$16M, no
// `quiet`, trimmed to the start, the end of the boot and the report, with
// the kernel's clock lines falling in the middle of the report.
func TestParseGuestReportGolden(t *testing.T) {
	b, err := os.ReadFile("../testdata/guestinit-console.txt")
	if err != nil {
		t.Fatal(err)
	}
	g, err := ParseGuestReport(string(b))
	if err != nil {
		t.Fatal(err)
	}
	if want := "console=ttyS0 cryptomgr.notests noisapnp panic=-1 memmap=32M$16M"; g.Cmdline != want {
		t.Errorf("Cmdline %q, want %q", g.Cmdline, want)
	}
	wantRAM := []Range{{0x1000, 0x9fc00}, {0x100000, 0x1000000}, {0x3000000, 0xffe0000}}
	if !reflect.DeepEqual(g.SystemRAM, wantRAM) {
		t.Errorf("SystemRAM %v, want %v", g.SystemRAM, wantRAM)
	}
	wantReserved := []Range{{0, 0x1000}, {0x9fc00, 0xa0000}, {0xf0000, 0x100000}, {0x1000000, 0x3000000}, {0xffe0000, 0x10000000}, {0xfffc0000, 0x100000000}}
	if !reflect.DeepEqual(g.Reserved, wantReserved) {
		t.Errorf("Reserved %v, want %v", g.Reserved, wantReserved)
	}
	if len(g.Unusable) != 0 {
		t.Errorf("Unusable %v, want none", g.Unusable)
	}
	if want := (Range{0xd000000, 0xd91bc80}); g.KernelCode != want {
		t.Errorf("KernelCode %v, want %v", g.KernelCode, want)
	}
	if want := (Range{0xdc39000, 0xdd70bc0}); g.KernelData != want {
		t.Errorf("KernelData %v, want %v", g.KernelData, want)
	}
	if want := (Range{0xde72000, 0xdee6000}); g.KernelBss != want {
		t.Errorf("KernelBss %v, want %v", g.KernelBss, want)
	}
	if want := (Range{0xd91c000, 0xdc39000}); g.KernelRodata != want {
		t.Errorf("KernelRodata %v, want %v", g.KernelRodata, want)
	}
	if g.MemTotalKB != 210764 || g.MemAvailableKB != 196540 {
		t.Errorf("MemTotalKB %d MemAvailableKB %d, want 210764 196540", g.MemTotalKB, g.MemAvailableKB)
	}
	if g.MemtestSkipped || g.MemtestBytes != 99614720 || g.MemtestErrors != 0 || g.MemtestMillis != 754 {
		t.Errorf("memtest skipped=%v bytes=%d errors=%d ms=%d, want 99614720 bytes, 0 errors, 754 ms",
			g.MemtestSkipped, g.MemtestBytes, g.MemtestErrors, g.MemtestMillis)
	}
	if !g.Pass || g.Result != "pass" || g.Exit != 0 || len(g.Errors) != 0 {
		t.Errorf("Pass %v Result %q Exit %d Errors %q, want a pass with exit 0", g.Pass, g.Result, g.Exit, g.Errors)
	}
	if n := len(g.Lines); n != 19 {
		t.Errorf("%d report lines after hello, want 19: %q", n, g.Lines)
	}

	// What the e2e tests check with memmap=32M$16M or --bad-ram 16M-48M.
	bad := Range{16 << 20, 48 << 20}
	if ram := g.RAMOverlapping(bad); len(ram) != 0 {
		t.Errorf("System RAM %v overlaps %v", ram, bad)
	}
	if g.KernelCode.Overlaps(bad) {
		t.Errorf("kernel code %v overlaps %v", g.KernelCode, bad)
	}
	if !g.Reserved[3].Contains(bad) || !bad.Contains(g.Reserved[3]) {
		t.Errorf("reserved %v is not %v", g.Reserved[3], bad)
	}
}

func TestParseGuestReport(t *testing.T) {
	const quietBoot = "Booting from ROM..\x1bc\x1b[?7l\x1b[2Jgi: hello\r\n" +
		"gi: cmdline console=ttyS0 quiet gi.memtest=0\r\n" +
		"gi: iomem 00100000-0ffdffff System RAM\r\n" +
		"gi: iomem 01000000-02ffffff Unusable memory\r\n" +
		"gi: iomem 03000000-03abcdef Kernel code\r\n" +
		"gi: acpi tables APIC DSDT FACP FACS\r\n" +
		"gi: acpi problem ACPI BIOS Error (bug): Failure creating named object [\\_SB.PCI0], AE_ALREADY_EXISTS\r\n" +
		"gi: acpi problems 3\r\n" +
		"gi: cpus online 0-3\r\n" +
		"gi: tainted 512\r\n" +
		"gi: memtotal 243536\r\n" +
		"gi: memtest skipped\r\n" +
		"gi: future-keyword 1 2 3\r\n" +
		"gi: result pass\r\n" +
		"gi: exit 7\r\n"
	g, err := ParseGuestReport(quietBoot)
	if err != nil {
		t.Fatal(err)
	}
	if g.Cmdline != "console=ttyS0 quiet gi.memtest=0" || !g.MemtestSkipped || !g.Pass || g.Exit != 7 ||
		g.MemTotalKB != 243536 || len(g.Unusable) != 1 || g.Unusable[0] != (Range{0x1000000, 0x3000000}) ||
		g.KernelCode != (Range{0x3000000, 0x3abcdf0}) || len(g.SystemRAM) != 1 ||
		!reflect.DeepEqual(g.ACPITables, []string{"APIC", "DSDT", "FACP", "FACS"}) || g.ACPIProblemCount != 3 ||
		!reflect.DeepEqual(g.ACPIProblems, []string{`ACPI BIOS Error (bug): Failure creating named object [\_SB.PCI0], AE_ALREADY_EXISTS`}) ||
		!reflect.DeepEqual(g.CPUsOnline, []int{0, 1, 2, 3}) || g.Tainted != 512 {
		t.Errorf("parsed %+v", g)
	}
	if g, err := ParseGuestReport("gi: hello\ngi: acpi tables none\ngi: result pass\n"); err != nil || g.ACPITables == nil || len(g.ACPITables) != 0 {
		t.Errorf("no ACPI: %v %+v", err, g)
	}

	failing := "gi: hello\ngi: memtest error addr=0x1000 got=0x0 want=0x1\n" +
		"gi: memtest bytes=1048576 errors=1 ms=3\ngi: result fail\ngi: exit 1\n"
	g, err = ParseGuestReport(failing)
	if err != nil {
		t.Fatal(err)
	}
	if g.Pass || g.Result != "fail" || g.MemtestErrors != 1 || g.Exit != 1 ||
		!reflect.DeepEqual(g.MemtestErrorLines, []string{"addr=0x1000 got=0x0 want=0x1"}) {
		t.Errorf("parsed %+v", g)
	}

	for name, tc := range map[string]struct {
		console    string
		want       string
		wantReport bool
	}{
		"nothing":    {"[    1.4] Run /init as init process\n", "no guest init report", false},
		"error":      {"gi: hello\ngi: error mount proc on /proc: EPERM\ngi: exit 2\n", "mount proc on /proc", true},
		"incomplete": {"gi: hello\ngi: cmdline x\ngi: memtotal 5\n", `last: "gi: memtotal 5"`, true},
		"twice":      {"gi: hello\ngi: hello\n", "started twice", true},
		"bad iomem":  {"gi: hello\ngi: iomem 1000 System RAM\n", "has no '-'", true},
		"bad range":  {"gi: hello\ngi: iomem 2000-1000 System RAM\n", "bad iomem range", true},
		"bad result": {"gi: hello\ngi: result maybe\n", "neither pass nor fail", true},
		"bad number": {"gi: hello\ngi: memtotal lots\n", "not a number", true},
		"bad acpi":   {"gi: hello\ngi: acpi problems many\n", "not a count", true},
		"bad cpus":   {"gi: hello\ngi: cpus online 3-1\n", "not N or N-M", true},
		"cpus what":  {"gi: hello\ngi: cpus possible 0-3\n", "unknown cpus line", true},
		"bad taint":  {"gi: hello\ngi: tainted W\n", "not a number", true},
	} {
		g, err := ParseGuestReport(tc.console)
		// The message quotes what in the console is wrong: its contract.
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", name, err, tc.want)
		}
		if (g != nil) != tc.wantReport {
			t.Errorf("%s: report %v, want one: %v", name, g, tc.wantReport)
		}
	}
}

func TestRange(t *testing.T) {
	a := Range{0x1000, 0x2000}
	if a.Size() != 0x1000 || a.IsZero() || !(Range{}).IsZero() {
		t.Error("Size/IsZero")
	}
	if !a.Overlaps(Range{0x1fff, 0x3000}) || a.Overlaps(Range{0x2000, 0x3000}) || a.Overlaps(Range{0, 0x1000}) {
		t.Error("Overlaps is not half-open")
	}
	if !a.Contains(Range{0x1000, 0x2000}) || a.Contains(Range{0x1000, 0x2001}) {
		t.Error("Contains")
	}
	if a.String() != "0x1000-0x2000" {
		t.Errorf("String %q", a.String())
	}
}

func TestParseCPUList(t *testing.T) {
	for in, want := range map[string][]int{"0": {0}, "0-3": {0, 1, 2, 3}, "0-1,4,6-7": {0, 1, 4, 6, 7}} {
		if got, err := ParseCPUList(in); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("ParseCPUList(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "x", "1-", "-1", "3-1", "0,,1", "0-99999"} {
		if got, err := ParseCPUList(bad); err == nil {
			t.Errorf("ParseCPUList(%q) = %v, accepted", bad, got)
		}
	}
}
