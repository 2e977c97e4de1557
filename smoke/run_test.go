package smoke

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"kvmboot/boot"
	"kvmboot/e2e/junitcheck"
	"kvmboot/machine"
)

// fake is a Runner that does what the case's command line says (r=WHAT),
// prints consoleLines lines, and counts attempts and concurrency.
type fake struct {
	mu       sync.Mutex
	attempts map[string]int
	running  atomic.Int32
	maxRun   atomic.Int32
	lines    int
	delay    time.Duration
}

func newFake() *fake { return &fake{attempts: map[string]int{}, lines: 60} }

func (f *fake) run(ctx context.Context, cfg boot.Config) (*boot.Result, error) {
	n := f.running.Add(1)
	defer f.running.Add(-1)
	for {
		m := f.maxRun.Load()
		if n <= m || f.maxRun.CompareAndSwap(m, n) {
			break
		}
	}
	what := ""
	for _, w := range strings.Fields(cfg.Cmdline) {
		if v, ok := strings.CutPrefix(w, "r="); ok {
			what = v
		}
	}
	f.mu.Lock()
	key := cfg.Cmdline + "|" + cfg.VMM.String()
	f.attempts[key]++
	attempt := f.attempts[key]
	f.mu.Unlock()

	for i := 1; i <= f.lines; i++ {
		fmt.Fprintf(cfg.Console, "fake: line %d of %s attempt %d\n", i, what, attempt)
	}
	if f.delay > 0 {
		time.Sleep(f.delay)
	}
	res := &boot.Result{Outcome: machine.Pass, Reason: "guest wrote 0 to the debug-exit port", VMM: cfg.VMM, BadRAMAccesses: []machine.BadAccess{}}
	res.ConsoleTail = nil // as a backend that keeps none: the harness reads the file
	var flaky int
	if _, err := fmt.Sscanf(what, "flaky%d", &flaky); err == nil {
		if attempt <= flaky {
			what = "timeout"
		} else {
			what = "pass"
		}
	}
	switch what {
	case "", "pass":
	case "exit3":
		res.Outcome, res.ExitCode, res.Reason = machine.Fail, 3, "guest wrote 3 to the debug-exit port"
	case "timeout":
		res.Outcome, res.ExitCode, res.Reason = machine.Timeout, machine.StatusTimeout, "no result within 2s"
	case "crash":
		res.Outcome, res.ExitCode, res.Reason = machine.Crash, machine.StatusCrash, "console: Kernel panic - not syncing: <fake>\x01]]>"
	case "badram":
		res.Outcome, res.ExitCode, res.Reason = machine.Crash, machine.StatusCrash, "guest touched bad RAM: 4-byte write at 0x1000000"
		res.BadRAMAccesses = []machine.BadAccess{{Addr: 0x1000000, Size: 4, Write: true}}
	case "badram-record": // recorded, then the guest passed
		res.BadRAMAccesses = []machine.BadAccess{{Addr: 0x1000000, Size: 4, Write: true, Insn: "mov dword ptr [eax], ecx", IP: 0x1000f00}}
	case "error":
		return &boot.Result{Outcome: machine.Error, ExitCode: machine.StatusError, Reason: "no room for kernel"}, errors.New("no room for kernel")
	case "nilerror":
		return nil, errors.New("backend vanished")
	case "panic":
		panic("fake runner panics")
	case "hang":
		<-ctx.Done()
		return &boot.Result{Outcome: machine.Error, ExitCode: machine.StatusError, Reason: "interrupted"}, nil
	default:
		panic("fake: unknown action " + what)
	}
	return res, nil
}

// fakeMatrix is a matrix whose scenarios are fake actions.
func fakeMatrix(t testing.TB, scenarios ...string) *Matrix {
	t.Helper()
	var b strings.Builder
	b.WriteString("kernels: [{name: k}]\nscenarios:\n")
	for _, s := range scenarios {
		name, extra, _ := strings.Cut(s, " ")
		fmt.Fprintf(&b, "  - {name: %s, cmdline: r=%s %s}\n", name, name, extra)
	}
	m, err := Parse([]byte(b.String()), "fake.yaml")
	if err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	return m
}

func runFake(t testing.TB, m *Matrix, f *fake, opts Options) (*Report, []Record, []byte) {
	t.Helper()
	var jl bytes.Buffer
	opts.Runner = f.run
	if opts.OutDir == "" {
		opts.OutDir = t.TempDir()
	}
	j := NewJSONL(&jl)
	opts.Observers = append(opts.Observers, j)
	r, err := Run(context.Background(), m, m.Cases, opts)
	if err != nil {
		t.Fatal(err)
	}
	if j.Err() != nil {
		t.Fatal(j.Err())
	}
	return r, decodeJSONL(t, jl.Bytes()), jl.Bytes()
}

// decodeJSONL decodes every line strictly into a Record.
func decodeJSONL(t testing.TB, b []byte) []Record {
	t.Helper()
	var recs []Record
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		var r Record
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("JSON line %q: %v", sc.Text(), err)
		}
		recs = append(recs, r)
	}
	return recs
}

func verdicts(r *Report) map[string]Kind {
	v := map[string]Kind{}
	for _, cr := range r.Cases {
		v[cr.Case.Scenario] = cr.Kind
	}
	return v
}

func TestRunVerdicts(t *testing.T) {
	m := fakeMatrix(t, "pass", "exit3", "timeout", "crash", "badram", "error", "nilerror", "panic", "badram-record")
	// badram-record passes only when touching bad RAM is allowed.
	f := newFake()
	r, recs, _ := runFake(t, m, f, Options{Jobs: 3})
	want := map[string]Kind{
		"pass": Pass, "exit3": Fail, "timeout": Timeout, "crash": Crash, "badram": BadRAM,
		"error": Error, "nilerror": Error, "panic": Error, "badram-record": BadRAM,
	}
	got := verdicts(r)
	for s, k := range want {
		if got[s] != k {
			t.Errorf("%s: verdict %s, want %s (%s)", s, got[s], k, reasonOf(r, s))
		}
	}
	if r.OK() {
		t.Error("report OK with failures")
	}
	if len(recs) != len(m.Cases) {
		t.Errorf("%d JSON lines, want %d", len(recs), len(m.Cases))
	}
	for _, rec := range recs {
		if !rec.Final || rec.Attempt != 1 || rec.Result == nil || rec.Result.Outcome == "" || rec.Case != "k/"+rec.Scenario || rec.Kernel != "k" {
			t.Errorf("record %+v", rec)
		}
		if rec.Verdict != want[rec.Scenario] || rec.CaseVerdict != want[rec.Scenario] {
			t.Errorf("%s: record verdict %s/%s", rec.Scenario, rec.Verdict, rec.CaseVerdict)
		}
		if _, err := os.Stat(rec.Console); err != nil {
			t.Errorf("console file: %v", err)
		}
	}
	for _, s := range []string{"panic", "nilerror"} {
		if !strings.Contains(reasonOf(r, s), map[string]string{"panic": "harness panic: fake runner panics", "nilerror": "backend vanished"}[s]) {
			t.Errorf("%s: reason %q", s, reasonOf(r, s))
		}
	}
	if !strings.Contains(reasonOf(r, "badram-record"), `by "mov dword ptr [eax], ecx"`) {
		t.Errorf("badram-record reason %q", reasonOf(r, "badram-record"))
	}
}

func reasonOf(r *Report, scenario string) string {
	for _, cr := range r.Cases {
		if cr.Case.Scenario == scenario {
			return cr.Reason
		}
	}
	return ""
}

// TestRunExpectations: designed outcomes met are passes, and a pass that
// was expected to fail is a failure.
func TestRunExpectations(t *testing.T) {
	text := `
kernels: [{name: k}]
scenarios:
  - {name: exit3, cmdline: r=exit3, expectation: {status: 3}}
  - {name: timeout, cmdline: r=timeout, expectation: {outcome: timeout}}
  - {name: crash, cmdline: r=crash, expectation: {outcome: crash, status: 125}}
  - {name: error, cmdline: r=error, expectation: {outcome: error}}
  - {name: badram, cmdline: r=badram, expectation: {outcome: crash, must_not_touch_bad_ram: false}}
  - {name: record, cmdline: r=badram-record, expectation: {must_not_touch_bad_ram: false}}
  - {name: pass, cmdline: r=pass, expectation: {outcome: crash}}
  - {name: wrong-status, cmdline: r=exit3, expectation: {status: 4}}
`
	m, err := Parse([]byte(text), "m.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r, _, _ := runFake(t, m, newFake(), Options{Jobs: 2})
	want := map[string]Kind{"exit3": Pass, "timeout": Pass, "crash": Pass, "error": Pass, "badram": Pass, "record": Pass, "pass": Fail, "wrong-status": Fail}
	for s, k := range verdicts(r) {
		if want[s] != k {
			t.Errorf("%s: %s, want %s (%s)", s, k, want[s], reasonOf(r, s))
		}
	}
	if got := reasonOf(r, "pass"); got != "want crash, got pass (0): guest wrote 0 to the debug-exit port" {
		t.Errorf("reason %q", got)
	}
}

// TestRerunFlaky: a case that fails and then passes is flaky, never a
// pass; it fails the run unless flaky cases are allowed; one that keeps
// failing reports every attempt; a passing case runs once.
func TestRerunFlaky(t *testing.T) {
	for _, allow := range []bool{false, true} {
		m := fakeMatrix(t, "pass", "flaky1", "flaky2", "timeout")
		f := newFake()
		r, recs, _ := runFake(t, m, f, Options{Jobs: 2, Rerun: 2, AllowFlaky: allow})
		want := map[string]struct {
			kind     Kind
			attempts int
		}{"pass": {Pass, 1}, "flaky1": {Flaky, 2}, "flaky2": {Flaky, 3}, "timeout": {Timeout, 3}}
		for _, cr := range r.Cases {
			w := want[cr.Case.Scenario]
			if cr.Kind != w.kind || len(cr.Attempts) != w.attempts {
				t.Errorf("allow %v: %s: %s after %d attempts, want %s after %d", allow, cr.Case.Scenario, cr.Kind, len(cr.Attempts), w.kind, w.attempts)
			}
		}
		if r.OK() {
			t.Errorf("allow %v: OK with a timeout", allow)
		}
		if got := reasonOf(r, "flaky2"); got != "passed on attempt 3 after attempt 1 timeout: want pass (0), got timeout (124): no result within 2s; attempt 2 timeout: want pass (0), got timeout (124): no result within 2s" {
			t.Errorf("flaky reason %q", got)
		}
		if got := reasonOf(r, "timeout"); !strings.HasSuffix(got, "(failed all 3 attempts)") {
			t.Errorf("timeout reason %q", got)
		}
		if len(recs) != 1+2+3+3 {
			t.Errorf("%d JSON lines, want one per attempt (9)", len(recs))
		}
		finals := 0
		for _, rec := range recs {
			if rec.Final {
				finals++
			}
			if rec.Scenario == "flaky1" && rec.Final && (rec.CaseVerdict != Flaky || rec.Verdict != Pass || rec.Attempt != 2) {
				t.Errorf("flaky1 final record %+v", rec)
			}
			if rec.Attempt > 1 && !strings.Contains(rec.Console, fmt.Sprintf(".attempt%d.console.txt", rec.Attempt)) {
				t.Errorf("attempt %d console %s", rec.Attempt, rec.Console)
			}
		}
		if finals != 4 {
			t.Errorf("%d final records, want 4", finals)
		}
		// Only flaky cases: the allowance decides.
		m2 := fakeMatrix(t, "pass", "flaky1")
		r2, _, _ := runFake(t, m2, newFake(), Options{Rerun: 1, AllowFlaky: allow})
		if r2.OK() != allow {
			t.Errorf("allow %v: OK %v with one flaky case", allow, r2.OK())
		}
		// Without reruns a flaky case is a plain failure.
		r3, _, _ := runFake(t, fakeMatrix(t, "flaky1"), newFake(), Options{AllowFlaky: allow})
		if r3.Cases[0].Kind != Timeout || r3.OK() {
			t.Errorf("no reruns: %s", r3.Cases[0].Kind)
		}
	}
}

// TestRunJobs: at most Jobs cases run at once, and with enough cases
// exactly Jobs do.
func TestRunJobs(t *testing.T) {
	var names []string
	for i := range 12 {
		names = append(names, fmt.Sprintf("s%02d", i))
	}
	var b strings.Builder
	b.WriteString("kernels: [{name: k}]\nscenarios:\n")
	for _, n := range names {
		fmt.Fprintf(&b, "  - {name: %s}\n", n)
	}
	m, err := Parse([]byte(b.String()), "m.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, jobs := range []int{1, 3, 5} {
		f := newFake()
		f.delay = 5 * time.Millisecond
		r, _, _ := runFake(t, m, f, Options{Jobs: jobs})
		if got := int(f.maxRun.Load()); got != jobs {
			t.Errorf("-j %d: %d ran at once", jobs, got)
		}
		if !r.OK() || len(r.Cases) != 12 || r.Jobs != jobs {
			t.Errorf("-j %d: OK %v, %d cases", jobs, r.OK(), len(r.Cases))
		}
	}
}

// TestWatchdog: a runner that ignores its timeout is stopped by the
// harness, and the case is a timeout.
func TestWatchdog(t *testing.T) {
	m, err := Parse([]byte("kernels: [{name: k}]\nscenarios: [{name: hang, cmdline: r=hang, timeout: 10ms}]\n"), "m.yaml")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r, _, _ := runFake(t, m, newFake(), Options{Grace: 20 * time.Millisecond})
	if cr := r.Cases[0]; cr.Kind != Timeout || !strings.Contains(cr.Reason, "stopped by the harness") {
		t.Errorf("%s: %s", cr.Kind, cr.Reason)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
}

// TestInterrupt: cancelling the run marks unstarted cases not-run.
func TestInterrupt(t *testing.T) {
	m := fakeMatrix(t, "a", "b", "c", "d")
	for _, c := range m.Cases {
		c.Config.Cmdline = "r=hang"
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	f := newFake()
	r, err := Run(ctx, m, m.Cases, Options{Jobs: 1, OutDir: t.TempDir(), Runner: f.run})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Interrupted || r.OK() {
		t.Errorf("interrupted %v OK %v", r.Interrupted, r.OK())
	}
	c := r.Counts()
	if c[NotRun] == 0 || c[Error] != 1 {
		t.Errorf("counts %v", c)
	}
	var buf bytes.Buffer
	WriteSummary(&buf, r)
	if !strings.Contains(buf.String(), "skipped") || !strings.Contains(buf.String(), "interrupted") {
		t.Errorf("summary:\n%s", buf.String())
	}
	var x bytes.Buffer
	if err := WriteJUnit(&x, r); err != nil {
		t.Fatal(err)
	}
	suites, err := junitcheck.Check(&x)
	if err != nil {
		t.Fatal(err)
	}
	if suites[0].Skipped != c[NotRun] || suites[0].Errors != 1 {
		t.Errorf("junit %+v", suites[0])
	}
}

// TestConsoleFiles: each case and attempt has its own console file.
func TestConsoleFiles(t *testing.T) {
	m, err := Parse([]byte("kernels: [{name: k, cmdline: kk}, {name: j, cmdline: jj}]\nscenarios: [{name: a, cmdline: r=pass}, {name: b, cmdline: r=flaky1}]\nvmms: [kvm, qemu]\n"), "m.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	r, _, _ := runFake(t, m, newFake(), Options{OutDir: out, Rerun: 1})
	files := map[string]bool{}
	for _, cr := range r.Cases {
		for _, a := range cr.Attempts {
			if files[a.Console] {
				t.Errorf("%s used twice", a.Console)
			}
			files[a.Console] = true
			b, err := os.ReadFile(a.Console)
			if err != nil || !bytes.Contains(b, []byte(fmt.Sprintf("attempt %d\n", a.N))) {
				t.Errorf("%s: %v %.80q", a.Console, err, b)
			}
		}
	}
	if len(files) != 8+4 {
		t.Errorf("%d console files, want 12", len(files))
	}
	if got, want := ConsoleFile(out, m.Cases[0], 2), out+"/j/a/kvm.attempt2.console.txt"; got != want {
		t.Errorf("ConsoleFile %s, want %s", got, want)
	}
}

func TestSummary(t *testing.T) {
	m, err := Parse([]byte("kernels: [{name: k}]\nscenarios: [{name: pass, cmdline: r=pass}, {name: hang, cmdline: r=timeout}]\nvmms: [kvm, {vmm: qemu, accel: tcg}]\n"), "m.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r, _, _ := runFake(t, m, newFake(), Options{Jobs: 2})
	var b bytes.Buffer
	WriteSummary(&b, r)
	s := b.String()
	for _, want := range []string{
		"CASE", "k/hang/kvm", "TIMEOUT", "k/pass/qemu-tcg",
		"KERNEL/SCENARIO  kvm", "qemu-tcg",
		"TIMEOUT k/hang/kvm: want pass (0), got timeout (124)",
		"4 cases in", "2 pass, 2 timeout",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("summary lacks %q:\n%s", want, s)
		}
	}
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if last := lines[len(lines)-1]; last != "smoke: 2 passed, 2 failed" {
		t.Errorf("closing line %q", last)
	}
	var l bytes.Buffer
	lo := &Lines{W: &l}
	lo.Start(r)
	for _, cr := range r.Cases {
		lo.Finished(cr, cr.Last(), true)
	}
	if !strings.Contains(l.String(), "[4/4] ") || !strings.Contains(l.String(), "TIMEOUT k/hang/") {
		t.Errorf("lines:\n%s", l.String())
	}

	// The bar on a plain writer: failures printed above it, the final
	// count and the failing tally in its last drawing.
	var bb syncBuffer
	bar := &Bar{W: &bb}
	bar.Start(r)
	for _, cr := range r.Cases {
		bar.Started(cr.Case, 1)
		bar.Finished(cr, cr.Last(), true)
	}
	bar.Done(r)
	if s := bb.String(); !strings.Contains(s, "4/4") || !strings.Contains(s, "TIMEOUT k/hang/") || !strings.Contains(s, "(2 failing)") {
		t.Errorf("bar:\n%s", s)
	}
}

// syncBuffer is a bytes.Buffer the bar's goroutine and the test may share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
