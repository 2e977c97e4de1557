package loader

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"kvmboot/loader/kcache"
	"kvmboot/loader/memmap"
)

// Inspection is what `kvmboot inspect` reports about a kernel file. Its
// JSON form is for tools: addresses and sizes are integers.
type Inspection struct {
	Path        string      `json:"path,omitempty"`
	FileSize    int         `json:"file_size"`
	Format      string      `json:"format"`
	Compression Compression `json:"compression"`
	// Payload describes a Linux image's protected-mode part when it holds
	// no compressed ELF for kvmboot to unpack.
	Payload string `json:"payload,omitempty"`
	ELFSize int    `json:"elf_size"`
	Entry   uint64 `json:"entry"`
	Base    uint64 `json:"link_base"`
	End     uint64 `json:"link_end"`
	// Segments are every program header, PT_LOAD or not, in file order.
	Segments []SegmentInfo `json:"segments"`
	// Notes are every note entry of the PT_NOTE segments and SHT_NOTE
	// sections, each once.
	Notes       []NoteInfo       `json:"notes"`
	Kvmboot     *NoteSummary     `json:"kvmboot_note,omitempty"`
	Relocations *RelocInfo       `json:"relocations,omitempty"`
	Multiboot   *MultibootFields `json:"multiboot,omitempty"`
	Setup       *SetupFields     `json:"setup_header,omitempty"`
	Placement   *PlacementInfo   `json:"placement,omitempty"`
}

// SegmentInfo is one program header.
type SegmentInfo struct {
	Type   string `json:"type"`
	Offset uint64 `json:"offset"`
	Paddr  uint64 `json:"paddr"`
	Vaddr  uint64 `json:"vaddr"`
	FileSz uint64 `json:"filesz"`
	MemSz  uint64 `json:"memsz"`
	Align  uint64 `json:"align"`
	Flags  string `json:"flags"`
}

// NoteInfo is one ELF note entry.
type NoteInfo struct {
	Name     string `json:"name"`
	Type     uint32 `json:"type"`
	TypeName string `json:"type_name,omitempty"`
	DescSize int    `json:"desc_size"`
	// Offset is the entry's file offset in the ELF; In says which
	// segment and section hold it.
	Offset  uint64 `json:"offset"`
	In      string `json:"in"`
	Decoded string `json:"decoded,omitempty"`
}

// NoteSummary is kvmboot's note as inspect shows it (the relocation table
// and setup header bytes are counted, not listed).
type NoteSummary struct {
	Version         string             `json:"version"`
	Load            *NoteLoad          `json:"load,omitempty"`
	Relocs          *NoteRelocsSummary `json:"relocs,omitempty"`
	LinuxSetupBytes int                `json:"linux_setup_bytes,omitempty"`
	RealModeBytes   int                `json:"realmode_bytes,omitempty"`
	Checksum        *NoteChecksum      `json:"checksum"`
	// ChecksumOK: OpenKernel verified the loadable bytes against it.
	ChecksumOK bool      `json:"checksum_ok"`
	BuildInfo  string    `json:"build_info,omitempty"`
	Optional   []RawNote `json:"optional,omitempty"`
	Raw        *Note     `json:"-"`
}

// NoteRelocsSummary is the RELOCS descriptor without its table.
type NoteRelocsSummary struct {
	Origin   string         `json:"origin"`
	Encoding string         `json:"encoding"`
	Sites    int            `json:"sites"`
	Absolute int            `json:"skipped_absolute"`
	ByType   map[string]int `json:"by_type"`
}

// RelocInfo counts relocations by type.
type RelocInfo struct {
	Source string `json:"source"`
	// From says where the loader read them: "Linux table after the ELF",
	// ".rel sections", "kvmboot note table".
	From     string         `json:"from"`
	Sites    int            `json:"sites"`
	ByType   map[string]int `json:"by_type"`
	Absolute int            `json:"skipped_absolute"`
}

// MultibootFields is a Multiboot 1 header.
type MultibootFields struct {
	Offset    int      `json:"offset"`
	Flags     uint32   `json:"flags"`
	FlagNames []string `json:"flag_names"`
	Checksum  uint32   `json:"checksum"`
	// Address fields, with flag bit 16.
	HeaderAddr  *uint32 `json:"header_addr,omitempty"`
	LoadAddr    *uint32 `json:"load_addr,omitempty"`
	LoadEndAddr *uint32 `json:"load_end_addr,omitempty"`
	BSSEndAddr  *uint32 `json:"bss_end_addr,omitempty"`
	EntryAddr   *uint32 `json:"entry_addr,omitempty"`
}

// SetupFields is a Linux setup header: its fields by boot.rst name, in
// offset order. Its JSON is an object {"setup_sects": 30, ...}.
type SetupFields struct {
	Version string `json:"-"`
	// KernelString is the version string kernel_version points to in the
	// setup code ("6.1.0-50-686 (debian-kernel@...) #1 SMP ..."), when the
	// setup code is there (not in a kvmboot mkelf image).
	KernelString string       `json:"-"`
	Bytes        int          `json:"-"`
	FromNote     bool         `json:"-"`
	Fields       []SetupField `json:"-"`
}

// SetupField is one setup header field.
type SetupField struct {
	Name   string
	Offset int
	Value  uint64
	Hex    bool // shown in hex (addresses, flags)
}

// MarshalJSON writes the fields as one object, in offset order, plus the
// protocol version, the header's length and where it came from.
func (s *SetupFields) MarshalJSON() ([]byte, error) {
	var b strings.Builder
	b.WriteString("{")
	fmt.Fprintf(&b, `"protocol":%q,"header_bytes":%d,"from_kvmboot_note":%t`, s.Version, s.Bytes, s.FromNote)
	if s.KernelString != "" {
		v, err := json.Marshal(s.KernelString)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, `,"kernel_version_string":%s`, v)
	}
	for _, f := range s.Fields {
		fmt.Fprintf(&b, ",%q:%d", f.Name, f.Value)
	}
	b.WriteString("}")
	return []byte(b.String()), nil
}

// PlacementInfo says where the image could run in a guest of MemSize
// bytes with BadRAM declared bad.
type PlacementInfo struct {
	MemSize uint64      `json:"mem_size"`
	BadRAM  []RangeJSON `json:"bad_ram"`
	// Needs: the kernel wants Size bytes from an Align-aligned address at
	// or above MinStart, ending at or below MaxEnd (0: 4 GiB); Relocatable
	// says whether it can run anywhere else than Link.
	Protocol    Protocol `json:"protocol,omitempty"`
	Link        uint64   `json:"link_address"`
	Size        uint64   `json:"size"`
	Align       uint64   `json:"align"`
	MinStart    uint64   `json:"min_start"`
	MaxEnd      uint64   `json:"max_end"`
	Relocatable bool     `json:"relocatable"`
	// The plan: where Build puts it (preferred policy) and why, or why
	// it cannot.
	LoadAddress uint64 `json:"load_address"`
	Why         string `json:"why,omitempty"`
	Error       string `json:"error,omitempty"`
	// Lowest and Highest are the extreme load addresses the allocator
	// finds (nil when none); Windows are all runs of load addresses that
	// fit, every Align bytes.
	Lowest  *uint64      `json:"lowest,omitempty"`
	Highest *uint64      `json:"highest,omitempty"`
	Windows []LoadWindow `json:"windows"`
}

// RangeJSON is a range as JSON integers, END exclusive.
type RangeJSON struct {
	Start uint64 `json:"start"`
	End   uint64 `json:"end"`
}

// LoadWindow is a run of possible load addresses: First, First+Align, ...,
// Last (Count of them).
type LoadWindow struct {
	First uint64 `json:"first"`
	Last  uint64 `json:"last"`
	Count uint64 `json:"count"`
}

// InspectOptions are Inspect's inputs besides the file.
type InspectOptions struct {
	Path  string
	Limit int64
	Cache *kcache.Cache // as Config's: the caller waits for its stores
	// MemSize, when not 0, makes Inspect plan the kernel for a guest of
	// that size with BadRAM declared bad.
	MemSize uint64
	BadRAM  []memmap.Range
}

// Inspect opens a kernel file and describes it.
func Inspect(file []byte, opts InspectOptions) (*Inspection, error) {
	k, err := OpenKernel(file, opts.Limit, opts.Cache)
	if err != nil {
		return nil, err
	}
	in := &Inspection{Path: opts.Path, FileSize: len(file), Format: k.Format, Compression: k.Compression, ELFSize: len(k.Raw)}
	if h := k.Multiboot; h != nil {
		in.Multiboot = multibootFields(h)
	}
	if bz := k.BzImage; bz != nil {
		in.Setup = setupFields(bz, k.Note != nil)
		if k.ELF == nil {
			in.Payload = fmt.Sprintf("%d bytes of code run as they are (%s): the image's own setup code starts it (linux16)", len(bz.ProtectedMode), bz.rawWhy())
		}
	}
	if img := k.ELF; img != nil {
		in.Entry, in.Base, in.End = img.Entry, img.Base, img.End
		for _, p := range img.File.Progs {
			in.Segments = append(in.Segments, SegmentInfo{progTypeName(p.Type), p.Off, p.Paddr, p.Vaddr, p.Filesz, p.Memsz, p.Align, rwx(p.Flags)})
		}
		if in.Notes, err = listNotes(img.File, img.Raw); err != nil {
			return nil, err
		}
		if r := img.Relocs; r != nil && r.Source != "none" {
			from := ".rel sections"
			switch {
			case k.Note != nil && k.Note.Relocs != nil && k.Note.Relocs.Encoding == RelocEncodingDelta:
				from = "kvmboot note table"
			case r.Source == "linux":
				from = "Linux table after the ELF"
			}
			in.Relocations = &RelocInfo{Source: r.Source, From: from, Sites: len(r.Sites), ByType: r.ByType, Absolute: r.Absolute}
		}
	}
	if n := k.Note; n != nil {
		in.Kvmboot = summarize(n)
	}
	if opts.MemSize != 0 {
		in.Placement = placementInfo(k, opts)
	}
	return in, nil
}

// summarize turns a note into its inspect summary.
func summarize(n *Note) *NoteSummary {
	s := &NoteSummary{Version: fmt.Sprintf("%d.%d", n.Major, n.Minor), Load: n.Load, LinuxSetupBytes: len(n.LinuxSetup),
		RealModeBytes: len(n.RealMode), Checksum: n.Checksum, ChecksumOK: true, BuildInfo: n.BuildInfo, Optional: n.Other, Raw: n}
	if r := n.Relocs; r != nil {
		s.Relocs = &NoteRelocsSummary{Origin: r.OriginName(), Encoding: r.EncodingName(), Sites: int(r.Count), Absolute: int(r.Absolute), ByType: r.TypeCounts()}
	}
	return s
}

// sizeText is FormatSize with "bytes" after a plain number.
func sizeText(n uint64) string {
	s := memmap.FormatSize(n)
	if c := s[len(s)-1]; c >= '0' && c <= '9' {
		s += " bytes"
	}
	return s
}

// rwx is "r-x" for PF_R|PF_X.
func rwx(f elf.ProgFlag) string {
	b := []byte("---")
	if f&elf.PF_R != 0 {
		b[0] = 'r'
	}
	if f&elf.PF_W != 0 {
		b[1] = 'w'
	}
	if f&elf.PF_X != 0 {
		b[2] = 'x'
	}
	return string(b)
}

// progTypeName is "LOAD" for PT_LOAD.
func progTypeName(t elf.ProgType) string {
	return strings.TrimPrefix(t.String(), "PT_")
}

// multibootFields lists a Multiboot header's fields.
func multibootFields(h *MultibootHeader) *MultibootFields {
	m := &MultibootFields{Offset: h.Offset, Flags: h.Flags, Checksum: h.Checksum, FlagNames: []string{}}
	for _, f := range []struct {
		bit  uint32
		name string
	}{{MBPageAlignModules, "page-align-modules"}, {MBMemoryInfo, "memory-info"}, {MBVideoMode, "video-mode"}, {MBAddressFields, "address-fields"}} {
		if h.Flags&f.bit != 0 {
			m.FlagNames = append(m.FlagNames, f.name)
		}
	}
	if h.Flags&MBAddressFields != 0 {
		m.HeaderAddr, m.LoadAddr, m.LoadEndAddr, m.BSSEndAddr, m.EntryAddr = &h.HeaderAddr, &h.LoadAddr, &h.LoadEndAddr, &h.BSSEndAddr, &h.EntryAddr
	}
	return m
}

// setupFields lists a setup header's fields, as far as its length goes.
func setupFields(bz *BzImage, fromNote bool) *SetupFields {
	h := &bz.Header
	end := setupHeaderOffset + len(bz.HeaderBytes)
	s := &SetupFields{Version: versionString(h.Version), Bytes: len(bz.HeaderBytes), FromNote: fromNote, KernelString: KernelVersionString(bz)}
	for _, f := range []SetupField{
		{"setup_sects", 0x1f1, uint64(h.SetupSects), false},
		{"root_flags", 0x1f2, uint64(h.RootFlags), true},
		{"syssize", 0x1f4, uint64(h.SysSize), true},
		{"ram_size", 0x1f8, uint64(h.RAMSize), true},
		{"vid_mode", 0x1fa, uint64(h.VidMode), true},
		{"root_dev", 0x1fc, uint64(h.RootDev), true},
		{"boot_flag", 0x1fe, uint64(h.BootFlag), true},
		{"jump", 0x200, uint64(h.Jump), true},
		{"header", 0x202, uint64(binary.LittleEndian.Uint32(h.HeaderMagic[:])), true},
		{"version", 0x206, uint64(h.Version), true},
		{"realmode_swtch", 0x208, uint64(h.RealmodeSwitch), true},
		{"start_sys_seg", 0x20c, uint64(h.StartSysSeg), true},
		{"kernel_version", 0x20e, uint64(h.KernelVersion), true},
		{"type_of_loader", 0x210, uint64(h.TypeOfLoader), true},
		{"loadflags", 0x211, uint64(h.LoadFlags), true},
		{"setup_move_size", 0x212, uint64(h.SetupMoveSize), true},
		{"code32_start", 0x214, uint64(h.Code32Start), true},
		{"ramdisk_image", 0x218, uint64(h.RamdiskImage), true},
		{"ramdisk_size", 0x21c, uint64(h.RamdiskSize), true},
		{"bootsect_kludge", 0x220, uint64(h.BootsectKludge), true},
		{"heap_end_ptr", 0x224, uint64(h.HeapEndPtr), true},
		{"ext_loader_ver", 0x226, uint64(h.ExtLoaderVer), false},
		{"ext_loader_type", 0x227, uint64(h.ExtLoaderType), false},
		{"cmd_line_ptr", 0x228, uint64(h.CmdLinePtr), true},
		{"initrd_addr_max", 0x22c, uint64(h.InitrdAddrMax), true},
		{"kernel_alignment", 0x230, uint64(h.KernelAlignment), true},
		{"relocatable_kernel", 0x234, uint64(h.RelocatableKernel), false},
		{"min_alignment", 0x235, uint64(h.MinAlignment), false},
		{"xloadflags", 0x236, uint64(h.XLoadFlags), true},
		{"cmdline_size", 0x238, uint64(h.CmdlineSize), false},
		{"hardware_subarch", 0x23c, uint64(h.HardwareSubarch), false},
		{"hardware_subarch_data", 0x240, h.HardwareSubarchData, true},
		{"payload_offset", 0x248, uint64(h.PayloadOffset), true},
		{"payload_length", 0x24c, uint64(h.PayloadLength), true},
		{"setup_data", 0x250, h.SetupData, true},
		{"pref_address", 0x258, h.PrefAddress, true},
		{"init_size", 0x260, uint64(h.InitSize), true},
		{"handover_offset", 0x264, uint64(h.HandoverOffset), true},
		{"kernel_info_offset", 0x268, uint64(h.KernelInfoOffset), true},
	} {
		if f.Offset < end {
			s.Fields = append(s.Fields, f)
		}
	}
	return s
}

// KernelVersionString returns the version string a bzImage's setup code
// holds at kernel_version+0x200, or "" when there is none.
func KernelVersionString(bz *BzImage) string {
	off := int(bz.Header.KernelVersion) + 0x200
	if bz.Header.KernelVersion == 0 || off >= len(bz.Setup) {
		return ""
	}
	b := bz.Setup[off:min(len(bz.Setup), off+256)]
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return strings.ToValidUTF8(string(b), "?")
}

// listNotes returns every note entry in the file's PT_NOTE segments and
// SHT_NOTE sections, once each (a section inside a segment holds the same
// entries), decoded where the owner and type are known.
func listNotes(f *elf.File, raw []byte) ([]NoteInfo, error) {
	type area struct {
		off, size uint64
		label     string
	}
	var areas []area
	for i, p := range f.Progs {
		if p.Type == elf.PT_NOTE {
			areas = append(areas, area{p.Off, p.Filesz, fmt.Sprintf("PT_NOTE %d", i)})
		}
	}
	for _, s := range f.Sections {
		if s.Type == elf.SHT_NOTE {
			areas = append(areas, area{s.Offset, s.FileSize, s.Name})
		}
	}
	out := []NoteInfo{}
	at := map[uint64]int{} // file offset -> index in out
	for _, a := range areas {
		if !inFile(raw, a.off, a.size) {
			return nil, &FormatError{Context: "ELF", Msg: fmt.Sprintf("notes in %s: bytes %#x+%#x are past the end of the file", a.label, a.off, a.size)}
		}
		notes, err := ParseNotes(raw[a.off:a.off+a.size], f.ByteOrder)
		if err != nil {
			return nil, err
		}
		for _, n := range notes {
			off := a.off + uint64(n.Offset)
			if i, ok := at[off]; ok {
				out[i].In += ", " + a.label
				continue
			}
			typeName, decoded := DescribeNote(n, f.ByteOrder)
			at[off] = len(out)
			out = append(out, NoteInfo{Name: n.Name, Type: n.Type, TypeName: typeName, DescSize: len(n.Desc), Offset: off, In: a.label, Decoded: decoded})
		}
	}
	return out, nil
}

// Xen note types (xen/include/public/elfnote.h) and how to show them.
var xenNotes = map[uint32]struct {
	name string
	str  bool
}{
	0: {"INFO", true}, 1: {"ENTRY", false}, 2: {"HYPERCALL_PAGE", false}, 3: {"VIRT_BASE", false},
	4: {"PADDR_OFFSET", false}, 5: {"XEN_VERSION", true}, 6: {"GUEST_OS", true}, 7: {"GUEST_VERSION", true},
	8: {"LOADER", true}, 9: {"PAE_MODE", true}, 10: {"FEATURES", true}, 11: {"BSD_SYMTAB", true},
	12: {"HV_START_LOW", false}, 13: {"L1_MFN_VALID", false}, 14: {"SUSPEND_CANCEL", false},
	15: {"INIT_P2M", false}, 16: {"MOD_START_PFN", false}, 17: {"SUPPORTED_FEATURES", false},
	18: {"PHYS32_ENTRY", false}, 19: {"PHYS32_RELOC", false},
}

// DescribeNote names a note's type and decodes its descriptor, for the
// owners inspect knows: GNU, Linux, Xen (PVH) and kvmboot. Unknown notes
// give "" and "".
func DescribeNote(n RawNote, bo binary.ByteOrder) (typeName, decoded string) {
	d := n.Desc
	str := func() string { return strconv.Quote(strings.TrimRight(string(d), "\x00")) }
	num := func() string {
		switch len(d) {
		case 4:
			return fmt.Sprintf("%#x", bo.Uint32(d))
		case 8:
			return fmt.Sprintf("%#x", bo.Uint64(d))
		}
		return hex.EncodeToString(d)
	}
	switch n.Name {
	case "GNU":
		switch n.Type {
		case 1:
			if len(d) >= 16 {
				os := map[uint32]string{0: "Linux", 1: "Hurd", 2: "Solaris", 3: "FreeBSD"}[bo.Uint32(d)]
				return "NT_GNU_ABI_TAG", fmt.Sprintf("%s %d.%d.%d", os, bo.Uint32(d[4:]), bo.Uint32(d[8:]), bo.Uint32(d[12:]))
			}
			return "NT_GNU_ABI_TAG", ""
		case 2:
			return "NT_GNU_HWCAP", ""
		case 3:
			return "NT_GNU_BUILD_ID", hex.EncodeToString(d)
		case 4:
			return "NT_GNU_GOLD_VERSION", str()
		case 5:
			return "NT_GNU_PROPERTY_TYPE_0", fmt.Sprintf("%d bytes of properties", len(d))
		}
	case "Linux":
		switch n.Type {
		case 0:
			if len(d) == 4 {
				v := bo.Uint32(d)
				return "LINUX_VERSION_CODE", fmt.Sprintf("%d.%d.%d", v>>16, v>>8&0xff, v&0xff)
			}
		case 0x100:
			return "LINUX_ELFNOTE_BUILD_SALT", str()
		case 0x101:
			if len(d) == 4 {
				return "LINUX_ELFNOTE_LTO_INFO", map[bool]string{true: "built with LTO", false: "no LTO"}[bo.Uint32(d) != 0]
			}
			return "LINUX_ELFNOTE_LTO_INFO", ""
		}
	case "Xen":
		x, ok := xenNotes[n.Type]
		if !ok {
			break
		}
		name := "XEN_ELFNOTE_" + x.name
		switch {
		case n.Type == 18:
			return name, "PVH 32-bit entry " + num()
		case n.Type == 19:
			// Up to three u32: alignment, lowest start, highest last byte.
			var parts []string
			for i, label := range []string{"align", "min", "max"} {
				if len(d) >= 4*(i+1) {
					parts = append(parts, fmt.Sprintf("%s %#x", label, bo.Uint32(d[4*i:])))
				}
			}
			return name, "PVH relocatable: " + strings.Join(parts, ", ")
		case x.str:
			return name, str()
		}
		return name, num()
	case NoteName:
		t := NoteType(n.Type)
		return t.String(), describeKvmbootEntry(t, d)
	}
	return "", ""
}

// describeKvmbootEntry is one line about one of our descriptors.
func describeKvmbootEntry(t NoteType, d []byte) string {
	le := binary.LittleEndian
	switch t {
	case NoteTypeVersion:
		if len(d) >= 8 {
			return fmt.Sprintf("format %d.%d", le.Uint32(d), le.Uint32(d[4:]))
		}
	case NoteTypeLoad:
		if len(d) >= noteLoadSize {
			l := NoteLoad{le.Uint64(d), le.Uint64(d[8:]), le.Uint64(d[16:]), le.Uint64(d[24:]), le.Uint64(d[32:]), le.Uint64(d[40:])}
			return l.String()
		}
	case NoteTypeRelocs:
		if r, err := parseNoteRelocs(d); err == nil {
			return fmt.Sprintf("%d sites (%s, %s), %d skipped as absolute", r.Count, r.OriginName(), r.EncodingName(), r.Absolute)
		}
	case NoteTypeLinuxSetup:
		if len(d) >= 0x208-setupHeaderOffset {
			return fmt.Sprintf("Linux setup header, protocol %s", versionString(le.Uint16(d[0x206-setupHeaderOffset:])))
		}
	case NoteTypeRealMode:
		if p, err := ParseRealModePart(d); err == nil {
			return p.String()
		}
	case NoteTypeChecksum:
		if len(d) >= noteChecksumSize {
			return fmt.Sprintf("CRC-32C %#08x of %d loadable bytes", le.Uint32(d[16:]), le.Uint64(d[8:]))
		}
	case NoteTypeBuildInfo:
		return strconv.Quote(string(d))
	}
	return ""
}

// String is one line about a LOAD descriptor.
func (l NoteLoad) String() string {
	return fmt.Sprintf("linked at %#x, prefers %#x, %s-aligned, %s from at least %s, ending at or below %s", l.LinkBase, l.Preferred, memmap.FormatSize(l.Align), sizeText(l.MemSize), addrString(l.Min), maxEndString(l.MaxEnd))
}

// maxEndString is an end limit for people, 0 meaning 4 GiB.
func maxEndString(end uint64) string {
	if end == 0 {
		return "4G"
	}
	return addrString(end)
}

// placementInfo plans the opened kernel as Build does, and finds with an
// allocator in the state Build places the kernel from every address it
// could run at.
func placementInfo(k *Kernel, opts InspectOptions) *PlacementInfo {
	pi := &PlacementInfo{MemSize: opts.MemSize, BadRAM: []RangeJSON{}, Windows: []LoadWindow{}}
	for _, b := range opts.BadRAM {
		pi.BadRAM = append(pi.BadRAM, RangeJSON(b))
	}
	plan, err := buildOpened(k, Config{Path: opts.Path, MemSize: opts.MemSize, BadRAM: opts.BadRAM})
	if err != nil {
		pi.Error = err.Error()
	} else {
		pi.Protocol, pi.LoadAddress, pi.Why = plan.Kernel.Protocol, plan.LoadAddress, plan.Why
	}
	ki, err := imageNeeds(k)
	if err != nil {
		if pi.Error == "" {
			pi.Error = err.Error()
		}
		return pi
	}
	pi.Link, pi.Size, pi.Align, pi.MinStart, pi.MaxEnd, pi.Relocatable = ki.base, ki.size, ki.align, ki.lowest(), ki.max, ki.movable()

	m, _, err := BootMap(opts.MemSize, opts.BadRAM)
	if err != nil {
		return pi // no room for the ACPI tables leaves none for a kernel: pi.Error says why
	}
	base, err := firmwareAllocator(m)
	if err != nil {
		return pi // nothing boots in this memory: pi.Error says why
	}
	fresh := base.clone
	if !pi.Relocatable {
		// It needs its pieces (an ELF's segments) where they are linked.
		pi.Size = 0
		for _, pl := range ki.pieces(ki.base) {
			pi.Size += pl.Size
		}
		if ki.claim(fresh(), ki.base) == nil {
			at := ki.base
			pi.Lowest, pi.Highest = &at, &at
			pi.Windows = append(pi.Windows, LoadWindow{at, at, 1})
		}
		return pi
	}
	hi := ki.max
	if hi == 0 {
		hi = 1 << 32
	}
	for _, policy := range []Policy{PolicyLowest, PolicyHighest} {
		at, _, err := fresh().Find(Request{What: "kernel", Size: ki.size, Align: ki.align, Min: ki.lowest(), Max: hi, Policy: policy})
		if err == nil {
			if policy == PolicyLowest {
				pi.Lowest = &at
			} else {
				pi.Highest = &at
			}
		}
	}
	window := memmap.Range{Start: ki.lowest(), End: hi}
	for _, f := range fresh().free() {
		c := f.Intersect(window)
		first, ok := alignUp(c.Start, ki.align)
		if !ok || c.Empty() || first >= c.End || c.End-first < ki.size {
			continue
		}
		last := (c.End - ki.size) &^ (ki.align - 1)
		pi.Windows = append(pi.Windows, LoadWindow{first, last, (last-first)/ki.align + 1})
	}
	return pi
}

// imageNeeds is the kernel image Build would place with the image's own
// protocol, without its bytes relocated: base, size, alignment, end limit,
// whether it can move.
func imageNeeds(k *Kernel) (*kernelImage, error) {
	proto, err := k.protocol("")
	switch {
	case err != nil:
		return nil, err
	case proto == ProtocolLinux16:
		return linux16Image(k), nil
	case proto == ProtocolLinux32:
		return linux32Image(k), nil
	}
	return multibootImage(k)
}

// Write prints the inspection for people.
func (in *Inspection) Write(w io.Writer) error {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	row := func(label, format string, args ...any) {
		fmt.Fprintf(tw, "%s\t%s\n", label, fmt.Sprintf(format, args...))
	}
	if in.Path != "" {
		row("file", "%s (%d bytes)", in.Path, in.FileSize)
	}
	row("format", "%s", in.Format)
	row("compression", "%s", in.Compression)
	if in.Payload != "" {
		row("payload", "%s", in.Payload)
	} else {
		row("ELF", "%d bytes", in.ELFSize)
	}
	if len(in.Segments) > 0 {
		row("entry", "%#x", in.Entry)
		row("linked at", "%#x-%#x (%s in memory)", in.Base, in.End, sizeText(in.End-in.Base))
	}
	tw.Flush()
	if len(in.Segments) > 0 {
		b.WriteString("\nsegments:\n")
		tw = tabwriter.NewWriter(&b, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintf(tw, "  type\toffset\tpaddr\tvaddr\tfilesz\tmemsz\talign\tflags\t\n")
		for _, s := range in.Segments {
			fmt.Fprintf(tw, "  %s\t%#x\t%#x\t%#x\t%#x\t%#x\t%#x\t%s\t\n", s.Type, s.Offset, s.Paddr, s.Vaddr, s.FileSz, s.MemSz, s.Align, s.Flags)
		}
		tw.Flush()
	}
	if len(in.Notes) > 0 {
		b.WriteString("\nnotes:\n")
		tw = tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "  owner\ttype\tsize\tin\tdecoded\n")
		for _, n := range in.Notes {
			t := fmt.Sprintf("%#x", n.Type)
			if n.TypeName != "" {
				t += " " + n.TypeName
			}
			fmt.Fprintf(tw, "  %s\t%s\t%d\t%s\t%s\n", n.Name, t, n.DescSize, n.In, n.Decoded)
		}
		tw.Flush()
	}
	if s := in.Kvmboot; s != nil {
		fmt.Fprintf(&b, "\nkvmboot note: format %s, checksum CRC-32C %#08x over %d loadable bytes: ", s.Version, s.Checksum.LoadableCRC, s.Checksum.LoadableBytes)
		if s.ChecksumOK {
			b.WriteString("verified\n")
		} else {
			b.WriteString("NOT verified\n")
		}
		if s.Load != nil {
			fmt.Fprintf(&b, "  load         %s\n", s.Load)
		}
		if r := s.Relocs; r != nil {
			fmt.Fprintf(&b, "  relocations  %d sites from %s (%s), %d skipped as absolute\n", r.Sites, r.Origin, r.Encoding, r.Absolute)
		}
		if s.LinuxSetupBytes > 0 {
			fmt.Fprintf(&b, "  linux setup  %d header bytes (boots with the 32-bit protocol)\n", s.LinuxSetupBytes)
		}
		if p, err := ParseRealModePart(s.Raw.RealMode); s.RealModeBytes > 0 && err == nil {
			fmt.Fprintf(&b, "  real mode    %s\n", p)
		}
		if s.BuildInfo != "" {
			fmt.Fprintf(&b, "  build info   %s\n", strings.ReplaceAll(strings.TrimSpace(s.BuildInfo), "\n", "; "))
		}
		for _, o := range s.Optional {
			fmt.Fprintf(&b, "  optional     type %#x, %d bytes (unknown to this kvmboot)\n", o.Type, len(o.Desc))
		}
	}
	b.WriteString("\n")
	if r := in.Relocations; r != nil {
		fmt.Fprintf(&b, "relocations  %s (%s): %d sites to adjust, %d skipped (absolute symbols)\n", r.Source, r.From, r.Sites, r.Absolute)
		for _, t := range slices.Sorted(maps.Keys(r.ByType)) {
			fmt.Fprintf(&b, "             %-14s %d\n", t, r.ByType[t])
		}
	} else if in.Payload == "" {
		b.WriteString("relocations  none: runs only at its link address\n")
	}
	if h := in.Multiboot; h != nil {
		fmt.Fprintf(&b, "multiboot    header at file offset %#x, flags %#x (%s), checksum %#x\n", h.Offset, h.Flags, strings.Join(h.FlagNames, ", "), h.Checksum)
		if h.LoadAddr != nil {
			fmt.Fprintf(&b, "             header_addr %#x load_addr %#x load_end_addr %#x bss_end_addr %#x entry_addr %#x\n",
				*h.HeaderAddr, *h.LoadAddr, *h.LoadEndAddr, *h.BSSEndAddr, *h.EntryAddr)
		}
	} else {
		b.WriteString("multiboot    no header\n")
	}
	if s := in.Setup; s != nil {
		from := "bzImage"
		if s.FromNote {
			from = "kvmboot note"
		}
		fmt.Fprintf(&b, "linux setup  protocol %s, %d header bytes (from the %s):\n", s.Version, s.Bytes, from)
		if s.KernelString != "" {
			fmt.Fprintf(&b, "  kernel       %s\n", s.KernelString)
		}
		tw = tabwriter.NewWriter(&b, 0, 4, 1, ' ', 0)
		for i, f := range s.Fields {
			v := strconv.FormatUint(f.Value, 10)
			if f.Hex {
				v = fmt.Sprintf("%#x", f.Value)
			}
			fmt.Fprintf(tw, "  %#x %s\t%s\t", f.Offset, f.Name, v)
			if i%3 == 2 || i == len(s.Fields)-1 {
				fmt.Fprintln(tw)
			}
		}
		tw.Flush()
	}
	if p := in.Placement; p != nil {
		p.write(&b)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func (p *PlacementInfo) write(b *strings.Builder) {
	bad := "no bad RAM"
	if len(p.BadRAM) > 0 {
		var rs []string
		for _, r := range p.BadRAM {
			rs = append(rs, memmap.Range(r).String())
		}
		bad = "bad " + strings.Join(rs, ", ")
	}
	fmt.Fprintf(b, "placement    in %s of RAM, %s:\n", memmap.FormatSize(p.MemSize), bad)
	if p.Error != "" {
		fmt.Fprintf(b, "  plan         cannot boot: %s\n", p.Error)
	} else {
		fmt.Fprintf(b, "  plan         %s, load address %#x: %s\n", p.Protocol, p.LoadAddress, p.Why)
	}
	if p.Size == 0 {
		return
	}
	if p.Relocatable {
		fmt.Fprintf(b, "  needs        %s from a %s-aligned address at or above %s, ending at or below %s (relocatable; linked at %#x)\n", sizeText(p.Size), memmap.FormatSize(p.Align), addrString(p.MinStart), maxEndString(p.MaxEnd), p.Link)
	} else {
		fmt.Fprintf(b, "  needs        %s at its link address %#x (not relocatable)\n", sizeText(p.Size), p.Link)
	}
	switch {
	case p.Lowest == nil:
		b.WriteString("  could run    nowhere in this memory\n")
	default:
		plural := "s"
		if len(p.Windows) == 1 {
			plural = ""
		}
		fmt.Fprintf(b, "  could run    lowest %#x, highest %#x; %d window%s:\n", *p.Lowest, *p.Highest, len(p.Windows), plural)
		for _, w := range p.Windows {
			if w.Count == 1 {
				fmt.Fprintf(b, "               %#x\n", w.First)
			} else {
				fmt.Fprintf(b, "               %#x-%#x (%d places, every %s)\n", w.First, w.Last, w.Count, memmap.FormatSize(p.Align))
			}
		}
	}
}

// JSON returns the inspection as indented JSON.
func (in *Inspection) JSON() ([]byte, error) {
	return json.MarshalIndent(in, "", "  ")
}
