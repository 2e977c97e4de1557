package loader

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand"
	"strings"
	"testing"

	"kvmboot/boot/testkernel"
	"kvmboot/loader/memmap"
	"kvmboot/realmode"
)

const btMiB = 1 << 20

// tkELF describes the embedded test kernel, read independently of Build.
type tkELF struct {
	img      *ELFImage
	mem      []byte // Memory()[:FileEnd()]: the bytes Build places, before relocation
	size     uint64 // End - Base
	sites    []uint32
	absSites []uint32 // R_386_32 sites whose symbol is SHN_ABS
	entry    uint64
}

func loadTK(t *testing.T) *tkELF {
	t.Helper()
	img, err := ParseELF(testkernel.ELF)
	if err != nil {
		t.Fatal(err)
	}
	r, err := EmitRelocs(img.File)
	if err != nil {
		t.Fatal(err)
	}
	k := &tkELF{img: img, mem: img.Memory()[:img.FileEnd()], size: img.End - img.Base, sites: r.Sites, entry: img.Entry}
	// The absolute-symbol relocations, found the long way: every .rel
	// section, every R_386_32 entry, its symbol's section index.
	syms, err := img.File.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range img.File.Sections {
		if s.Type != elf.SHT_REL {
			continue
		}
		data, err := s.Data()
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+8 <= len(data); i += 8 {
			off := binary.LittleEndian.Uint32(data[i:])
			info := binary.LittleEndian.Uint32(data[i+4:])
			if elf.R_386(info&0xff) != elf.R_386_32 || info>>8 == 0 {
				continue
			}
			if syms[info>>8-1].Section == elf.SHN_ABS {
				k.absSites = append(k.absSites, off) // linked with virtual = physical
			}
		}
	}
	if len(k.sites) == 0 || len(k.absSites) == 0 {
		t.Fatalf("test kernel has %d sites and %d absolute ones; want both", len(k.sites), len(k.absSites))
	}
	return k
}

func planPlacement(t *testing.T, p *Plan, what string) Placement {
	t.Helper()
	var found []Placement
	for _, pl := range p.Placements {
		if pl.What == what {
			found = append(found, pl)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d placements %q, want 1 (placements: %v)", len(found), what, p.Placements)
	}
	return found[0]
}

// builtAsWanted checks Build's error for a table case: a *PlaceError
// about the kernel that is wantErr when that is set, and gives the reason (a
// message contract: the reason users act on) when set, else none. It
// reports whether there is a plan to check further.
func builtAsWanted(t *testing.T, name string, err, wantErr error, reason string) bool {
	t.Helper()
	if wantErr != nil {
		var pe *PlaceError
		if !errors.As(err, &pe) || pe.What != "kernel" || !errors.Is(err, wantErr) || !strings.Contains(err.Error(), reason) {
			t.Errorf("%s: error %v, want a *PlaceError about the kernel that is %v (%q)", name, err, wantErr, reason)
		}
		return false
	}
	if err != nil {
		t.Errorf("%s: %v", name, err)
		return false
	}
	return true
}

// stubParams is the parameter block decoded with realmode's offsets.
type stubParams struct {
	magic, version, eip, eax, ebx, esi, esp, flags, n uint32
	checks                                            []realmode.Check
}

func decodeParams(t *testing.T, b []byte) stubParams {
	t.Helper()
	u := func(off int) uint32 { return binary.LittleEndian.Uint32(b[off:]) }
	p := stubParams{
		magic: u(realmode.OffMagic), version: u(realmode.OffVersion),
		eip: u(realmode.OffEIP), eax: u(realmode.OffEAX), ebx: u(realmode.OffEBX), esi: u(realmode.OffESI), esp: u(realmode.OffESP),
		flags: u(realmode.OffFlags), n: u(realmode.OffNChecks),
	}
	if st := realmode.ReadStubState(b); st != (realmode.StubState{}) {
		t.Errorf("parameter block has stub status %+v before the stub ran", st)
	}
	for i := 0; i < int(p.n); i++ {
		o := realmode.OffChecks + 12*i
		if o+12 > len(b) {
			t.Fatalf("check %d of %d beyond the %d-byte block", i, p.n, len(b))
		}
		p.checks = append(p.checks, realmode.Check{Addr: u(o), Len: u(o + 4), Sum: u(o + 8)})
	}
	return p
}

// The default plan for the test kernel in a 64M guest: kernel at its link
// address, Multiboot info at the first free low address, stub and
// parameter block where realmode says.
func TestBuildDefault(t *testing.T) {
	k := loadTK(t)
	orig := bytes.Clone(testkernel.ELF)
	p, err := Build(Config{Path: "tk.elf", Kernel: testkernel.ELF, MemSize: 64 * btMiB, Cmdline: "kt.exit=0", Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(orig, testkernel.ELF) {
		t.Fatalf("Build modified the caller's kernel bytes")
	}
	if p.Kernel != (KernelInfo{Path: "tk.elf", Format: "elf32", Protocol: ProtocolMultiboot}) {
		t.Errorf("kernel info %+v", p.Kernel)
	}
	if p.LinkAddress != 0x1000000 || p.LoadAddress != 0x1000000 {
		t.Errorf("link %#x load %#x, want 0x1000000 both", p.LinkAddress, p.LoadAddress)
	}
	if p.Relocations != len(k.sites) || p.SkippedAbsolute != len(k.absSites) {
		t.Errorf("relocations %d skipped %d, want %d %d", p.Relocations, p.SkippedAbsolute, len(k.sites), len(k.absSites))
	}
	want := EntryState{EIP: uint32(k.entry), EAX: 0x2BADB002, EBX: 0x8000}
	if p.Entry != want {
		t.Errorf("entry %+v, want %+v", p.Entry, want)
	}
	kern := planPlacement(t, p, "kernel")
	if kern.Start != 0x1000000 || kern.Size != k.size || !bytes.Equal(kern.Data, k.mem) || !kern.Verify {
		t.Errorf("kernel placement at %#x size %#x (%d data bytes), want 0x1000000 %#x with the unrelocated bytes", kern.Start, kern.Size, len(kern.Data), k.size)
	}
	stub := planPlacement(t, p, "stub")
	if stub.Start != 0x6000 || stub.End() != 0x7000 || len(stub.Data) != 0 || stub.Verify {
		t.Errorf("stub placement %+v", stub)
	}
	info := planPlacement(t, p, "boot_info")
	if info.Start != 0x8000 || info.Size != uint64(len(info.Data)) || !info.Verify {
		t.Errorf("boot_info placement at %#x size %#x", info.Start, info.Size)
	}
	mi := decodeMBInfo(t, info.Data, uint32(info.Start))
	// The last page of RAM holds the ACPI tables.
	if mi.cmdline != "tk.elf kt.exit=0" || mi.loaderName != "kvmboot" || mi.memLower != 639 || mi.memUpper != 63*1024-4 || len(mi.mods) != 0 {
		t.Errorf("info: %+v", mi)
	}
	acpi := planPlacement(t, p, "acpi")
	if p.ACPI != (memmap.Range{Start: 64*btMiB - ACPITablesSize, End: 64 * btMiB}) || acpi.Range() != p.ACPI || len(acpi.Data) != 0 || acpi.Verify || !p.Map.IsAll(p.ACPI, memmap.KindACPI) {
		t.Errorf("ACPI page %v, placement %+v, map %v", p.ACPI, acpi.Range(), p.Map.Regions())
	}
	params := planPlacement(t, p, "params")
	if params.Start != 0x7000 || params.Size != 0x1000 || params.Verify {
		t.Errorf("params placement at %#x size %#x verify %v", params.Start, params.Size, params.Verify)
	}
	checkParams(t, p)
	// Low RAM ends at the EBDA the in-guest BIOS keeps below 640 KiB.
	if p.Map.Regions()[0] != (memmap.Region{Range: memmap.Range{Start: 0, End: 0x9FC00}, Kind: memmap.KindRAM}) || p.MemSize != 64*btMiB {
		t.Errorf("map %v, memsize %#x", p.Map.Regions(), p.MemSize)
	}
	var out strings.Builder
	if err := p.Write(&out); err != nil || !strings.Contains(out.String(), "0x01000000") {
		t.Errorf("Write: %v\n%s", err, out.String())
	}
}

// checkParams decodes the parameter block and checks it against the plan:
// entry state, verify flag, one check per verified piece with data, each
// checksum computed from the piece's bytes.
func checkParams(t *testing.T, p *Plan) {
	t.Helper()
	pp := decodeParams(t, planPlacement(t, p, "params").Data)
	if pp.magic != realmode.Magic || pp.version != realmode.Version {
		t.Errorf("params magic %#x version %d", pp.magic, pp.version)
	}
	if pp.eip != p.Entry.EIP || pp.eax != p.Entry.EAX || pp.ebx != p.Entry.EBX || pp.esi != p.Entry.ESI || pp.esp != p.Entry.ESP {
		t.Errorf("params entry eip %#x eax %#x ebx %#x esi %#x esp %#x, plan %+v", pp.eip, pp.eax, pp.ebx, pp.esi, pp.esp, p.Entry)
	}
	var want []PieceCheck
	if p.Verify {
		for _, pl := range p.Placements {
			if pl.Verify && len(pl.Data) > 0 {
				want = append(want, PieceCheck{pl.What, realmode.Check{Addr: uint32(pl.Start), Len: uint32(len(pl.Data)), Sum: realmode.XXH32(pl.Data)}})
			}
		}
	}
	if fmt.Sprint(p.Checks()) != fmt.Sprint(want) {
		t.Errorf("checks\n got %+v\nwant %+v", p.Checks(), want)
	}
	if int(pp.n) != len(want) {
		t.Fatalf("params has %d checks, want %d", pp.n, len(want))
	}
	for i, c := range want {
		if pp.checks[i] != c.Check {
			t.Errorf("params check %d = %+v, want %+v (%s)", i, pp.checks[i], c.Check, c.What)
		}
	}
	if wantFlags := map[bool]uint32{true: realmode.FlagVerify, false: 0}[p.Verify]; pp.flags != wantFlags {
		t.Errorf("params flags %#x, want %#x", pp.flags, wantFlags)
	}
}

// checkRelocated compares the placed kernel with the linked one: every
// relocation site moved by exactly delta, absolute-symbol sites and all
// other bytes unchanged.
func checkRelocated(t *testing.T, k *tkELF, p *Plan, delta uint32) {
	t.Helper()
	kern := planPlacement(t, p, "kernel")
	if len(kern.Data) != len(k.mem) {
		t.Fatalf("placed kernel has %d bytes, ELF %d", len(kern.Data), len(k.mem))
	}
	base := uint32(k.img.Base)
	touched := make([]bool, len(k.mem))
	for _, s := range k.sites {
		o := s - base
		got := binary.LittleEndian.Uint32(kern.Data[o:])
		orig := binary.LittleEndian.Uint32(k.mem[o:])
		if got-orig != delta {
			t.Errorf("site %#x: %#x -> %#x, moved by %#x, want %#x", s, orig, got, got-orig, delta)
		}
		for i := o; i < o+4; i++ {
			if touched[i] {
				t.Errorf("site %#x overlaps another site", s)
			}
			touched[i] = true
		}
	}
	for _, s := range k.absSites {
		o := s - base
		if !bytes.Equal(kern.Data[o:o+4], k.mem[o:o+4]) {
			t.Errorf("absolute-symbol site %#x changed: % x -> % x", s, k.mem[o:o+4], kern.Data[o:o+4])
		}
		if touched[o] {
			t.Errorf("absolute-symbol site %#x is also a relocation site", s)
		}
	}
	diff := 0
	for i := range k.mem {
		if !touched[i] && kern.Data[i] != k.mem[i] {
			diff++
			if diff < 5 {
				t.Errorf("byte at %#x changed (%#x -> %#x) but is no relocation site", uint32(i)+base, k.mem[i], kern.Data[i])
			}
		}
	}
	if p.Entry.EIP != uint32(k.entry)+delta {
		t.Errorf("EIP %#x, want entry %#x + delta %#x", p.Entry.EIP, k.entry, delta)
	}
}

// Bad RAM over the link address moves the kernel to the next free aligned
// address and relocates it there.
func TestBuildBadRAMRelocates(t *testing.T) {
	k := loadTK(t)
	p, err := Build(Config{Kernel: testkernel.ELF, MemSize: 64 * btMiB, BadRAM: []memmap.Range{{Start: 16 * btMiB, End: 32 * btMiB}}, Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	if p.LoadAddress != 0x2000000 || planPlacement(t, p, "kernel").Start != 0x2000000 {
		t.Fatalf("load address %#x, want 0x2000000", p.LoadAddress)
	}
	if !strings.Contains(p.Why, "preferred 0x1000000") {
		t.Errorf("Why = %q, want it to say the preferred address was taken", p.Why)
	}
	checkRelocated(t, k, p, 0x1000000)
	checkParams(t, p)
	// The info's map shows the bad range as type 5 and mem_upper stops at it.
	mi := decodeMBInfo(t, planPlacement(t, p, "boot_info").Data, p.Entry.EBX)
	if mi.memUpper != 15*1024 {
		t.Errorf("mem_upper %d, want %d", mi.memUpper, 15*1024)
	}
	found := false
	for _, e := range mi.mmap {
		found = found || e == decodedMmap{20, 16 * btMiB, 16 * btMiB, 5}
	}
	if !found {
		t.Errorf("mmap %v has no type-5 entry for [16M, 32M)", mi.mmap)
	}
	// The unmoved plan relocates nothing.
	p, err = Build(Config{Kernel: testkernel.ELF, MemSize: 64 * btMiB})
	if err != nil {
		t.Fatal(err)
	}
	checkRelocated(t, k, p, 0)
}

func TestBuildPolicies(t *testing.T) {
	k := loadTK(t)
	const mem = 64 * btMiB
	highest := (mem - ACPITablesSize - k.size) &^ 0xFFF // below the ACPI tables' page
	for _, tc := range []struct {
		policy Policy
		bad    []memmap.Range
		want   uint64
	}{
		{PolicyPreferred, nil, 0x1000000},
		{"", nil, 0x1000000},
		{PolicyLowest, nil, 0x100000}, // lowest fit at or above 1 MiB
		{PolicyLowest, []memmap.Range{{Start: 0x100000, End: 0x100001}}, 0x101000}, // page-aligned past a bad byte
		{PolicyHighest, nil, highest},
		{PolicyHighest, []memmap.Range{{Start: mem - 1, End: mem}}, (mem - 2*ACPITablesSize - k.size) &^ 0xFFF}, // the ACPI page moves below the bad byte
	} {
		p, err := Build(Config{Kernel: testkernel.ELF, MemSize: mem, Policy: tc.policy, BadRAM: tc.bad, Verify: true})
		if err != nil {
			t.Errorf("policy %q: %v", tc.policy, err)
			continue
		}
		if p.LoadAddress != tc.want {
			t.Errorf("policy %q bad %v: load %#x, want %#x (%s)", tc.policy, tc.bad, p.LoadAddress, tc.want, p.Why)
			continue
		}
		checkRelocated(t, k, p, uint32(tc.want-0x1000000))
		checkParams(t, p)
	}
	if _, err := Build(Config{Kernel: testkernel.ELF, MemSize: mem, Policy: "first-fit"}); err == nil {
		t.Errorf("unknown policy accepted")
	}
}

func TestBuildLoadAddress(t *testing.T) {
	k := loadTK(t)
	addr := func(v uint64) *uint64 { return &v }
	for _, tc := range []struct {
		name   string
		load   uint64
		bad    []memmap.Range
		err    error // nil = accepted
		reason string
	}{
		{"aligned, free", 0x3000000, nil, nil, ""},
		{"the link address", 0x1000000, nil, nil, ""},
		{"low, page aligned", 0x200000, nil, nil, ""},
		{"unaligned", 0x3000010, nil, ErrLoadAddress, "4K alignment"},
		{"overlaps bad RAM", 0x3000000, []memmap.Range{{Start: 0x3004000, End: 0x3005000}}, ErrOverlapsBadRAM, ""},
		{"on bad RAM", 0x1000000, []memmap.Range{{Start: 16 * btMiB, End: 32 * btMiB}}, ErrOverlapsBadRAM, ""},
		{"in the 640K-1M hole", 0xA0000, nil, ErrLoadAddress, ""},
		{"over the stub", 0x6000, nil, ErrLoadAddress, ""},
		{"past the end of RAM", 64*btMiB - 0x1000, nil, ErrLoadAddress, ""},
	} {
		p, err := Build(Config{Kernel: testkernel.ELF, MemSize: 64 * btMiB, BadRAM: tc.bad, LoadAddress: addr(tc.load), Verify: true})
		if !builtAsWanted(t, tc.name, err, tc.err, tc.reason) {
			continue
		}
		if p.LoadAddress != tc.load || p.Why != "forced by --load-address" {
			t.Errorf("%s: load %#x (%s)", tc.name, p.LoadAddress, p.Why)
		}
		checkRelocated(t, k, p, uint32(tc.load-0x1000000))
	}
}

// Region confines the kernel to a range, lowest fit there whatever the
// policy, as kexec loads a crash kernel into its reserved region.
func TestBuildRegion(t *testing.T) {
	k := loadTK(t)
	for _, tc := range []struct {
		name   string
		region memmap.Range
		bad    []memmap.Range
		policy Policy
		want   uint64
		err    error
	}{
		{"region above the link address", memmap.Range{Start: 0x2000000, End: 0x3000000}, nil, PolicyPreferred, 0x2000000, nil},
		{"region below it", memmap.Range{Start: 0x400000, End: 0x800000}, nil, PolicyHighest, 0x400000, nil},
		{"bad RAM at the region's start", memmap.Range{Start: 0x2000000, End: 0x3000000}, []memmap.Range{{Start: 0x2000000, End: 0x2100000}}, PolicyPreferred, 0x2100000, nil},
		{"unaligned region start", memmap.Range{Start: 0x2000800, End: 0x3000000}, nil, PolicyPreferred, 0x2001000, nil},
		{"too small", memmap.Range{Start: 0x2000000, End: 0x2001000}, nil, PolicyPreferred, 0, ErrNoRoom},
		{"all bad", memmap.Range{Start: 0x2000000, End: 0x3000000}, []memmap.Range{{Start: 0x2000000, End: 0x3000000}}, PolicyPreferred, 0, ErrNoRoom},
	} {
		r := tc.region
		p, err := Build(Config{Kernel: testkernel.ELF, MemSize: 64 * btMiB, BadRAM: tc.bad, Region: &r, Policy: tc.policy})
		if !builtAsWanted(t, tc.name, err, tc.err, "") {
			continue
		}
		if p.LoadAddress != tc.want {
			t.Errorf("%s: load %#x, want %#x (%s)", tc.name, p.LoadAddress, tc.want, p.Why)
			continue
		}
		checkRelocated(t, k, p, uint32(tc.want-0x1000000))
	}
}

// Modules (the initrd first) go above 1 MiB, page aligned because the
// test kernel's header sets flag bit 0, outside bad RAM and the kernel;
// the info lists them with their strings.
func TestBuildModules(t *testing.T) {
	mods := []Module{
		{Path: "/tmp/a.bin", Args: "a.bin verbose", Data: pattern(100, 1)},
		{Path: "/tmp/b.bin", Data: pattern(5000, 2)},
		{Path: "/tmp/empty", Data: nil},
	}
	initrd := &Module{Path: "/tmp/initrd.cpio", Data: pattern(3000, 3)}
	bad := []memmap.Range{{Start: 0x100000, End: 0x100800}, {Start: 0x102000, End: 0x103000}}
	p, err := Build(Config{Kernel: testkernel.ELF, MemSize: 64 * btMiB, BadRAM: bad, Modules: mods, Initrd: initrd, Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	var placed []Placement
	for _, pl := range p.Placements {
		if pl.What == "module" {
			placed = append(placed, pl)
		}
	}
	all := append([]Module{*initrd}, mods...)
	if len(placed) != len(all) {
		t.Fatalf("%d module placements, want %d", len(placed), len(all))
	}
	// Lowest fits, page aligned, skipping the bad pages at 1M and 1M+8K:
	// initrd (3000 bytes) at 1M+4K, a.bin at 1M+12K, b.bin (5000 bytes)
	// at 1M+16K, the empty module at 1M+24K.
	wantAt := []uint64{0x101000, 0x103000, 0x104000, 0x106000}
	mi := decodeMBInfo(t, planPlacement(t, p, "boot_info").Data, p.Entry.EBX)
	if mi.flags&(1<<3) == 0 || len(mi.mods) != len(all) {
		t.Fatalf("info flags %#x with %d modules, want bit 3 and %d", mi.flags, len(mi.mods), len(all))
	}
	for i, pl := range placed {
		m := all[i]
		if pl.Start != wantAt[i] || pl.Start%4096 != 0 || pl.Start < btMiB {
			t.Errorf("module %s at %#x, want %#x", m.Path, pl.Start, wantAt[i])
		}
		if !bytes.Equal(pl.Data, m.Data) || pl.Size != uint64(len(m.Data)) || pl.Name != m.Path || !pl.Verify {
			t.Errorf("module %s placement %+v", m.Path, pl)
		}
		for _, b := range bad {
			if b.Overlaps(pl.Range()) {
				t.Errorf("module %s at %v overlaps bad RAM %v", m.Path, pl.Range(), b)
			}
		}
		args := m.Args
		if args == "" {
			args = m.Path
		}
		want := MultibootModule{Start: uint32(pl.Start), End: uint32(pl.Start) + uint32(len(m.Data)), String: args}
		if mi.mods[i] != want {
			t.Errorf("info module %d = %+v, want %+v", i, mi.mods[i], want)
		}
		if p.ModuleArgs[i] != args {
			t.Errorf("ModuleArgs[%d] = %q, want %q", i, p.ModuleArgs[i], args)
		}
	}
	checkParams(t, p)
	checkNoOverlap(t, p, bad)
}

// A Multiboot kernel loaded through the a.out-kludge address fields: not
// relocatable, so it runs at load_addr, and its header does not ask for
// page-aligned modules (4-byte alignment is enough).
func TestBuildKludgeKernel(t *testing.T) {
	raw := make([]byte, 0x400)
	for i := range raw {
		raw[i] = byte(i)
	}
	// Header at file offset 0x20: image from file offset 0 at 0x300000,
	// 0x400 file bytes, bss to 0x302000, entry 0x300040.
	copy(raw[0x20:], mbHeader(MBAddressFields|MBMemoryInfo, 0, 0x300020, 0x300000, 0x300400, 0x302000, 0x300040))
	mods := []Module{{Path: "m1", Data: pattern(10, 1)}, {Path: "m2", Data: pattern(10, 2)}}
	p, err := Build(Config{Kernel: raw, MemSize: 32 * btMiB, Modules: mods, Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	if p.Kernel.Format != "multiboot-aout" || p.LoadAddress != 0x300000 || p.Entry.EIP != 0x300040 || p.Relocations != 0 {
		t.Errorf("format %q load %#x eip %#x relocations %d", p.Kernel.Format, p.LoadAddress, p.Entry.EIP, p.Relocations)
	}
	kern := planPlacement(t, p, "kernel")
	if kern.Start != 0x300000 || kern.Size != 0x2000 || !bytes.Equal(kern.Data, raw) {
		t.Errorf("kernel placement at %#x size %#x, %d bytes", kern.Start, kern.Size, len(kern.Data))
	}
	var at []uint64
	for _, pl := range p.Placements {
		if pl.What == "module" {
			at = append(at, pl.Start)
		}
	}
	if fmt.Sprint(at) != fmt.Sprint([]uint64{0x100000, 0x10000C}) {
		t.Errorf("modules at %#x, want 0x100000 and 0x10000c (4-byte aligned)", at)
	}
	checkParams(t, p)
	checkNoOverlap(t, p, nil)

	// It cannot move: a load address elsewhere, or bad RAM under it, is
	// refused with the reason.
	other := uint64(0x400000)
	// The reason, the address fields, is in the message users act on.
	if _, err := Build(Config{Kernel: raw, MemSize: 32 * btMiB, LoadAddress: &other}); !errors.Is(err, ErrCannotMove) || !strings.Contains(err.Error(), "address fields") {
		t.Errorf("moving a kludge kernel: %v", err)
	}
	if _, err := Build(Config{Kernel: raw, MemSize: 32 * btMiB, BadRAM: []memmap.Range{{Start: 0x301000, End: 0x301001}}}); !errors.Is(err, ErrCannotMove) || !errors.Is(err, ErrOverlapsBadRAM) {
		t.Errorf("kludge kernel over bad RAM: %v", err)
	}
}

// A Multiboot ELF that cannot move, with one segment below 640K and one
// at 1M, is placed segment by segment as GRUB loads it: the gap between
// them, which crosses the BIOS area, is not claimed (bad RAM there does
// not matter); a segment over bad RAM is refused by number.
func TestBuildTwoSegments(t *testing.T) {
	low := pattern(0x300, 5)
	high := append(mbHeader(MBMemoryInfo, 0), pattern(0x100, 7)...)
	kernel := e32File{entry: 0x100010, segs: []e32Seg{
		{typ: elf.PT_LOAD, off: 0x1000, vaddr: 0x40000, paddr: 0x40000, memsz: 0x2000, align: 0x1000, flags: elf.PF_R | elf.PF_W, data: low},
		{typ: elf.PT_LOAD, off: 0x1800, vaddr: 0x100000, paddr: 0x100000, memsz: 0x200, align: 0x1000, flags: elf.PF_R | elf.PF_X, data: high},
	}}.bytes()
	for _, bad := range [][]memmap.Range{nil, {{Start: 0x50000, End: 0x51000}}} {
		p, err := Build(Config{Path: "/boot/two.elf", Kernel: kernel, MemSize: 64 * btMiB, BadRAM: bad, Cmdline: "a b", Verify: true})
		if err != nil {
			t.Fatalf("bad RAM %v: %v", bad, err)
		}
		pieces := placementsOf(p, "kernel")
		if len(pieces) != 2 {
			t.Fatalf("kernel placements %+v, want one per segment", pieces)
		}
		if s := pieces[0]; s.Range() != (memmap.Range{Start: 0x40000, End: 0x42000}) || !bytes.Equal(s.Data, low) || !s.Verify {
			t.Errorf("low segment placed at %v with %d bytes", s.Range(), len(s.Data))
		}
		if s := pieces[1]; s.Range() != (memmap.Range{Start: 0x100000, End: 0x100200}) || !bytes.Equal(s.Data, high) || !s.Verify {
			t.Errorf("high segment placed at %v with %d bytes", s.Range(), len(s.Data))
		}
		if p.LoadAddress != 0x40000 || p.Entry.EIP != 0x100010 || !strings.Contains(p.Why, "link address") {
			t.Errorf("load %#x eip %#x why %q", p.LoadAddress, p.Entry.EIP, p.Why)
		}
		if mi := decodeMBInfo(t, planPlacement(t, p, "boot_info").Data, uint32(planPlacement(t, p, "boot_info").Start)); mi.cmdline != "/boot/two.elf a b" {
			t.Errorf("Multiboot command line %q, want the kernel's path first", mi.cmdline)
		}
		checkNoOverlap(t, p, bad)
		checkParams(t, p)
	}
	// Bytes the loader may patch (a real-mode part's locate word) must be
	// file bytes of a segment: not its bss, not the gap.
	k, err := OpenKernel(kernel, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	ki, err := multibootImage(k)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		addr uint64
		want bool
	}{{0x40000, true}, {0x402fc, true}, {0x402fe, false}, {0x41000, false}, {0x80000, false}, {0x100000, true}, {0x1001fe, false}} {
		if got := ki.placesFileBytes(c.addr, 4); got != c.want {
			t.Errorf("placesFileBytes(%#x, 4) = %v, want %v", c.addr, got, c.want)
		}
	}
	_, err = Build(Config{Kernel: kernel, MemSize: 64 * btMiB, BadRAM: []memmap.Range{{Start: 0x41000, End: 0x41001}}})
	// The whole sentence is the contract: what cannot move, why, what to do
	// and where it collides.
	if !errors.Is(err, ErrCannotMove) || !errors.Is(err, ErrOverlapsBadRAM) || !strings.Contains(err.Error(), "the kernel cannot move: it has no relocation info (link it with --emit-relocs); at its link address: kernel segment 0 at 0x00040000-0x00042000 overlaps bad RAM") {
		t.Errorf("a segment over bad RAM: %v", err)
	}
}

// Verify false: the stub checks nothing, the block says so.
func TestBuildNoVerify(t *testing.T) {
	p, err := Build(Config{Kernel: testkernel.ELF, MemSize: 64 * btMiB, Modules: []Module{{Path: "m", Data: []byte("x")}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Checks()) != 0 {
		t.Errorf("%d checks with Verify false", len(p.Checks()))
	}
	pp := decodeParams(t, planPlacement(t, p, "params").Data)
	if pp.n != 0 || pp.flags != 0 {
		t.Errorf("params: %d checks, flags %#x", pp.n, pp.flags)
	}
	checkParams(t, p)
}

func TestBuildErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		is   error
		what string // the *PlaceError's piece, "" when not a placement error
	}{
		{"empty file", Config{MemSize: 64 * btMiB}, ErrEmptyFile, ""},
		{"ELF without a Multiboot header", Config{Kernel: twoLoads().bytes(), MemSize: 64 * btMiB}, ErrNoBootHeader, ""},
		{"no room for kernel", Config{Kernel: testkernel.ELF, MemSize: 64 * btMiB, BadRAM: []memmap.Range{{Start: btMiB, End: 64 * btMiB}}}, ErrNoRoom, "kernel"},
		{"no room for the ACPI tables", Config{Kernel: testkernel.ELF, MemSize: 64 * btMiB, BadRAM: []memmap.Range{{Start: 0x8000, End: 64 * btMiB}}}, ErrNoRoom, "ACPI tables"},
		{"bad RAM over the stub", Config{Kernel: testkernel.ELF, MemSize: 64 * btMiB, BadRAM: []memmap.Range{{Start: 0x7000, End: 0x7001}}}, ErrOverlapsBadRAM, "entry stub"},
		{"guest too small for the kernel", Config{Kernel: testkernel.ELF, MemSize: btMiB + 0x4000}, ErrNoRoom, "kernel"},
	} {
		_, err := Build(tc.cfg)
		var pe *PlaceError
		if !errors.Is(err, tc.is) || tc.what != "" && (!errors.As(err, &pe) || pe.What != tc.what) {
			t.Errorf("%s: error %v, want %v for %q", tc.name, err, tc.is, tc.what)
		}
	}
}

// checkNoOverlap checks that the plan's placements do not overlap each
// other or bad RAM, and lie in RAM.
func checkNoOverlap(t *testing.T, p *Plan, bad []memmap.Range) {
	t.Helper()
	s := p.Sorted()
	for i, pl := range s {
		r := pl.Range()
		if r.Size() == 0 {
			continue
		}
		for _, b := range bad {
			if b.Overlaps(r) {
				t.Errorf("%s %s at %v overlaps bad RAM %v", pl.What, pl.Name, r, b)
			}
		}
		// The ACPI tables' page is marked as such; everything else is RAM.
		if want := map[bool]memmap.Kind{false: memmap.KindRAM, true: memmap.KindACPI}[pl.What == "acpi"]; !p.Map.IsAll(r, want) {
			t.Errorf("%s %s at %v is not all %s", pl.What, pl.Name, r, want.Describe())
		}
		for _, q := range s[i+1:] {
			if q.Range().Size() > 0 && q.Range().Overlaps(r) {
				t.Errorf("%s at %v overlaps %s at %v", pl.What, r, q.What, q.Range())
			}
		}
	}
}

// Property: for random bad-RAM sets, policies and modules, a plan that
// Build returns never overlaps itself or bad RAM, and its kernel is the
// test kernel relocated by exactly its move; a refusal is a *PlaceError.
func TestBuildRandomBadRAM(t *testing.T) {
	k := loadTK(t)
	rng := rand.New(rand.NewSource(20240229))
	policies := []Policy{PolicyPreferred, PolicyLowest, PolicyHighest}
	ok := 0
	for iter := 0; iter < 200; iter++ {
		mem := uint64(8+rng.Intn(120)) * btMiB
		var bad []memmap.Range
		for n := rng.Intn(12); n > 0; n-- {
			start := uint64(rng.Int63n(int64(mem)))
			size := uint64(1 + rng.Int63n([]int64{64, 64 << 10, 16 << 20, 64 << 20}[rng.Intn(4)]))
			bad = append(bad, memmap.Range{Start: start, End: start + size})
		}
		var mods []Module
		for n := rng.Intn(4); n > 0; n-- {
			mods = append(mods, Module{Path: fmt.Sprintf("m%d", n), Data: pattern(rng.Intn(20000), byte(n))})
		}
		cfg := Config{Kernel: testkernel.ELF, MemSize: mem, BadRAM: bad, Modules: mods, Policy: policies[rng.Intn(3)], Verify: rng.Intn(2) == 0}
		p, err := Build(cfg)
		name := fmt.Sprintf("iteration %d (mem %s, bad %v, policy %s, %d modules)", iter, memmap.FormatSize(mem), bad, cfg.Policy, len(mods))
		if err != nil {
			var pe *PlaceError
			if !errors.As(err, &pe) {
				t.Errorf("%s: error %v (%T), want a *PlaceError", name, err, err)
			}
			continue
		}
		ok++
		checkNoOverlap(t, p, bad)
		if p.LoadAddress%4096 != 0 || p.LoadAddress < btMiB {
			t.Errorf("%s: kernel at %#x", name, p.LoadAddress)
		}
		checkRelocated(t, k, p, uint32(p.LoadAddress-k.img.Base))
		checkParams(t, p)
		if t.Failed() {
			t.Fatalf("stopping at %s", name)
		}
	}
	t.Logf("%d of 200 random plans succeeded", ok)
	if ok < 100 {
		t.Errorf("only %d of 200 random plans succeeded: the property was barely exercised", ok)
	}
}
