package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func completionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish",
		Short: "Print a shell completion script for kvmboot",
		Long: `Print a script that makes the shell complete kvmboot's commands, flags and
flag values (--vmm, --compress, --placement, ...).

bash (needs the bash-completion package):
  source <(kvmboot completion bash)                        # this shell
  kvmboot completion bash > /etc/bash_completion.d/kvmboot # every shell

zsh:
  autoload -U compinit && compinit                         # if not done yet
  kvmboot completion zsh > "${fpath[1]}/_kvmboot"

fish:
  kvmboot completion fish > ~/.config/fish/completions/kvmboot.fish`,
		Example: `  source <(kvmboot completion bash)
  kvmboot completion zsh > "${fpath[1]}/_kvmboot"`,
		ValidArgs: []string{"bash", "zsh", "fish"},
		Args:      cobra.MatchAll(cobra.ExactArgs(1), cobra.OnlyValidArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			root := cmd.Root()
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(os.Stdout, true)
			case "zsh":
				return root.GenZshCompletion(os.Stdout)
			case "fish":
				return root.GenFishCompletion(os.Stdout, true)
			}
			return fmt.Errorf("completion %s: want bash, zsh or fish", args[0])
		},
	}
}

// completeValues makes the shell offer values for a flag of cmd.
func completeValues(cmd *cobra.Command, flag string, values ...string) {
	cmd.RegisterFlagCompletionFunc(flag, cobra.FixedCompletions(values, cobra.ShellCompDirectiveNoFileComp))
}
