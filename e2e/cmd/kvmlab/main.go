// Command kvmlab runs kvmboot's KVM-backend tests against a real KVM: the
// host's when its KVM runs 32-bit paging, else inside the nested KVM lab
// (e2e/lab), and runs single commands in the lab for debugging.
//
//	kvmlab test [flags] [-- test binary flags]   every KVM test (make test-kvm)
//	kvmlab run [flags] -- CMD [ARG...]           one command in the lab (scripts/kvm-lab.sh)
//
// The lab needs qemu-system-x86_64 and what scripts/fetch-lab.sh fetches.
// Inside it, /bin/kvmboot is a static kvmboot built from this tree,
// /lab/kernels/vmlinuz Debian's i386 kernel and
// /lab/guest-initramfs.cpio.gz the e2e guest initramfs.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"kvmboot/e2e/initramfs"
	"kvmboot/e2e/lab"
	"kvmboot/machine/kvm"
	"kvmboot/machine/qemu"
)

// testPackages hold the KVM-backend tests, each run as a test binary.
var testPackages = []string{"kvmboot/e2e", "kvmboot/machine/memtest", "kvmboot/machine/kvm"}

// Where the lab's fixtures are inside the outer VM.
const (
	labCLI       = "/bin/kvmboot"
	labKernelDir = "/lab/kernels"
	labInitrd    = "/lab/guest-initramfs.cpio.gz"
	labSource    = "/lab/src"
	labBin       = "/lab/bin"
)

type options struct {
	cache, cpu, mem, appendArgs, kvmAMD, set, packages string
	json, forceLab, keep, withQEMU                     bool
	freezes, repeat, smp                               int
	timeout                                            time.Duration
}

func main() {
	if len(os.Args) < 2 || (os.Args[1] != "test" && os.Args[1] != "run") {
		fmt.Fprintln(os.Stderr, "usage: kvmlab test [flags] [-- TEST FLAGS] | kvmlab run [flags] -- CMD [ARG...]")
		os.Exit(2)
	}
	mode := os.Args[1]
	var o options
	flags := flag.NewFlagSet("kvmlab "+mode, flag.ExitOnError)
	flags.StringVar(&o.cache, "cache", envOr("KVMBOOT_LAB_DIR", ".cache/lab"), "the lab's cache (scripts/fetch-lab.sh)")
	flags.StringVar(&o.cpu, "cpu", envOr("KVMBOOT_LAB_CPU", lab.DefaultCPU), "the outer VM's -cpu")
	flags.StringVar(&o.mem, "m", "2G", "the outer VM's memory")
	flags.IntVar(&o.smp, "smp", 1, "the outer VM's processors")
	flags.StringVar(&o.appendArgs, "append", os.Getenv("KVMBOOT_LAB_APPEND"), "added to the outer kernel's command line")
	flags.StringVar(&o.kvmAMD, "kvm-amd", os.Getenv("KVMBOOT_LAB_KVM_AMD"), "kvm_amd module parameters (\"npt=0 vgif=0\")")
	flags.IntVar(&o.freezes, "max-freezes", 8, "give up after this many outer VMs froze")
	flags.DurationVar(&o.timeout, "timeout", 90*time.Minute, "bound on one outer VM's run")
	flags.BoolVar(&o.keep, "keep", false, "keep the attempts' console logs")
	flags.BoolVar(&o.withQEMU, "qemu", false, "put this host's qemu-system-i386 in the lab (QEMU with KVM beside our VMM)")
	if mode == "test" {
		flags.StringVar(&o.set, "set", envOr("KVMBOOT_LAB_SET", "full"), "which tests: full (every test of the KVM packages) or ci (the selection CI runs)")
		flags.BoolVar(&o.json, "json", false, "print go test -json events (through go tool test2json)")
		flags.BoolVar(&o.forceLab, "lab", false, "use the lab even when the host's KVM runs 32-bit paging")
		flags.StringVar(&o.packages, "packages", strings.Join(testPackages, ","), "the packages whose tests run")
	} else {
		flags.IntVar(&o.repeat, "repeat", 1, "run the command this many times, each retried on an outer VM freeze")
	}
	flags.Parse(os.Args[2:])

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var status int
	var err error
	if mode == "test" {
		status, err = runTests(ctx, o, flags.Args())
	} else {
		status, err = runCommand(ctx, o, flags.Args())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "kvmlab:", err)
		if status == 0 {
			status = 1
		}
	}
	os.Exit(status)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func note(s string) { fmt.Fprintln(os.Stderr, "lab: "+s) }

// testFlags are the test binaries' flags for the set: ci is -short, which
// in the KVM tests means fewer leak-test runs and fewer Debian boots on
// our VMM (CI's budget: README, "The nested KVM lab").
func testFlags(set string) ([]string, error) {
	switch set {
	case "full":
		return nil, nil
	case "ci":
		return []string{"-test.short"}, nil
	}
	return nil, fmt.Errorf("-set %s: want full or ci", set)
}

// runTests runs the KVM packages' tests: go test on the host when its KVM
// pages, else their test binaries in the lab.
func runTests(ctx context.Context, o options, extra []string) (int, error) {
	setFlags, err := testFlags(o.set)
	if err != nil {
		return 2, err
	}
	pkgs := strings.Split(o.packages, ",")
	if !o.forceLab {
		if p := kvm.Probe(ctx); p.Paging32 {
			note(fmt.Sprintf("this host's KVM (%s) runs 32-bit paging: go test here", p.Module))
			return hostTests(ctx, o, pkgs, append(setFlags, extra...))
		}
	}
	dir, err := os.MkdirTemp("", "kvmlab-")
	if err != nil {
		return 1, err
	}
	defer cleanup(o, dir)
	files, err := buildFixtures(ctx, o, dir)
	if err != nil {
		return 1, err
	}
	job := lab.Job{ModParams: modParams(o)}
	for _, pkg := range pkgs {
		bin := filepath.Base(pkg) + ".test"
		note("building " + bin)
		out := filepath.Join(dir, bin)
		if err := goCmd(ctx, "test", "-c", "-o", out, pkg); err != nil {
			return 1, err
		}
		data, err := os.ReadFile(out)
		if err != nil {
			return 1, err
		}
		files = append(files, initramfs.File{Name: labBin[1:] + "/" + bin, Perm: 0o755, Data: data})
		argv := append([]string{labBin + "/" + bin, "-test.v=test2json", "-test.count=1", "-test.timeout=80m"}, setFlags...)
		job.Steps = append(job.Steps, lab.Step{Name: pkg, Argv: append(argv, extra...), Env: labEnv(o), Tests: true})
	}
	l, err := newLab(o, dir, files)
	if err != nil {
		return 1, err
	}
	failed := false
	col := lab.NewCollector(job, func(step int) io.WriteCloser {
		return stepOutput(ctx, o.json, job.Steps[step].Name)
	}, note)
	rep, err := l.Run(ctx, job, col)
	report(rep)
	for i := range job.Steps {
		if s, ok := col.Status(i); !ok || s != 0 {
			failed = true
		}
	}
	if err != nil {
		return 1, err
	}
	if failed {
		return 1, nil
	}
	return 0, nil
}

// modParams are the insmod parameters -kvm-amd gives.
func modParams(o options) map[string]string {
	if o.kvmAMD == "" {
		return nil
	}
	return map[string]string{"kvm-amd.ko": o.kvmAMD}
}

// labEnv points the test binaries at the lab's fixtures and makes every
// missing KVM or kernel a failure (and QEMU, when the lab has it).
func labEnv(o options) []string {
	env := []string{"KVMBOOT_CLI=" + labCLI, "KVMBOOT_KERNEL_DIR=" + labKernelDir, "KVMBOOT_GUEST_INITRD=" + labInitrd,
		"KVMBOOT_SOURCE_DIR=" + labSource, "KVMBOOT_REQUIRE_KVM=1", "KVMBOOT_REQUIRE_KERNEL=1"}
	if o.withQEMU {
		env = append(env, "KVMBOOT_REQUIRE_QEMU=1")
	}
	return env
}

// hostTests is go test of the KVM packages on this host, every KVM test
// required.
func hostTests(ctx context.Context, o options, pkgs, flags []string) (int, error) {
	args := []string{"test", "-count=1", "-timeout", "80m"}
	if o.json {
		args = append(args, "-json")
	}
	for _, f := range flags { // test binary flags as go test takes them
		if rest, ok := strings.CutPrefix(f, "-test."); ok {
			f = "-" + rest
		}
		args = append(args, f)
	}
	args = append(args, pkgs...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Env = append(os.Environ(), "KVMBOOT_REQUIRE_KVM=1", "KVMBOOT_REQUIRE_KERNEL=1")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), nil
	}
	return 0, err
}

// runCommand runs argv in the lab (repeat times), its output on stdout.
func runCommand(ctx context.Context, o options, argv []string) (int, error) {
	if len(argv) == 0 {
		return 2, errors.New("no command (kvmlab run -- CMD [ARG...])")
	}
	dir, err := os.MkdirTemp("", "kvmlab-")
	if err != nil {
		return 1, err
	}
	defer cleanup(o, dir)
	files, err := buildFixtures(ctx, o, dir)
	if err != nil {
		return 1, err
	}
	l, err := newLab(o, dir, files)
	if err != nil {
		return 1, err
	}
	job := lab.Job{ModParams: modParams(o)}
	for i := 0; i < o.repeat; i++ {
		job.Steps = append(job.Steps, lab.Step{Name: fmt.Sprintf("run %d", i+1), Argv: argv, Env: labEnv(o)})
	}
	col := lab.NewCollector(job, func(int) io.WriteCloser { return nopCloser{os.Stdout} }, note)
	rep, err := l.Run(ctx, job, col)
	report(rep)
	status, bad := 0, 0
	for i := range job.Steps {
		s, ok := col.Status(i)
		if !ok {
			s = 1
		}
		if s != 0 {
			bad++
		}
		status = s
	}
	if o.repeat > 1 {
		note(fmt.Sprintf("%d runs, %d with a non-zero status", o.repeat, bad))
		if bad > 0 {
			status = 1
		}
	}
	return status, err
}

// buildFixtures builds kvmboot and the guest initramfs and gathers what
// the tests inside read (and QEMU, with -qemu).
func buildFixtures(ctx context.Context, o options, dir string) ([]initramfs.File, error) {
	note("building kvmboot and the guest initramfs")
	cli := filepath.Join(dir, "kvmboot")
	if err := goCmd(ctx, "build", "-o", cli, "./cmd/kvmboot"); err != nil {
		return nil, err
	}
	initrd, err := initramfs.WriteGuestInitramfs(dir)
	if err != nil {
		return nil, err
	}
	kernelDir := envOr("KVMBOOT_KERNEL_DIR", filepath.Join(".cache", "kernels"))
	var files []initramfs.File
	for _, f := range []struct {
		from, to string
		perm     uint64
	}{
		{cli, labCLI, 0o755},
		{initrd, labInitrd, 0o644},
		{filepath.Join(kernelDir, "vmlinuz"), labKernelDir + "/vmlinuz", 0o644},
		{"docs/plan-example.svg", labSource + "/docs/plan-example.svg", 0o644},
	} {
		data, err := os.ReadFile(f.from)
		if err != nil {
			return nil, fmt.Errorf("%w (scripts/fetch-lab.sh fetches the kernels)", err)
		}
		files = append(files, initramfs.File{Name: f.to[1:], Perm: f.perm, Data: data})
	}
	// The folders the e2e tests read through repoRoot.
	for _, dir := range []string{"e2e/testdata", "e2e/conformance"} {
		err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			data, err := os.ReadFile(p)
			files = append(files, initramfs.File{Name: labSource[1:] + "/" + filepath.ToSlash(p), Perm: 0o644, Data: data})
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	if !o.withQEMU {
		return files, err
	}
	q, err := qemuFiles(ctx)
	return append(files, q...), err
}

// qemuFirmware are the files qemu-system-i386 reads to boot a PC with
// -kernel: SeaBIOS (Debian's QEMU looks in /usr/share/seabios too), the
// option ROMs that load the kernel, the TPR patcher.
var qemuFirmware = []string{"/usr/share/seabios/bios-256k.bin", "/usr/share/qemu/linuxboot_dma.bin", "/usr/share/qemu/linuxboot.bin",
	"/usr/share/qemu/kvmvapic.bin", "/usr/share/qemu/multiboot_dma.bin", "/usr/share/qemu/multiboot.bin"}

// qemuFiles are this host's qemu-system-i386 (from Debian's package: PATH's
// wrapper script and the binary it runs, which finds its firmware beside
// itself, in ../share), the shared libraries ldd names for it and its
// firmware, at their paths.
func qemuFiles(ctx context.Context) ([]initramfs.File, error) {
	wrapper, err := exec.LookPath(qemu.DefaultBinary)
	if err != nil {
		return nil, err
	}
	bin, err := qemu.BinaryPath()
	if err != nil {
		return nil, err
	}
	out, err := exec.CommandContext(ctx, "ldd", bin).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", bin, err)
	}
	paths := map[string]string{wrapper: wrapper[1:], bin: bin[1:]}
	for _, l := range strings.Split(string(out), "\n") {
		for _, f := range strings.Fields(l) {
			if strings.HasPrefix(f, "/") {
				paths[f] = f[1:]
			}
		}
	}
	for _, fw := range qemuFirmware {
		paths[fw] = fw[1:]
	}
	var files []initramfs.File
	for from, to := range paths {
		data, err := os.ReadFile(from) // through symlinks: the archive holds plain files
		if err != nil {
			return nil, err
		}
		files = append(files, initramfs.File{Name: to, Perm: 0o755, Data: data})
	}
	slices.SortFunc(files, func(a, b initramfs.File) int { return strings.Compare(a.Name, b.Name) })
	return files, nil
}

func newLab(o options, dir string, files []initramfs.File) (*lab.Lab, error) {
	bin, err := lab.Find()
	if err != nil {
		return nil, err
	}
	base, err := lab.BaseArchive(o.cache, files)
	if err != nil {
		return nil, err
	}
	note(fmt.Sprintf("outer VM: %s -cpu %s -m %s, initramfs %d MB", filepath.Base(bin), o.cpu, o.mem, len(base)>>20))
	job := lab.Outer{QEMU: bin, CPU: o.cpu, Memory: o.mem, CPUs: o.smp, Kernel: filepath.Join(o.cache, "kernel", "vmlinuz"), Append: o.appendArgs}
	return &lab.Lab{Outer: job, Base: base, Dir: dir, Notes: note, MaxFreezes: o.freezes, Timeout: o.timeout}, nil
}

// goCmd runs the go command with CGO_ENABLED=0: static binaries, as the
// outer VM has no C library.
func goCmd(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

func report(rep *lab.Report) {
	if rep == nil {
		return
	}
	kinds := map[string]int{}
	for _, f := range rep.Freezes {
		kinds[f.Kind]++
	}
	note(fmt.Sprintf("%d outer VM boots; %d froze and woke up again; %d froze, %d stalled, %d ended early (each retried)", rep.Attempts, rep.Thawed, kinds["frozen"], kinds["stalled"], kinds["ended"]))
}

func cleanup(o options, dir string) {
	if o.keep {
		note("logs kept in " + dir)
		return
	}
	os.RemoveAll(dir)
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// stepOutput is where a test step's lines go: through go tool test2json
// for -json, else as go test -v prints them.
func stepOutput(ctx context.Context, asJSON bool, pkg string) io.WriteCloser {
	if !asJSON {
		return &unframed{w: os.Stdout}
	}
	cmd := exec.CommandContext(ctx, "go", "tool", "test2json", "-t", "-p", pkg)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	in, err := cmd.StdinPipe()
	if err == nil {
		err = cmd.Start()
	}
	if err != nil {
		note("go tool test2json: " + err.Error())
		return &unframed{w: os.Stdout}
	}
	return &converter{WriteCloser: in, cmd: cmd}
}

// unframed drops test2json's framing byte: go test -v's lines.
type unframed struct{ w io.Writer }

func (u *unframed) Write(p []byte) (int, error) {
	if _, err := u.w.Write([]byte(strings.TrimPrefix(string(p), "\x16"))); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (u *unframed) Close() error { return nil }

// converter is test2json's stdin; Close waits for it to finish.
type converter struct {
	io.WriteCloser
	cmd *exec.Cmd
}

func (c *converter) Close() error {
	c.WriteCloser.Close()
	return c.cmd.Wait()
}
