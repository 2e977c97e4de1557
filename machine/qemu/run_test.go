package qemu

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"kvmboot/e2e/hosttest"
	"kvmboot/loader"
	"kvmboot/loader/memmap"
	"kvmboot/machine"
)

// requireQEMU skips, or fails under KVMBOOT_REQUIRE_QEMU=1, without QEMU.
func requireQEMU(t testing.TB) {
	t.Helper()
	_, err := lookBinary("")
	hosttest.Require(t, hosttest.QEMU, err)
}

// codePlan is a plan that runs flat 32-bit code at 1 MiB.
func codePlan(t testing.TB, code []byte) *loader.Plan {
	t.Helper()
	const mem = 16 << 20
	plan := &loader.Plan{
		Kernel:     loader.KernelInfo{Path: "(test code)", Format: "raw", Protocol: loader.ProtocolELF},
		MemSize:    mem,
		Map:        memmap.New(mem, loader.FirmwareHigh),
		Placements: []loader.Placement{{What: "code", Start: 0x100000, Data: code, Size: uint64(len(code))}},
		Entry:      loader.EntryState{EIP: 0x100000},
	}
	if err := plan.Finish(); err != nil {
		t.Fatal(err)
	}
	return plan
}

// rdrandCode checks CPUID for RDRAND (exit 2 without), runs it until it
// sets CF (exit 3 after 10 failures) and exits 0.
var rdrandCode = []byte{
	0xb8, 0x01, 0x00, 0x00, 0x00, 0x0f, 0xa2, 0xf7, 0xc1, 0x00, 0x00, 0x00,
	0x40, 0x74, 0x19, 0xb9, 0x0a, 0x00, 0x00, 0x00, 0x0f, 0xc7, 0xf0, 0x72,
	0x0a, 0xe2, 0xf9, 0xb8, 0x03, 0x00, 0x00, 0x00, 0xe7, 0xf4, 0xf4, 0x31,
	0xc0, 0xe7, 0xf4, 0xf4, 0xb8, 0x02, 0x00, 0x00, 0x00, 0xe7, 0xf4, 0xf4,
}

// panicExitCode prints a panic line on COM1 and at once writes 0 to the
// debug-exit port.
var panicExitCode = []byte{
	0xbe, 0x16, 0x00, 0x10, 0x00, 0x66, 0xba, 0xf8, 0x03, 0xac, 0x84, 0xc0,
	0x74, 0x03, 0xee, 0xeb, 0xf8, 0x31, 0xc0, 0xe7, 0xf4, 0xf4, 0x4b, 0x65,
	0x72, 0x6e, 0x65, 0x6c, 0x20, 0x70, 0x61, 0x6e, 0x69, 0x63, 0x20, 0x2d,
	0x20, 0x6e, 0x6f, 0x74, 0x20, 0x73, 0x79, 0x6e, 0x63, 0x69, 0x6e, 0x67,
	0x3a, 0x20, 0x74, 0x65, 0x73, 0x74, 0x0a, 0x00,
}

// hangCode is cli; hlt; jmp back.
var hangCode = []byte{0xfa, 0xf4, 0xeb, 0xfd}

// TestRDRANDUnderTCG: -cpu max offers RDRAND under TCG, and TCG runs it
// (unlike this host's KVM, where it ends the guest).
func TestRDRANDUnderTCG(t *testing.T) {
	requireQEMU(t)
	res, err := Backend{}.Run(context.Background(), codePlan(t, rdrandCode), machine.Options{Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != machine.Pass {
		t.Fatalf("%s %d: %s (2: CPUID shows no RDRAND, 3: RDRAND never succeeded)", res.Outcome, res.Status, res.Reason)
	}
	if res.Backend != "qemu/tcg" || res.Boot <= 0 || res.Setup <= 0 {
		t.Errorf("backend %q boot %v setup %v", res.Backend, res.Boot, res.Setup)
	}
}

// TestConsoleVerdictFirst: a panic line printed just before a debug-exit
// write ends the run as a crash, as on our KVM machine, though QEMU's exit
// may reach kvmboot before the line does.
func TestConsoleVerdictFirst(t *testing.T) {
	requireQEMU(t)
	for i := 0; i < 5; i++ {
		console := machine.NewConsole(nil, nil)
		res, err := Backend{}.Run(context.Background(), codePlan(t, panicExitCode), machine.Options{Timeout: 20 * time.Second, Console: console})
		if err != nil {
			t.Fatal(err)
		}
		if res.Outcome != machine.Crash || !strings.Contains(res.Reason, "Kernel panic - not syncing: test") {
			t.Fatalf("run %d: %s %d: %s", i, res.Outcome, res.Status, res.Reason)
		}
	}
}

// TestTimeoutStopsGuest: a hung guest ends at the deadline with the
// registers untouched by a crash report, and QEMU gone.
func TestTimeoutStopsGuest(t *testing.T) {
	requireQEMU(t)
	var pid int
	testHookStarted = func(p int, _, _ string) { pid = p }
	defer func() { testHookStarted = nil }()
	start := time.Now()
	res, err := Backend{}.Run(context.Background(), codePlan(t, hangCode), machine.Options{Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != machine.Timeout || res.Status != machine.StatusTimeout {
		t.Fatalf("%s %d: %s", res.Outcome, res.Status, res.Reason)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("a 300 ms timeout took %v", d)
	}
	if alive(pid) {
		t.Errorf("QEMU (pid %d) still runs after the run", pid)
	}
}

// TestInterruptedWhileStarting: a context cancelled at any point of QEMU's
// start (before it runs, while it connects, between the QMP handshake and
// cont) ends the run as interrupted, never as a start failure.
func TestInterruptedWhileStarting(t *testing.T) {
	requireQEMU(t)
	for _, after := range []time.Duration{0, time.Millisecond, 5 * time.Millisecond, 15 * time.Millisecond, 30 * time.Millisecond, 60 * time.Millisecond} {
		ctx, cancel := context.WithCancel(context.Background())
		if after == 0 {
			cancel()
		} else {
			time.AfterFunc(after, cancel)
		}
		res, err := Backend{}.Run(ctx, codePlan(t, hangCode), machine.Options{Timeout: 10 * time.Second})
		cancel()
		if err != nil {
			t.Fatalf("cancelled after %v: error %v, want an interrupted result", after, err)
		}
		if res.Outcome != machine.Error || res.Reason != "interrupted" {
			t.Errorf("cancelled after %v: %s: %s", after, res.Outcome, res.Reason)
		}
	}
}

// alive says whether pid runs (a zombie does not count).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// TestCleanupAndNoLeaks: after each run the private folder and the RAM
// file are gone, and no goroutine or file descriptor is left behind.
func TestCleanupAndNoLeaks(t *testing.T) {
	requireQEMU(t)
	var files []string
	testHookStarted = func(_ int, dir, ram string) { files = append(files, dir, ram) }
	defer func() { testHookStarted = nil }()
	run := func(code []byte, opts machine.Options) {
		t.Helper()
		opts.Timeout = 100 * time.Millisecond
		if _, err := (Backend{}).Run(context.Background(), codePlan(t, code), opts); err != nil {
			t.Fatal(err)
		}
	}
	run(rdrandCode, machine.Options{})
	fds, _ := os.ReadDir("/proc/self/fd")
	goroutines := runtime.NumGoroutine()
	for i := 0; i < 3; i++ {
		run(rdrandCode, machine.Options{})
		run(hangCode, machine.Options{})
		console := machine.NewConsole(nil, nil)
		console.Write([]byte("Kernel panic - not syncing: test\n")) // ends the run at once
		run(hangCode, machine.Options{Console: console})
	}
	time.Sleep(50 * time.Millisecond)
	if got, _ := os.ReadDir("/proc/self/fd"); len(got) > len(fds) {
		t.Errorf("file descriptors %d -> %d", len(fds), len(got))
	}
	if got := runtime.NumGoroutine(); got > goroutines {
		buf := make([]byte, 1<<16)
		t.Errorf("goroutines %d -> %d\n%s", goroutines, got, buf[:runtime.Stack(buf, true)])
	}
	if len(files) != 20 {
		t.Fatalf("%d files reported, want 20", len(files))
	}
	for _, f := range files {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("%s left behind (%v)", f, err)
		}
	}
}

// TestQEMUDiesWithKvmboot: a kvmboot killed with SIGKILL takes QEMU with
// it (Pdeathsig) and leaves no files: they are removed once QEMU runs.
func TestQEMUDiesWithKvmboot(t *testing.T) {
	if os.Getenv("KVMBOOT_QEMU_HELPER") == "1" {
		testHookStarted = func(pid int, dir, ram string) { fmt.Printf("started %d %s %s\n", pid, dir, ram) }
		Backend{}.Run(context.Background(), codePlan(t, hangCode), machine.Options{Timeout: time.Minute})
		return
	}
	requireQEMU(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestQEMUDiesWithKvmboot$")
	cmd.Env = append(os.Environ(), "KVMBOOT_QEMU_HELPER=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line, err := bufio.NewReader(out).ReadString('\n')
	var pid int
	var dir, ram string
	if _, err2 := fmt.Sscanf(line, "started %d %s %s", &pid, &dir, &ram); err != nil || err2 != nil {
		t.Fatalf("helper said %q (%v, %v)", line, err, err2)
	}
	if !alive(pid) {
		t.Fatalf("QEMU (pid %d) is not running", pid)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("QEMU (pid %d) outlived kvmboot", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, f := range []string{dir, ram} {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("%s left behind by a killed kvmboot (%v)", f, err)
		}
	}
}

// TestStartBeforePlan: QEMU starts before the plan exists
// (machine.Starter); the plan goes straight into the shared RAM file
// before cont, and the guest runs it. A plan of another shape is refused,
// and a machine whose plan never comes is stopped by Close, its files
// removed.
func TestStartBeforePlan(t *testing.T) {
	requireQEMU(t)
	ctx := context.Background()
	opts := machine.Options{Timeout: 20 * time.Second}
	plan := codePlan(t, exitCode)
	st, err := Backend{}.Start(ctx, machine.ShapeOf(plan), opts)
	if err != nil {
		t.Fatal(err)
	}
	res, err := st.Run(ctx, plan)
	st.Close()
	if err != nil || res.Outcome != machine.Pass {
		t.Fatalf("%v %+v", err, res)
	}
	if res.Exec <= 0 || res.Ready <= 0 || res.RAMWrite <= 0 || res.Guest <= 0 || res.Boot < res.Guest || res.Setup < res.Exec+res.Ready {
		t.Errorf("stages: exec %v ready %v ram %v setup %v guest %v boot %v", res.Exec, res.Ready, res.RAMWrite, res.Setup, res.Guest, res.Boot)
	}

	stopped := func(st machine.Started) {
		t.Helper()
		r := st.(*run)
		pid, dir, ram := r.cmd.Process.Pid, r.dir, r.ramPath
		st.Close()
		if alive(pid) {
			t.Errorf("QEMU (pid %d) outlived Close", pid)
		}
		for _, f := range []string{dir, ram} {
			if _, err := os.Stat(f); !os.IsNotExist(err) {
				t.Errorf("%s left behind (%v)", f, err)
			}
		}
	}
	st, err = Backend{}.Start(ctx, machine.Shape{MemSize: 32 << 20}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Run(ctx, plan); !errors.Is(err, machine.ErrShapeMismatch) {
		t.Errorf("a plan for 16M on a 32M machine: %v", err)
	}
	stopped(st)
	st, err = Backend{}.Start(ctx, machine.ShapeOf(plan), opts)
	if err != nil {
		t.Fatal(err)
	}
	stopped(st) // the plan never came
}
