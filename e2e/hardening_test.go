package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"kvmboot/boot"
	"kvmboot/loader/memmap"
	"kvmboot/machine"
	"kvmboot/machine/kvm"
	"kvmboot/machine/memtest"
	"kvmboot/machine/qemu"
)

// TestSignalEndsRunCleanly: SIGINT or SIGTERM to kvmboot ends the run with
// outcome "error", reason "interrupted", status 126, the JSON written and
// the console log complete on disk.
func TestSignalEndsRunCleanly(t *testing.T) {
	for _, vmm := range []string{"kvm", "qemu"} {
		for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
			t.Run(vmm+"/"+sig.String(), func(t *testing.T) {
				requireBackend(t, boot.VMM(vmm))
				consoleFile := filepath.Join(t.TempDir(), "console")
				cmd := exec.Command(cli(t), "run", "--vmm="+vmm, "--json", "--console", consoleFile, "--cmdline", "kt.hang", "--timeout", "100s")
				var stdout bytes.Buffer
				cmd.Stdout = &stdout
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				// Wait until the guest has said all it will say.
				deadline := time.Now().Add(60 * time.Second)
				for {
					b, _ := os.ReadFile(consoleFile)
					if bytes.Contains(b, []byte("kt: result pass")) {
						break
					}
					if time.Now().After(deadline) {
						cmd.Process.Kill()
						t.Fatalf("the guest never reported; console: %q", b)
					}
					time.Sleep(20 * time.Millisecond)
				}
				cmd.Process.Signal(sig)
				err := cmd.Wait()
				ee, ok := err.(*exec.ExitError)
				if !ok || ee.ExitCode() != machine.StatusError {
					t.Fatalf("exit %v, want status 126\n%s", err, stdout.String())
				}
				var res boot.Result
				if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
					t.Fatalf("JSON: %v\n%s", err, stdout.String())
				}
				if res.Outcome != machine.Error || res.Reason != "interrupted" {
					t.Errorf("outcome %s reason %q", res.Outcome, res.Reason)
				}
				b, _ := os.ReadFile(consoleFile)
				if !bytes.Contains(b, []byte("kt: hello")) || !bytes.Contains(b, []byte("kt: result pass")) {
					t.Errorf("console log incomplete: %q", b)
				}
			})
		}
	}
}

func openFDs(t *testing.T) int {
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}

// osThreads is how many threads this process has.
func osThreads(t *testing.T) int {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if n, ok := strings.CutPrefix(line, "Threads:"); ok {
			v, err := strconv.Atoi(strings.TrimSpace(n))
			if err == nil {
				return v
			}
		}
	}
	t.Fatal("no thread count in /proc/self/status")
	return 0
}

// TestNoLeaksAcrossRuns: many SMP runs in one process through the Go API
// (four processors, every AP started: a thread each, joined at the end)
// leave no goroutines, threads, file descriptors or mappings behind.
// KVMBOOT_LEAK_RUNS sets the count (default 1000).
func TestNoLeaksAcrossRuns(t *testing.T) {
	requireKVM(t)
	runs := 1000
	if s := os.Getenv("KVMBOOT_LEAK_RUNS"); s != "" {
		runs, _ = strconv.Atoi(s)
	}
	if testing.Short() {
		runs = 50
	}
	one := func() {
		res, err := boot.Run(context.Background(), boot.Config{VMM: "kvm", CPUs: 4, NoVerify: true, Cmdline: "kt.smp kt.exit=0", Timeout: 30 * time.Second})
		if err != nil || res.Outcome != machine.Pass {
			t.Errorf("run: %v %+v", err, res)
		}
	}
	workers := runtime.NumCPU()
	parallel := func(n int) {
		var wg sync.WaitGroup
		work := make(chan struct{})
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range work {
					one()
				}
			}()
		}
		for i := 0; i < n && !t.Failed(); i++ {
			work <- struct{}{}
		}
		close(work)
		wg.Wait()
	}
	// Warm up: lazily started runtime goroutines, cached files, and the
	// threads Go keeps for vCPUs run side by side (it reuses them, never
	// ends them).
	parallel(2 * workers)
	time.Sleep(50 * time.Millisecond)
	runtime.GC()
	fds, goroutines, threads := openFDs(t), runtime.NumGoroutine(), osThreads(t)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heap := ms.HeapInuse

	parallel(runs)

	time.Sleep(50 * time.Millisecond) // watchers exit after their run's end
	runtime.GC()
	runtime.ReadMemStats(&ms)
	if got := openFDs(t); got > fds {
		t.Errorf("%d runs: open file descriptors %d -> %d", runs, fds, got)
	}
	// Go may start threads of its own (GC, blocked syscalls) and the
	// workers' vCPUs may overlap a little more than in the warm-up: a
	// leak would be a thread a run, or four.
	if got := osThreads(t); got > threads+4+4*workers {
		t.Errorf("%d runs: threads %d -> %d", runs, threads, got)
	}
	if got := runtime.NumGoroutine(); got > goroutines {
		buf := make([]byte, 1<<16)
		t.Errorf("%d runs: goroutines %d -> %d\n%s", runs, goroutines, got, buf[:runtime.Stack(buf, true)])
	}
	if ms.HeapInuse > heap+64<<20 {
		t.Errorf("%d runs: heap in use %d -> %d bytes", runs, heap, ms.HeapInuse)
	}
	maps, _ := os.ReadFile("/proc/self/maps")
	if n := strings.Count(string(maps), "\n"); n > 2000 {
		t.Errorf("%d memory mappings after %d runs: guest RAM not unmapped?", n, runs)
	}
}

// TestGuestMisbehaviour covers guests that write where they should not or
// flood the console, on each backend: each ends with the right outcome, the
// console log on disk is complete, and kvmboot's memory stays bounded. With
// four processors (kt.smp), an AP (APIC ID 3) that triple-faults, touches
// bad RAM or spins with interrupts off while the bootstrap processor exits
// ends the run as it would on the bootstrap processor, and the report
// names it where the backend can tell.
//
// The QEMU flood is 16 MiB by default (about 30 s under TCG: the guest polls
// the UART for every byte); KVMBOOT_FLOOD_BYTES=52428800 gives issue 9's
// 50 MB (about 100 s here).
func TestGuestMisbehaviour(t *testing.T) {
	const floodKVM = 200_000 // kvm_pvm emulates each port write: ~7 s
	floodQEMU := 16 << 20
	if s := os.Getenv("KVMBOOT_FLOOD_BYTES"); s != "" {
		floodQEMU, _ = strconv.Atoi(s)
	}
	type misbehaviour struct {
		vmm, name, cmdline string
		outcome            machine.Outcome
		want               string // on the console
		cpus               int    // --smp; 0 leaves the default, one
		reason             string // in the result's reason
	}
	const apsArrived = "kt: smp arrived=3 of=3"
	var cases []misbehaviour
	for _, vmm := range []string{"kvm", "qemu"} {
		cases = append(cases,
			misbehaviour{vmm, "triple-fault", "kt.triple", machine.Crash, "kt: result pass", 0, ""},
			misbehaviour{vmm, "halt", "kt.hang", machine.Timeout, "kt: result pass", 0, ""},
			misbehaviour{vmm, "spin", "kt.spin", machine.Timeout, "kt: result pass", 0, ""},
			misbehaviour{vmm, "panic", "kt.panic", machine.Crash, "Kernel panic", 0, ""},
			misbehaviour{vmm, "reset", "kt.reset", machine.Crash, "kt: result pass", 0, ""},
			misbehaviour{vmm, "bad-ram-write", "kt.poke=0x1800000", machine.Crash, "kt: result pass", 0, ""},
			misbehaviour{vmm, "ap-bad-ram-write", "kt.smp kt.ap.poke=0x1800000 kt.hang", machine.Crash, apsArrived, 4, "at 0x1800000 by \"mov dword ptr [eax], edx\""},
			misbehaviour{vmm, "ap-spins-while-bsp-exits", "kt.smp kt.ap.spin", machine.Pass, apsArrived, 4, ""},
			misbehaviour{vmm, "ap-halts-bsp-spins", "kt.smp kt.spin", machine.Timeout, apsArrived, 4, ""},
		)
	}
	for _, tc := range append(cases, []misbehaviour{
		{"kvm", "write-rom", "kt.poke=0xf0000 kt.peek=0xf0000", machine.Pass, "kt: poke 0x000f0000 done", 0, ""},
		{"kvm", "write-no-ram", "kt.poke=0x30000000 kt.peek=0x30000000", machine.Pass, "kt: peek 0x30000000=0xffffffff", 0, ""},
		{"kvm", "flood", "kt.flood=" + strconv.Itoa(floodKVM), machine.Pass, "kt: flood done", 0, ""},
		{"kvm", "ap-triple-fault", "kt.smp kt.ap.triple kt.hang", machine.Crash, apsArrived, 4, "triple fault (KVM_EXIT_SHUTDOWN): CPU 3,"},
		{"qemu", "ap-triple-fault", "kt.smp kt.ap.triple kt.hang", machine.Crash, apsArrived, 4, "triple fault: QEMU does not say which of the 4 processors"},
		{"qemu", "write-rom", "kt.poke=0xf0000", machine.Pass, "kt: poke 0x000f0000 done", 0, ""},
		{"qemu", "write-no-ram", "kt.poke=0x30000000 kt.peek=0x30000000", machine.Pass, "kt: peek 0x30000000=", 0, ""},
		{"qemu", "flood", "kt.flood=" + strconv.Itoa(floodQEMU), machine.Pass, "kt: flood done", 0, ""},
		{"qemu", "ports", "kt.ports", machine.Pass, "kt: ports done", 0, ""},
	}...) {
		t.Run(tc.vmm+"/"+tc.name, func(t *testing.T) {
			requireBackend(t, boot.VMM(tc.vmm))
			consoleFile := filepath.Join(t.TempDir(), "console")
			timeout := "300s"
			if tc.outcome == machine.Timeout {
				timeout = "3s"
			}
			args := []string{"run", "--vmm=" + tc.vmm, "--json", "--console", consoleFile, "--bad-ram", "16M-32M",
				"--cmdline", tc.cmdline, "--timeout", timeout}
			if tc.cpus != 0 {
				args = append(args, "--smp", strconv.Itoa(tc.cpus))
			}
			stdout, stderr, status := runCLI(t, args...)
			var res boot.Result
			if err := json.Unmarshal([]byte(stdout), &res); err != nil {
				t.Fatalf("JSON: %v\n%s%s", err, stdout, stderr)
			}
			if res.Outcome != tc.outcome || status != res.ExitCode {
				t.Fatalf("outcome %s status %d (%d): %s", res.Outcome, status, res.ExitCode, res.Reason)
			}
			if !strings.Contains(res.Reason, tc.reason) {
				t.Errorf("reason %q lacks %q", res.Reason, tc.reason)
			}
			if tc.name == "ap-bad-ram-write" && (len(res.BadRAMAccesses) != 1 || res.BadRAMAccesses[0].CPU != 3 || !strings.HasSuffix(res.Reason, "on CPU 3")) {
				t.Errorf("bad-RAM accesses %+v, reason %q: want one by CPU 3", res.BadRAMAccesses, res.Reason)
			}
			b, err := os.ReadFile(consoleFile)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(b, []byte(tc.want)) || !bytes.Contains(b, []byte("kt: result pass")) {
				t.Errorf("console lacks %q or the report (%d bytes)", tc.want, len(b))
			}
			if int64(len(b)) != res.ConsoleBytes {
				t.Errorf("console file has %d bytes, the guest printed %d", len(b), res.ConsoleBytes)
			}
			// Guest RAM is 256 MiB, mapped but barely touched: kvmboot's
			// own memory stays small whatever the guest does.
			if res.PeakRSSKB > 96<<10 {
				t.Errorf("peak RSS %d KiB", res.PeakRSSKB)
			}
			if tc.name == "flood" {
				n := floodKVM
				if tc.vmm == "qemu" {
					n = floodQEMU
				}
				if len(b) < n {
					t.Errorf("console file has %d bytes, the guest flooded %d", len(b), n)
				}
				t.Logf("%s: %d console bytes, peak RSS %d KiB, %.0f ms", tc.vmm, len(b), res.PeakRSSKB, res.Timings.Total)
			}
		})
	}
}

// TestUnprivileged runs kvmboot as an ordinary user (nobody) when the tests
// run as root: the QEMU backend needs no privilege at all, and without
// access to /dev/kvm the KVM backend refuses in one line with status 126.
func TestUnprivileged(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipped: needs root to drop privileges (the tests already run unprivileged)")
	}
	dir, err := os.MkdirTemp("", "kvmboot-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "kvmboot")
	src, _ := os.ReadFile(cli(t))
	if err := os.WriteFile(bin, src, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o777)
	run := func(args ...string) (string, string, int) {
		cmd := exec.Command(bin, args...)
		cmd.Dir = dir
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "XDG_CACHE_HOME=" + filepath.Join(dir, "cache")}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		status := 0
		if ee, ok := err.(*exec.ExitError); ok {
			status = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return o.String(), e.String(), status
	}
	if f, err := os.Open("/dev/kvm"); err == nil {
		f.Close()
		if fi, _ := os.Stat("/dev/kvm"); fi.Mode().Perm()&0o006 == 0 {
			_, stderr, status := run("run", "--vmm=kvm")
			if status != 126 || !strings.Contains(stderr, "/dev/kvm") || strings.Count(stderr, "\n") != 1 {
				t.Errorf("--vmm=kvm as nobody: status %d, stderr %q; want 126 and one line naming /dev/kvm", status, stderr)
			}
		}
	}
	if _, err := exec.LookPath("qemu-system-i386"); err == nil {
		_, stderr, status := run("run", "--vmm=qemu", "--accel=tcg", "--console", filepath.Join(dir, "console"))
		if status != 0 {
			t.Errorf("--vmm=qemu as nobody: status %d: %s", status, stderr)
		}
	}
	if _, stderr, status := run("plan", "--bad-ram", "16M-32M"); status != 0 {
		t.Errorf("plan as nobody: status %d: %s", status, stderr)
	}
}

// TestGuestChannelGarbage: a guest that sends malformed, cut-off and
// endless frames on the memtest channel (COM2) cannot hurt the host's
// decoder: the run ends normally, every bad frame is counted, none is
// taken for a good one.
func TestGuestChannelGarbage(t *testing.T) {
	const n = 20_000
	for _, vmm := range []string{"kvm", "qemu"} {
		t.Run(vmm, func(t *testing.T) {
			var backend machine.Backend
			if vmm == "kvm" {
				requireKVM(t)
				backend = kvm.Backend{}
			} else {
				requireQEMU(t)
				backend = qemu.Backend{Accel: qemu.AccelTCG}
			}
			plan, err := boot.Plan(boot.Config{Cmdline: "kt.com2=" + strconv.Itoa(n)})
			if err != nil {
				t.Fatal(err)
			}
			var console bytes.Buffer
			dec := &memtest.Decoder{OnFrame: func(f memtest.Frame) { t.Errorf("garbage decoded as a frame: %+v", f) }}
			res, err := backend.Run(context.Background(), plan, machine.Options{
				Timeout: 2 * time.Minute, Console: machine.NewConsole(&console, nil), COM2: dec, BadRAM: plan.Map.Ranges(memmap.KindBad)})
			if err != nil {
				t.Fatal(err)
			}
			if res.Outcome != machine.Pass || !strings.Contains(console.String(), "kt: com2 done") {
				t.Fatalf("outcome %s: %s\n%s", res.Outcome, res.Reason, console.String())
			}
			dec.Close()
			st := dec.Stats()
			if st.Frames != 0 || st.BadLength == 0 || st.BadChecksum == 0 || st.Skipped == 0 {
				t.Errorf("decoder stats %+v: want bad lengths, bad checks and skipped bytes, no frames", st)
			}
			t.Logf("%s: %d bytes of garbage: %+v", vmm, n, st)
		})
	}
}
