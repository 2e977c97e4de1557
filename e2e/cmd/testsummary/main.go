// Command testsummary runs `go test -json` (or reads its events on stdin),
// prints what `go test` prints without -v (package lines, and the whole
// output of every failed test), and ends with a table: per backend need
// (e2e/hosttest), how many tests ran and how many skipped, and why. A host
// without KVM loses coverage; this makes the loss visible.
//
//	testsummary [-v] [-- go test -json ./...]
//
// With a command, it runs it and exits with its status (1 when the events
// show a failure the status did not); without one, it reads events on
// stdin, as from `go tool test2json`.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
)

func main() {
	verbose := flag.Bool("v", false, "print every test's output, not only failed tests'")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: testsummary [-v] [-- go test -json ...]   (no command: events on stdin)")
		flag.PrintDefaults()
	}
	flag.Parse()
	os.Exit(run(flag.Args(), *verbose))
}

func run(argv []string, verbose bool) int {
	in := io.Reader(os.Stdin)
	var cmd *exec.Cmd
	if len(argv) > 0 {
		cmd = exec.Command(argv[0], argv[1:]...)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			fmt.Fprintln(os.Stderr, "testsummary:", err)
			return 2
		}
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "testsummary:", err)
			return 2
		}
		in = out
	}
	s := newSummary(os.Stdout, verbose)
	if err := s.read(in); err != nil {
		fmt.Fprintln(os.Stderr, "testsummary: reading events:", err)
	}
	status := 0
	if cmd != nil {
		var ee *exec.ExitError
		switch err := cmd.Wait(); {
		case errors.As(err, &ee):
			status = ee.ExitCode()
		case err != nil:
			fmt.Fprintln(os.Stderr, "testsummary:", err)
			status = 2
		}
	}
	s.writeTable(os.Stdout)
	if status == 0 && s.failed {
		status = 1
	}
	return status
}

// event is one line of `go test -json` (cmd/test2json's TestEvent).
type event struct {
	Action     string
	Package    string
	ImportPath string // build-output events
	Test       string
	Output     string
}

// decodeLines feeds each event of r to fn; a line that is not an event
// (a tool's own message) is printed as it is.
func decodeLines(r io.Reader, w io.Writer, fn func(event)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var ev event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &ev) != nil || ev.Action == "" {
			fmt.Fprintf(w, "%s\n", line)
			continue
		}
		fn(ev)
	}
	return sc.Err()
}

// testKey names a test: its package and its name ("TestA/sub").
type testKey struct{ pkg, name string }

// parent is the enclosing test of a subtest, or the zero key.
func (k testKey) parent() testKey {
	if i := strings.LastIndexByte(k.name, '/'); i >= 0 {
		return testKey{k.pkg, k.name[:i]}
	}
	return testKey{}
}
