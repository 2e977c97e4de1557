package main

import (
	"encoding/json"
	"os"

	"github.com/spf13/cobra"

	"kvmboot/loader"
)

func inspectCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "inspect [flags] KERNEL",
		Short:   "Show a kernel's format, compression, segments, relocations and boot headers",
		Example: "  kvmboot inspect vmlinuz\n  kvmboot inspect --json kernel.elf.xz",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			raw, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			in, err := loader.Inspect(raw, 0)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(in)
			}
			return in.Write(os.Stdout)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
