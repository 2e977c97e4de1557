package loader

import (
	"bytes"
	"debug/elf"
	"fmt"

	"kvmboot/loader/memmap"
)

// Reference plans a boot that another loader performs, QEMU's -kernel: it
// says what the kernel is and what goes with it (memory map, command line,
// module strings, the initrd's path) and places nothing. It reads only
// what picks QEMU's loader, Linux's or Multiboot's, and refuses only what
// QEMU's -kernel cannot load: the image goes to QEMU as the file it is,
// never parsed further here (a payload kvmboot could not unpack, a header
// its own loader would refuse).
func Reference(cfg Config) (*Plan, error) {
	m := memmap.NewWithBadRAM(cfg.MemSize, FirmwareHigh, cfg.BadRAM)
	MarkBIOSAreas(m)
	plan := &Plan{Kernel: KernelInfo{Path: cfg.Path}, Cmdline: cfg.Cmdline, MemSize: cfg.MemSize, CPUs: max(cfg.CPUs, 1), Map: m, Why: "QEMU's -kernel places it"}
	refuse := func(format string, args ...any) (*Plan, error) {
		return nil, &FormatError{Context: "--vmm=qemu-kernel", Msg: fmt.Sprintf(format, args...)}
	}
	file := cfg.Kernel
	switch c := Sniff(file); {
	case len(file) == 0:
		return nil, &FormatError{Context: "kernel", Msg: "empty file", Class: ErrEmptyFile}
	case IsBzImage(file):
		// QEMU runs the image's own setup code, as linux16 does.
		if cfg.Protocol != "" && cfg.Protocol != ProtocolLinux16 {
			return refuse("QEMU boots a bzImage through its own setup code (linux16), not --protocol %s", cfg.Protocol)
		}
		plan.Kernel.Format, plan.Kernel.Protocol = "bzimage", ProtocolLinux16
		if cfg.Initrd != nil {
			plan.Initrd = cfg.Initrd.Path
		}
		return plan, nil
	case c != CompressionNone:
		return refuse("QEMU's -kernel loads a bzImage or an uncompressed Multiboot kernel, not a %s-compressed one (decompress it first)", c)
	}
	h, err := FindMultiboot(file)
	switch {
	case err != nil:
		return nil, err
	case h == nil:
		return nil, &FormatError{Context: "--vmm=qemu-kernel", Msg: "no Multiboot header in the first 8 KiB and not a Linux bzImage: QEMU's -kernel cannot enter it", Class: ErrNoBootHeader}
	case cfg.Protocol != "" && cfg.Protocol != ProtocolMultiboot:
		return refuse("--protocol %s needs a Linux bzImage; this is a Multiboot kernel", cfg.Protocol)
	}
	plan.Kernel.Format, plan.Kernel.Protocol = "multiboot-aout", ProtocolMultiboot
	if bytes.HasPrefix(file, []byte(elf.ELFMAG)) {
		plan.Kernel.Format = "elf32"
	}
	for _, mod := range multibootModules(cfg) {
		plan.ModuleArgs = append(plan.ModuleArgs, mod.String())
	}
	return plan, nil
}
