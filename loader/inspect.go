package loader

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// Inspection is what `kvmboot inspect` reports about a kernel file.
type Inspection struct {
	Format      string           `json:"format"`
	Compression Compression      `json:"compression"`
	ELFSize     int              `json:"elf_size"`
	Entry       uint64           `json:"entry"`
	Base        uint64           `json:"link_base"`
	End         uint64           `json:"link_end"`
	Segments    []SegmentInfo    `json:"segments"`
	Relocations *RelocInfo       `json:"relocations,omitempty"`
	Multiboot   *MultibootHeader `json:"multiboot,omitempty"`
	Setup       *SetupHeader     `json:"setup_header,omitempty"`
}

// SegmentInfo is one PT_LOAD as inspect shows it.
type SegmentInfo struct {
	Paddr  uint64 `json:"paddr"`
	Vaddr  uint64 `json:"vaddr"`
	FileSz uint64 `json:"filesz"`
	MemSz  uint64 `json:"memsz"`
	Align  uint64 `json:"align"`
	Flags  string `json:"flags"`
}

// RelocInfo counts relocations by type.
type RelocInfo struct {
	Source   string         `json:"source"`
	Sites    int            `json:"sites"`
	ByType   map[string]int `json:"by_type"`
	Absolute int            `json:"skipped_absolute"`
}

// Inspect opens a kernel file and describes it.
func Inspect(file []byte, limit int64) (*Inspection, error) {
	k, err := OpenKernel(file, limit, nil)
	if err != nil {
		return nil, err
	}
	in := &Inspection{Format: k.Format, Compression: k.Compression, ELFSize: len(k.Raw), Multiboot: k.Multiboot}
	if k.BzImage != nil {
		h := k.BzImage.Header
		in.Setup = &h
	}
	if img := k.ELF; img != nil {
		in.Entry, in.Base, in.End = img.Entry, img.Base, img.End
		for _, s := range img.Segments {
			in.Segments = append(in.Segments, SegmentInfo{s.Paddr, s.Vaddr, s.FileSz, s.MemSz, s.Align, s.Flags.String()})
		}
		if r := img.Relocs; r != nil {
			in.Relocations = &RelocInfo{Source: r.Source, Sites: len(r.Sites), ByType: r.ByType, Absolute: r.Absolute}
		}
	}
	return in, nil
}

// Write prints the inspection for people.
func (in *Inspection) Write(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "format       %s\ncompression  %s\nELF          %d bytes\n", in.Format, in.Compression, in.ELFSize)
	if len(in.Segments) > 0 {
		fmt.Fprintf(&b, "entry        %#x\nlinked at    %#x-%#x (%s in memory)\n", in.Entry, in.Base, in.End, FormatSize(in.End-in.Base))
		b.WriteString("segments     paddr      vaddr      filesz     memsz      align    flags\n")
		for _, s := range in.Segments {
			fmt.Fprintf(&b, "             %#08x  %#08x  %#08x  %#08x  %#6x  %s\n", s.Paddr, s.Vaddr, s.FileSz, s.MemSz, s.Align, s.Flags)
		}
	}
	if r := in.Relocations; r != nil {
		fmt.Fprintf(&b, "relocations  %s: %d sites to adjust, %d skipped (absolute symbols)\n", r.Source, r.Sites, r.Absolute)
		types := make([]string, 0, len(r.ByType))
		for t := range r.ByType {
			types = append(types, t)
		}
		sort.Strings(types)
		for _, t := range types {
			fmt.Fprintf(&b, "             %-14s %d\n", t, r.ByType[t])
		}
	} else {
		b.WriteString("relocations  none: runs only at its link address\n")
	}
	if h := in.Multiboot; h != nil {
		fmt.Fprintf(&b, "multiboot    header at file offset %#x, flags %#x\n", h.Offset, h.Flags)
		if h.Flags&MBAddressFields != 0 {
			fmt.Fprintf(&b, "             header_addr %#x load_addr %#x load_end_addr %#x bss_end_addr %#x entry_addr %#x\n",
				h.HeaderAddr, h.LoadAddr, h.LoadEndAddr, h.BSSEndAddr, h.EntryAddr)
		}
	}
	if h := in.Setup; h != nil {
		fmt.Fprintf(&b, "linux setup  protocol %d.%02d, setup_sects %d, kernel_alignment %#x, relocatable %d, pref_address %#x, init_size %#x, initrd_addr_max %#x, cmdline_size %d\n",
			h.Version>>8, h.Version&0xff, h.SetupSects, h.KernelAlignment, h.RelocatableKernel, h.PrefAddress, h.InitSize, h.InitrdAddrMax, h.CmdlineSize)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
