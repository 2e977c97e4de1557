package smoke

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"strings"
	"testing"

	"kvmboot/e2e/junitcheck"
)

// TestJUnit: the report parses strictly, its counts add up, a failure
// carries the reason and the last 50 console lines, system-out names the
// console files, and control characters from the console do not break it.
func TestJUnit(t *testing.T) {
	text := `
name: unit
kernels: [{name: k, cmdline: kk}, {name: j, cmdline: jj}]
scenarios:
  - {name: pass, cmdline: r=pass}
  - {name: exit3, cmdline: r=exit3}
  - {name: crash, cmdline: r=crash}
  - {name: error, cmdline: r=error}
  - {name: flaky, cmdline: r=flaky1}
vmms: [kvm, qemu]
`
	for _, allow := range []bool{false, true} {
		m, err := Parse([]byte(text), "m.yaml")
		if err != nil {
			t.Fatal(err)
		}
		r, _, _ := runFake(t, m, newFake(), Options{Jobs: 2, Rerun: 1, AllowFlaky: allow, Shard: Shard{1, 1}})
		var b bytes.Buffer
		if err := WriteJUnit(&b, r); err != nil {
			t.Fatal(err)
		}
		suites, err := junitcheck.Check(bytes.NewReader(b.Bytes()))
		if err != nil {
			t.Fatalf("%v\n%s", err, b.String())
		}
		if len(suites) != 1 {
			t.Fatalf("%d suites", len(suites))
		}
		s := suites[0]
		wantFail := 3 * 4 // exit3, crash and flaky for each kernel x vmm
		if allow {
			wantFail = 2 * 4
		}
		if s.Name != "unit shard 1/1" || s.Tests != 20 || s.Errors != 4 || s.Failures != wantFail || s.Skipped != 0 {
			t.Errorf("allow %v: suite %s tests %d failures %d errors %d skipped %d", allow, s.Name, s.Tests, s.Failures, s.Errors, s.Skipped)
		}
		for _, c := range s.Cases {
			scen, vmm, _ := strings.Cut(c.Name, "/")
			if (c.Classname != "k" && c.Classname != "j") || (vmm != "kvm" && vmm != "qemu") {
				t.Errorf("testcase %s %s", c.Classname, c.Name)
			}
			if !strings.Contains(c.SystemOut, "console (attempt 1") || !strings.Contains(c.SystemOut, ".console.txt") {
				t.Errorf("%s: system-out %q", c.Name, c.SystemOut)
			}
			wantProblem := map[string]string{"pass": "", "exit3": "failure", "crash": "failure", "error": "error", "flaky": "failure"}[scen]
			if scen == "flaky" && allow {
				wantProblem = ""
				if !strings.Contains(c.SystemErr, "flaky (allowed): passed on attempt 2") {
					t.Errorf("allowed flaky system-err %q", c.SystemErr)
				}
			}
			if c.Problem != wantProblem {
				t.Errorf("allow %v: %s/%s: %q, want %q", allow, c.Classname, c.Name, c.Problem, wantProblem)
			}
			if c.Problem == "" {
				continue
			}
			wantType := map[string]string{"exit3": "fail", "crash": "crash", "error": "error", "flaky": "flaky"}[scen]
			if c.Type != wantType || c.Message == "" {
				t.Errorf("%s: type %q message %q", c.Name, c.Type, c.Message)
			}
			if scen == "error" {
				continue // no console: the run never started
			}
			// The last 50 of the fake's 60 lines, of the failing attempt:
			// the first for a flaky case, else the last.
			n := 2
			if scen == "flaky" {
				n = 1
			}
			if !strings.Contains(c.Text, fmt.Sprintf("--- last 50 console lines of attempt %d", n)) ||
				!strings.Contains(c.Text, fmt.Sprintf(" attempt %d\n", n)) ||
				!strings.Contains(c.Text, "fake: line 11 of ") || strings.Contains(c.Text, "fake: line 10 of ") ||
				!strings.Contains(c.Text, "fake: line 60 of ") {
				t.Errorf("%s: failure text:\n%s", c.Name, c.Text)
			}
			if scen == "crash" && !strings.Contains(c.Text, "Kernel panic - not syncing: <fake>\uFFFD]]>") {
				t.Errorf("crash text lost its reason: %q", c.Text[:200])
			}
		}
	}
}

// TestJUnitDecodes: a plain encoding/xml decode with required fields
// agrees with junitcheck.Check (a second, independent reading).
func TestJUnitDecodes(t *testing.T) {
	m := fakeMatrix(t, "pass", "exit3", "timeout")
	r, _, _ := runFake(t, m, newFake(), Options{})
	var b bytes.Buffer
	if err := WriteJUnit(&b, r); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		XMLName xml.Name `xml:"testsuites"`
		Tests   int      `xml:"tests,attr"`
		Suite   []struct {
			Failures int `xml:"failures,attr"`
			Cases    []struct {
				Name    string `xml:"name,attr"`
				Failure *struct {
					Type string `xml:"type,attr"`
				} `xml:"failure"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	got := ""
	for _, c := range doc.Suite[0].Cases {
		got += c.Name
		if c.Failure != nil {
			got += "=" + c.Failure.Type
		}
		got += " "
	}
	if doc.Tests != 3 || doc.Suite[0].Failures != 2 || got != "exit3=fail pass timeout=timeout " {
		t.Errorf("tests %d failures %d cases %s", doc.Tests, doc.Suite[0].Failures, got)
	}
}
