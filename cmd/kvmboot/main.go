// Command kvmboot boots i386 kernels under KVM the way a bootloader would.
// See README.md; all logic lives in the kvmboot/boot, loader and machine
// packages, this file only maps flags onto them.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"kvmboot/internal/oneline"
	"kvmboot/machine"
)

// exitError carries a process exit status out of a command.
type exitError struct{ status int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.status) }

// printJSON writes v to stdout as indented JSON, the shape of every
// --json output.
func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func main() {
	os.Exit(run(os.Args[1:]))
}

// run executes the command line and returns the exit status. Bad input is
// one line on stderr and status 126, never a Go panic.
func run(args []string) (status int) {
	defer func() {
		if p := recover(); p != nil {
			printError("internal error: ", fmt.Errorf("%v", p))
			status = machine.StatusError
		}
	}()
	root := &cobra.Command{
		Use:           "kvmboot",
		Short:         "Boot i386 kernels under KVM the way a bootloader would",
		Long:          "kvmboot reads a (compressed) ia32 ELF kernel, places it in guest RAM avoiding bad memory,\nrelocates it, and boots it through real-mode stubs on KVM.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(runCommand(), planCommand(), inspectCommand(), probeCommand(), smokeCommand(), mkelfCommand(), completionCommand())
	root.SetArgs(args)
	err := root.Execute()
	var ee exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.status
	default:
		printError("", err)
		return machine.StatusError
	}
}

// printError writes an error as the command's one line on stderr: file
// names and image bytes it quotes have their control characters escaped.
func printError(prefix string, err error) {
	fmt.Fprintf(os.Stderr, "kvmboot: %s%s\n", prefix, oneline.Escape(err.Error()))
}
