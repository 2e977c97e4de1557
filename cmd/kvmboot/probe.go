package main

import (
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"kvmboot/boot"
)

func probeCommand() *cobra.Command {
	var asJSON, refresh bool
	cmd := &cobra.Command{
		Use:   "probe",
		Short: "Show what this host's KVM and QEMU can do, and which backend auto picks",
		Long: `Boot kvmboot's probe guest on our KVM machine and under QEMU (TCG and KVM)
and show what works: real and protected mode, 32-bit paging, speed. The result
is cached for this boot of the host (in the user cache directory) and is what
--vmm=auto and --accel=auto decide from; --refresh probes again.`,
		Example: "  kvmboot probe\n  kvmboot probe --json\n  kvmboot probe --refresh",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := boot.ProbeHost(cmd.Context(), refresh)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(h)
			}
			writeProbe(h)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().BoolVar(&refresh, "refresh", false, "probe again instead of using this host boot's cached result")
	return cmd
}

func yes(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// writeProbe prints both backends' findings side by side, then the details
// of what failed and the auto choice.
func writeProbe(h *boot.HostProbe) {
	k, q := h.KVM, h.QEMU
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	if q.Found {
		fmt.Printf("QEMU %s (%s)\n\n", q.Version, q.Binary)
	}
	fmt.Fprintf(w, "\tour KVM machine\tQEMU, TCG\tQEMU, KVM\n")
	fmt.Fprintf(w, "available\t%s (%s)\t%s\t%s\n", yes(k.Usable), k.Device, yes(q.Found), yes(q.Found && k.Usable))
	fmt.Fprintf(w, "KVM module\t%s\t-\t%s\n", k.Module, k.Module)
	fmt.Fprintf(w, "runs the entry stub\t%s\t%s\t%s\n", yes(k.ProtectedMode), yes(q.TCG), yes(q.KVM))
	fmt.Fprintf(w, "32-bit paging\t%s\t%s\t%s\n", yes(k.Paging32), yes(q.TCG), yes(q.KVMPaging))
	fmt.Fprintf(w, "guest instructions/s\t%.3g\t\t\n", k.InstructionsPerSecond)
	millis := func(v float64) string {
		if v == 0 {
			return "-"
		}
		return fmt.Sprintf("%.0f ms", v)
	}
	fmt.Fprintf(w, "probe guest run\t%.1f ms setup\t%s\t%s\n", k.SetupMillis, millis(q.TCGMillis), millis(q.KVMMillis))
	fmt.Fprintf(w, "i386 Linux can boot\t%s\t%s\t%s\n", yes(k.CanBootLinux()), yes(q.Found && q.TCG), yes(q.CanBootLinuxKVM()))
	w.Flush()

	notes := []struct{ what, detail string }{
		{"our KVM machine", k.Error},
		{"our KVM machine, paging", k.PagingDetail},
		{"QEMU", q.Error},
		{"QEMU TCG", q.TCGDetail},
		{"QEMU KVM", q.KVMDetail},
		{"QEMU KVM, paging", q.KVMPagingDetail},
	}
	for _, n := range notes {
		if n.detail != "" {
			fmt.Printf("%s: %s\n", n.what, n.detail)
		}
	}
	fmt.Println()
	if h.AutoError != "" {
		fmt.Printf("auto: nothing can boot here: %s\n", h.AutoError)
	} else {
		fmt.Printf("auto picks %s: %s\n", h.Auto, h.Auto.Why)
	}
	if h.Cached {
		fmt.Printf("probed %s, cached in %s (--refresh to probe again)\n", h.Probed.Local().Format("2006-01-02 15:04:05"), h.CacheFile)
	} else if h.CacheFile != "" {
		fmt.Printf("probed now, cached for this host boot in %s\n", h.CacheFile)
	}
}
