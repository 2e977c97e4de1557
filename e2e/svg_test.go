package e2e

import (
	"encoding/binary"
	"encoding/xml"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"kvmboot/boot"
	"kvmboot/boot/testkernel"
	"kvmboot/e2e/hosttest"
)

var updateExample = flag.Bool("update-example", false, "regenerate docs/plan-example.svg (needs Debian's kernel)")

// svgNode is any SVG element.
type svgNode struct {
	XMLName xml.Name
	Attrs   []xml.Attr `xml:",any,attr"`
	Nodes   []svgNode  `xml:",any"`
	Text    string     `xml:",chardata"`
}

func (n *svgNode) attr(name string) string {
	for _, a := range n.Attrs {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

// svgShape is a labelled rect of a plan picture; label holds its texts
// and its tooltip.
type svgShape struct {
	class, kind, what string
	start, end        uint64
	label             string
}

// readSVG parses a plan picture into its labelled shapes and all its text.
func readSVG(t *testing.T, path string) (shapes []svgShape, text string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var root svgNode
	if err := xml.Unmarshal(b, &root); err != nil {
		t.Fatalf("%s: not well-formed XML: %v", path, err)
	}
	var all []string
	var walk func(n *svgNode)
	walk = func(n *svgNode) {
		if n.XMLName.Local == "text" {
			all = append(all, n.Text)
		}
		for i := range n.Nodes {
			walk(&n.Nodes[i])
		}
	}
	walk(&root)
	for _, g := range root.Nodes {
		class := g.attr("class")
		if g.XMLName.Local != "g" || (class != "region" && class != "placement" && class != "found") {
			continue
		}
		s := svgShape{class: class, kind: g.attr("data-kind"), what: g.attr("data-what")}
		for _, c := range g.Nodes {
			switch c.XMLName.Local {
			case "rect": // the shape; others are label backgrounds
				if c.attr("data-start") != "" {
					s.start, _ = strconv.ParseUint(c.attr("data-start"), 0, 64)
					s.end, _ = strconv.ParseUint(c.attr("data-end"), 0, 64)
				}
			case "text", "title":
				s.label += c.Text + " "
			}
		}
		shapes = append(shapes, s)
	}
	return shapes, strings.Join(all, "\n")
}

// checkSVGAgainstPlan checks that the picture has one labelled rect per
// placement and memory-map region of the plan, with its addresses.
func checkSVGAgainstPlan(t *testing.T, shapes []svgShape, p *boot.Result, found int) {
	t.Helper()
	has := func(class string, start, end uint64, label string) {
		for _, s := range shapes {
			if s.class == class && s.start == start && s.end == end && strings.Contains(s.label, label) {
				return
			}
		}
		t.Errorf("no %s rect for %#x-%#x labelled %q", class, start, end, label)
	}
	for _, pl := range p.Placements {
		has("placement", pl.Start, pl.End, fmt.Sprintf("%#08x-%#08x", pl.Start, pl.End))
	}
	for _, r := range p.MemoryMap {
		has("region", r.Start, r.End, fmt.Sprintf("%#08x-%#08x", r.Start, r.End))
	}
	if want := len(p.Placements) + len(p.MemoryMap) + found; len(shapes) != want {
		t.Errorf("%d labelled rects, want %d", len(shapes), want)
	}
}

// TestPlanSVG: `kvmboot plan --svg` draws the plan that `plan --json`
// prints, for the test kernel and for Debian's.
func TestPlanSVG(t *testing.T) {
	dir := t.TempDir()
	args := []string{"--bad-ram", "16M-20M", "--bad-ram", "memmap=8M$36M"}
	kernels := []string{""} // the built-in test kernel
	if _, err := os.Stat(filepath.Join(hosttest.KernelDir(), "vmlinuz")); err == nil {
		kernels = append(kernels, filepath.Join(hosttest.KernelDir(), "vmlinuz"))
	}
	for i, k := range kernels {
		out := filepath.Join(dir, fmt.Sprintf("plan%d.svg", i))
		kargs := args
		if k != "" {
			kargs = append(slices.Clone(args), k)
		}
		if _, stderr, status := runCLI(t, append([]string{"plan", "--svg", out, "--svg-found", "80M+64K"}, kargs...)...); status != 0 {
			t.Fatalf("plan --svg: status %d: %s", status, stderr)
		}
		p := planJSON(t, kargs...)
		shapes, text := readSVG(t, out)
		checkSVGAgainstPlan(t, shapes, p, 1)
		found := false
		for _, s := range shapes {
			found = found || s.class == "found" && s.start == 80*mib && s.end == 80*mib+64<<10
		}
		if !found || !strings.Contains(text, "given by hand") {
			t.Errorf("the --svg-found range is not drawn, or not said to be hand-made")
		}
	}
}

// TestPlanExampleSVG checks docs/plan-example.svg, the picture the README
// shows; -update-example regenerates it from Debian's kernel with two bad
// ranges, an initrd and a hand-made memtest finding.
func TestPlanExampleSVG(t *testing.T) {
	example := filepath.Join(repoRoot(), "docs", "plan-example.svg")
	if *updateExample {
		// A real run: the in-guest memory test finds injected faulty RAM,
		// which the plan then avoids with the two declared bad ranges.
		requireKVM(t)
		cmd := exec.Command(cli(t), "run", "--vmm=kvm", "--bad-ram", "16M-20M", "--bad-ram", "memmap=8M$36M",
			"--faulty-ram", "80M+64K:stuck0", "--memtest", "--memtest-range", "76M-84M", "--console", os.DevNull, "--svg", example)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	shapes, text := readSVG(t, example)
	var bad, faults, kernel int
	for _, s := range shapes {
		switch {
		case s.class == "region" && s.kind == "bad":
			bad++
		case s.class == "found":
			faults++
		case s.class == "placement" && s.what == "kernel":
			kernel++
		}
	}
	// Bad regions: the two declared and the one the memtest found (the run
	// avoids it as bad RAM, and marks it as a memtest fault).
	if bad != 3 || faults != 1 || kernel != 1 || !strings.Contains(text, "found by the in-guest memory test") {
		t.Errorf("%s: %d bad regions, %d faults, %d kernels; want 3, 1, 1 and a caption saying the memory test found the fault", example, bad, faults, kernel)
	}
}

// TestRunPlansOnce: `run --show-plan --svg` plans once and runs that plan:
// every input is opened once (it used to be planned three times, each
// time reading and, with --no-cache, decompressing every input again),
// and the picture is the plan that ran.
func TestRunPlansOnce(t *testing.T) {
	requireQEMU(t)
	dir := t.TempDir()
	kernel, module := filepath.Join(dir, "kernel.elf"), filepath.Join(dir, "module.bin")
	if err := os.WriteFile(kernel, testkernel.ELF, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(module, []byte("module bytes"), 0o644); err != nil {
		t.Fatal(err)
	}
	picture := filepath.Join(t.TempDir(), "run.svg")
	args := []string{"--bad-ram", "16M-20M", "--module", module + " arg", kernel}
	var stderr string
	var status int
	opens := opensDuring(t, dir, func() {
		_, stderr, status = runCLI(t, append([]string{"run", "--vmm=qemu", "--accel=tcg", "--no-cache", "--show-plan", "--svg", picture}, args...)...)
	})
	if status != 0 {
		t.Fatalf("status %d: %s", status, stderr)
	}
	for _, f := range []string{kernel, module} {
		if n := opens[filepath.Base(f)]; n != 1 {
			t.Errorf("%s opened %d times, want once", filepath.Base(f), n)
		}
	}
	if strings.Count(stderr, "load address") != 1 {
		t.Errorf("--show-plan printed the plan %d times:\n%s", strings.Count(stderr, "load address"), stderr)
	}
	shapes, _ := readSVG(t, picture)
	checkSVGAgainstPlan(t, shapes, planJSON(t, args...), 0)
}

// opensDuring runs f and counts, by file name, the opens of files in dir
// by any process meanwhile (inotify IN_OPEN).
func opensDuring(t *testing.T, dir string, f func()) map[string]int {
	t.Helper()
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC | syscall.IN_NONBLOCK)
	if err != nil {
		t.Fatalf("inotify: %v", err)
	}
	defer syscall.Close(fd)
	if _, err := syscall.InotifyAddWatch(fd, dir, syscall.IN_OPEN); err != nil {
		t.Fatalf("inotify watch %s: %v", dir, err)
	}
	f()
	opens := map[string]int{}
	buf := make([]byte, 64<<10)
	for {
		n, err := syscall.Read(fd, buf)
		if err == syscall.EAGAIN || err == nil && n <= 0 {
			return opens
		}
		if err != nil {
			t.Fatalf("reading inotify events: %v", err)
		}
		// struct inotify_event: wd, mask, cookie, len, then len bytes of
		// NUL-padded name.
		for ev := buf[:n]; len(ev) >= syscall.SizeofInotifyEvent; {
			nameLen := int(binary.NativeEndian.Uint32(ev[12:]))
			name := strings.TrimRight(string(ev[syscall.SizeofInotifyEvent:syscall.SizeofInotifyEvent+nameLen]), "\x00")
			if name != "" {
				opens[name]++
			}
			ev = ev[syscall.SizeofInotifyEvent+nameLen:]
		}
	}
}
