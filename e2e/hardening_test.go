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
	"kvmboot/machine"
)

// TestSignalEndsRunCleanly: SIGINT or SIGTERM to kvmboot ends the run with
// outcome "error", reason "interrupted", status 126, the JSON written and
// the console log complete on disk.
func TestSignalEndsRunCleanly(t *testing.T) {
	backends := []string{"kvm"}
	if _, err := exec.LookPath("qemu-system-i386"); err == nil {
		backends = append(backends, "qemu")
	}
	for _, vmm := range backends {
		for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
			t.Run(vmm+"/"+sig.String(), func(t *testing.T) {
				if vmm == "kvm" {
					requireKVM(t)
				}
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

// TestNoLeaksAcrossRuns: many runs in one process through the Go API leave
// no goroutines, file descriptors or mappings behind. KVMBOOT_LEAK_RUNS
// sets the count (default 1000).
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
		res, err := boot.Run(context.Background(), boot.Config{VMM: "kvm", NoVerify: true, Cmdline: "kt.exit=0", Timeout: 30 * time.Second})
		if err != nil || res.Outcome != machine.Pass {
			t.Errorf("run: %v %+v", err, res)
		}
	}
	one() // warm up: lazily started runtime goroutines, cached files
	runtime.GC()
	fds, goroutines := openFDs(t), runtime.NumGoroutine()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heap := ms.HeapInuse

	var wg sync.WaitGroup
	work := make(chan struct{})
	for w := 0; w < runtime.NumCPU(); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				one()
			}
		}()
	}
	for i := 0; i < runs && !t.Failed(); i++ {
		work <- struct{}{}
	}
	close(work)
	wg.Wait()

	time.Sleep(50 * time.Millisecond) // watchers exit after their run's end
	runtime.GC()
	runtime.ReadMemStats(&ms)
	if got := openFDs(t); got > fds {
		t.Errorf("%d runs: open file descriptors %d -> %d", runs, fds, got)
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
