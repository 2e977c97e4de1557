package loader

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"maps"
	"strings"
	"testing"

	"kvmboot/boot/testkernel"
	"kvmboot/loader/kcache"
	"kvmboot/loader/memmap"
)

// checkExtremes checks the allocator's lowest and highest addresses
// against Build with the lowest and highest policies, which must agree.
func checkExtremes(t *testing.T, file []byte, pi *PlacementInfo, cache *kcache.Cache) {
	t.Helper()
	for _, tc := range []struct {
		policy Policy
		got    *uint64
	}{{PolicyLowest, pi.Lowest}, {PolicyHighest, pi.Highest}} {
		p, err := Build(Config{Kernel: file, MemSize: pi.MemSize, BadRAM: rangesOf(pi.BadRAM), Policy: tc.policy, Cache: cache})
		switch {
		case err != nil && tc.got != nil:
			t.Errorf("%s: Build fails (%v), inspect says %#x", tc.policy, err, *tc.got)
		case err == nil && tc.got == nil:
			t.Errorf("%s: Build loads at %#x, inspect says nowhere", tc.policy, p.LoadAddress)
		case err == nil && p.LoadAddress != *tc.got:
			t.Errorf("%s: Build loads at %#x, inspect says %#x", tc.policy, p.LoadAddress, *tc.got)
		}
	}
	if pi.Lowest != nil {
		first, last := pi.Windows[0], pi.Windows[len(pi.Windows)-1]
		if first.First != *pi.Lowest || last.Last != *pi.Highest {
			t.Errorf("windows %+v do not run from lowest %#x to highest %#x", pi.Windows, *pi.Lowest, *pi.Highest)
		}
	}
}

func rangesOf(rs []RangeJSON) []memmap.Range {
	var out []memmap.Range
	for _, r := range rs {
		out = append(out, memmap.Range(r))
	}
	return out
}

// TestInspectSharesBuildClaims: inspect's windows start from what Build
// claims before the kernel. A kernel that cannot move, linked over the
// BIOS tables, runs nowhere: inspect once said it could run there, as it
// claimed only the entry stub by hand.
func TestInspectSharesBuildClaims(t *testing.T) {
	raw := make([]byte, 0x400)
	// Multiboot address fields: the file at 0x5000 (the BIOS tables), bss
	// to 0x5800, entry 0x5040.
	copy(raw[0x20:], mbHeader(MBAddressFields|MBMemoryInfo, 0, 0x5020, 0x5000, 0x5400, 0x5800, 0x5040))
	in, err := Inspect(raw, InspectOptions{MemSize: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	pi := in.Placement
	if pi == nil || pi.Relocatable || pi.Link != 0x5000 {
		t.Fatalf("placement %+v", pi)
	}
	if !strings.Contains(pi.Error, "BIOS tables") {
		t.Errorf("plan error %q, want Build's refusal naming the BIOS tables", pi.Error)
	}
	if pi.Lowest != nil || len(pi.Windows) != 0 {
		t.Errorf("inspect says it could run at %v (windows %+v), Build refuses", *pi.Lowest, pi.Windows)
	}
	checkExtremes(t, raw, pi, nil)
}

func TestInspectTestKernel(t *testing.T) {
	in, err := Inspect(testkernel.ELF, InspectOptions{Path: "tk.elf", MemSize: 64 << 20, BadRAM: []memmap.Range{{Start: 16 << 20, End: 32 << 20}}})
	if err != nil {
		t.Fatal(err)
	}
	if in.Format != "elf32" || in.Base != testkernel.LinkBase || len(in.Segments) != 2 || in.Segments[0].Type != "LOAD" || len(in.Notes) != 0 || in.Kvmboot != nil {
		t.Errorf("inspection %+v", in)
	}
	r := in.Relocations
	if r == nil || r.Source != "emit-relocs" || r.From != ".rel sections" || r.Sites == 0 || r.Absolute == 0 || r.ByType["R_386_32"] != r.Sites || r.ByType["R_386_PC32"] == 0 {
		t.Errorf("relocations %+v", r)
	}
	if m := in.Multiboot; m == nil || m.Offset != 0x1000 || m.LoadAddr != nil || len(m.FlagNames) == 0 {
		t.Errorf("multiboot %+v", m)
	}
	pi := in.Placement
	if pi == nil || pi.Error != "" || pi.LoadAddress != 32<<20 || !pi.Relocatable || pi.Align != 4096 || pi.Protocol != ProtocolMultiboot {
		t.Fatalf("placement %+v", pi)
	}
	checkExtremes(t, testkernel.ELF, pi, nil)
	if len(pi.Windows) != 2 {
		t.Errorf("windows %+v, want one below and one above the bad range", pi.Windows)
	}
	var b bytes.Buffer
	if err := in.Write(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"R_386_32", "skipped (absolute symbols)", "multiboot    header at file offset 0x1000", "entry", "load address 0x2000000", "could run"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("text output lacks %q:\n%s", want, b.String())
		}
	}
}

func TestInspectMkELF(t *testing.T) {
	res, err := MkELF(testkernel.ELF, MkELFOptions{Compression: XZ})
	if err != nil {
		t.Fatal(err)
	}
	src, _ := Inspect(testkernel.ELF, InspectOptions{})
	in, err := Inspect(res.Output, InspectOptions{MemSize: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	s := in.Kvmboot
	if in.Format != "xz+elf32" || s == nil || !s.ChecksumOK || s.Relocs == nil || s.Relocs.Sites != src.Relocations.Sites || s.Relocs.Absolute != src.Relocations.Absolute {
		t.Fatalf("format %s, note %+v", in.Format, s)
	}
	if r, sr := in.Relocations, src.Relocations; r.Source != sr.Source || r.Sites != sr.Sites || r.Absolute != sr.Absolute || !maps.Equal(r.ByType, sr.ByType) {
		t.Errorf("relocations %+v, source %+v", in.Relocations, src.Relocations)
	}
	var kv []string
	for _, n := range in.Notes {
		if n.Name == NoteName {
			kv = append(kv, n.TypeName)
			if n.Decoded == "" || n.In != "PT_NOTE 2, .note.kvmboot" {
				t.Errorf("note %+v", n)
			}
		}
	}
	if strings.Join(kv, " ") != "VERSION LOAD RELOCS BUILD_INFO CHECKSUM" {
		t.Errorf("kvmboot entries %v", kv)
	}
	j, err := in.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(j, &back); err != nil {
		t.Fatal(err)
	}
	note := back["kvmboot_note"].(map[string]any)
	if note["checksum_ok"] != true || note["relocs"].(map[string]any)["sites"].(float64) != float64(src.Relocations.Sites) {
		t.Errorf("JSON note %v", note)
	}
}

func TestDescribeNote(t *testing.T) {
	le := binary.LittleEndian
	u32s := func(vs ...uint32) []byte {
		var b []byte
		for _, v := range vs {
			b = le.AppendUint32(b, v)
		}
		return b
	}
	for _, tc := range []struct {
		n             RawNote
		name, decoded string
	}{
		{RawNote{Name: "Xen", Type: 18, Desc: u32s(0x1000040)}, "XEN_ELFNOTE_PHYS32_ENTRY", "PVH 32-bit entry 0x1000040"},
		{RawNote{Name: "Xen", Type: 19, Desc: u32s(0x200000, 0x1000000, 0x3fffffff)}, "XEN_ELFNOTE_PHYS32_RELOC", "PVH relocatable: align 0x200000, min 0x1000000, max 0x3fffffff"},
		{RawNote{Name: "Xen", Type: 19, Desc: u32s(0x200000)}, "XEN_ELFNOTE_PHYS32_RELOC", "PVH relocatable: align 0x200000"},
		{RawNote{Name: "Xen", Type: 6, Desc: []byte("linux\x00")}, "XEN_ELFNOTE_GUEST_OS", `"linux"`},
		{RawNote{Name: "Xen", Type: 1, Desc: le.AppendUint64(nil, 0xffffffff81000000)}, "XEN_ELFNOTE_ENTRY", "0xffffffff81000000"},
		{RawNote{Name: "GNU", Type: 3, Desc: []byte{0xe5, 0x3b}}, "NT_GNU_BUILD_ID", "e53b"},
		{RawNote{Name: "GNU", Type: 1, Desc: u32s(0, 3, 2, 0)}, "NT_GNU_ABI_TAG", "Linux 3.2.0"},
		{RawNote{Name: "Linux", Type: 0x100, Desc: []byte("6.1.0-50-686\x00")}, "LINUX_ELFNOTE_BUILD_SALT", `"6.1.0-50-686"`},
		{RawNote{Name: "Linux", Type: 0x101, Desc: u32s(0)}, "LINUX_ELFNOTE_LTO_INFO", "no LTO"},
		{RawNote{Name: "Linux", Type: 0, Desc: u32s(0x060100)}, "LINUX_VERSION_CODE", "6.1.0"},
		{RawNote{Name: NoteName, Type: uint32(NoteTypeVersion), Desc: u32s(1, 0)}, "VERSION", "format 1.0"},
		{RawNote{Name: "Acme", Type: 7, Desc: nil}, "", ""},
	} {
		name, decoded := DescribeNote(tc.n, le)
		if name != tc.name || decoded != tc.decoded {
			t.Errorf("%s %d: %q %q, want %q %q", tc.n.Name, tc.n.Type, name, decoded, tc.name, tc.decoded)
		}
	}
}

func TestInspectDebian(t *testing.T) {
	vmlinuz := realVmlinuz(t)
	bad := []memmap.Range{{Start: 16 << 20, End: 48 << 20}}
	cache := &kcache.Cache{Dir: t.TempDir()} // one decompression, not five
	t.Cleanup(cache.Wait)                    // before the directory goes
	in, err := Inspect(vmlinuz, InspectOptions{MemSize: 256 << 20, BadRAM: bad, Cache: cache})
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, n := range in.Notes {
		names[n.TypeName] = true
	}
	if !names["NT_GNU_BUILD_ID"] || !names["LINUX_ELFNOTE_BUILD_SALT"] {
		t.Errorf("notes %+v", in.Notes)
	}
	if in.Setup == nil || in.Setup.FromNote || in.Setup.Version < "2.10" || in.Relocations == nil || in.Relocations.Source != "linux" {
		t.Fatalf("setup %+v relocations %+v", in.Setup, in.Relocations)
	}
	pi := in.Placement
	if pi.Protocol != ProtocolLinux32 || pi.LoadAddress != 48<<20 || pi.Align != 16<<20 || pi.MaxEnd != 512<<20 {
		t.Errorf("placement %+v", pi)
	}
	checkExtremes(t, vmlinuz, pi, cache)

	res, err := MkELF(vmlinuz, MkELFOptions{Compression: CompressionNone, Cache: cache})
	if err != nil {
		t.Fatal(err)
	}
	out, err := Inspect(res.Output, InspectOptions{MemSize: 256 << 20, BadRAM: bad})
	if err != nil {
		t.Fatal(err)
	}
	if out.Kvmboot == nil || out.Kvmboot.Relocs.Sites != in.Relocations.Sites || out.Relocations.Sites != in.Relocations.Sites || !out.Setup.FromNote {
		t.Errorf("mkelf'd: note %+v relocations %+v", out.Kvmboot, out.Relocations)
	}
	for i, f := range in.Setup.Fields {
		if out.Setup.Fields[i] != f {
			t.Errorf("setup field %s: %+v, source %+v", f.Name, out.Setup.Fields[i], f)
		}
	}
	if out.Placement.LoadAddress != pi.LoadAddress || out.Placement.Why != pi.Why || len(out.Placement.Windows) != len(pi.Windows) {
		t.Errorf("mkelf'd placement %+v, source %+v", out.Placement, pi)
	}
}
