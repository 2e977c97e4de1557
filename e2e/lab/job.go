// Package lab runs commands and test binaries against a real KVM on hosts
// that have none: inside an outer VM that QEMU emulates with TCG, with AMD
// SVM and nested paging, running Debian's amd64 kernel and kvm_amd. The
// outer VM boots from a kernel and an initramfs only: busybox, the KVM
// modules, our binaries and their fixtures (BaseFiles), and a job archive
// appended to it (Job). Its /init (init.sh) loads the modules, beats a
// heartbeat on the console (ttyS0) and runs the job on the results channel
// (ttyS1), which the host reads line by line.
//
// QEMU 7.2's SVM emulation sometimes stops taking interrupts: the outer
// CPU halts with an interrupt pending and never wakes (DESIGN.md §7). The
// lab sees the heartbeat stop, asks QEMU's monitor for the CPU and its
// local APIC (Freeze), and runs what was left of the job in a fresh outer
// VM. Test binaries resume at the test that was running: the output of
// each top-level test is held until it ends (Collector), so a frozen
// attempt leaves nothing half printed.
package lab

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	"kvmboot/e2e/initramfs"
)

// Step is one command the outer VM runs.
type Step struct {
	// Name is the step's name in the host's report: a test binary's
	// package path.
	Name string
	// Argv is the command inside the outer VM; Env is added to its
	// environment.
	Argv []string
	Env  []string
	// Tests says Argv is a Go test binary run with -test.v=test2json: its
	// output is parsed per test, and a retry skips the tests that ended.
	Tests bool
}

// Job is what one boot of the outer VM runs, in order.
type Job struct {
	Steps []Step
	// ModParams are insmod parameters by module file name ("kvm-amd.ko":
	// "npt=1 vgif=0").
	ModParams map[string]string
}

// Markers the outer VM's /init and job script print on the results
// channel; the job script's are followed by the step's index.
const (
	markerPrefix = "@@lab "
	markerBegin  = "step-begin"
	markerEnd    = "step-end"
	markerReady  = "ready"
	markerDone   = "done"
	heartbeat    = "@@hb "
)

// archiveFiles are the job's files in the appended archive: the script
// /init runs (steps from on, see script) and the module parameters.
func (j Job) archiveFiles(from int, skip []string) []initramfs.File {
	var params strings.Builder
	mods := make([]string, 0, len(j.ModParams))
	for m := range j.ModParams {
		mods = append(mods, m)
	}
	sort.Strings(mods)
	for _, m := range mods {
		fmt.Fprintf(&params, "%s %s\n", m, j.ModParams[m])
	}
	return []initramfs.File{
		{Name: "lab/job/run", Perm: 0o755, Data: []byte(j.script(from, skip))},
		{Name: "lab/job/modparams", Perm: 0o644, Data: []byte(params.String())},
	}
}

// script is the shell script that runs the steps from index from on,
// each framed by markers; step from skips the top-level tests in skip
// (they ended in an earlier attempt).
func (j Job) script(from int, skip []string) string {
	var b strings.Builder
	b.WriteString("# The lab's job (e2e/lab), written by the host.\n")
	for i := from; i < len(j.Steps); i++ {
		s := j.Steps[i]
		argv := s.Argv
		if i == from && s.Tests && len(skip) > 0 {
			quoted := make([]string, len(skip))
			for k, name := range skip {
				quoted[k] = regexp.QuoteMeta(name)
			}
			argv = append(slices.Clone(argv), "-test.skip", "^("+strings.Join(quoted, "|")+")$")
		}
		fmt.Fprintf(&b, "echo '%s%s %d'\n", markerPrefix, markerBegin, i)
		b.WriteString("env")
		for _, e := range s.Env {
			b.WriteString(" " + shellQuote(e))
		}
		for _, a := range argv {
			b.WriteString(" " + shellQuote(a))
		}
		// A command whose last line has no newline must not swallow the
		// marker: it starts a line of its own (the Collector drops the
		// empty line this leaves after a complete last line).
		fmt.Fprintf(&b, "\necho \"\n%s%s %d $?\"\n", markerPrefix, markerEnd, i)
	}
	return b.String()
}

// shellQuote quotes s for sh: in single quotes, each ' as '\”.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
