package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"kvmboot/boot"
	"kvmboot/e2e/hosttest"
	"kvmboot/e2e/junitcheck"
	"kvmboot/smoke"
)

// smokeMatrix is the e2e matrix file.
func smokeMatrix() string {
	return filepath.Join(repoRoot(), "e2e", "testdata", "smoke", "e2e.yaml")
}

// runSmoke runs `kvmboot smoke` with extra environment variables.
func runSmoke(t testing.TB, env []string, args ...string) (stdout, stderr string, status int) {
	t.Helper()
	return runCLIEnv(t, env, append([]string{"smoke"}, args...)...)
}

// readRecords decodes a JSON lines file strictly.
func readRecords(t *testing.T, path string) []smoke.Record {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var recs []smoke.Record
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		var r smoke.Record
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("%s: JSON line %.200q: %v", path, sc.Text(), err)
		}
		recs = append(recs, r)
	}
	return recs
}

// designedVerdict is what each case of e2e.yaml is built to end as.
func designedVerdict(name string) smoke.Kind {
	switch {
	case strings.HasPrefix(name, "testkernel/exit-3/"):
		return smoke.Fail
	case strings.HasPrefix(name, "testkernel/hang/"):
		return smoke.Timeout
	case strings.HasPrefix(name, "testkernel/poke-bad-ram/"):
		return smoke.BadRAM
	case strings.HasPrefix(name, "testkernel/triple/"):
		return smoke.Crash
	case strings.HasPrefix(name, "testkernel/no-room/"):
		return smoke.Error
	}
	return smoke.Pass
}

// TestSmokeMatrix runs the e2e matrix (the test kernel on our KVM machine
// and under QEMU, Debian's kernel under QEMU, several bad-RAM layouts,
// cases designed to fail, time out, crash, touch bad RAM and be refused)
// with -j 2, and checks the exit status, the summary, the JUnit file
// (parsed strictly) and the JSON lines against the designed outcomes.
func TestSmokeMatrix(t *testing.T) {
	requireKVM(t)
	requireQEMU(t)
	kernel := hosttest.DebianKernel(t)
	env := []string{"KVMBOOT_KERNEL_DIR=" + filepath.Dir(kernel), "SMOKE_INITRD=" + guestInitrd(t)}
	out := t.TempDir()
	junit, jsonl := filepath.Join(out, "junit.xml"), filepath.Join(out, "results.jsonl")
	start := time.Now()
	stdout, stderr, status := runSmoke(t, env, "-j", "2", "--out", out, "--junit", junit, "--jsonl", jsonl, "--progress", "lines", smokeMatrix())
	elapsed := time.Since(start)
	t.Logf("kvmboot smoke -j 2: %v\n%s", elapsed, stdout)
	if status != 1 {
		t.Fatalf("status %d, want 1 (designed failures)\nstderr: %s", status, stderr)
	}

	// JSON lines: one per attempt (no reruns: one per case), strictly decoded.
	recs := readRecords(t, jsonl)
	if len(recs) < 12 {
		t.Fatalf("%d cases, want at least 12", len(recs))
	}
	got := map[string]smoke.Kind{}
	backends := map[boot.VMM]bool{}
	debian := 0
	for _, r := range recs {
		if !r.Final || r.Attempt != 1 || r.Result == nil {
			t.Errorf("%s: record %+v", r.Case, r)
			continue
		}
		got[r.Case] = r.CaseVerdict
		if want := designedVerdict(r.Case); r.CaseVerdict != want {
			t.Errorf("%s: %s, designed to be %s: %s\n%s", r.Case, r.CaseVerdict, want, r.Reason, tailFile(r.Console, 20))
		}
		if r.CaseVerdict != smoke.Error {
			backends[r.Result.VMM] = true
			if fi, err := os.Stat(r.Console); err != nil || fi.Size() == 0 {
				t.Errorf("%s: console file %s: %v", r.Case, r.Console, err)
			}
		}
		if r.Kernel == "debian" {
			debian++
			if r.Result.VMM != boot.VMMQEMU || r.Result.Kernel.Protocol != "linux32" {
				t.Errorf("%s: ran on %s with protocol %s", r.Case, r.Result.VMM, r.Result.Kernel.Protocol)
			}
		}
	}
	if debian < 3 {
		t.Errorf("%d Debian cases, want several", debian)
	}
	for _, b := range []boot.VMM{boot.VMMKVM, boot.VMMQEMU, boot.VMMQEMUKernel} {
		if !backends[b] {
			t.Errorf("no case ran on %s", b)
		}
	}
	var designed []string
	for _, k := range got {
		if k != smoke.Pass {
			designed = append(designed, string(k))
		}
	}
	sort.Strings(designed)
	if strings.Join(designed, " ") != "bad-ram bad-ram crash crash error error fail fail timeout" {
		t.Errorf("failing verdicts %v", designed)
	}

	// JUnit: strictly parsed, counts add up, and agree with the JSON lines.
	f, err := os.Open(junit)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	suites, err := junitcheck.Check(f)
	if err != nil {
		t.Fatalf("JUnit: %v", err)
	}
	s := suites[0]
	if s.Tests != len(recs) || s.Failures != 7 || s.Errors != 2 || s.Skipped != 0 {
		t.Errorf("JUnit tests %d failures %d errors %d skipped %d", s.Tests, s.Failures, s.Errors, s.Skipped)
	}
	for _, c := range s.Cases {
		name := c.Classname + "/" + c.Name
		want := designedVerdict(name)
		switch {
		case want == smoke.Pass && c.Problem != "":
			t.Errorf("%s: JUnit %s", name, c.Problem)
		case want == smoke.Error && (c.Problem != "error" || c.Type != "error"):
			t.Errorf("%s: JUnit %s type %s, want an error", name, c.Problem, c.Type)
		case want != smoke.Pass && want != smoke.Error && (c.Problem != "failure" || c.Type != string(want)):
			t.Errorf("%s: JUnit %s type %s, want a failure of type %s", name, c.Problem, c.Type, want)
		}
		if want == smoke.Timeout || want == smoke.Fail {
			// The last console lines are in the failure text.
			if !strings.Contains(c.Text, "console lines of attempt 1") || !strings.Contains(c.Text, "kt: hello kvmboot-testkernel") {
				t.Errorf("%s: failure text without the console:\n%s", name, c.Text)
			}
		}
		if !strings.Contains(c.SystemOut, ".console.txt") {
			t.Errorf("%s: system-out %q", name, c.SystemOut)
		}
	}

	// The summary: a row per case, the backends side by side, the counts.
	for _, want := range []string{
		"testkernel/hang/kvm", "TIMEOUT", "testkernel/exit-3/kvm", "FAIL", "BAD-RAM", "CRASH", "ERROR",
		"KERNEL/SCENARIO", "kvm", "qemu-tcg", "qemu-kernel-tcg", "debian/plain",
		fmt.Sprintf("smoke: %d passed, 9 failed", len(recs)-9),
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("summary lacks %q", want)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "summary.txt")); err != nil {
		t.Error(err)
	}
}

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return tail(string(b), n)
}

// TestSmokeShards: shards 1/3, 2/3 and 3/3 of the matrix list each case
// exactly once, and booting them (test-kernel cases) runs each case once.
func TestSmokeShards(t *testing.T) {
	env := []string{"KVMBOOT_KERNEL_DIR=/nonexistent", "SMOKE_INITRD=/nonexistent"}
	all, _, status := runSmoke(t, env, "--list", smokeMatrix())
	if status != 0 {
		t.Fatalf("--list: status %d", status)
	}
	full := strings.Split(strings.TrimSpace(all), "\n")
	seen := map[string]int{}
	for k := 1; k <= 3; k++ {
		part, stderr, status := runSmoke(t, env, "--list", "--shard", fmt.Sprintf("%d/3", k), smokeMatrix())
		if status != 0 {
			t.Fatalf("--shard %d/3: status %d %s", k, status, stderr)
		}
		for _, l := range strings.Split(strings.TrimSpace(part), "\n") {
			seen[l]++
		}
	}
	if len(seen) != len(full) {
		t.Errorf("shards list %d distinct cases, the matrix %d", len(seen), len(full))
	}
	for _, l := range full {
		if seen[l] != 1 {
			t.Errorf("%q in %d shards", l, seen[l])
		}
	}

	requireKVM(t)
	requireQEMU(t)
	ran := map[string]int{}
	out := t.TempDir()
	for k := 1; k <= 3; k++ {
		jsonl := filepath.Join(out, fmt.Sprintf("shard%d.jsonl", k))
		_, stderr, status := runSmoke(t, env, "-j", "2", "--out", out, "--jsonl", jsonl, "--progress", "none",
			"--run", `^testkernel/(plain|bad-16M-32M|memmap|lowest)/`, "--shard", fmt.Sprintf("%d/3", k), smokeMatrix())
		if status != 0 {
			t.Fatalf("shard %d/3: status %d %s", k, status, stderr)
		}
		for _, r := range readRecords(t, jsonl) {
			ran[r.Case]++
		}
	}
	if len(ran) != 9 { // 4 scenarios x kvm, qemu-tcg, and plain on qemu-kernel-tcg
		t.Errorf("ran %d distinct cases, want 9: %v", len(ran), ran)
	}
	for c, n := range ran {
		if n != 1 {
			t.Errorf("%s ran %d times", c, n)
		}
	}
}

// TestSmokeBadInput: a bad matrix or flag is one line on stderr naming
// the problem (the file and line for a matrix) and status 126.
func TestSmokeBadInput(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("kernels:\n  - name: k\n    pth: x\nscenarios: [{name: s}]\n"), 0o644)
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("kernels: [{name: k}]\nscenarios: [{name: s}]\n"), 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{bad}, bad + `:3: unknown field "pth" in a kernel`},
		{[]string{filepath.Join(dir, "none.yaml")}, "none.yaml: no such file"},
		{[]string{"--shard", "4/3", good}, "--shard"},
		{[]string{"--shard", "x", good}, "--shard"},
		{[]string{"-j", "0", good}, "-j 0"},
		{[]string{"--rerun-failed", "-1", good}, "--rerun-failed"},
		{[]string{"--run", "(", good}, "--run"},
		{[]string{"--progress", "fancy", good}, "--progress"},
		{[]string{}, "accepts 1 arg"},
	} {
		_, stderr, status := runSmoke(t, nil, tc.args...)
		if status != 126 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: status %d stderr %q, want 126 and one line with %q", tc.args, status, stderr, tc.want)
		}
	}
}

// BenchmarkSmokeThroughput boots a test-kernel matrix (24 cases on our KVM
// machine) through the smoke harness at -j 2 and reports cases per
// minute, the boot itself (time inside boot.Run) and the harness's
// overhead per case: in the worker (an attempt's wall time minus boot.Run)
// and from the wall clock (elapsed x jobs / cases minus the boot).
func BenchmarkSmokeThroughput(b *testing.B) {
	requireKVM(b)
	m, err := smoke.Load(filepath.Join(repoRoot(), "e2e", "testdata", "smoke", "throughput.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	out := b.TempDir()
	var cases int
	var bootSum, overSum, wall time.Duration
	for b.Loop() {
		start := time.Now()
		r, err := smoke.Run(context.Background(), m, m.Cases, smoke.Options{Jobs: 2, OutDir: out, Observers: []smoke.Observer{smoke.NewJSONL(io.Discard)}})
		if err != nil {
			b.Fatal(err)
		}
		if err := smoke.WriteJUnit(io.Discard, r); err != nil {
			b.Fatal(err)
		}
		smoke.WriteSummary(io.Discard, r)
		wall += time.Since(start)
		if !r.OK() {
			var s bytes.Buffer
			smoke.WriteSummary(&s, r)
			b.Fatalf("not all passed:\n%s", s.String())
		}
		for _, cr := range r.Cases {
			for _, a := range cr.Attempts {
				bootSum += a.Boot
				overSum += a.Wall - a.Boot
			}
		}
		cases += len(r.Cases)
	}
	n := float64(cases)
	bootMS := float64(bootSum.Microseconds()) / 1000 / n
	b.ReportMetric(n/wall.Minutes(), "cases/min")
	b.ReportMetric(bootMS, "boot-ms/case")
	b.ReportMetric(float64(overSum.Microseconds())/1000/n, "overhead-ms/case")
	b.ReportMetric(float64(wall.Microseconds())/1000*2/n-bootMS, "wall-overhead-ms/case")
}
