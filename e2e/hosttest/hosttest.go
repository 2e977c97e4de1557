// Package hosttest decides, for tests that need something of the host (our
// KVM machine, QEMU, Debian's kernel), whether they run here, skip with a
// reason, or fail because CI requires them. Every decision is logged in one
// tagged line, so that e2e/cmd/testsummary can count, per backend, the tests
// that ran and the ones that skipped: coverage lost on a host without KVM is
// visible at the end of `make test`, not buried in -v output.
//
// The caller does the check (open /dev/kvm, find QEMU, stat the kernel) and
// passes its error: this package imports nothing of kvmboot's, so the
// backends' own in-package tests can use it.
package hosttest

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"testing"
)

// Need is what a test needs of the host.
type Need string

const (
	// KVM is our KVM machine on any usable /dev/kvm: unpaged guests run
	// even on an emulating KVM (kvm_pvm).
	KVM Need = "kvm"
	// KVMPaging is our KVM machine on a KVM that runs 32-bit paging (a
	// real KVM: the host's, or the nested lab's).
	KVMPaging Need = "kvm-paging"
	// QEMU is qemu-system-i386.
	QEMU Need = "qemu"
	// Kernel is Debian's i386 kernel, fetched by scripts/fetch-kernel.sh.
	Kernel Need = "debian-kernel"
)

// requireEnv names the variable that turns a missing need into a failure.
// Both KVM needs share one: where a KVM is required, every KVM test is,
// except those a known host limit rules out (Skip).
func (n Need) requireEnv() string {
	switch n {
	case KVM, KVMPaging:
		return "KVMBOOT_REQUIRE_KVM"
	case QEMU:
		return "KVMBOOT_REQUIRE_QEMU"
	default:
		return "KVMBOOT_REQUIRE_KERNEL"
	}
}

// Required reports whether the environment makes n a requirement.
func (n Need) Required() bool { return os.Getenv(n.requireEnv()) == "1" }

// Tag lines: "hosttest: ran on NEED" and "hosttest: skipped on NEED: WHY".
const (
	ranTag     = "hosttest: ran on "
	skippedTag = "hosttest: skipped on "
)

// TagPattern matches a tag line in a test's output: the verb ("ran" or
// "skipped"), the need, and for a skip, the reason.
var TagPattern = regexp.MustCompile(`hosttest: (ran|skipped) on ([a-z0-9-]+)(?:: (.*))?$`)

// Require lets the test go on when err (the caller's check for n) is nil;
// else it skips the test with the reason, or fails it when n is required
// here.
func Require(t testing.TB, n Need, err error) {
	t.Helper()
	if err == nil {
		t.Log(ranTag + string(n))
		return
	}
	if n.Required() {
		t.Fatalf("%s%s: %v (required: %s=1)", skippedTag, n, err, n.requireEnv())
	}
	t.Skipf("%s%s: %v (set %s=1 to make this a failure)", skippedTag, n, err, n.requireEnv())
}

// Skip skips the test for a known limit of this host that no requirement
// overrides: an emulating KVM cannot page, whatever CI asks.
func Skip(t testing.TB, n Need, why string) {
	t.Helper()
	t.Skipf("%s%s: %s", skippedTag, n, why)
}

// Part reports whether the part of a test that needs n can run: a test
// that compares backends runs its other parts either way. A missing
// required need fails the test; otherwise the skipped part is logged and
// counted.
func Part(t testing.TB, n Need, err error) bool {
	t.Helper()
	switch {
	case err == nil:
		t.Log(ranTag + string(n))
		return true
	case n.Required():
		t.Fatalf("%s%s: %v (required: %s=1)", skippedTag, n, err, n.requireEnv())
	default:
		t.Logf("%s%s: %v (this part only)", skippedTag, n, err)
	}
	return false
}

// KernelDir is where scripts/fetch-kernel.sh keeps Debian's i386 kernel:
// $KVMBOOT_KERNEL_DIR, else .cache/kernels in the repository.
func KernelDir() string {
	if d := os.Getenv("KVMBOOT_KERNEL_DIR"); d != "" {
		return d
	}
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", ".cache", "kernels")
}

// DebianKernel returns the path of Debian's i386 vmlinuz, or skips the test
// (fails it under KVMBOOT_REQUIRE_KERNEL=1) when it has not been fetched.
func DebianKernel(t testing.TB) string {
	t.Helper()
	p := filepath.Join(KernelDir(), "vmlinuz")
	_, err := os.Stat(p)
	if err != nil {
		err = fmt.Errorf("no Debian i386 kernel fetched (make kernel): %w", err)
	}
	Require(t, Kernel, err)
	return p
}
