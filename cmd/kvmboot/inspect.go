package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"kvmboot/boot"
	"kvmboot/loader"
	"kvmboot/loader/kcache"
	"kvmboot/machine"
)

func inspectCommand() *cobra.Command {
	var (
		asJSON  bool
		mem     sizeFlag
		badRAM  []string
		noCache bool
	)
	cmd := &cobra.Command{
		Use:   "inspect [flags] KERNEL",
		Short: "Show a kernel's format, segments, notes, relocations, boot headers and where it could run",
		Long: `Describe KERNEL without booting it:

  format and compression (of the file, or of a bzImage's payload);
  ELF program headers; every ELF note (PT_NOTE and SHT_NOTE), decoded for
  GNU, Linux, Xen/PVH (PHYS32_ENTRY, PHYS32_RELOC) and kvmboot's own note,
  whose checksum is verified;
  relocations by type, and how many are skipped as absolute;
  the Multiboot header's fields and the Linux setup header's fields;
  where the kernel would go in a guest of --mem bytes with --bad-ram declared
  bad (the plan's load address and why), what it needs (size, alignment,
  limit), the lowest and highest addresses it fits at and every window of
  addresses in between.

--json prints the same as one JSON object (addresses and sizes as integers).`,
		Example: `  kvmboot inspect vmlinuz
  kvmboot inspect --bad-ram 16M-48M --mem 512M vmlinuz
  kvmboot inspect --json kernel.elf.xz | jq .relocations`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := machine.CheckMemSize(mem.v); err != nil {
				return fmt.Errorf("--mem: %w", err)
			}
			raw, err := boot.ReadInput(args[0])
			if err != nil {
				return err
			}
			opts := loader.InspectOptions{Path: args[0], MemSize: mem.v}
			if !noCache {
				opts.Cache = kcache.Default()
				defer opts.Cache.Wait()
			}
			if opts.BadRAM, err = parseBadRAMFlag("--bad-ram", badRAM, mem.v); err != nil {
				return err
			}
			in, err := loader.Inspect(raw, opts)
			if err != nil {
				return err
			}
			if asJSON {
				b, err := in.JSON()
				if err != nil {
					return err
				}
				_, err = os.Stdout.Write(append(b, '\n'))
				return err
			}
			return in.Write(os.Stdout)
		},
	}
	fs := cmd.Flags()
	mem = sizeFlag{v: boot.DefaultMemSize}
	fs.BoolVar(&asJSON, "json", false, "print one JSON object instead of the tables")
	fs.Var(&mem, "mem", "guest RAM `SIZE` for the placement report (K/M/G suffixes or 0x hex)")
	fs.StringArrayVar(&badRAM, "bad-ram", nil, "`SPEC` of bad RAM for the placement report: START-END, START+SIZE, memmap=SIZE$START[,...], badram=ADDR,MASK[,...] (repeatable)")
	fs.BoolVar(&noCache, "no-cache", false, "decompress the kernel even if an earlier run cached it")
	return cmd
}
