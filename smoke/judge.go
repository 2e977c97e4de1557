package smoke

import (
	"fmt"
	"strings"

	"kvmboot/boot"
	"kvmboot/machine"
)

// Kind is a case's verdict.
type Kind string

const (
	Pass    Kind = "pass"    // met its expectation
	Flaky   Kind = "flaky"   // failed, then passed on a rerun
	Fail    Kind = "fail"    // wrong exit status or outcome
	Timeout Kind = "timeout" // no result within the case's timeout
	Crash   Kind = "crash"   // triple fault, panic or oops, checksum mismatch
	BadRAM  Kind = "bad-ram" // the guest touched bad RAM
	Error   Kind = "error"   // the harness could not boot it
	NotRun  Kind = "not-run" // interrupted before it ran
)

// Kinds lists the verdicts in report order.
var Kinds = []Kind{Pass, Flaky, Fail, Timeout, Crash, BadRAM, Error, NotRun}

// Judge compares a run with its expectation. res may be nil when err is
// set (the run never started). A met expectation is Pass; otherwise the
// kind says what went wrong, from the most specific: a harness error, a
// bad-RAM touch, a timeout, a crash, else a plain mismatch.
func Judge(want Expectation, res *boot.Result, err error) (Kind, string) {
	outcome, status, reason := machine.Error, machine.StatusError, ""
	var touched []machine.BadAccess
	if res != nil {
		outcome, status, reason, touched = res.Outcome, res.ExitCode, res.Reason, res.BadRAMAccesses
	}
	if err != nil && reason == "" {
		reason = err.Error()
	}
	statusOK := want.Status == nil || *want.Status == status
	outcomeOK := want.Outcome == "" || want.Outcome == outcome
	badOK := !want.MustNotTouchBadRAM || len(touched) == 0
	if statusOK && outcomeOK && badOK {
		return Pass, ""
	}
	got := fmt.Sprintf("got %s (%d)", outcome, status)
	if reason != "" {
		got += ": " + reason
	}
	switch {
	case outcome == machine.Error:
		return Error, fmt.Sprintf("could not boot (want %s): %s", want, reason)
	case !badOK && strings.Contains(reason, "bad RAM"):
		return BadRAM, fmt.Sprintf("want %s, %s", want, got)
	case !badOK:
		return BadRAM, fmt.Sprintf("bad RAM touched: %s; want %s, %s", describeAccesses(touched), want, got)
	case outcome == machine.Timeout:
		return Timeout, fmt.Sprintf("want %s, %s", want, got)
	case outcome == machine.Crash:
		return Crash, fmt.Sprintf("want %s, %s", want, got)
	}
	return Fail, fmt.Sprintf("want %s, %s", want, got)
}

func describeAccesses(as []machine.BadAccess) string {
	a := as[0]
	dir := "read"
	if a.Write {
		dir = "write"
	}
	s := fmt.Sprintf("%d-byte %s at %#x", a.Size, dir, a.Addr)
	if a.Insn != "" {
		s += fmt.Sprintf(" by %q at ip %#x", a.Insn, a.IP)
	}
	if len(as) > 1 {
		s += fmt.Sprintf(" and %d more", len(as)-1)
	}
	return s
}

// oneLine cuts a multi-line reason to its first line.
func oneLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " ..."
	}
	return s
}
