package smoke

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
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
	bar     *progressbar.ProgressBar
	mu      sync.Mutex
	running map[string]int
	failed  int
	stop    chan struct{}
	stopped sync.WaitGroup
}

func (b *Bar) Start(r *Report) {
	b.running = map[string]int{}
	b.bar = progressbar.NewOptions(len(r.Cases),
		progressbar.OptionSetWriter(b.W),
		progressbar.OptionSetWidth(24),
		progressbar.OptionShowCount(),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionSetPredictTime(false),
		progressbar.OptionSetRenderBlankState(true),
		progressbar.OptionSetDescription("smoke"),
	)
	b.stop = make(chan struct{})
	b.stopped.Add(1)
	go func() { // keep the elapsed time moving while long cases run
		defer b.stopped.Done()
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-b.stop:
				return
			case <-t.C:
				b.bar.Add(0)
			}
		}
	}()
}

func (b *Bar) Started(c *Case, attempt int) {
	b.mu.Lock()
	b.running[c.Name] = attempt
	b.mu.Unlock()
	b.describe()
}

func (b *Bar) Finished(cr *CaseResult, a *Attempt, final bool) {
	b.mu.Lock()
	delete(b.running, cr.Case.Name)
	if final && cr.Kind != Pass {
		b.failed++
	}
	b.mu.Unlock()
	switch {
	case !final:
		progressbar.Bprintln(b.bar, fmt.Sprintf("rerun   %s: attempt %d %s: %s", cr.Case.Name, a.N, a.Kind, oneLine(a.Reason)))
	case cr.Kind != Pass:
		progressbar.Bprintln(b.bar, caseLine(cr, a))
	}
	b.describe()
	if final {
		b.bar.Add(1)
	} else {
		b.bar.Add(0)
	}
}

func (b *Bar) describe() {
	b.mu.Lock()
	names := make([]string, 0, len(b.running))
	for n := range b.running {
		names = append(names, n)
	}
	failed := b.failed
	b.mu.Unlock()
	sort.Strings(names)
	d := "smoke"
	if failed > 0 {
		d += fmt.Sprintf(" (%d failing)", failed)
	}
	if len(names) > 0 {
		s := strings.Join(names, ", ")
		d += " " + clip(s, 48)
	}
	b.bar.Describe(d)
}

func (b *Bar) Done(*Report) {
	close(b.stop)
	b.stopped.Wait()
	b.bar.Finish()
	fmt.Fprintln(b.W)
}
