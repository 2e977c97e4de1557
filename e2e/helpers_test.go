package e2e

import (
	"bytes"
	"context"
	"errors"
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
	"kvmboot/e2e/hosttest"
	"kvmboot/machine"
	"kvmboot/machine/kvm"
	"kvmboot/machine/qemu"
)

// requireKVM skips or fails when /dev/kvm cannot be used.
func requireKVM(t testing.TB) {
	t.Helper()
	hosttest.Require(t, hosttest.KVM, kvm.Available())
}

// requireKVMPaging skips or fails unless our KVM machine can run a paged
// 32-bit guest here. An emulating KVM (kvm_pvm) cannot, whatever CI
// requires: there `make test-kvm` runs these tests in the nested lab.
func requireKVMPaging(t testing.TB) {
	t.Helper()
	if err := kvm.Available(); err != nil {
		hosttest.Require(t, hosttest.KVMPaging, err)
	}
	if machine.EmulatingKVM() {
		hosttest.Skip(t, hosttest.KVMPaging, "this host's KVM (kvm_pvm) emulates guests and cannot run 32-bit paging; `make test-kvm` runs this test in the nested KVM lab")
	}
	hosttest.Require(t, hosttest.KVMPaging, nil)
}

// kvmPart says whether the KVM part of a test that compares backends can
// run here; without a usable /dev/kvm the rest of the test goes on.
func kvmPart(t testing.TB) bool {
	t.Helper()
	return hosttest.Part(t, hosttest.KVM, kvm.Available())
}

// requireQEMU skips or fails when qemu-system-i386 is missing.
func requireQEMU(t testing.TB) {
	t.Helper()
	_, err := qemu.BinaryPath()
	hosttest.Require(t, hosttest.QEMU, err)
}

// requireBackend skips or fails when the backend vmm ("kvm", or one of
// QEMU's) cannot run here.
func requireBackend(t testing.TB, vmm boot.VMM) {
	t.Helper()
	if vmm == boot.VMMKVM {
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
