package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"kvmboot/e2e/hosttest"
)

// events renders test2json events, one a line.
func events(t *testing.T, evs ...event) string {
	t.Helper()
	var b strings.Builder
	for _, ev := range evs {
		j, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.String()
}

func out(test, text string) event {
	return event{Action: "output", Package: "kvmboot/e2e", Test: test, Output: text}
}

func end(test, action string) event {
	return event{Action: action, Package: "kvmboot/e2e", Test: test}
}

func TestCounts(t *testing.T) {
	in := events(t,
		// A KVM test skipped here, and one failed for lack of it under a requirement.
		out("TestKVMA", "    kvm_test.go:1: hosttest: skipped on kvm: no usable /dev/kvm: open /dev/kvm: no such file or directory (set KVMBOOT_REQUIRE_KVM=1 to make this a failure)\n"),
		end("TestKVMA", "skip"),
		out("TestKVMB", "    kvm_test.go:1: hosttest: skipped on kvm: no usable /dev/kvm: open /dev/kvm: no such file or directory (required: KVMBOOT_REQUIRE_KVM=1)\n"),
		end("TestKVMB", "fail"),
		// A QEMU test whose KVM part could not run.
		out("TestQEMUSame", "    qemu_test.go:1: hosttest: ran on qemu\n"),
		out("TestQEMUSame", "    qemu_test.go:2: hosttest: skipped on kvm: no usable /dev/kvm: open /dev/kvm: no such file or directory (this part only)\n"),
		end("TestQEMUSame", "pass"),
		// Subtests inherit their parent's need.
		out("TestLinux", "    linux_test.go:1: hosttest: ran on qemu\n"),
		out("TestLinux", "    linux_test.go:2: hosttest: ran on debian-kernel\n"),
		end("TestLinux/clean", "pass"),
		end("TestLinux/bad", "pass"),
		end("TestLinux", "pass"),
		// Needing nothing; and an untagged skip.
		end("TestParse", "pass"),
		out("TestStrip", "    cli_test.go:9: objcopy cannot strip relocations here\n"),
		end("TestStrip", "skip"),
	)
	var w bytes.Buffer
	s := newSummary(&w, false)
	if err := s.read(strings.NewReader(in)); err != nil {
		t.Fatal(err)
	}
	if !s.failed {
		t.Error("a failed test did not fail the summary")
	}
	if !strings.Contains(w.String(), "required: KVMBOOT_REQUIRE_KVM=1") {
		t.Errorf("the failed test's output was not printed:\n%s", w.String())
	}
	got := s.counts()
	want := map[hosttest.Need][2]int{ // ran, skipped
		hosttest.KVM:    {0, 3},
		hosttest.QEMU:   {4, 0},
		hosttest.Kernel: {3, 0},
		hostOnly:        {1, 1},
	}
	for n, rs := range want {
		c := got[n]
		if c == nil || c.ran != rs[0] || c.skipped != rs[1] {
			t.Errorf("%s: got %+v, want ran %d skipped %d", n, c, rs[0], rs[1])
		}
	}
	const noKVM = "no usable /dev/kvm: open /dev/kvm: no such file or directory"
	if why := got[hosttest.KVM].why; why[noKVM] != 1 || why[noKVM+" (part of a test)"] != 1 || why[noKVM+" (required here: the test failed)"] != 1 {
		t.Errorf("kvm reasons %v", why)
	}
	if why := got[hostOnly].why; why["objcopy cannot strip relocations here"] != 1 {
		t.Errorf("host-only reasons %v", why)
	}
	var table bytes.Buffer
	s.writeTable(&table)
	for _, want := range []string{"kvm (our KVM machine on /dev/kvm)", "kvm-paging (our KVM machine, 32-bit paging)  0    0"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
}

// TestPassThrough: package lines and lines that are not events are printed;
// a passing test's output is not.
func TestPassThrough(t *testing.T) {
	in := "not json\n" + events(t,
		out("TestA", "    a_test.go:1: chatter\n"),
		end("TestA", "pass"),
		event{Action: "output", Package: "kvmboot/e2e", Output: "PASS\n"},
		event{Action: "output", Package: "kvmboot/e2e", Output: "ok  \tkvmboot/e2e\t1.0s\n"},
		event{Action: "build-output", ImportPath: "kvmboot/x", Output: "x.go:1: syntax error\n"},
		event{Action: "build-fail", ImportPath: "kvmboot/x"},
	)
	var w bytes.Buffer
	s := newSummary(&w, false)
	if err := s.read(strings.NewReader(in)); err != nil {
		t.Fatal(err)
	}
	want := "not json\nok  \tkvmboot/e2e\t1.0s\nx.go:1: syntax error\n"
	if w.String() != want {
		t.Errorf("printed %q, want %q", w.String(), want)
	}
	if !s.failed {
		t.Error("a build failure did not fail the summary")
	}
}
