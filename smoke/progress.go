package smoke

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// Lines reports progress as plain lines, one per decided case and one per
// rerun: for logs and other non-terminals.
type Lines struct {
	W     io.Writer
	total int
	done  int
}

func (l *Lines) Start(r *Report) {
	l.total = len(r.Cases)
	shard := ""
	if r.Shard.N > 0 {
		shard = ", shard " + r.Shard.String()
	}
	fmt.Fprintf(l.W, "smoke: %d cases from %s (-j %d%s)\n", l.total, r.Matrix.File, r.Jobs, shard)
}

func (l *Lines) Started(*Case, int) {}

func (l *Lines) Finished(cr *CaseResult, a *Attempt, final bool) {
	if !final {
		fmt.Fprintf(l.W, "[rerun] %s attempt %d %s: %s [console: %s]\n", cr.Case.Name, a.N, a.Kind, oneLine(a.Reason), a.Console)
		return
	}
	l.done++
	fmt.Fprintf(l.W, "[%*d/%d] %s\n", len(fmt.Sprint(l.total)), l.done, l.total, caseLine(cr, a))
}

func (l *Lines) Done(*Report) {}

// caseLine is a decided case in one line.
func caseLine(cr *CaseResult, a *Attempt) string {
	verdict := string(cr.Kind)
	if cr.Kind != Pass {
		verdict = strings.ToUpper(verdict)
	}
	s := fmt.Sprintf("%-7s %s on %s in %.2fs", verdict, cr.Case.Name, vmmOf(a), a.Wall.Seconds())
	if cr.Kind != Pass {
		s += ": " + oneLine(cr.Reason) + " [console: " + firstFailing(cr).Console + "]"
	}
	return s
}

// Bar is a live progress bar for a terminal: the bar counts decided
// cases, its description names the running ones, and each case that did
// not pass is printed above it as it is decided.
type Bar struct {
	W       io.Writer
	p       *mpb.Progress
	bar     *mpb.Bar
	mu      sync.Mutex
	running map[string]int
	failed  int
	desc    string
}

func (b *Bar) Start(r *Report) {
	b.running = map[string]int{}
	b.desc = "smoke"
	// Auto refresh: the bar redraws (and its elapsed time moves) on any
	// writer, not only a terminal mpb recognises.
	b.p = mpb.New(mpb.WithOutput(b.W), mpb.WithRefreshRate(250*time.Millisecond), mpb.WithAutoRefresh())
	b.bar = b.p.AddBar(int64(len(r.Cases)), mpb.BarWidth(24),
		mpb.PrependDecorators(decor.Any(func(decor.Statistics) string {
			b.mu.Lock()
			defer b.mu.Unlock()
			return b.desc
		})),
		mpb.AppendDecorators(decor.CountersNoUnit("%d/%d"), decor.Elapsed(decor.ET_STYLE_GO, decor.WC{C: decor.DextraSpace})),
	)
}

func (b *Bar) Started(c *Case, attempt int) {
	b.mu.Lock()
	b.running[c.Name] = attempt
	b.describe()
	b.mu.Unlock()
}

func (b *Bar) Finished(cr *CaseResult, a *Attempt, final bool) {
	b.mu.Lock()
	delete(b.running, cr.Case.Name)
	if final && cr.Kind != Pass {
		b.failed++
	}
	b.describe()
	b.mu.Unlock()
	switch {
	case !final:
		fmt.Fprintf(b.p, "rerun   %s: attempt %d %s: %s\n", cr.Case.Name, a.N, a.Kind, oneLine(a.Reason))
	case cr.Kind != Pass:
		fmt.Fprintln(b.p, caseLine(cr, a))
	}
	if final {
		b.bar.Increment()
	}
}

// describe sets the bar's description; b.mu is held.
func (b *Bar) describe() {
	names := slices.Sorted(maps.Keys(b.running))
	d := "smoke"
	if b.failed > 0 {
		d += fmt.Sprintf(" (%d failing)", b.failed)
	}
	if len(names) > 0 {
		d += " " + clip(strings.Join(names, ", "), 48)
	}
	b.desc = d
}

// Done draws the bar a last time and ends it, complete or not (a run
// stopped early leaves cases undecided).
func (b *Bar) Done(*Report) {
	b.bar.Abort(false)
	b.p.Wait()
}
