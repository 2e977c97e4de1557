package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"kvmboot/boot"
	"kvmboot/boot/testkernel"
	"kvmboot/machine/kvm"
)

// missing skips the test, or fails it when env says the thing is required.
func missing(t testing.TB, env, what string) {
	t.Helper()
	if os.Getenv(env) == "1" {
		t.Fatalf("%s (required: %s=1)", what, env)
	}
	t.Skipf("skipped: %s (set %s=1 to make this a failure)", what, env)
}

// kvmUsable says why /dev/kvm cannot be opened for a VM, or nil.
func kvmUsable() error {
	f, err := os.OpenFile(kvm.DevicePath, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	return f.Close()
}

// requireKVM skips or fails when /dev/kvm cannot be used.
func requireKVM(t testing.TB) {
	t.Helper()
	if err := kvmUsable(); err != nil {
		missing(t, "KVMBOOT_REQUIRE_KVM", "no usable /dev/kvm: "+err.Error())
	}
}

var (
	pagingOnce sync.Once
	pagingErr  error
)

// requireKVMPaging skips or fails unless our KVM machine runs a guest that
// turns on 32-bit paging (the probe's paging guest), as a Linux boot needs:
// a real KVM, not kvm_pvm (DESIGN.md §7).
func requireKVMPaging(t testing.TB) {
	t.Helper()
	requireKVM(t)
	pagingOnce.Do(func() {
		if p := kvm.Probe(context.Background()); !p.Paging32 {
			pagingErr = fmt.Errorf("this host's KVM (%s) cannot run 32-bit paging: %s", p.Module, p.PagingDetail)
		}
	})
	if pagingErr != nil {
		missing(t, "KVMBOOT_REQUIRE_KVM_PAGING", pagingErr.Error())
	}
}

// requireQEMU skips or fails when qemu-system-i386 is missing.
func requireQEMU(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("qemu-system-i386"); err != nil {
		missing(t, "KVMBOOT_REQUIRE_QEMU", "qemu-system-i386 not found (apt-get install qemu-system-x86)")
	}
}

// requireBackend skips or fails when the backend vmm ("kvm", or one of
// QEMU's) cannot run here.
func requireBackend(t testing.TB, vmm string) {
	t.Helper()
	if vmm == "kvm" {
		requireKVM(t)
	} else {
		requireQEMU(t)
	}
}

// repoRoot is the module root, found from this file's location, or
// $KVMBOOT_SOURCE_DIR: where a test binary run away from its source (the
// nested KVM lab) finds the files it reads (e2e/testdata, docs).
func repoRoot() string {
	if d := os.Getenv("KVMBOOT_SOURCE_DIR"); d != "" {
		return d
	}
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// kernelDir is where scripts/fetch-kernel.sh keeps Debian's kernel.
func kernelDir() string {
	if d := os.Getenv("KVMBOOT_KERNEL_DIR"); d != "" {
		return d
	}
	return filepath.Join(repoRoot(), ".cache", "kernels")
}

// requireDebianKernel returns the path of Debian's i386 vmlinuz.
func requireDebianKernel(t testing.TB) string {
	t.Helper()
	p := filepath.Join(kernelDir(), "vmlinuz")
	if _, err := os.Stat(p); err != nil {
		missing(t, "KVMBOOT_REQUIRE_KERNEL", "Debian's i386 kernel not fetched (make kernel): "+err.Error())
	}
	return p
}

var (
	cliOnce sync.Once
	cliPath string
	cliErr  error
)

// TestMain removes what the tests built once for all of them.
func TestMain(m *testing.M) {
	code := m.Run()
	if cliPath != "" {
		os.RemoveAll(filepath.Dir(cliPath))
	}
	if initrdPath != "" {
		os.RemoveAll(filepath.Dir(initrdPath))
	}
	os.Exit(code)
}

// cli builds the kvmboot command once per test binary, or returns
// $KVMBOOT_CLI, a kvmboot built already (the nested KVM lab has no Go
// toolchain).
func cli(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("KVMBOOT_CLI"); p != "" {
		return p
	}
	cliOnce.Do(func() {
		dir, err := os.MkdirTemp("", "kvmboot-e2e-")
		if err != nil {
			cliErr = err
			return
		}
		cliPath = filepath.Join(dir, "kvmboot")
		build := exec.Command("go", "build", "-o", cliPath, "kvmboot/cmd/kvmboot")
		build.Env = append(os.Environ(), "CGO_ENABLED=0") // as `make build`: no dynamic loader at start-up
		out, err := build.CombinedOutput()
		if err != nil {
			cliErr = errors.New(string(out))
		}
	})
	if cliErr != nil {
		t.Fatalf("building kvmboot: %v", cliErr)
	}
	return cliPath
}

// runCLI runs the kvmboot command and returns its output and exit status.
func runCLI(t testing.TB, args ...string) (stdout, stderr string, status int) {
	t.Helper()
	return runCLIEnv(t, nil, args...)
}

// runCLIEnv is runCLI with extra environment variables.
func runCLIEnv(t testing.TB, env []string, args ...string) (stdout, stderr string, status int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, cli(t), args...)
	cmd.Env = append(os.Environ(), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		status = ee.ExitCode()
	case err != nil:
		t.Fatalf("kvmboot %s: %v", strings.Join(args, " "), err)
	}
	return o.String(), e.String(), status
}

// bootTestKernel boots the built-in test kernel (or cfg.Kernel) and parses
// its report from the console.
func bootTestKernel(t testing.TB, cfg boot.Config) (*boot.Result, *testkernel.Report, string) {
	t.Helper()
	var console bytes.Buffer
	cfg.Console = &console
	if cfg.Timeout == 0 {
		cfg.Timeout = 60 * time.Second
	}
	res, err := boot.Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("boot: %v", err)
	}
	rep, _ := testkernel.ParseReport(console.String())
	return res, rep, console.String()
}

// parseSpecs parses bad-RAM or faulty-RAM specs for a guest of the default
// size, all into one list.
func parseSpecs[R any](t testing.TB, parse func(string, uint64) ([]R, error), specs []string) []R {
	t.Helper()
	var out []R
	for _, s := range specs {
		rs, err := parse(s, boot.DefaultMemSize)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, rs...)
	}
	return out
}

// prefixedLines are the lines of a console that start with prefix ("kt: ",
// "bt: "), without their carriage returns.
func prefixedLines(console, prefix string) []string {
	var out []string
	for _, l := range strings.Split(console, "\n") {
		if l = strings.TrimRight(l, "\r"); strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return out
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
