package main

import (
	"bytes"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"kvmboot/machine"
	"kvmboot/smoke"
)

func smokeCommand() *cobra.Command {
	var (
		jobs       int
		out        string
		junit      string
		jsonl      string
		shard      string
		rerun      int
		allowFlaky bool
		list       bool
		runRE      string
		progress   string
	)
	cmd := &cobra.Command{
		Use:   "smoke [flags] MATRIX.yaml",
		Short: "Boot a matrix of kernels x memory scenarios in parallel and report",
		Long: `Boot every case of a YAML matrix (kernels x scenarios, optionally x backends),
up to -j at once, each on its own VM with its own console file in --out, and
judge each against its expectation. The matrix format is documented in the
kvmboot/smoke package (go doc kvmboot/smoke).

Verdicts: pass, fail (wrong status or outcome), timeout, crash, bad-ram,
error (could not boot), flaky (failed, then passed on a rerun).

Exit status: 0 when every case met its expectation; 1 otherwise (flaky
cases too, unless --allow-flaky); 126 for a bad matrix file or flag.`,
		Example: `  kvmboot smoke -j 4 --junit junit.xml --jsonl results.jsonl matrix.yaml
  kvmboot smoke --shard 2/3 --rerun-failed 2 matrix.yaml   # CI job 2 of 3
  kvmboot smoke --list matrix.yaml                         # the cases, without booting`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if jobs < 1 {
				return fmt.Errorf("-j %d: want at least 1", jobs)
			}
			if rerun < 0 {
				return fmt.Errorf("--rerun-failed %d: want 0 or more", rerun)
			}
			sh, err := smoke.ParseShard(shard)
			if err != nil {
				return err
			}
			var re *regexp.Regexp
			if runRE != "" {
				if re, err = regexp.Compile(runRE); err != nil {
					return fmt.Errorf("--run: %v", err)
				}
			}
			stdout := cmd.OutOrStdout()
			tty := false
			if f, ok := stdout.(*os.File); ok {
				tty = term.IsTerminal(int(f.Fd()))
			}
			switch progress {
			case "auto":
				progress = "lines"
				if tty {
					progress = "bar"
				}
			case "bar", "lines", "none":
			default:
				return fmt.Errorf("--progress=%s: want auto, bar, lines or none", progress)
			}

			m, err := smoke.Load(args[0])
			if err != nil {
				return err
			}
			cases := sh.Select(smoke.Filter(m.Cases, re))
			if list {
				for _, c := range cases {
					fmt.Fprintf(stdout, "%s\t%s\t%s\n", c.Name, c.VMM, c.Want)
				}
				return nil
			}
			if len(cases) == 0 {
				fmt.Fprintf(stdout, "smoke: no cases to run (%d in %s; --run %q, --shard %q)\n", len(m.Cases), args[0], runRE, shard)
			}

			// The folders of --out, --jsonl and --junit, so that all three
			// can go under one new folder.
			for _, d := range []string{out, dirOf(jsonl), dirOf(junit)} {
				if d != "" {
					if err := os.MkdirAll(d, 0o755); err != nil {
						return err
					}
				}
			}
			opts := smoke.Options{Jobs: jobs, OutDir: out, Rerun: rerun, AllowFlaky: allowFlaky, Shard: sh}
			switch progress {
			case "bar":
				opts.Observers = append(opts.Observers, &smoke.Bar{W: stdout})
			case "lines":
				opts.Observers = append(opts.Observers, &smoke.Lines{W: stdout})
			}
			var jl *smoke.JSONL
			if jsonl != "" {
				f, err := os.Create(jsonl)
				if err != nil {
					return fmt.Errorf("--jsonl: %w", err)
				}
				defer f.Close()
				jl = smoke.NewJSONL(f)
				opts.Observers = append(opts.Observers, jl)
			}
			if junit != "" {
				// Fail now rather than after the whole run.
				f, err := os.Create(junit)
				if err != nil {
					return fmt.Errorf("--junit: %w", err)
				}
				f.Close()
			}

			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			rep, err := smoke.Run(ctx, m, cases, opts)
			if err != nil {
				return err
			}
			// Rendered once, for stdout and summary.txt.
			var summary bytes.Buffer
			smoke.WriteSummary(&summary, rep)
			stdout.Write(summary.Bytes())
			os.WriteFile(filepath.Join(opts.OutDir, "summary.txt"), summary.Bytes(), 0o666)
			status := 0
			if !rep.OK() {
				status = 1
			}
			if junit != "" {
				if err := smoke.WriteJUnitFile(junit, rep); err != nil {
					printError("--junit: ", err)
					status = machine.StatusError
				}
			}
			if jl != nil && jl.Err() != nil {
				printError("--jsonl: ", jl.Err())
				status = machine.StatusError
			}
			if status != 0 {
				return exitError{status}
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.IntVarP(&jobs, "jobs", "j", runtime.NumCPU(), "cases to boot at once")
	fs.StringVar(&out, "out", smoke.DefaultOutDir, "folder for console files (DIR/kernel/scenario.console.txt) and summary.txt")
	fs.StringVar(&junit, "junit", "", "write a JUnit XML report to FILE")
	fs.StringVar(&jsonl, "jsonl", "", "write one JSON line per boot (case, attempt, verdict, result object) to FILE")
	fs.StringVar(&shard, "shard", "", "run shard K/N of the sorted cases (every N-th from the K-th; shards 1..N run each case once)")
	fs.IntVar(&rerun, "rerun-failed", 0, "rerun a failing case up to N times; one that then passes is flaky")
	fs.BoolVar(&allowFlaky, "allow-flaky", false, "flaky cases do not fail the run (they are still reported as flaky)")
	fs.BoolVar(&list, "list", false, "print the cases (name, vmm, expectation) and exit without booting")
	fs.StringVar(&runRE, "run", "", "only cases whose name matches this regular expression (before sharding)")
	fs.StringVar(&progress, "progress", "auto", "auto (a bar on a terminal, else lines), bar, lines or none")
	return cmd
}

func dirOf(file string) string {
	if file == "" {
		return ""
	}
	return filepath.Dir(file)
}
