package main

import (
	"encoding/json"
	"os"

	"github.com/spf13/cobra"

	"kvmboot/boot"
)

func planCommand() *cobra.Command {
	var (
		pf     planFlags
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "plan [flags] KERNEL",
		Short: "Print the memory map and where every piece would go, without KVM",
		Example: `  kvmboot plan --bad-ram 16M-32M kernel.elf
  kvmboot plan --bad-ram 'badram=0x01000000,0xff000000' --json kernel.elf.gz`,
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
			plan, err := boot.Plan(cfg)
			if err != nil {
				return err
			}
			if asJSON {
				res := boot.PlanResult(plan)
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(res)
			}
			return plan.Write(os.Stdout)
		},
	}
	pf.bind(cmd.Flags())
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the plan as JSON (the result object's plan fields)")
	return cmd
}
