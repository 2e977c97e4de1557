package smoke

import (
	"bufio"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// The JUnit XML shapes: the common subset that Jenkins, GitLab, GitHub
// reporters and the Ant schema accept (testsuites > testsuite > testcase
// with failure, error or skipped; properties, system-out and system-err
// on every suite).
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Package    string          `xml:"package,attr"`
	ID         int             `xml:"id,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Skipped    int             `xml:"skipped,attr"`
	Time       string          `xml:"time,attr"`
	Timestamp  string          `xml:"timestamp,attr"`
	Hostname   string          `xml:"hostname,attr"`
	Properties junitProperties `xml:"properties"`
	Cases      []junitCase     `xml:"testcase"`
	SystemOut  string          `xml:"system-out"`
	SystemErr  string          `xml:"system-err"`
}

type junitProperties struct {
	Property []junitProperty `xml:"property"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitProblem `xml:"failure,omitempty"`
	Error     *junitProblem `xml:"error,omitempty"`
	Skipped   *junitSkipped `xml:"skipped,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
	SystemErr string        `xml:"system-err,omitempty"`
}

// xmlText replaces what XML 1.0 cannot hold (most control characters,
// which a console can carry) with U+FFFD: CDATA is not escaped.
func xmlText(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\t' || r == '\n' || r == '\r':
		case r < 0x20, r >= 0xD800 && r < 0xE000, r == 0xFFFE, r == 0xFFFF:
			return '\uFFFD'
		}
		return r
	}, s)
}

type junitProblem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",cdata"`
}

type junitSkipped struct {
	Message string `xml:"message,attr"`
}

// TailLines is how many console lines a JUnit failure carries.
const TailLines = 50

// WriteJUnit writes the report as JUnit XML: one testsuite for the matrix,
// a testcase per case (classname the kernel, name the scenario, with
// "/vmm" on a vmms axis), a failure (type = the verdict) with the reason
// and the last 50 console lines for each failing case, an error for a case
// the harness could not boot, skipped for one not run. system-out names
// the console files.
func WriteJUnit(w io.Writer, r *Report) error {
	host, _ := os.Hostname()
	suite := junitSuite{
		Name: r.Matrix.Name, Package: "kvmboot.smoke", ID: 0,
		Time:      secs(r.Elapsed),
		Timestamp: r.Start.UTC().Format("2006-01-02T15:04:05"),
		Hostname:  host,
	}
	if r.Shard.N > 0 {
		suite.Name += " shard " + r.Shard.String()
	}
	props := [][2]string{{"matrix", r.Matrix.File}, {"jobs", fmt.Sprint(r.Jobs)}, {"shard", r.Shard.String()}, {"allow_flaky", fmt.Sprint(r.AllowFlaky)}}
	for _, p := range props {
		suite.Properties.Property = append(suite.Properties.Property, junitProperty{Name: p[0], Value: p[1]})
	}
	for _, cr := range r.Cases {
		c := cr.Case
		jc := junitCase{Classname: c.Kernel, Name: c.Scenario}
		if r.Matrix.Axis {
			jc.Name += "/" + c.VMM
		}
		var wall time.Duration
		var files []string
		for _, a := range cr.Attempts {
			wall += a.Wall
			files = append(files, fmt.Sprintf("console (attempt %d, %s): %s", a.N, a.Kind, a.Console))
		}
		jc.Time = secs(wall)
		jc.SystemOut = strings.Join(files, "\n")
		switch {
		case cr.Kind == NotRun:
			jc.Skipped = &junitSkipped{Message: cr.Reason}
			suite.Skipped++
		case cr.Kind == Error:
			jc.Error = problem(cr, firstFailing(cr))
			suite.Errors++
		case cr.Kind == Flaky && r.AllowFlaky:
			jc.SystemErr = "flaky (allowed): " + cr.Reason
		case cr.Kind != Pass:
			jc.Failure = problem(cr, firstFailing(cr))
			suite.Failures++
		}
		suite.Cases = append(suite.Cases, jc)
	}
	suite.Tests = len(r.Cases)
	suite.SystemOut = fmt.Sprintf("kvmboot smoke %s: %d cases, -j %d", r.Matrix.File, len(r.Cases), r.Jobs)
	all := junitSuites{Name: "kvmboot smoke", Tests: suite.Tests, Failures: suite.Failures, Errors: suite.Errors, Skipped: suite.Skipped, Time: suite.Time, Suites: []junitSuite{suite}}
	bw := bufio.NewWriter(w)
	bw.WriteString(xml.Header)
	enc := xml.NewEncoder(bw)
	enc.Indent("", "  ")
	if err := enc.Encode(&all); err != nil {
		return err
	}
	bw.WriteString("\n")
	return bw.Flush()
}

// WriteJUnitFile writes the JUnit report to a file.
func WriteJUnitFile(path string, r *Report) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := WriteJUnit(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// firstFailing is the attempt a failure report shows: for a flaky case the
// first failing one, else the last.
func firstFailing(cr *CaseResult) *Attempt {
	if cr.Kind == Flaky {
		for _, a := range cr.Attempts {
			if a.Kind != Pass {
				return a
			}
		}
	}
	return cr.Last()
}

func problem(cr *CaseResult, a *Attempt) *junitProblem {
	p := &junitProblem{Type: string(cr.Kind), Message: clip(oneLine(cr.Reason), 500)}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s\n", cr.Kind, cr.Reason)
	if a == nil {
		return p
	}
	for _, at := range cr.Attempts {
		fmt.Fprintf(&b, "attempt %d: %s", at.N, at.Kind)
		if at.Result != nil && at.Result.VMM != "" {
			fmt.Fprintf(&b, " on %s", vmmOf(at))
		}
		fmt.Fprintf(&b, ", console %s\n", at.Console)
	}
	lines := consoleTail(a)
	fmt.Fprintf(&b, "--- last %d console lines of attempt %d (%s) ---\n", len(lines), a.N, a.Console)
	for _, l := range lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	p.Text = xmlText(b.String())
	return p
}

// consoleTail is the last TailLines console lines of an attempt: what the
// run kept, else the end of its console file.
func consoleTail(a *Attempt) []string {
	if a.Result != nil && len(a.Result.ConsoleTail) > 0 {
		t := a.Result.ConsoleTail
		return t[max(0, len(t)-TailLines):]
	}
	f, err := os.Open(a.Console)
	if err != nil {
		return nil
	}
	defer f.Close()
	var ring []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		ring = append(ring, sc.Text())
		if len(ring) > TailLines {
			ring = ring[1:]
		}
	}
	return ring
}

func vmmOf(a *Attempt) string {
	if a.Result == nil || a.Result.VMM == "" {
		return "-"
	}
	if a.Result.Accel != "" {
		return a.Result.VMM.String() + "/" + a.Result.Accel
	}
	return a.Result.VMM.String()
}

func secs(d time.Duration) string { return fmt.Sprintf("%.3f", d.Seconds()) }

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
