// Package junitcheck reads a JUnit XML report strictly, independently of
// the smoke package that writes it: for smoke's tests and the e2e tests,
// not part of kvmboot's API.
package junitcheck

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"
)

// Suite is what Check read from one testsuite element.
type Suite struct {
	Name                             string
	Tests, Failures, Errors, Skipped int
	Cases                            []Case
}

// Case is one testcase element as Check read it.
type Case struct {
	Classname, Name string
	Time            float64
	// Problem is "failure", "error", "skipped" or "" (passed); Type and
	// Message are its attributes and Text its content.
	Problem, Type, Message, Text string
	SystemOut, SystemErr         string
}

// junitSchema lists, for each element, the children it may have and the
// attributes it must have: the Ant/Jenkins JUnit schema, strictly.
var junitSchema = map[string]struct {
	children []string
	required []string
	optional []string
}{
	"":           {children: []string{"testsuites"}},
	"testsuites": {children: []string{"testsuite"}, required: []string{"name", "tests", "failures", "errors", "time"}, optional: []string{"skipped"}},
	"testsuite":  {children: []string{"properties", "testcase", "system-out", "system-err"}, required: []string{"name", "package", "id", "tests", "failures", "errors", "skipped", "time", "timestamp", "hostname"}},
	"properties": {children: []string{"property"}},
	"property":   {required: []string{"name", "value"}},
	"testcase":   {children: []string{"failure", "error", "skipped", "system-out", "system-err"}, required: []string{"name", "classname", "time"}},
	"failure":    {required: []string{"message", "type"}},
	"error":      {required: []string{"message", "type"}},
	"skipped":    {optional: []string{"message"}},
	"system-out": {},
	"system-err": {},
}

// Check parses a JUnit XML report strictly, independently of the
// writer: only the elements and attributes of the schema, every required
// attribute present, numbers that parse, at most one failure, error or
// skipped per testcase, properties and system-out/err of a suite in the
// schema's order, and counts that add up (a suite's tests, failures,
// errors and skipped match its testcases; testsuites' totals match the
// suites). It returns the suites.
func Check(r io.Reader) ([]Suite, error) {
	dec := xml.NewDecoder(r)
	dec.Strict = true
	type frame struct {
		name     string
		attrs    map[string]string
		text     []byte
		children []string
	}
	var ck junitChecker
	stack := []*frame{{name: ""}}
	var suites []Suite
	var totals map[string]string
	sawRoot := false
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		top := stack[len(stack)-1]
		switch t := tok.(type) {
		case xml.StartElement:
			name := t.Name.Local
			if t.Name.Space != "" {
				return nil, fmt.Errorf("element %s: namespaced", name)
			}
			spec, ok := junitSchema[top.name]
			if !ok || !slices.Contains(spec.children, name) {
				return nil, fmt.Errorf("element <%s> not allowed in <%s>", name, top.name)
			}
			if top.name == "" {
				if sawRoot {
					return nil, errors.New("more than one root element")
				}
				sawRoot = true
			}
			es := junitSchema[name]
			attrs := map[string]string{}
			for _, a := range t.Attr {
				if !slices.Contains(es.required, a.Name.Local) && !slices.Contains(es.optional, a.Name.Local) {
					return nil, fmt.Errorf("<%s>: attribute %s not in the schema", name, a.Name.Local)
				}
				attrs[a.Name.Local] = a.Value
			}
			for _, req := range es.required {
				if _, ok := attrs[req]; !ok {
					return nil, fmt.Errorf("<%s>: required attribute %s missing", name, req)
				}
			}
			top.children = append(top.children, name)
			stack = append(stack, &frame{name: name, attrs: attrs})
		case xml.CharData:
			top.text = append(top.text, t...)
		case xml.EndElement:
			f := top
			stack = stack[:len(stack)-1]
			parent := stack[len(stack)-1]
			switch f.name {
			case "testsuites":
				totals = f.attrs
			case "testsuite":
				s, err := checkSuite(f.attrs, f.children)
				if err != nil {
					return nil, err
				}
				suites = append(suites, *s)
			case "testcase":
				c, err := ck.checkCase(f.attrs, f.children)
				if err != nil {
					return nil, err
				}
				ck.cases = append(ck.cases, *c)
			case "failure", "error", "skipped":
				ck.problem = Case{Problem: f.name, Type: f.attrs["type"], Message: f.attrs["message"], Text: string(f.text)}
			case "system-out", "system-err":
				if parent.name == "testcase" {
					if f.name == "system-out" {
						ck.out = string(f.text)
					} else {
						ck.err = string(f.text)
					}
				}
			}
			if f.name == "testsuite" {
				suites[len(suites)-1].Cases = ck.cases
				if err := countsAddUp(&suites[len(suites)-1]); err != nil {
					return nil, err
				}
				ck.cases = nil
			}
		}
	}
	if !sawRoot || totals == nil {
		return nil, errors.New("no <testsuites> element")
	}
	var sum [4]int
	for _, s := range suites {
		sum[0] += s.Tests
		sum[1] += s.Failures
		sum[2] += s.Errors
		sum[3] += s.Skipped
	}
	for i, k := range []string{"tests", "failures", "errors", "skipped"} {
		v, ok := totals[k]
		if !ok && k == "skipped" {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n != sum[i] {
			return nil, fmt.Errorf("<testsuites %s=%q>: the suites add up to %d", k, v, sum[i])
		}
	}
	if _, err := strconv.ParseFloat(totals["time"], 64); err != nil {
		return nil, fmt.Errorf("<testsuites time=%q>: not a number", totals["time"])
	}
	return suites, nil
}

// junitChecker holds the suite's testcases so far and what the testcase
// being read has shown.
type junitChecker struct {
	cases    []Case
	problem  Case
	out, err string
}

func checkSuite(attrs map[string]string, children []string) (*Suite, error) {
	s := &Suite{Name: attrs["name"]}
	for k, p := range map[string]*int{"tests": &s.Tests, "failures": &s.Failures, "errors": &s.Errors, "skipped": &s.Skipped} {
		n, err := strconv.Atoi(attrs[k])
		if err != nil || n < 0 {
			return nil, fmt.Errorf("<testsuite %s=%q>: not a count", k, attrs[k])
		}
		*p = n
	}
	if _, err := strconv.ParseFloat(attrs["time"], 64); err != nil {
		return nil, fmt.Errorf("<testsuite time=%q>: not a number", attrs["time"])
	}
	if _, err := time.Parse("2006-01-02T15:04:05", attrs["timestamp"]); err != nil {
		return nil, fmt.Errorf("<testsuite timestamp=%q>: want ISO 8601 without a zone", attrs["timestamp"])
	}
	if _, err := strconv.Atoi(attrs["id"]); err != nil {
		return nil, fmt.Errorf("<testsuite id=%q>: not a number", attrs["id"])
	}
	// Order: properties, testcase*, system-out, system-err; each of the
	// three singletons exactly once.
	order := map[string]int{"properties": 0, "testcase": 1, "system-out": 2, "system-err": 3}
	last, seen := -1, map[string]int{}
	for _, c := range children {
		if order[c] < last {
			return nil, fmt.Errorf("<testsuite>: <%s> out of order", c)
		}
		last = order[c]
		seen[c]++
	}
	for _, c := range []string{"properties", "system-out", "system-err"} {
		if seen[c] != 1 {
			return nil, fmt.Errorf("<testsuite>: want exactly one <%s>, have %d", c, seen[c])
		}
	}
	return s, nil
}

func (ck *junitChecker) checkCase(attrs map[string]string, children []string) (*Case, error) {
	c := &Case{Classname: attrs["classname"], Name: attrs["name"]}
	if c.Name == "" || c.Classname == "" {
		return nil, fmt.Errorf("<testcase name=%q classname=%q>: empty", c.Name, c.Classname)
	}
	t, err := strconv.ParseFloat(attrs["time"], 64)
	if err != nil || t < 0 {
		return nil, fmt.Errorf("<testcase %s time=%q>: not a duration in seconds", c.Name, attrs["time"])
	}
	c.Time = t
	problems := 0
	for _, ch := range children {
		if ch == "failure" || ch == "error" || ch == "skipped" {
			problems++
		}
	}
	if problems > 1 {
		return nil, fmt.Errorf("<testcase %s>: %d failure/error/skipped elements, want at most one", c.Name, problems)
	}
	if problems == 1 {
		c.Problem, c.Type, c.Message, c.Text = ck.problem.Problem, ck.problem.Type, ck.problem.Message, ck.problem.Text
	}
	c.SystemOut, c.SystemErr = ck.out, ck.err
	ck.problem, ck.out, ck.err = Case{}, "", ""
	return c, nil
}

func countsAddUp(s *Suite) error {
	var f, e, sk int
	for _, c := range s.Cases {
		switch c.Problem {
		case "failure":
			f++
		case "error":
			e++
		case "skipped":
			sk++
		}
	}
	if s.Tests != len(s.Cases) || s.Failures != f || s.Errors != e || s.Skipped != sk {
		return fmt.Errorf("<testsuite %s>: says tests=%d failures=%d errors=%d skipped=%d, its testcases have %d, %d, %d, %d",
			s.Name, s.Tests, s.Failures, s.Errors, s.Skipped, len(s.Cases), f, e, sk)
	}
	return nil
}
