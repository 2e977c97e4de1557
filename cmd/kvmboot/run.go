package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"kvmboot/boot"
	"kvmboot/loader"
	"kvmboot/loader/memmap"
	"kvmboot/machine"
)

func runCommand() *cobra.Command {
	var (
		pf          planFlags
		timeout     time.Duration
		expect      string
		consolePath string
		asJSON      bool
		exitCode    string
		vmm         string
		accel       string
		machineName string
		badPolicy   string
		trace       string
		traceLimit  int
		countStub   bool
		showPlan    bool
		verbose     bool
		mt          memtestFlags // memtest_flags.go
		svgPath     string
	)
	cmd := &cobra.Command{
		Use:   "run [flags] [KERNEL]",
		Short: "Boot KERNEL (default: the built-in test kernel) and report the outcome",
		Long: `Boot KERNEL and watch it until it reports, fails or times out.

Exit status: the value the guest wrote to the debug-exit port 0xf4 (0..123);
0 when --expect matched; 124 timeout; 125 the guest failed (triple fault,
panic, bad RAM touched, checksum mismatch); 126 kvmboot could not boot.`,
		Example: `  kvmboot run                                   # the built-in test kernel
  kvmboot run --bad-ram 16M-32M --json kernel.elf
  kvmboot run --module 'initrd.img arg' --expect 'login:' --timeout 60s kernel.elf.xz`,
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
			if err := mt.apply(&cfg); err != nil {
				return err
			}
			cfg.VMM, cfg.Accel, cfg.Machine, cfg.Timeout, cfg.CountStub = boot.VMM(vmm), accel, boot.Machine(machineName), timeout, countStub
			switch exitCode {
			case "native":
			case "qemu":
				cfg.QEMUExitCodes = true
			default:
				return fmt.Errorf("--exit-code=%s: want native or qemu", exitCode)
			}
			if cfg.BadRAMPolicy, err = machine.ParseBadRAMPolicy(badPolicy); err != nil {
				return fmt.Errorf("--bad-ram-policy: %w", err)
			}
			if expect != "" {
				if cfg.Expect, err = regexp.Compile(expect); err != nil {
					return fmt.Errorf("--expect: %v", err)
				}
			}
			switch trace {
			case "":
			case "real", "all":
				cfg.Trace = func(line string) { fmt.Fprintln(os.Stderr, "trace:", line) }
				cfg.TraceLimit, cfg.TraceAll = traceLimit, trace == "all"
			default:
				return fmt.Errorf("--trace=%s: want real or all", trace)
			}

			// The console goes to --console FILE, else to stderr under
			// --json (stdout carries the JSON), else to stdout.
			var console io.Writer = os.Stdout
			if asJSON {
				console = os.Stderr
			}
			if consolePath != "" {
				f, err := os.Create(consolePath)
				if err != nil {
					return err
				}
				defer f.Close()
				console = f
			}
			cfg.Console = console
			if verbose {
				cfg.Log = func(s string) { fmt.Fprintln(os.Stderr, "kvmboot:", s) }
			}

			// The run plans once: --show-plan and --svg see that plan (after
			// a memtest, the one that avoids what it found).
			var ran *loader.Plan
			cfg.OnPlan = func(p *loader.Plan) {
				ran = p
				if showPlan && !asJSON {
					p.Write(os.Stderr)
				}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			res, err := boot.Run(ctx, cfg)
			mt.report(os.Stderr, res)
			if svgPath != "" && ran != nil && res.Outcome != machine.Error {
				var found []memmap.Range
				if res.Memtest != nil {
					found = res.Memtest.FailingRanges()
				}
				if err := runSVG(svgPath, ran, found); err != nil {
					printError("--svg: ", err)
				}
			}
			if asJSON {
				printJSON(res)
			} else if err != nil {
				return err
			} else {
				for _, l := range res.BIOSLog {
					fmt.Fprintln(os.Stderr, "kvmboot:", l)
				}
				fmt.Fprintf(os.Stderr, "kvmboot: %s (status %d): %s\n", res.Outcome, res.ExitCode, res.Reason)
			}
			if res.ExitCode != 0 {
				return exitError{res.ExitCode}
			}
			return nil
		},
	}
	fs := cmd.Flags()
	pf.bind(fs)
	mt.bind(fs)
	fs.StringVar(&svgPath, "svg", "", "also draw the plan as an SVG picture of guest memory into `FILE` (with --memtest: its findings marked)")
	completeValues(cmd, "vmm", "auto", "kvm", "qemu", "qemu-kernel")
	completeValues(cmd, "accel", "auto", "kvm", "tcg")
	completeValues(cmd, "machine", "pc", "minimal")
	completeValues(cmd, "exit-code", "native", "qemu")
	completeValues(cmd, "bad-ram-policy", "stop", "record")
	completeValues(cmd, "trace", "real", "all")
	fs.DurationVar(&timeout, "timeout", 60*time.Second, "give up after this long (status 124)")
	fs.StringVar(&expect, "expect", "", "`REGEXP`: a console line (or a prompt left unterminated) matching it ends the run with status 0")
	fs.StringVar(&consolePath, "console", "", "write the guest console to `FILE` (complete, also on timeout or crash)")
	fs.BoolVar(&asJSON, "json", false, "print the result as one JSON object on stdout")
	fs.StringVar(&exitCode, "exit-code", "native", "`MODE` native: the guest's debug-exit value; qemu: (v<<1)|1 as isa-debug-exit")
	fs.StringVar(&vmm, "vmm", "auto", "`BACKEND`: auto, kvm (our VM), qemu (our bootloader under QEMU), qemu-kernel (QEMU's own -kernel, a reference)")
	fs.StringVar(&accel, "accel", "auto", "QEMU accelerator `ACCEL`: auto, kvm or tcg")
	fs.StringVar(&machineName, "machine", "pc", "`MACHINE`: pc (ACPI tables; under QEMU an HPET too) or minimal (no ACPI; QEMU's ISA PC)")
	fs.StringVar(&badPolicy, "bad-ram-policy", "stop", "`POLICY` on a guest access to bad RAM: stop (status 125) or record and go on")
	fs.StringVar(&trace, "trace", "", "print each instruction the guest runs, `WHAT`: real (real mode, up to the kernel's 32-bit entry) or all (our KVM machine single-steps; QEMU with TCG traces through kvmboot's plugin)")
	fs.IntVar(&traceLimit, "trace-limit", 10000, "most instructions --trace prints")
	fs.BoolVar(&countStub, "count-stub", false, "count the instructions and VM exits from reset to the kernel's entry")
	fs.BoolVar(&showPlan, "show-plan", false, "print the plan on stderr before booting")
	fs.BoolVarP(&verbose, "verbose", "v", false, "log unhandled ports, ROM writes and other notes on stderr")
	return cmd
}
