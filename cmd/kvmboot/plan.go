package main

import (
	"os"

	"github.com/spf13/cobra"

	"kvmboot/boot"
	"kvmboot/loader"
	"kvmboot/loader/memmap"
	"kvmboot/loader/svg"
)

func planCommand() *cobra.Command {
	var (
		pf       planFlags
		asJSON   bool
		svgPath  string
		svgFound []string
	)
	cmd := &cobra.Command{
		Use:   "plan [flags] [KERNEL]",
		Short: "Print the memory map and where every piece would go, without KVM",
		Long: `Plan the boot of KERNEL (default: the built-in test kernel) as run would, and
print it instead of booting: the guest's memory map (RAM, reserved, bad), every
piece's address range (kernel, initrd, modules, command line, boot
information, stub), the kernel's link and load addresses with the reason for
the choice, the relocations applied, and the entry state. Nothing runs and no
/dev/kvm is needed.

--svg FILE also draws the plan as a picture of guest memory (see
docs/plan-example.svg).`,
		Example: `  kvmboot plan --bad-ram 16M-32M kernel.elf
  kvmboot plan --bad-ram 'badram=0x01000000,0xff000000' --json kernel.elf.gz
  kvmboot plan --bad-ram 16M-20M --bad-ram 'memmap=8M$36M' --initrd initrd.img --svg plan.svg vmlinuz`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			kernel := ""
			if len(args) == 1 {
				kernel = args[0]
			}
			cfg, err := pf.config(kernel)
			if err != nil {
				return err
			}
			found, err := parseBadRAMFlag("--svg-found", svgFound, cfg.MemSize)
			if err != nil {
				return err
			}
			plan, err := boot.Plan(cfg)
			if err != nil {
				return err
			}
			if svgPath != "" {
				opts := svg.Options{Found: found}
				if len(found) > 0 {
					opts.Caption = "memtest faults drawn from --svg-found: given by hand, not found by a memory test in this run"
				}
				if err := writeFileAtomic(svgPath, svg.Render(plan, opts)); err != nil {
					return err
				}
			}
			if asJSON {
				return printJSON(boot.PlanResult(plan))
			}
			return plan.Write(os.Stdout)
		},
	}
	pf.bind(cmd.Flags())
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the plan as JSON (the result object's plan fields)")
	cmd.Flags().StringVar(&svgPath, "svg", "", "also draw the plan as an SVG picture of guest memory into `FILE`")
	cmd.Flags().StringArrayVar(&svgFound, "svg-found", nil, "draw `RANGE` in the picture as a fault a memory test found (picture only; same syntax as --bad-ram; repeatable)")
	completeValues(cmd, "placement", "preferred", "lowest", "highest")
	completeValues(cmd, "protocol", "auto", "multiboot", "linux32", "linux16")
	return cmd
}

// runSVG draws the plan a run booted into path, with found (what
// --memtest found, which the plan avoided as bad RAM) marked as memtest
// faults. For `kvmboot run --svg FILE`.
func runSVG(path string, plan *loader.Plan, found []memmap.Range) error {
	opts := svg.Options{Found: found}
	if len(found) > 0 {
		opts.Caption = "memtest faults: found by the in-guest memory test of this run, then avoided as bad RAM"
	}
	return writeFileAtomic(path, svg.Render(plan, opts))
}
