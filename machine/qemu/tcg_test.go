package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/arch/x86/x86asm"

	"kvmboot/loader/memmap"
	"kvmboot/machine"
	"kvmboot/machine/faults"
	"kvmboot/machine/qemu/plugin"
)

// regsAt is a 32-bit flat vCPU with these general registers.
func regsAt(gpr map[string]uint64, cr0 uint64) *cpuRegs {
	r := &cpuRegs{gpr: map[string]uint64{"CR0": cr0}, bases: map[string]uint64{}, csD: true}
	for k, v := range gpr {
		r.gpr[k] = v
	}
	return r
}

// TestAccessInBlock: the registers as they are before the access pick the
// instruction, its kind breaking ties, never one before the last access
// of the same run of the block.
func TestAccessInBlock(t *testing.T) {
	b := &plugin.Block{Vaddr: 0x2001000, Insns: [][]byte{
		{0x8b, 0x0b},       // mov ecx, [ebx]
		{0x89, 0x03},       // mov [ebx], eax
		{0x83, 0xc3, 0x04}, // add ebx, 4
		{0x89, 0x03},       // mov [ebx], eax
		{0x50},             // push eax
	}}
	pe := uint64(0x11)
	for _, tc := range []struct {
		name  string
		gpr   map[string]uint64
		cr0   uint64
		phys  uint64
		write bool
		first int
		want  int
	}{
		{"a load: the load", map[string]uint64{"EBX": 0x1800000}, pe, 0x1800000, false, 0, 0},
		{"a store at the same address: the store", map[string]uint64{"EBX": 0x1800000}, pe, 0x1800000, true, 0, 1},
		{"the last byte of the access", map[string]uint64{"EBX": 0x1800000}, pe, 0x1800003, true, 0, 1},
		{"not an instruction before the last access", map[string]uint64{"EBX": 0x1800000}, pe, 0x1800000, true, 2, 3},
		{"the stack", map[string]uint64{"EBX": 0x100, "ESP": 0x1800010}, pe, 0x180000c, true, 0, 4},
		{"paging on: the page offset", map[string]uint64{"EBX": 0xc1800010}, pe | 1<<31, 0x3000010, false, 0, 0},
		{"nothing there", map[string]uint64{"EBX": 0x100, "ESP": 0x7000}, pe, 0x1800000, true, 0, -1},
	} {
		i, inst, op, ok := accessInBlock(b, tc.first, regsAt(tc.gpr, tc.cr0), tc.phys, tc.write)
		if !ok {
			i = -1
		}
		if i != tc.want {
			t.Errorf("%s: instruction %d (%v, %+v), want %d", tc.name, i, inst, op, tc.want)
		}
	}
}

func TestAccessKindFits(t *testing.T) {
	dec := func(b ...byte) x86asm.Inst {
		inst, err := x86asm.Decode(b, 32)
		if err != nil {
			t.Fatal(err)
		}
		return inst
	}
	for _, tc := range []struct {
		inst        x86asm.Inst
		write, fits bool
	}{
		{dec(0x89, 0x03), true, true},        // mov [ebx], eax
		{dec(0x89, 0x03), false, false},      // a mov to memory does not read it
		{dec(0x8b, 0x03), false, true},       // mov eax, [ebx]
		{dec(0x8b, 0x03), true, false},       //
		{dec(0x01, 0x03), true, true},        // add [ebx], eax reads and writes
		{dec(0x01, 0x03), false, true},       //
		{dec(0x39, 0x03), true, false},       // cmp [ebx], eax only reads
		{dec(0xab), true, true},              // stosd
		{dec(0xab), false, false},            //
		{dec(0xa5), false, true},             // movsd reads and writes
		{dec(0x50), false, false},            // push only writes
		{dec(0x0f, 0xb6, 0x03), false, true}, // movzx eax, byte [ebx]
	} {
		if got := accessKindFits(tc.inst, tc.write); got != tc.fits {
			t.Errorf("%v, write %v: %v, want %v", tc.inst, tc.write, got, tc.fits)
		}
	}
}

func TestParseMemoryDump(t *testing.T) {
	got := parseMemoryDump("c1000000: 0x89 0x10 0x90 0x90 0x90 0x90 0x90 0x90\r\nc1000008: 0xc3\r\nc1000009: Cannot access memory\r\n")
	if want := []byte{0x89, 0x10, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0xc3}; !bytes.Equal(got, want) {
		t.Errorf("got % x, want % x", got, want)
	}
	if got := parseMemoryDump("Cannot access memory\r\n"); len(got) != 0 {
		t.Errorf("got % x from an error", got)
	}
}

// storeLoadCode stores 0x12345678 at 2 MiB, loads it back and writes the
// loaded value plus one to the debug-exit port.
var storeLoadCode = []byte{
	0xc7, 0x05, 0x00, 0x00, 0x20, 0x00, 0x78, 0x56, 0x34, 0x12, // mov dword ptr [0x200000], 0x12345678
	0xa1, 0x00, 0x00, 0x20, 0x00, // mov eax, dword ptr [0x200000]
	0x40,       // inc eax
	0xe7, 0xf4, // out 0xf4, eax
	0xf4, // hlt
}

var badAt2M = []memmap.Range{{Start: 2 << 20, End: 3 << 20}}

// TestPluginBadRAM: kvmboot's plugin ends the run at the store, before it
// lands, naming it; under the record policy the store is lost and the
// load sees the zeros bad RAM held with every bit flipped (0xffffffff, so
// the guest exits with 0), as on our KVM machine.
func TestPluginBadRAM(t *testing.T) {
	requireQEMU(t)
	plan := codePlan(t, storeLoadCode)
	res, err := Backend{}.Run(context.Background(), plan, machine.Options{Timeout: 20 * time.Second, BadRAM: badAt2M})
	if err != nil {
		t.Fatal(err)
	}
	want := machine.BadAccess{Addr: 2 << 20, Size: 4, Write: true, IP: 0x100000, Insn: "mov dword ptr [0x200000], 0x12345678"}
	if res.Outcome != machine.Crash || len(res.BadRAMAccesses) != 1 || res.BadRAMAccesses[0] != want {
		t.Fatalf("%s: %s, accesses %+v, want [%+v]", res.Outcome, res.Reason, res.BadRAMAccesses, want)
	}
	res, err = Backend{}.Run(context.Background(), plan, machine.Options{Timeout: 20 * time.Second, BadRAM: badAt2M, BadRAMPolicy: machine.BadRAMRecord})
	if err != nil {
		t.Fatal(err)
	}
	load := machine.BadAccess{Addr: 2 << 20, Size: 4, IP: 0x10000a, Insn: "mov eax, dword ptr [0x200000]"}
	if res.Outcome != machine.Pass || len(res.BadRAMAccesses) != 2 || res.BadRAMAccesses[0] != want || res.BadRAMAccesses[1] != load {
		t.Errorf("record: %s (%s), accesses %+v", res.Outcome, res.Reason, res.BadRAMAccesses)
	}
}

// TestPluginCodeBesideBadRAM: code in a page with bad bytes runs; QEMU
// reading it to translate it is no access to bad RAM.
func TestPluginCodeBesideBadRAM(t *testing.T) {
	requireQEMU(t)
	exit0 := []byte{0x31, 0xc0, 0xe7, 0xf4, 0xf4} // xor eax, eax; out 0xf4, eax; hlt
	res, err := Backend{}.Run(context.Background(), codePlan(t, exit0), machine.Options{Timeout: 20 * time.Second,
		BadRAM: []memmap.Range{{Start: 0x100008, End: 0x100010}}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != machine.Pass || len(res.BadRAMAccesses) != 0 {
		t.Errorf("%s: %s, accesses %+v", res.Outcome, res.Reason, res.BadRAMAccesses)
	}
}

// TestPluginRefused: a QEMU that cannot load plugins still watches bad RAM,
// through the canaries, and says so once, whether QEMU is gone before the
// plugin's configuration is sent or after.
func TestPluginRefused(t *testing.T) {
	requireQEMU(t)
	t.Run("QEMU still starting", testPluginRefused)
	t.Run("QEMU already gone", func(t *testing.T) {
		testHookSpawned = func(pid int) {
			if args, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); !bytes.Contains(args, []byte("\x00-plugin\x00")) {
				return // the fallback's QEMU: it waits for us
			}
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
				if syscall.Kill(pid, 0) != nil {
					return
				}
			}
		}
		defer func() { testHookSpawned = nil }()
		testPluginRefused(t)
	})
}

func testPluginRefused(t *testing.T) {
	real, err := lookBinary("")
	if err != nil {
		t.Fatal(err)
	}
	noPlugins := filepath.Join(t.TempDir(), "qemu-without-plugins")
	script := "#!/bin/sh\nfor a in \"$@\"; do [ \"$a\" = -plugin ] && { echo \"qemu-system-i386: -plugin: invalid option\" >&2; exit 1; }; done\nexec " + real + " \"$@\"\n"
	if err := os.WriteFile(noPlugins, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	var notes []string
	b := Backend{Binary: noPlugins, Log: func(s string) { notes = append(notes, s) }}
	res, err := b.Run(context.Background(), codePlan(t, storeLoadCode), machine.Options{Timeout: 20 * time.Second, BadRAM: badAt2M})
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != machine.Crash || !strings.Contains(res.Reason, "canary") || len(res.BadRAMAccesses) != 1 || res.BadRAMAccesses[0].Addr != 2<<20 {
		t.Errorf("%s: %s, accesses %+v", res.Outcome, res.Reason, res.BadRAMAccesses)
	}
	said := 0
	for _, n := range notes {
		if strings.Contains(n, "did not load kvmboot's plugin") {
			said++
		}
	}
	if said != 1 {
		t.Errorf("the fallback was noted %d times: %q", said, notes)
	}
	// Faulty RAM has no fallback: a clear error.
	f, _ := faults.Parse("0x200000+4K:stuck0", 16<<20)
	if _, err := b.Run(context.Background(), codePlan(t, storeLoadCode), machine.Options{Timeout: 20 * time.Second, Faulty: f}); !errors.Is(err, ErrNeedPlugin) {
		t.Errorf("faulty RAM without the plugin: %v", err)
	}
}

// TestPluginRunsLeaveNothing: runs with the plugin leave no goroutine or
// file descriptor behind (memfd, socket, serve).
func TestPluginRunsLeaveNothing(t *testing.T) {
	requireQEMU(t)
	plan := codePlan(t, storeLoadCode)
	run := func() {
		if _, err := (Backend{}).Run(context.Background(), plan, machine.Options{Timeout: 20 * time.Second, BadRAM: badAt2M, BadRAMPolicy: machine.BadRAMRecord}); err != nil {
			t.Fatal(err)
		}
	}
	run()
	fds, _ := os.ReadDir("/proc/self/fd")
	goroutines := runtime.NumGoroutine()
	for range 5 {
		run()
	}
	time.Sleep(50 * time.Millisecond)
	if after, _ := os.ReadDir("/proc/self/fd"); len(after) > len(fds) {
		t.Errorf("open descriptors %d -> %d", len(fds), len(after))
	}
	if g := runtime.NumGoroutine(); g > goroutines {
		t.Errorf("goroutines %d -> %d", goroutines, g)
	}
}
