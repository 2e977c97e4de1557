package machine

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"kvmboot/loader"
	"kvmboot/loader/memmap"
	"kvmboot/realmode"
)

// The exit-status contract of DESIGN.md §3: 0 passes, 1..123 pass through
// as failures, anything larger cannot be told apart from kvmboot's own
// statuses and becomes a crash status.
func TestGuestExit(t *testing.T) {
	for _, tc := range []struct {
		v       uint32
		outcome Outcome
		status  int
		reason  string
	}{
		{0, Pass, 0, "guest wrote 0"},
		{1, Fail, 1, "guest wrote 1 "},
		{42, Fail, 42, "guest wrote 42 "},
		{123, Fail, 123, "guest wrote 123 "},          // the largest passed through
		{124, Fail, StatusCrash, "0x7c"},              // would read as a timeout
		{126, Fail, StatusCrash, "0x7e"},              // would read as "could not boot"
		{0xFFFFFFFF, Fail, StatusCrash, "0xffffffff"}, // outl of -1
	} {
		r := GuestExit(tc.v)
		if r.Outcome != tc.outcome || r.Status != tc.status || !r.GuestRan || r.GuestValue != tc.v {
			t.Errorf("GuestExit(%d) = %+v, want outcome %s status %d", tc.v, r, tc.outcome, tc.status)
		}
		if !strings.Contains(r.Reason, tc.reason) {
			t.Errorf("GuestExit(%d).Reason = %q, want it to contain %q", tc.v, r.Reason, tc.reason)
		}
	}
}

// --exit-code=qemu: isa-debug-exit exits with (v<<1)|1, and the OS keeps
// the low 8 bits of an exit status.
func TestQEMUStatus(t *testing.T) {
	for _, tc := range []struct {
		v    uint32
		want int
	}{
		{0, 1},
		{1, 3},
		{0x10, 0x21},
		{0x7F, 0xFF},
		{0x80, 0x01}, // bit 7 shifts out of the byte
		{0x81, 0x03},
		{0xFFFFFFFF, 0xFF}, // no overflow trouble
	} {
		if got := QEMUStatus(tc.v); got != tc.want {
			t.Errorf("QEMUStatus(%#x) = %#x, want %#x", tc.v, got, tc.want)
		}
	}
}

func TestResultBuilders(t *testing.T) {
	if r := Crashed("triple fault at %#x", 0x1234); r.Outcome != Crash || r.Status != StatusCrash || r.Reason != "triple fault at 0x1234" {
		t.Errorf("Crashed = %+v", r)
	}
	if r := TimedOut(3 * time.Second); r.Outcome != Timeout || r.Status != StatusTimeout || !strings.Contains(r.Reason, "3s") {
		t.Errorf("TimedOut = %+v", r)
	}
	if r := Interrupted(); r.Outcome != Error || r.Status != StatusError {
		t.Errorf("Interrupted = %+v", r)
	}
	// The statuses themselves are the contract.
	if StatusTimeout != 124 || StatusCrash != 125 || StatusError != 126 || MaxGuestStatus != 123 {
		t.Errorf("exit statuses changed: %d %d %d %d", StatusTimeout, StatusCrash, StatusError, MaxGuestStatus)
	}
}

// StubFailure turns the stub's status words into a sentence naming the
// piece whose checksum failed, with the plan's own check.
func TestStubFailure(t *testing.T) {
	kernel := []byte("kernel bytes")
	info := []byte("info")
	plan := &loader.Plan{
		MemSize: 64 << 20,
		Map:     memmap.New(64<<20, loader.FirmwareHigh),
		Verify:  true,
		Placements: []loader.Placement{
			{What: "kernel", Start: 0x1000000, Data: kernel, Size: 0x2000, Verify: true},
			{What: "boot_info", Start: 0x8000, Data: info, Size: uint64(len(info)), Verify: true},
		},
	}
	if err := plan.Finish(); err != nil {
		t.Fatal(err)
	}
	if n := len(plan.Checks()); n != 2 {
		t.Fatalf("%d checks, want 2", n)
	}
	for _, tc := range []struct {
		st   realmode.StubState
		want []string // substrings; nil means ""
	}{
		{realmode.StubState{Status: realmode.StatusBadSum, Detail: 0, Got: 0xDEAD},
			[]string{"kernel", "0x1000000-0x100000c", "0x0000dead", "xxh32"}},
		{realmode.StubState{Status: realmode.StatusBadSum, Detail: 1, Got: 1},
			[]string{"boot_info", "0x8000-0x8004"}},
		// An index the plan does not have (a corrupted block): still a
		// sentence, without a name.
		{realmode.StubState{Status: realmode.StatusBadSum, Detail: 7, Got: 0xABC},
			[]string{"piece 7", "0x00000abc"}},
		{realmode.StubState{Status: realmode.StatusNoParams}, []string{"no valid parameter block"}},
		{realmode.StubState{Status: realmode.StatusJumped}, nil},
		{realmode.StubState{}, nil},
	} {
		got := StubFailure(tc.st, plan)
		if tc.want == nil {
			if got != "" {
				t.Errorf("StubFailure(%+v) = %q, want empty", tc.st, got)
			}
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("StubFailure(%+v) = %q, want it to contain %q", tc.st, got, w)
			}
		}
		if strings.Contains(got, "\n") {
			t.Errorf("StubFailure(%+v) = %q: more than one line", tc.st, got)
		}
	}
	// The expected CRC printed is the one the loader computed.
	got := StubFailure(realmode.StubState{Status: realmode.StatusBadSum}, plan)
	if want := fmt.Sprintf("%x", realmode.XXH32(kernel)); !strings.Contains(got, want) {
		t.Errorf("StubFailure = %q, want it to name the loader's crc %s", got, want)
	}
}

func TestParseBadRAMPolicy(t *testing.T) {
	for in, want := range map[string]BadRAMPolicy{"": BadRAMStop, "stop": BadRAMStop, "record": BadRAMRecord} {
		if got, err := ParseBadRAMPolicy(in); err != nil || got != want {
			t.Errorf("%q: %q %v, want %q", in, got, err, want)
		}
	}
	// Listing the choices is the message's contract.
	if _, err := ParseBadRAMPolicy("ignore"); err == nil || !strings.Contains(err.Error(), "want stop or record") {
		t.Errorf("ignore: %v", err)
	}
}
