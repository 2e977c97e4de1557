package main

import (
	"encoding/json"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"kvmboot/machine/kvm"
)

func probeCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "probe",
		Short:   "Show what this host's KVM can do for kvmboot",
		Example: "  kvmboot probe\n  kvmboot probe --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			p := kvm.Probe(cmd.Context())
			if asJSON {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(p)
			}
			yes := func(b bool) string {
				if b {
					return "yes"
				}
				return "no"
			}
			w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintf(w, "device\t%s\t%s\n", p.Device, yes(p.Usable))
			fmt.Fprintf(w, "module\t%s\t\n", p.Module)
			fmt.Fprintf(w, "real mode\t%s\t\n", yes(p.RealMode))
			fmt.Fprintf(w, "protected mode\t%s\t\n", yes(p.ProtectedMode))
			fmt.Fprintf(w, "32-bit paging\t%s\t%s\n", yes(p.Paging32), p.PagingDetail)
			fmt.Fprintf(w, "guest instructions/s\t%.3g\t\n", p.InstructionsPerSecond)
			fmt.Fprintf(w, "VM setup\t%.2f ms\t\n", p.SetupMillis)
			fmt.Fprintf(w, "i386 Linux on this KVM\t%s\t\n", yes(p.CanBootLinux()))
			if p.Error != "" {
				fmt.Fprintf(w, "error\t%s\t\n", p.Error)
			}
			return w.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
