package smoke

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteSummary writes the table of cases (one row per case: verdict,
// outcome, status, expectation, backend, time, attempts), a grid of
// kernel/scenario against backend when the cases ran on several, the
// reasons of the failing cases, and a closing count line
// ("smoke: N passed, M failed").
func WriteSummary(w io.Writer, r *Report) {
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "CASE\tVERDICT\tOUTCOME\tSTATUS\tWANT\tVMM\tTIME\tTRIES")
	for _, cr := range r.Cases {
		outcome, status, vmm, wall := "-", "-", "-", "-"
		if a := cr.Last(); a != nil {
			if a.Result != nil {
				outcome, status = string(a.Result.Outcome), fmt.Sprint(a.Result.ExitCode)
			}
			vmm, wall = vmmOf(a), fmt.Sprintf("%.2fs", a.Wall.Seconds())
		}
		verdict := strings.ToUpper(string(cr.Kind))
		if cr.Kind == Pass {
			verdict = "pass"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\n", cr.Case.Name, verdict, outcome, status, cr.Case.Want, vmm, wall, len(cr.Attempts))
	}
	tw.Flush()

	if backends := r.backends(); len(backends) > 1 {
		writeGrid(w, r, backends)
	}

	var failing []*CaseResult
	for _, cr := range r.Cases {
		if cr.Kind != Pass {
			failing = append(failing, cr)
		}
	}
	if len(failing) > 0 {
		fmt.Fprintln(w)
		for _, cr := range failing {
			console := ""
			if a := firstFailing(cr); a != nil {
				console = " [console: " + a.Console + "]"
			}
			fmt.Fprintf(w, "%s %s: %s%s\n", strings.ToUpper(string(cr.Kind)), cr.Case.Name, oneLine(cr.Reason), console)
		}
	}

	counts := r.Counts()
	var parts []string
	for _, k := range Kinds {
		if counts[k] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[k], k))
		}
	}
	fmt.Fprintln(w)
	rate, ran := "", len(r.Cases)-counts[NotRun]
	if r.Elapsed > 0 && ran > 0 {
		rate = fmt.Sprintf(", %.0f cases/min", float64(ran)/r.Elapsed.Minutes())
	}
	shard := ""
	if r.Shard.N > 0 {
		shard = ", shard " + r.Shard.String()
	}
	fmt.Fprintf(w, "%d cases in %.1fs (-j %d%s%s): %s; harness overhead %.2f ms per run\n",
		len(r.Cases), r.Elapsed.Seconds(), r.Jobs, shard, rate, strings.Join(parts, ", "), float64(r.Overhead())/float64(time.Millisecond))
	if r.Interrupted {
		fmt.Fprintln(w, "interrupted: the cases marked not-run did not run")
	}
	passed, failed, skipped := 0, 0, counts[NotRun]
	for _, cr := range r.Cases {
		switch {
		case cr.Kind == NotRun:
		case r.Failed(cr):
			failed++
		default:
			passed++
		}
	}
	line := fmt.Sprintf("smoke: %d passed, %d failed", passed, failed)
	if skipped > 0 {
		line += fmt.Sprintf(", %d skipped", skipped)
	}
	fmt.Fprintln(w, line)
}

// writeGrid shows the same kernel and scenario on each backend side by side.
func writeGrid(w io.Writer, r *Report, backends []string) {
	type row struct {
		key   string
		cells map[string]string
	}
	var rows []*row
	index := map[string]*row{}
	for _, cr := range r.Cases {
		key := cr.Case.Kernel + "/" + cr.Case.Scenario
		rw := index[key]
		if rw == nil {
			rw = &row{key: key, cells: map[string]string{}}
			index[key] = rw
			rows = append(rows, rw)
		}
		cell := string(cr.Kind)
		if a := cr.Last(); a != nil {
			cell += fmt.Sprintf(" %.2fs", a.Wall.Seconds())
		}
		rw.cells[cr.Case.VMM] = cell
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "KERNEL/SCENARIO\t%s\n", strings.Join(backends, "\t"))
	for _, rw := range rows {
		cells := make([]string, len(backends))
		for i, b := range backends {
			cells[i] = rw.cells[b]
			if cells[i] == "" {
				cells[i] = "-"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\n", rw.key, strings.Join(cells, "\t"))
	}
	tw.Flush()
}

// backends are the vmm labels of the report's cases, in the matrix's order.
func (r *Report) backends() []string {
	have := map[string]bool{}
	for _, cr := range r.Cases {
		have[cr.Case.VMM] = true
	}
	var out []string
	for _, b := range r.Matrix.Backends {
		if have[b] {
			out = append(out, b)
		}
	}
	return out
}
