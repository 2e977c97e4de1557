package smoke

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"kvmboot/boot"
	"kvmboot/machine"
)

// Runner boots one case: boot.Run, or a fake in tests.
type Runner func(ctx context.Context, cfg boot.Config) (*boot.Result, error)

// Options control a smoke run.
type Options struct {
	Jobs       int    // cases at once; 0 = runtime.NumCPU()
	OutDir     string // console files go here; "" = DefaultOutDir
	Rerun      int    // reruns of a failing case
	AllowFlaky bool   // flaky cases do not fail the run
	Runner     Runner // nil = boot.Run
	// Grace is how long past a case's timeout the harness waits for the
	// runner to return before it cancels it (default 30s).
	Grace     time.Duration
	Observers []Observer
	Shard     Shard // recorded in reports
}

// DefaultOutDir is where console files go by default.
const DefaultOutDir = "smoke-out"

// Observer follows a run. Calls are serialized.
type Observer interface {
	// Start is called once before the first case, with the report to be.
	Start(r *Report)
	// Started is called when an attempt of a case begins.
	Started(c *Case, attempt int)
	// Finished is called after each attempt; final says the case is decided
	// (cr.Kind is then its verdict).
	Finished(cr *CaseResult, a *Attempt, final bool)
	// Done is called once at the end.
	Done(r *Report)
}

// Attempt is one boot of a case.
type Attempt struct {
	N       int
	Result  *boot.Result
	Err     string // the error boot.Run returned, if any
	Kind    Kind   // Pass or what went wrong
	Reason  string
	Console string        // the console file
	Wall    time.Duration // the whole attempt in the harness
	Boot    time.Duration // inside the runner
}

// CaseResult is a case's verdict and its attempts.
type CaseResult struct {
	Case     *Case
	Attempts []*Attempt
	Kind     Kind
	Reason   string
}

// Last is the last attempt (nil when the case did not run).
func (cr *CaseResult) Last() *Attempt {
	if len(cr.Attempts) == 0 {
		return nil
	}
	return cr.Attempts[len(cr.Attempts)-1]
}

// Report is a whole run.
type Report struct {
	Matrix      *Matrix
	Shard       Shard
	Jobs        int
	AllowFlaky  bool
	Start       time.Time
	Elapsed     time.Duration
	Cases       []*CaseResult // in case order
	Interrupted bool
}

// Counts are the number of cases of each kind.
type Counts map[Kind]int

// Counts tallies the verdicts.
func (r *Report) Counts() Counts {
	c := Counts{}
	for _, cr := range r.Cases {
		c[cr.Kind]++
	}
	return c
}

// Failed says whether a case's verdict fails the run.
func (r *Report) Failed(cr *CaseResult) bool {
	return cr.Kind != Pass && !(cr.Kind == Flaky && r.AllowFlaky)
}

// OK says every case met its expectation (flaky ones too, when allowed).
func (r *Report) OK() bool {
	for _, cr := range r.Cases {
		if r.Failed(cr) {
			return false
		}
	}
	return !r.Interrupted
}

// Overhead is the harness's own time per attempt: each attempt's wall
// time in the harness minus the time inside the runner, averaged.
func (r *Report) Overhead() time.Duration {
	var sum time.Duration
	n := 0
	for _, cr := range r.Cases {
		for _, a := range cr.Attempts {
			sum += a.Wall - a.Boot
			n++
		}
	}
	if n == 0 {
		return 0
	}
	return sum / time.Duration(n)
}

// Run boots the cases, at most opts.Jobs at once, and judges them. The
// error is for a harness that cannot work at all (no output folder); a
// case that cannot boot is a verdict, not an error. Cancelling ctx stops
// the running cases and leaves the rest not run.
func Run(ctx context.Context, m *Matrix, cases []*Case, opts Options) (*Report, error) {
	if opts.Jobs <= 0 {
		opts.Jobs = runtime.NumCPU()
	}
	if opts.OutDir == "" {
		opts.OutDir = DefaultOutDir
	}
	if opts.Runner == nil {
		opts.Runner = boot.Run
	}
	if opts.Grace <= 0 {
		opts.Grace = 30 * time.Second
	}
	if err := os.MkdirAll(opts.OutDir, 0o755); err != nil {
		return nil, fmt.Errorf("--out: %w", err)
	}
	r := &Report{Matrix: m, Shard: opts.Shard, Jobs: opts.Jobs, AllowFlaky: opts.AllowFlaky, Start: time.Now()}
	r.Cases = make([]*CaseResult, len(cases))
	for i, c := range cases {
		r.Cases[i] = &CaseResult{Case: c, Kind: NotRun, Reason: "not run: the run was interrupted"}
	}
	var mu sync.Mutex
	notify := func(f func(o Observer)) {
		mu.Lock()
		defer mu.Unlock()
		for _, o := range opts.Observers {
			f(o)
		}
	}
	notify(func(o Observer) { o.Start(r) })

	work := make(chan *CaseResult)
	var wg sync.WaitGroup
	for range min(opts.Jobs, max(len(cases), 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for cr := range work {
				runCase(ctx, cr, opts, notify)
			}
		}()
	}
feed:
	for _, cr := range r.Cases {
		select {
		case work <- cr:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	r.Interrupted = ctx.Err() != nil
	r.Elapsed = time.Since(r.Start)
	notify(func(o Observer) { o.Done(r) })
	return r, nil
}

// runCase runs a case's attempts: the first, then reruns while it fails.
func runCase(ctx context.Context, cr *CaseResult, opts Options, notify func(func(Observer))) {
	c := cr.Case
	for n := 1; ; n++ {
		notify(func(o Observer) { o.Started(c, n) })
		a := runAttempt(ctx, c, n, opts)
		cr.Attempts = append(cr.Attempts, a)
		final := a.Kind == Pass || n > opts.Rerun || ctx.Err() != nil
		if final {
			decide(cr)
		}
		notify(func(o Observer) { o.Finished(cr, a, final) })
		if final {
			return
		}
	}
}

// decide sets a case's verdict from its attempts.
func decide(cr *CaseResult) {
	last := cr.Last()
	switch {
	case last.Kind == Pass && len(cr.Attempts) == 1:
		cr.Kind, cr.Reason = Pass, ""
	case last.Kind == Pass:
		var fails []string
		for _, a := range cr.Attempts[:len(cr.Attempts)-1] {
			fails = append(fails, fmt.Sprintf("attempt %d %s: %s", a.N, a.Kind, oneLine(a.Reason)))
		}
		cr.Kind = Flaky
		cr.Reason = fmt.Sprintf("passed on attempt %d after %s", last.N, strings.Join(fails, "; "))
	default:
		cr.Kind, cr.Reason = last.Kind, last.Reason
		if len(cr.Attempts) > 1 {
			cr.Reason = fmt.Sprintf("%s (failed all %d attempts)", last.Reason, len(cr.Attempts))
		}
	}
}

// ConsoleFile is where attempt n of a case writes its console:
// DIR/kernel/scenario[/vmm].console.txt, ".attemptN" before the suffix for
// reruns.
func ConsoleFile(dir string, c *Case, n int) string {
	p := filepath.Join(dir, filepath.FromSlash(c.Name))
	if n > 1 {
		p += fmt.Sprintf(".attempt%d", n)
	}
	return p + ".console.txt"
}

// runAttempt boots a case once with its own console file.
func runAttempt(ctx context.Context, c *Case, n int, opts Options) (a *Attempt) {
	start := time.Now()
	a = &Attempt{N: n, Console: ConsoleFile(opts.OutDir, c, n)}
	defer func() { a.Wall = time.Since(start) }()
	harness := func(err error) *Attempt {
		a.Err = err.Error()
		a.Result = &boot.Result{Outcome: machine.Error, ExitCode: machine.StatusError, Reason: "harness: " + err.Error()}
		a.Kind, a.Reason = Judge(c.Want, a.Result, err)
		return a
	}
	if err := os.MkdirAll(filepath.Dir(a.Console), 0o755); err != nil {
		return harness(err)
	}
	f, err := os.Create(a.Console)
	if err != nil {
		return harness(err)
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 16<<10)
	cfg := c.Config
	cfg.Console = w

	// A watchdog beyond the guest's own timeout, for a runner that hangs.
	rctx, cancel := context.WithTimeout(ctx, c.Timeout+opts.Grace)
	defer cancel()
	bootStart := time.Now()
	res, err := safeRun(rctx, opts.Runner, cfg)
	a.Boot = time.Since(bootStart)
	if ferr := w.Flush(); ferr != nil && err == nil {
		err = fmt.Errorf("writing %s: %w", a.Console, ferr)
		if res != nil {
			res.Reason += " (" + err.Error() + ")"
		}
		err = nil // the run itself stands; the reason says the console is short
	}
	if err != nil {
		a.Err = err.Error()
	}
	if res == nil {
		res = &boot.Result{Outcome: machine.Error, ExitCode: machine.StatusError}
		if err != nil {
			res.Reason = err.Error()
		}
	}
	if ctx.Err() == nil && errors.Is(rctx.Err(), context.DeadlineExceeded) && res.Outcome == machine.Error {
		// The harness's watchdog stopped a runner that overran its timeout.
		res.Outcome, res.ExitCode = machine.Timeout, machine.StatusTimeout
		res.Reason = fmt.Sprintf("the boot did not end within its %v timeout plus %v: stopped by the harness (%s)", c.Timeout, opts.Grace, res.Reason)
	}
	a.Result = res
	a.Kind, a.Reason = Judge(c.Want, res, err)
	if a.Kind != Pass && ctx.Err() != nil {
		a.Reason += " (the smoke run was interrupted)"
	}
	return a
}

// safeRun calls the runner, turning a panic into an error.
func safeRun(ctx context.Context, run Runner, cfg boot.Config) (res *boot.Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			res, err = nil, fmt.Errorf("harness panic: %v: %s", p, firstFrames(debug.Stack()))
		}
	}()
	return run(ctx, cfg)
}

func firstFrames(stack []byte) string {
	lines := strings.Split(string(stack), "\n")
	if len(lines) > 12 {
		lines = lines[:12]
	}
	return strings.Join(lines, " | ")
}
