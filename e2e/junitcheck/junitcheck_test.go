package junitcheck

import (
	"strings"
	"testing"
)

// TestCheckRejects: the strict parser refuses what a schema would.
func TestCheckRejects(t *testing.T) {
	good := `<testsuites name="x" tests="1" failures="1" errors="0" time="1.0"><testsuite name="s" package="p" id="0" tests="1" failures="1" errors="0" skipped="0" time="1" timestamp="2024-01-02T03:04:05" hostname="h"><properties></properties><testcase name="a" classname="k" time="0.5"><failure message="m" type="fail">text</failure></testcase><system-out></system-out><system-err></system-err></testsuite></testsuites>`
	if _, err := Check(strings.NewReader(good)); err != nil {
		t.Fatalf("good: %v", err)
	}
	for _, tc := range []struct{ name, old, new, want string }{
		{"missing classname", ` classname="k"`, ``, "classname missing"},
		{"unknown element", `<failure`, `<oops/><failure`, "<oops> not allowed"},
		{"unknown attribute", `name="a"`, `name="a" flaky="yes"`, "attribute flaky"},
		{"count mismatch", `failures="1" errors="0" skipped`, `failures="0" errors="0" skipped`, "says tests=1 failures=0"},
		{"total mismatch", `tests="1" failures="1" errors="0" time="1.0"`, `tests="2" failures="1" errors="0" time="1.0"`, "add up to 1"},
		{"bad time", `time="0.5"`, `time="soon"`, "not a duration"},
		{"bad timestamp", `2024-01-02T03:04:05`, `yesterday`, "timestamp"},
		{"two problems", `</failure>`, `</failure><error message="m" type="e"/>`, "at most one"},
		{"no properties", `<properties></properties>`, ``, "exactly one <properties>"},
		{"out of order", `<system-out></system-out><system-err></system-err>`, `<system-err></system-err><system-out></system-out>`, "out of order"},
		{"not xml", `</testsuites>`, ``, "unexpected EOF"},
	} {
		bad := strings.Replace(good, tc.old, tc.new, 1)
		if bad == good {
			t.Fatalf("%s: edit did not apply", tc.name)
		}
		_, err := Check(strings.NewReader(bad))
		// The message names the schema rule broken: its contract.
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}
