package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"kvmboot/boot"
	"kvmboot/loader"
	"kvmboot/loader/kcache"
)

func mkelfCommand() *cobra.Command {
	var (
		output     string
		compress   string
		relocTable bool
		align      sizeFlag
		maxEnd     sizeFlag
		noCache    bool
		rm         realModeFlags
	)
	cmd := &cobra.Command{
		Use:   "mkelf [flags] INPUT -o OUTPUT",
		Short: "Make a compressed ia32 ELF kernel with kvmboot's note from a bzImage or an ELF",
		Long: `Write INPUT as a compressed ia32 ELF kernel that kvmboot, and any ELF loader
that decompresses, can load.

INPUT is a Linux bzImage (kvmboot takes the vmlinux out of its payload and
keeps Linux's relocation table and setup header), or an ELF kernel (plain or
compressed) linked with ld --emit-relocs, or an earlier mkelf output. The
output is the same ELF, loadable bytes unchanged, with a PT_NOTE named
"kvmboot" added (docs/note-format.md): the relocation sites (or, for an
--emit-relocs input, a record that its .rel sections are kept), the
preferred address, alignment and memory size, the Linux setup header, and a
CRC-32C of the loadable bytes that kvmboot checks before it boots the image.
A Linux kernel made this way still boots with the Linux 32-bit boot protocol,
at the same address and with the same zero page as its bzImage.

xz output has no BCJ filter (the Go encoder has none), so it is about 20%
larger than the xz payload inside a bzImage.`,
		Example: `  kvmboot mkelf /boot/vmlinuz-6.1.0-50-686 -o vmlinux.gz
  kvmboot mkelf --compress xz bzImage -o vmlinux.xz
  kvmboot mkelf --compress zstd --reloc-table --align 2M kernel.elf -o kernel.elf.zst
  kvmboot inspect vmlinux.gz            # the note, read back`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output == "" {
				return fmt.Errorf("mkelf: -o OUTPUT is required")
			}
			c := loader.Compression(compress)
			switch c {
			case loader.Gzip, loader.XZ, loader.Zstd, loader.CompressionNone:
			default:
				return fmt.Errorf("--compress=%s: want gzip, xz, zstd or none", compress)
			}
			in, err := boot.ReadInput(args[0])
			if err != nil {
				return err
			}
			opts := loader.MkELFOptions{Compression: c, RelocTable: relocTable, Align: align.v, MaxEnd: maxEnd.v}
			if opts.RealMode, err = rm.part(in); err != nil {
				return err
			}
			if !noCache {
				opts.Cache = kcache.Default()
				defer opts.Cache.Wait()
			}
			start := time.Now()
			res, err := loader.MkELF(in, opts)
			if err != nil {
				return err
			}
			if err := writeFileAtomic(output, res.Output); err != nil {
				return err
			}
			n := res.Note
			fmt.Printf("%s: %s ELF32, %s (%s uncompressed) from %s %s in %.2fs\n", output, c, human(len(res.Output)), human(len(res.ELF)), res.Source.Format, args[0], time.Since(start).Seconds())
			if r := n.Relocs; r != nil {
				fmt.Printf("  relocations  %d sites (%s, %s), %d skipped as absolute\n", r.Count, r.OriginName(), r.EncodingName(), r.Absolute)
			} else {
				fmt.Printf("  relocations  none: the image runs only at %#x\n", n.Load.LinkBase)
			}
			fmt.Printf("  load         %s\n", n.Load)
			if n.LinuxSetup != nil {
				fmt.Printf("  linux setup  %d header bytes: boots with the Linux 32-bit protocol\n", len(n.LinuxSetup))
			}
			if n.RealMode != nil {
				if p, err := loader.ParseRealModePart(n.RealMode); err == nil {
					fmt.Printf("  real mode    %s\n", p)
				}
			}
			fmt.Printf("  checksum     CRC-32C %#08x over %d loadable bytes\n", n.Checksum.LoadableCRC, n.Checksum.LoadableBytes)
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVarP(&output, "output", "o", "", "write the image to `FILE` (required)")
	fs.StringVar(&compress, "compress", "gzip", "`COMPRESSION` of the output: gzip, xz, zstd or none")
	fs.BoolVar(&relocTable, "reloc-table", false, "for an --emit-relocs input, also write the relocation sites into the note (the .rel sections stay)")
	fs.Var(&align, "align", "load alignment `SIZE` to record (a power of two, at least the image's own; default: the image's)")
	fs.Var(&maxEnd, "max", "`ADDRESS` the image must end at or below (default: the image's own limit, 512M for Linux)")
	fs.BoolVar(&noCache, "no-cache", false, "decompress the input even if an earlier run cached it")
	rm.bind(fs)
	completeValues(cmd, "compress", "gzip", "xz", "zstd", "none")
	return cmd
}

// realModeFlags describe a real-mode part for mkelf to carry.
type realModeFlags struct {
	file    string
	entry   sizeFlag
	size    sizeFlag
	results rangeFlag
	addr    sizeFlag
	locate  string
}

func (f *realModeFlags) bind(fs *pflag.FlagSet) {
	fs.StringVar(&f.file, "realmode", "", "carry `FILE` as the kernel's real-mode part: raw 16-bit code kvmboot far-calls, with the BIOS up, before the kernel")
	fs.Var(&f.entry, "realmode-entry", "`OFFSET` of the real-mode part's entry (default 0)")
	fs.Var(&f.size, "realmode-size", "memory `SIZE` the real-mode part needs, zero-filled past its code (default: its code size, or the end of --realmode-results)")
	fs.Var(&f.results, "realmode-results", "where in the part its results are, `START+SIZE` (offsets)")
	fs.Var(&f.addr, "realmode-addr", "run the part at this fixed `ADDRESS` below 640K (default: anywhere kvmboot finds good RAM)")
	fs.StringVar(&f.locate, "realmode-locate", "", "`SYMBOL` or address of a u32 in the kernel that kvmboot sets to the part's address")
}

// part builds the REALMODE descriptor from the flags, or nil without --realmode.
func (f *realModeFlags) part(kernel []byte) (*loader.RealModePart, error) {
	if f.file == "" {
		return nil, nil
	}
	code, err := os.ReadFile(f.file)
	if err != nil {
		return nil, err
	}
	p := &loader.RealModePart{Code: code, Entry: uint32(f.entry.v), MemSize: uint32(max(f.size.v, uint64(len(code))))}
	if r := f.results.r; r != nil {
		p.ResultsOff, p.ResultsSize = uint32(r.Start), uint32(r.Size())
		p.MemSize = max(p.MemSize, uint32(r.End))
	}
	if f.addr.set {
		p.Flags, p.Addr = loader.RealModeFixed, uint32(f.addr.v)
	}
	if f.locate != "" {
		if p.Locate, err = loader.SymbolAddress(kernel, f.locate); err != nil {
			return nil, fmt.Errorf("--realmode-locate: %w", err)
		}
	}
	return p, nil
}

// writeFileAtomic writes data to a temporary file beside path and renames
// it into place, so that a failed run never leaves half an image.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// human is a size for people: "7.2M".
func human(n int) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1fM", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fK", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}
