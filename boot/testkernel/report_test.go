package testkernel

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func readGolden(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// qemuMmap is the memory map QEMU 7.2's Multiboot loader gives with -m 256.
var qemuMmap = []MmapEntry{
	{0x0, 0x9fc00, 1},
	{0x9fc00, 0x400, 2},
	{0xf0000, 0x10000, 2},
	{0x100000, 0xfee0000, 1},
	{0xffe0000, 0x20000, 2},
	{0xfffc0000, 0x40000, 2},
}

// qemuReport is what every golden capture (QEMU -kernel, -m 256) has in common.
func qemuReport(base uint32, cmdline string) *Report {
	return &Report{
		Magic: 0x2badb002, Info: 0x9500, Flags: 0x24f,
		Base: base, Link: LinkBase, Delta: base - LinkBase, Size: 0x62e0,
		Cmdline: cmdline, BootLoader: "qemu",
		MemLower: 639, MemUpper: 260992, HasMem: true,
		Mmap:          qemuMmap,
		RelocsChecked: 14, RelocsOK: 14, AbsChecked: 6, AbsOK: 6,
		BSSZero: true,
		Pass:    true,
		Lines:   map[string]string{},
	}
}

func TestParseReportGolden(t *testing.T) {
	tests := []struct {
		file string
		want func() *Report
	}{
		{"pass.txt", func() *Report {
			r := qemuReport(0x1000000, "testkernel.elf console=ttyS0 kt.exit=0")
			r.Modules = []Module{
				{0, 0x01008000, 0x01009388, "mod1.bin arg1 arg2"},
				{1, 0x0100a000, 0x0100a00c, "mod2.txt"},
			}
			return r
		}},
		{"relocated.txt", func() *Report {
			r := qemuReport(0x2000000, "relocated.elf kt.peek=0x2000000 kt.poke=0x5000000 kt.peek=0x5000000 kt.ports kt.flood=300")
			r.Modules = []Module{{0, 0x02008000, 0x0200800c, "mod2.txt"}}
			r.Lines = map[string]string{
				"peek":  "0x05000000=0xdeadbeef", // the last of two
				"poke":  "0x05000000 done",
				"ports": "done",
				"flood": "done",
			}
			return r
		}},
		{"abs-relocated.txt", func() *Report {
			r := qemuReport(0x3000000, "abs-relocated.elf ")
			r.Link, r.Delta = 0x3000000, 0 // kt_link_base was wrongly relocated too
			r.AbsOK = 0
			r.Pass = false
			r.Failures = []string{
				"abs: text:kt_abs_magic is 0xc2ffee00, want 0xc0ffee00 (relocated like an address in the image?)",
				"abs: text:kt_abs_mmio is 0x00c00000, want 0xfec00000 (relocated like an address in the image?)",
				"abs: asm:kt_link_base is 0x03000000, want 0x01000000 (relocated like an address in the image?)",
				"abs: data:kt_abs_magic is 0xc2ffee00, want 0xc0ffee00 (relocated like an address in the image?)",
				"abs: data:kt_link_base is 0x03000000, want 0x01000000 (relocated like an address in the image?)",
				"abs: rodata:kt_abs_mmio is 0x00c00000, want 0xfec00000 (relocated like an address in the image?)",
			}
			return r
		}},
		{"dirty-bss.txt", func() *Report {
			r := qemuReport(0x2000000, "dirty-bss.elf kt.exit=0")
			r.BSSZero = false
			r.Pass = false
			r.Failures = []string{"bss: not zeroed by the loader: non-zero dword at 0x02002120"}
			return r
		}},
		{"not-relocated.txt", func() *Report {
			return &Report{
				Failures: []string{"reloc: $kt_stack_top is not the address of the stack: the loader did not apply the R_386_32 relocations"},
				Lines:    map[string]string{},
			}
		}},
		{"placement.txt", func() *Report {
			r := qemuReport(0x7fdc000, "high.elf kt.exit=3")
			r.MemUpper = 129920
			r.Mmap = []MmapEntry{
				{0x0, 0x9fc00, 1},
				{0x9fc00, 0x400, 2},
				{0xf0000, 0x10000, 2},
				{0x100000, 0x7ee0000, 1},
				{0x7fe0000, 0x20000, 2},
				{0xfffc0000, 0x40000, 2},
			}
			r.Pass = false
			r.Failures = []string{"placement: kernel image [0x07fdc000, 0x07fe22e0) overlaps memory map type 2 [0x0000000007fe0000, 0x0000000008000000)"}
			return r
		}},
		{"bad-cmdline.txt", func() *Report {
			r := qemuReport(0x1000000, "testkernel.elf quiet kt.bogus kt.exit=300 kt.poke=123 kt.flood=x kt.peek=0x100")
			r.Pass = false
			r.Failures = []string{
				"cmdline: kt.bogus: unknown kt.* action",
				"cmdline: kt.exit=300: want a decimal number in range",
				"cmdline: kt.poke=123: want a 0x hex address",
				"cmdline: kt.flood=x: want a decimal number in range",
			}
			r.Lines = map[string]string{"peek": "0x00000100=0xf000ec59"}
			return r
		}},
		{"panic.txt", func() *Report {
			return qemuReport(0x1000000, "testkernel.elf kt.panic")
		}},
		{"smp.txt", func() *Report {
			r := qemuReport(0x1000000, "testkernel.elf kt.smp kt.exit=0")
			r.Size = 0x17400
			r.SMP = &SMPReport{CPUs: 4, BSP: 0, Trampoline: 0x9e000, APs: []uint32{1, 2, 3}, Arrived: 3, Expected: 3}
			return r
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := ParseReport(readGolden(t, tt.file))
			if err != nil {
				t.Fatalf("ParseReport: %v", err)
			}
			if want := tt.want(); !reflect.DeepEqual(got, want) {
				t.Errorf("ParseReport:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestParseReportGoldenConsoles(t *testing.T) {
	// The captures are raw: firmware output before the report, \r\n line ends.
	pass := readGolden(t, "pass.txt")
	if !strings.Contains(pass, "SeaBIOS") || !strings.Contains(pass, "\r\n") {
		t.Fatal("pass.txt is not a raw console capture")
	}
	if !strings.Contains(readGolden(t, "panic.txt"), PanicMessage) {
		t.Errorf("panic.txt does not contain %q", PanicMessage)
	}
	// Plain \n line ends work too.
	r, err := ParseReport(strings.ReplaceAll(pass, "\r\n", "\n"))
	if err != nil || !r.Pass || len(r.Modules) != 2 {
		t.Errorf("ParseReport with \\n line ends = %+v, %v", r, err)
	}
}

func TestParseReportTruncated(t *testing.T) {
	pass := readGolden(t, "pass.txt")
	i := strings.Index(pass, "kt: relocs")
	if i < 0 {
		t.Fatal("no relocs line in pass.txt")
	}
	r, err := ParseReport(pass[:i])
	if !errors.Is(err, ErrNoResult) {
		t.Fatalf("ParseReport(truncated) error = %v, want ErrNoResult", err)
	}
	if r == nil || r.Base != LinkBase || len(r.Modules) != 2 || r.RelocsChecked != 0 {
		t.Errorf("ParseReport(truncated) partial report = %+v", r)
	}

	// Cut in the middle of the result line.
	j := strings.Index(pass, "kt: result pass")
	if _, err := ParseReport(pass[:j+len("kt: result pa")]); err == nil {
		t.Error("ParseReport accepted a cut result line")
	}

	for _, console := range []string{"", "SeaBIOS\r\nBooting from ROM..\r\n", pass[:strings.Index(pass, "kt: hello")]} {
		r, err := ParseReport(console)
		if !errors.Is(err, ErrNoHello) || r != nil {
			t.Errorf("ParseReport(%q) = %v, %v; want nil, ErrNoHello", console, r, err)
		}
	}
}

func TestParseReportMalformed(t *testing.T) {
	pass := readGolden(t, "pass.txt")
	replace := func(old, new string) string {
		if !strings.Contains(pass, old) {
			t.Fatalf("pass.txt does not contain %q", old)
		}
		return strings.Replace(pass, old, new, 1)
	}
	tests := []struct {
		name, console, wantErr string
	}{
		{"hex without 0x", replace("info=0x00009500", "info=00009500"), "info"},
		{"hex digit", replace("info=0x00009500", "info=0x0000950g"), "info"},
		{"hex too wide", replace("size=0x000062e0", "size=0x1000062e0"), "size"},
		{"hex empty", replace("flags=0x0000024f", "flags=0x"), "flags"},
		{"mmap 64-bit overflow", replace("len=0x000000000009fc00", "len=0x10000000000000000"), "len"},
		{"decimal with hex", replace("lower=639", "lower=0x27f"), "lower"},
		{"negative", replace("checked=14", "checked=-14"), "checked"},
		{"plus sign", replace("upper=260992", "upper=+260992"), "upper"},
		{"mmap type", replace("type=1", "type=one"), "type"},
		{"missing field", replace(" flags=0x0000024f", ""), "magic"},
		{"extra field", replace("delta=0x00000000", "delta=0x00000000 x=1"), "base"},
		{"field order", replace("link=0x01000000 delta=0x00000000", "delta=0x00000000 link=0x01000000"), "link"},
		{"module without string", replace(" string=mod2.txt", ""), "module"},
		{"module index", replace("index=1", "index=x"), "index"},
		{"bss", replace("zero=yes", "zero=maybe"), "zero"},
		{"result word", replace("result pass", "result ok"), "result"},
		{"result count", replace("failures=0", "failures=1"), "failures"},
		{"pass with failures", replace("kt: result pass failures=0", "kt: fail x: y\r\nkt: result pass failures=1"), "pass with 1"},
		{"fail without failures", replace("kt: result pass", "kt: result fail"), "fail with 0"},
		{"fail line", replace("kt: bss zero=yes\r\n", "kt: bss zero=yes\r\nkt: fail nothing\r\n"), "fail CHECK"},
		{"version", replace("kvmboot-testkernel 1", "kvmboot-testkernel 2"), "kvmboot-testkernel 1"},
		{"second hello", pass + pass, "second hello"},
		{"line before hello", replace("Booting from ROM..", "kt: poke 0x0 done\r\n"), "before the hello"},
		{"report line after result", pass + "kt: bss zero=no\r\n", "after the result"},
		{"empty kt line", replace("kt: bss zero=yes\r\n", "kt: bss zero=yes\r\nkt: \r\n"), "empty"},
		{"ap without smp", replace("kt: bss zero=yes\r\n", "kt: bss zero=yes\r\nkt: ap apic=1\r\n"), "without an smp line"},
		{"smp arrived first", replace("kt: bss zero=yes\r\n", "kt: bss zero=yes\r\nkt: smp arrived=1 of=1\r\n"), "before smp cpus="},
		{"smp fields", replace("kt: bss zero=yes\r\n", "kt: bss zero=yes\r\nkt: smp cpus=2 bsp=0\r\n"), "trampoline"},
		{"ap after result", pass + "kt: ap apic=1\r\n", "after the result"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseReport(tt.console)
			if err == nil {
				t.Fatalf("ParseReport accepted it: %+v", r)
			}
			if r != nil {
				t.Errorf("ParseReport returned a report with error %v", err)
			}
			if errors.Is(err, ErrNoHello) || errors.Is(err, ErrNoResult) {
				t.Errorf("error %v is about a missing line, want a malformed one", err)
			}
			// The message names the malformed line: that is its contract.
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not mention %q", err, tt.wantErr)
			}
		})
	}
}

func TestParseReportFields(t *testing.T) {
	console := strings.Join([]string{
		"noise kt: hello kvmboot-testkernel 1", // not at the start of a line: ignored
		"kt: hello kvmboot-testkernel 1",
		"kt: magic=0x12345678 info=0x00000000 flags=0x00000000",
		"kt: cmdline=a=b  two spaces kt.exit=3 ",
		"kt: bootloader=",
		"kt: mem none",
		"kt: fail magic: EAX was 0x12345678, want 0x2badb002: ignoring the info at 0x00000000",
		"kt: result fail failures=1",
		"kt: poke 0x00100000 done",
		"kt: flood done",
		"random tail",
	}, "\r\n")
	r, err := ParseReport(console)
	if err != nil {
		t.Fatal(err)
	}
	want := &Report{
		Magic:    0x12345678,
		Cmdline:  "a=b  two spaces kt.exit=3 ",
		Failures: []string{"magic: EAX was 0x12345678, want 0x2badb002: ignoring the info at 0x00000000"},
		Lines:    map[string]string{"poke": "0x00100000 done", "flood": "done"},
	}
	if !reflect.DeepEqual(r, want) {
		t.Errorf("ParseReport:\n got %+v\nwant %+v", r, want)
	}
}

// TestELF checks the embedded kernel for what loaders and the e2e tests rely on.
func TestELF(t *testing.T) {
	f, err := elf.NewFile(bytes.NewReader(ELF))
	if err != nil {
		t.Fatal(err)
	}
	if f.Class != elf.ELFCLASS32 || f.Machine != elf.EM_386 || f.Type != elf.ET_EXEC {
		t.Fatalf("ELF is %v %v %v, want ELFCLASS32 EM_386 ET_EXEC", f.Class, f.Machine, f.Type)
	}
	var lo, hi uint64 = ^uint64(0), 0
	for _, p := range f.Progs {
		if p.Type != elf.PT_LOAD {
			continue
		}
		if p.Paddr != p.Vaddr {
			t.Errorf("PT_LOAD paddr %#x != vaddr %#x", p.Paddr, p.Vaddr)
		}
		lo, hi = min(lo, p.Paddr), max(hi, p.Paddr+p.Memsz)
	}
	if lo != LinkBase {
		t.Errorf("lowest PT_LOAD at %#x, want %#x", lo, LinkBase)
	}

	// The Multiboot header: 4-byte aligned in the first 8 KiB, flags 0x3.
	found := false
	for off := 0; off+12 <= min(len(ELF), 8192); off += 4 {
		magic := le32(ELF[off:])
		if magic == 0x1BADB002 && magic+le32(ELF[off+4:])+le32(ELF[off+8:]) == 0 {
			if flags := le32(ELF[off+4:]); flags != 3 {
				t.Errorf("Multiboot flags %#x, want 0x3", flags)
			}
			found = true
			break
		}
	}
	if !found {
		t.Error("no Multiboot header in the first 8 KiB")
	}

	syms, err := f.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	abs := map[string]uint64{}
	for _, s := range syms {
		if s.Section == elf.SHN_ABS && elf.ST_TYPE(s.Info) != elf.STT_FILE {
			abs[s.Name] = s.Value
		}
	}
	for name, want := range map[string]uint64{"kt_link_base": LinkBase, "kt_abs_magic": 0xC0FFEE00, "kt_abs_mmio": 0xFEC00000} {
		if v, ok := abs[name]; !ok || v != want {
			t.Errorf("absolute symbol %s = %#x (present %v), want %#x", name, v, ok, want)
		}
	}

	// Relocations: only R_386_32 and R_386_PC32, all inside the image, some
	// of each kind against absolute symbols in .text, .data and .rodata.
	absRelocs := map[string]int{}
	for _, s := range f.Sections {
		if s.Type != elf.SHT_REL {
			continue
		}
		data, err := s.Data()
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+8 <= len(data); i += 8 {
			off, info := uint64(le32(data[i:])), le32(data[i+4:])
			typ, sym := elf.R_386(info&0xff), info>>8
			if typ != elf.R_386_32 && typ != elf.R_386_PC32 {
				t.Errorf("%s: relocation type %v", s.Name, typ)
			}
			if off < lo || off+4 > hi {
				t.Errorf("%s: relocation at %#x outside the image [%#x, %#x)", s.Name, off, lo, hi)
			}
			if sym == 0 || int(sym) > len(syms) {
				t.Errorf("%s: relocation at %#x against symbol %d", s.Name, off, sym)
				continue
			}
			if typ != elf.R_386_32 {
				continue
			}
			if syms[sym-1].Section == elf.SHN_ABS {
				absRelocs[s.Name]++
				continue
			}
			// Any other R_386_32 holds an address in the image (or just
			// past it, like _end): the value a loader adds delta to.
			if v, ok := loadedWord(f, off); !ok || uint64(v) < lo || uint64(v) > hi {
				t.Errorf("%s: R_386_32 at %#x holds %#x, outside the image [%#x, %#x]", s.Name, off, v, lo, hi)
			}
		}
	}
	for _, sec := range []string{".rel.text", ".rel.data", ".rel.rodata"} {
		if absRelocs[sec] == 0 {
			t.Errorf("no R_386_32 against an absolute symbol in %s", sec)
		}
	}
}

// loadedWord reads the 32-bit word at address addr of the loaded image.
func loadedWord(f *elf.File, addr uint64) (uint32, bool) {
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && p.Vaddr <= addr && addr+4 <= p.Vaddr+p.Filesz {
			var b [4]byte
			if _, err := p.ReadAt(b[:], int64(addr-p.Vaddr)); err != nil {
				return 0, false
			}
			return le32(b[:]), true
		}
	}
	return 0, false
}

func le32(b []byte) uint32 { return binary.LittleEndian.Uint32(b) }
