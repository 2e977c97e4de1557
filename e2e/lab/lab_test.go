package lab

import (
	"bytes"
	"io"
	"os/exec"
	"strings"
	"testing"
)

type buffer struct {
	bytes.Buffer
	closed int
}

func (b *buffer) Close() error { b.closed++; return nil }

func newTestCollector(job Job) (*Collector, map[int]*buffer, *[]string) {
	outs := map[int]*buffer{}
	var notes []string
	c := NewCollector(job, func(step int) io.WriteCloser {
		if outs[step] == nil {
			outs[step] = &buffer{}
		}
		return outs[step]
	}, func(s string) { notes = append(notes, s) })
	return c, outs, &notes
}

func feed(c *Collector, text string) {
	for _, l := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		c.Line(l)
	}
}

// A test binary's output, as -test.v=test2json prints it.
const attempt1 = "@@lab step-begin 0\n" +
	"\x16=== RUN   TestA\n" +
	"\x16=== RUN   TestA/x\n" +
	"    a_test.go:3: hi\n" +
	"\x16--- PASS: TestA/x (0.00s)\n" +
	"\x16=== NAME  TestA\n" +
	"\x16--- PASS: TestA (0.00s)\n" +
	"\x16=== NAME  \n" +
	"\x16=== RUN   TestB\n" +
	"    b_test.go:4: half way\n" // the outer VM froze here

const attempt2 = "@@lab step-begin 0\n" +
	"\x16=== RUN   TestB\n" +
	"    b_test.go:4: half way\n" +
	"\x16--- FAIL: TestB (1.00s)\n" +
	"\x16=== NAME  \n" +
	"\x16FAIL\n" +
	"\n" +
	"@@lab step-end 0 1\n"

// TestCollectorRetry: a test an outer-VM freeze interrupted is dropped
// and runs again; what ended is kept, once, and the closing line covers
// both attempts.
func TestCollectorRetry(t *testing.T) {
	job := Job{Steps: []Step{{Name: "p", Tests: true}, {Name: "q"}}}
	c, outs, notes := newTestCollector(job)
	feed(c, attempt1)
	c.Abort()
	if from, skip := c.Remaining(); from != 0 || len(skip) != 1 || skip[0] != "TestA" {
		t.Fatalf("Remaining = %d %v, want step 0 skipping TestA", from, skip)
	}
	if len(*notes) != 1 || !strings.Contains((*notes)[0], "TestB interrupted") {
		t.Errorf("notes %q", *notes)
	}
	feed(c, attempt2)
	want := "\x16=== RUN   TestA\n\x16=== RUN   TestA/x\n    a_test.go:3: hi\n\x16--- PASS: TestA/x (0.00s)\n\x16=== NAME  TestA\n\x16--- PASS: TestA (0.00s)\n" +
		"\x16=== NAME  \n" +
		"\x16=== RUN   TestB\n    b_test.go:4: half way\n\x16--- FAIL: TestB (1.00s)\n" +
		"\x16=== NAME  \n" +
		"\x16FAIL\n"
	if got := outs[0].String(); got != want {
		t.Errorf("step output:\n%q\nwant\n%q", got, want)
	}
	if outs[0].closed != 1 {
		t.Errorf("step output closed %d times", outs[0].closed)
	}
	if s, ok := c.Status(0); !ok || s != 1 {
		t.Errorf("status %d %v", s, ok)
	}
	if from, _ := c.Remaining(); from != 1 {
		t.Errorf("next step %d, want 1", from)
	}

	// A plain step's lines go out as they come; a last line without a
	// newline keeps its text; the job script's empty line goes.
	feed(c, "@@lab step-begin 1\nhello\n\nworld@@lab step-end 1 0\n")
	if got := outs[1].String(); got != "hello\n\nworld\n" {
		t.Errorf("plain step output %q", got)
	}
	if from, _ := c.Remaining(); from != 2 {
		t.Errorf("Remaining after the last step: %d", from)
	}
}

// TestCollectorPassingAndCrashing: a closing PASS needs every test to pass
// and the binary to exit 0; a binary that crashed mid-test still has that
// test's lines written.
func TestCollectorPassingAndCrashing(t *testing.T) {
	job := Job{Steps: []Step{{Name: "p", Tests: true}, {Name: "q", Tests: true}}}
	c, outs, _ := newTestCollector(job)
	feed(c, "@@lab step-begin 0\n\x16=== RUN   TestA\n\x16--- SKIP: TestA (0.00s)\n\x16PASS\n@@lab step-end 0 0\n")
	if !strings.HasSuffix(outs[0].String(), "\x16PASS\n") {
		t.Errorf("passing step: %q", outs[0].String())
	}
	feed(c, "@@lab step-begin 1\n\x16=== RUN   TestC\npanic: boom\n@@lab step-end 1 2\n")
	if got := outs[1].String(); got != "\x16=== RUN   TestC\npanic: boom\n\x16FAIL\n" {
		t.Errorf("crashed step: %q", got)
	}
}

// TestJobScript: the script frames each step with markers, quotes every
// word, and a retried test step skips the tests that ended.
func TestJobScript(t *testing.T) {
	job := Job{Steps: []Step{
		{Name: "a", Argv: []string{"/bin/x.test", "-test.run", "A|B"}, Env: []string{"K=it's"}, Tests: true},
		{Name: "b", Argv: []string{"echo", "hi there"}},
	}}
	s := job.script(0, []string{"TestA", "TestB.x"})
	for _, want := range []string{
		"echo '@@lab step-begin 0'\n",
		`env 'K=it'\''s' '/bin/x.test' '-test.run' 'A|B' '-test.skip' '^(TestA|TestB\.x)$'` + "\n",
		"echo \"\n@@lab step-end 0 $?\"\n",
		"env 'echo' 'hi there'\n",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("script lacks %q:\n%s", want, s)
		}
	}
	if s := job.script(1, nil); strings.Contains(s, "step-begin 0") || !strings.Contains(s, "step-begin 1") {
		t.Errorf("script from step 1:\n%s", s)
	}
	if _, err := exec.LookPath("sh"); err == nil {
		out, err := exec.Command("sh", "-c", job.script(1, nil)).Output()
		if err != nil || string(out) != "@@lab step-begin 1\nhi there\n\n@@lab step-end 1 0\n" {
			t.Errorf("sh ran the script: %q %v", out, err)
		}
	}
}

// QEMU 7.2's monitor on a frozen outer VM (DESIGN.md §7) and on one that
// waits for its timer.
const (
	frozenRegisters = `RAX=0000000000000000 RBX=0000000000000000 RCX=0000000000000001 RDX=0000000000000000
RSI=0000000000000000 RDI=0000000000000000 RBP=0000000000000000 RSP=ffffffff82603e98
RIP=ffffffff81e0a0a2 RFL=00000246 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=1
`
	frozenLAPIC = `dumping local APIC state for CPU 0

LVT0	 0x00010700 active-hi edge  masked                      ExtINT (vec 0)
LVTT	 0x000400ec active-hi edge                 tsc-deadline Fixed  (vec 236)
Timer	 DCR=0x0 (divide by 2) initial_count = 0 current_count = 0
SPIV	 0x000001ff APIC enabled, focus=off, spurious vec 255
ISR	 (none)
IRR	 236

APR 0x00 TPR 0x10 DFR 0x0f LDR 0x00 PPR 0x10
`
	// The CPU in the nested guest: our VMM's i386 guest, which QEMU dumps
	// in the legacy form.
	nestedRegisters = `EAX=00000000 EBX=cfc6e640 ECX=00000001 EDX=00080003
ESI=cfc4df00 EDI=00000000 EBP=c2185ecc ESP=c2185eb4
EIP=c19227b7 EFL=00000046 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=0
`
	idleLAPIC = `ISR	 (none)
IRR	 (none)

APR 0x00 TPR 0x00 DFR 0x0f LDR 0x00 PPR 0x00
`
)

func TestOuterCPU(t *testing.T) {
	cpu, ok := ParseOuterCPU(frozenRegisters, frozenLAPIC)
	if !ok || !cpu.Halted || !cpu.IF || cpu.RIP != 0xffffffff81e0a0a2 || cpu.PPR != 0x10 || len(cpu.IRR) != 1 || cpu.IRR[0] != 236 || len(cpu.ISR) != 0 {
		t.Fatalf("parsed %+v %v", cpu, ok)
	}
	if !cpu.Frozen() || cpu.Deliverable() != 236 {
		t.Errorf("%v: not frozen", cpu)
	}
	if !strings.Contains(cpu.String(), "HLT=1 IF=1") || !strings.Contains(cpu.String(), "initial_count = 0") {
		t.Errorf("String: %s", cpu)
	}
	for name, c := range map[string]OuterCPU{
		"waiting for its timer":   must(t, frozenRegisters, idleLAPIC),
		"running":                 must(t, strings.Replace(frozenRegisters, "HLT=1", "HLT=0", 1), frozenLAPIC),
		"interrupts off":          must(t, strings.Replace(frozenRegisters, "RFL=00000246", "RFL=00000046", 1), frozenLAPIC),
		"vector below the PPR":    must(t, frozenRegisters, strings.Replace(frozenLAPIC, "PPR 0x10", "PPR 0xf0", 1)),
		"vector in the PPR class": must(t, frozenRegisters, strings.Replace(frozenLAPIC, "PPR 0x10", "PPR 0xe0", 1)),
	} {
		if c.Frozen() {
			t.Errorf("%s: %v counted as frozen", name, c)
		}
	}
	nested := must(t, nestedRegisters, frozenLAPIC)
	if !nested.InGuest || nested.Halted || nested.IF || nested.RIP != 0xc19227b7 || !nested.Frozen() || !strings.HasPrefix(nested.String(), "in the nested guest, ") {
		t.Errorf("the CPU in the nested guest with the host's timer requested: %+v, frozen %v", nested, nested.Frozen())
	}
	if cpu.InGuest {
		t.Errorf("%v: in the nested guest", cpu)
	}
	if c := must(t, nestedRegisters, idleLAPIC); c.Frozen() {
		t.Errorf("%v: the nested guest running, nothing requested, counted as frozen", c)
	}
	if _, ok := ParseOuterCPU("no registers", frozenLAPIC); ok {
		t.Error("parsed registers from nothing")
	}
}

func must(t *testing.T, regs, lapic string) OuterCPU {
	t.Helper()
	c, ok := ParseOuterCPU(regs, lapic)
	if !ok {
		t.Fatalf("cannot parse %q %q", regs, lapic)
	}
	return c
}
