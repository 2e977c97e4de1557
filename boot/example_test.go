package boot_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"kvmboot/boot"
	"kvmboot/boot/testkernel"
	"kvmboot/e2e/hosttest"
	"kvmboot/loader/memmap"
	"kvmboot/machine"
	"kvmboot/machine/kvm"
	"kvmboot/machine/qemu"
)

// Boot the built-in test kernel on our KVM machine with 16M-32M declared
// bad, as a Go test would, and check what happened: the outcome, where the
// loader put the kernel, that the guest touched no bad RAM, and what the
// kernel itself reported on its console.
//
// Without a usable /dev/kvm the example boots the same firmware and plan
// under QEMU instead, so it prints the same lines on either backend.
func Example() {
	bad, err := memmap.ParseBadRAM("16M-32M", boot.DefaultMemSize)
	if err != nil {
		panic(err)
	}
	var console bytes.Buffer
	cfg := boot.Config{
		Kernel:  "", // the built-in test kernel
		BadRAM:  bad,
		Cmdline: "hello from Go",
		VMM:     boot.VMMKVM,
		Timeout: 60 * time.Second,
		Console: &console,
	}
	res, err := boot.Run(context.Background(), cfg)
	if errors.Is(err, kvm.ErrNoKVM) {
		console.Reset()
		cfg.VMM, cfg.Accel = boot.VMMQEMU, "tcg"
		res, err = boot.Run(context.Background(), cfg)
	}
	if err != nil { // could not boot: res.Outcome is "error", status 126
		fmt.Println("could not boot:", err)
		return
	}
	fmt.Printf("%s, status %d\n", res.Outcome, res.ExitCode)
	fmt.Printf("kernel at %#x, linked at %#x, %d bad-RAM accesses\n", res.LoadAddress, res.LinkAddress, len(res.BadRAMAccesses))
	rep, err := testkernel.ParseReport(console.String())
	if err != nil {
		fmt.Println("no report:", err)
		return
	}
	fmt.Printf("the kernel ran at %#x with command line %q; its checks passed: %v\n", rep.Base, rep.Cmdline, rep.Pass)
	// It prints (TestExamplesBoot checks it where a backend can run):
	// pass, status 0
	// kernel at 0x2000000, linked at 0x1000000, 0 bad-RAM accesses
	// the kernel ran at 0x2000000 with command line "testkernel.elf hello from Go"; its checks passed: true
}

// Plan a boot without running it (no KVM needed): where each piece goes
// around bad RAM, and why.
func ExamplePlan() {
	plan, err := boot.Plan(boot.Config{BadRAM: []memmap.Range{{Start: 16 << 20, End: 32 << 20}}})
	if err != nil {
		panic(err)
	}
	r := boot.PlanResult(plan) // the result JSON's shape, without an outcome
	fmt.Printf("kernel linked at %#x, loaded at %#x, relocated: %v\n", r.LinkAddress, r.LoadAddress, r.Relocations > 0)
	for _, reg := range r.MemoryMap {
		if reg.Type == memmap.KindBad {
			fmt.Printf("bad RAM %#x-%#x\n", reg.Start, reg.End)
		}
	}
	// Output:
	// kernel linked at 0x1000000, loaded at 0x2000000, relocated: true
	// bad RAM 0x1000000-0x2000000
}

// A boot that fails is a Result, not an error: here the test kernel is
// told to report status 3.
func ExampleRun_failure() {
	res, err := boot.Run(context.Background(), boot.Config{Cmdline: "kt.exit=3", VMM: boot.VMMAuto, Timeout: 60 * time.Second})
	if err != nil {
		fmt.Println("could not boot:", err)
		return
	}
	fmt.Println(res.Outcome == machine.Fail, res.ExitCode, res.Reason)
	// It prints (TestExamplesBoot checks it where a backend can run):
	// true 3 guest wrote 3 to the debug-exit port
}

// TestExamplesBoot runs the examples that boot a guest and checks what
// they print. They carry no Output comment because Go would run them on
// every host, and they need our KVM machine or QEMU.
func TestExamplesBoot(t *testing.T) {
	if kvm.Available() == nil {
		hosttest.Require(t, hosttest.KVM, nil)
	} else {
		_, err := qemu.BinaryPath()
		hosttest.Require(t, hosttest.QEMU, err)
	}
	for _, ex := range []struct {
		name string
		run  func()
		want string
	}{
		{"Example", Example, `pass, status 0
kernel at 0x2000000, linked at 0x1000000, 0 bad-RAM accesses
the kernel ran at 0x2000000 with command line "testkernel.elf hello from Go"; its checks passed: true
`},
		{"ExampleRun_failure", ExampleRun_failure, "true 3 guest wrote 3 to the debug-exit port\n"},
	} {
		if got := stdoutOf(t, ex.run); got != ex.want {
			t.Errorf("%s printed:\n%s\nwant:\n%s", ex.name, got, ex.want)
		}
	}
}

// stdoutOf runs f with os.Stdout going to a pipe, as Go's example runner
// does, and returns what f printed.
func stdoutOf(t *testing.T, f func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	saved := os.Stdout
	os.Stdout = w
	printed := make(chan string)
	go func() {
		b, _ := io.ReadAll(r)
		printed <- string(b)
	}()
	defer func() { os.Stdout = saved }()
	f()
	w.Close()
	return <-printed
}
