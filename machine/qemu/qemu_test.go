package qemu

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/arch/x86/x86asm"

	"kvmboot/loader"
	"kvmboot/loader/memmap"
	"kvmboot/machine"
	"kvmboot/realmode"
)

// hasSeq reports whether args holds want as consecutive elements.
func hasSeq(args []string, want ...string) bool {
	for i := 0; i+len(want) <= len(args); i++ {
		if slices.Equal(args[i:i+len(want)], want) {
			return true
		}
	}
	return false
}

func TestArgsOurFirmware(t *testing.T) {
	l := launch{
		Accel: AccelTCG, MemSize: 256 << 20, RAMPath: "/dev/shm/kvmboot-1",
		BIOS: "/tmp/d/firmware.bin", ISA: true,
		QMPPath: "/tmp/d/qmp.sock", LogPath: "/tmp/d/qemu.log",
	}
	a := l.args()
	for _, want := range [][]string{
		{"-nodefaults", "-no-user-config", "-display", "none", "-S"},
		{"-machine", "isapc,memory-backend=ram"},
		{"-m", "262144k"},
		{"-accel", "tcg"},
		{"-cpu", "max,stepping=1"},
		{"-object", "memory-backend-file,id=ram,size=268435456,mem-path=/dev/shm/kvmboot-1,share=on"},
		{"-bios", "/tmp/d/firmware.bin"},
		{"-chardev", "stdio,id=con,signal=off", "-serial", "chardev:con"},
		{"-device", "isa-debug-exit,iobase=0xf4,iosize=4"},
		{"-chardev", "socket,id=qmp,path=/tmp/d/qmp.sock", "-mon", "chardev=qmp,mode=control"},
		{"-no-reboot", "-no-shutdown"},
		{"-d", "cpu_reset", "-D", "/tmp/d/qemu.log"},
		{"-trace", "pckbd_kbd_write_command"},
	} {
		if !hasSeq(a, want...) {
			t.Errorf("args lack %q:\n%q", want, a)
		}
	}
	if slices.Contains(a, "-kernel") || slices.Contains(a, "kvm_run_exit") || slices.Contains(a, "-plugin") || slices.Contains(a, "-smp") {
		t.Errorf("unexpected -kernel, KVM trace, plugin or -smp: %q", a)
	}
	for _, arg := range a {
		if strings.HasPrefix(arg, "loader,") {
			t.Errorf("the plan goes straight into the shared RAM file, not through QEMU's loader: %q", a)
		}
	}
	l.Plugin = pluginArg
	if a = l.args(); !hasSeq(a, "-plugin", "/proc/self/fd/3,fd=4") || !hasSeq(a, "-accel", "tcg") {
		t.Errorf("plugin args: %q", a)
	}
	// Several processors: a thread each, but one for all of them when
	// the plugin watches guest RAM.
	l.CPUs = 4
	if a = l.args(); !hasSeq(a, "-smp", "4,sockets=4") || !hasSeq(a, "-accel", "tcg,thread=single") {
		t.Errorf("SMP args with the plugin: %q", a)
	}
	l.Plugin = ""
	if a = l.args(); !hasSeq(a, "-smp", "4,sockets=4") || !hasSeq(a, "-accel", "tcg") {
		t.Errorf("SMP args: %q", a)
	}
	l.CPUs = 0

	l.Accel = AccelKVM
	a = l.args()
	if !hasSeq(a, "-cpu", "host,arch-capabilities=off") || !hasSeq(a, "-accel", "kvm") || !hasSeq(a, "-trace", "kvm_run_exit") {
		t.Errorf("KVM args: %q", a)
	}

	l.ISA = false // the PC, as every plan but a minimal machine's gets
	if a = l.args(); !hasSeq(a, "-machine", "pc,memory-backend=ram,smbus=off,vmport=off") {
		t.Errorf("PC args: %q", a)
	}
}

func TestArgsReference(t *testing.T) {
	l := launch{
		Accel: AccelTCG, MemSize: 64 << 20, RAMPath: "/dev/shm/r",
		Kernel: "/k/testkernel.elf", Append: "kt.exit=3", Initrd: "a x,,y,b",
		QMPPath: "/d/q", LogPath: "/d/l",
	}
	a := l.args()
	if slices.Contains(a, "-bios") {
		t.Errorf("reference run must use QEMU's BIOS: %q", a)
	}
	for _, want := range [][]string{
		{"-machine", "pc,memory-backend=ram"},
		{"-kernel", "/k/testkernel.elf"},
		{"-append", "kt.exit=3"},
		{"-initrd", "a x,,y,b"},
	} {
		if !hasSeq(a, want...) {
			t.Errorf("args lack %q:\n%q", want, a)
		}
	}
}

func TestMultibootInitrd(t *testing.T) {
	got, err := multibootInitrd([]string{"mod1.bin arg=1,2", "mod2.bin"})
	if err != nil || got != "mod1.bin arg=1,,2,mod2.bin" {
		t.Errorf("got %q, %v", got, err)
	}
	if _, err := multibootInitrd([]string{"a", " "}); err == nil {
		t.Error("an empty module string must be an error")
	}
}

func TestDebugExitValue(t *testing.T) {
	for _, tc := range []struct {
		status int
		v      uint32
		ok     bool
	}{
		{1, 0, true}, {3, 1, true}, {15, 7, true}, {247, 123, true}, {251, 125, true}, {255, 127, true},
		{0, 0, false}, {2, 0, false}, {-1, 0, false},
	} {
		v, ok := debugExitValue(tc.status)
		if v != tc.v || ok != tc.ok {
			t.Errorf("status %d: got %d %v, want %d %v", tc.status, v, ok, tc.v, tc.ok)
		}
		if ok && machine.QEMUStatus(v) != tc.status {
			t.Errorf("status %d does not round-trip: QEMUStatus(%d) = %d", tc.status, v, machine.QEMUStatus(v))
		}
	}
}

// stubFailedRAM is guest RAM whose parameter block says check 0 failed.
func stubFailedRAM(t *testing.T) (*machine.GuestMemory, *loader.Plan) {
	t.Helper()
	plan := &loader.Plan{
		MemSize: 16 << 20, Map: memmap.New(16<<20, loader.FirmwareHigh), Verify: true,
		Placements: []loader.Placement{{What: "kernel", Start: 0x100000, Data: []byte("kernel bytes"), Size: 12, Verify: true}},
		Entry:      loader.EntryState{EIP: 0x100000},
	}
	if err := plan.Finish(); err != nil {
		t.Fatal(err)
	}
	ram := make([]byte, 1<<20)
	block := ram[realmode.ParamsAddr:]
	binary.LittleEndian.PutUint32(block[realmode.OffStatus:], realmode.StatusBadSum)
	binary.LittleEndian.PutUint32(block[realmode.OffDetail:], 0)
	binary.LittleEndian.PutUint32(block[realmode.OffGot:], 0x1234)
	return machine.NewGuestMemory(ram), plan
}

func TestExitResult(t *testing.T) {
	mem, plan := stubFailedRAM(t)
	for _, tc := range []struct {
		status  int
		stderr  string
		outcome machine.Outcome
		code    int
		reason  string
	}{
		{1, "", machine.Pass, 0, "wrote 0"},
		{1, "qemu-system-i386: warning: host doesn't support requested feature\n", machine.Pass, 0, "wrote 0"},
		{1, "qemu-system-i386: -device loader,file=x: Cannot load specified image x\n", machine.Error, 126, "Cannot load"},
		{15, "", machine.Fail, 7, "wrote 7"},
		{251, "", machine.Crash, 125, "checksum mismatch in kernel at 0x100000"},
		{249, "", machine.Fail, 125, "0x7c"},
		{0, "", machine.Error, 126, "status 0"},
	} {
		res := exitResult(tc.status, tc.stderr, mem, plan)
		if res.Outcome != tc.outcome || res.Status != tc.code || !strings.Contains(res.Reason, tc.reason) {
			t.Errorf("status %d: got %s %d %q, want %s %d containing %q", tc.status, res.Outcome, res.Status, res.Reason, tc.outcome, tc.code, tc.reason)
		}
	}
	// 125 without a failed stub is a guest's own value: passed on as such.
	res := exitResult(251, "", machine.NewGuestMemory(make([]byte, 1<<20)), plan)
	if res.Outcome != machine.Fail || res.Status != 125 || !res.GuestRan || res.GuestValue != 125 {
		t.Errorf("plain 125: %+v", res)
	}
}

func TestResetCause(t *testing.T) {
	for _, tc := range []struct {
		log    string
		triple bool
		how    string
	}{
		{"CPU Reset (CPU 0)\nEAX=0\nTriple fault\n", true, "triple fault"},
		{"kvm_run_exit cpu_index 0, reason 2\nkvm_run_exit cpu_index 0, reason 8\n", true, "KVM_EXIT_SHUTDOWN"},
		{"kvm_run_exit cpu_index 0, reason 18\n", false, "0xcf9"},
		{"pckbd_kbd_write_command 0xaa\npckbd_kbd_write_command 0xfe\n", false, "keyboard controller"},
		{"port92_write port92: write 0x02\n", false, "0xcf9"},
		{"port92_write port92: write 0x03\n", false, "port 0x92"},
		{"", false, "reset request"},
	} {
		triple, how := resetCause(tc.log)
		if triple != tc.triple || !strings.Contains(how, tc.how) {
			t.Errorf("%q: got %v %q, want %v containing %q", tc.log, triple, how, tc.triple, tc.how)
		}
	}
}

const sampleRegisters = "EAX=e0000011 EBX=00000800 ECX=00002118 EDX=00000000\r\n" +
	"ESI=01000000 EDI=00007040 EBP=00000001 ESP=00006ff8\r\n" +
	"EIP=00100043 EFL=00000006 [-----P-] CPL=0 II=0 A20=1 SMM=0 HLT=0\r\n" +
	"ES =0018 00000000 ffffffff 00c09300 DPL=0 DS   [-WA]\r\n" +
	"CS =0010 00000000 ffffffff 00c09b00 DPL=0 CS32 [-RA]\r\n" +
	"SS =0018 00020000 ffffffff 00c09300 DPL=0 DS   [-WA]\r\n" +
	"DS =0018 00010000 ffffffff 00c09300 DPL=0 DS   [-WA]\r\n" +
	"TR =0020 00006080 00000067 00008900 DPL=0 TSS32-avl\r\n" +
	"GDT=     00006000 00000027\r\n" +
	"CR0=60000011 CR2=00000000 CR3=00200000 CR4=00000000\r\n"

func TestParseRegisters(t *testing.T) {
	r, ok := parseRegisters(sampleRegisters)
	if !ok {
		t.Fatal("no EIP")
	}
	ram := make([]byte, 2<<20)
	copy(ram[0x100043:], []byte{0x0f, 0x22, 0xc0}) // mov cr0, eax
	st := r.state(physReader(ram, nil))
	want := machine.CPUState{Mode: "32-bit protected mode", CS: 0x10, EIP: 0x100043, Linear: 0x100043,
		EAX: 0xe0000011, EBX: 0x800, ECX: 0x2118, ESI: 0x1000000, EDI: 0x7040, EBP: 1, ESP: 0x6ff8,
		EFLAGS: 6, CR0: 0x60000011, CR3: 0x200000, Insn: "mov cr0, eax"}
	if *st != want {
		t.Errorf("got  %+v\nwant %+v", *st, want)
	}
	if !r.enablesPaging(physReader(ram, nil)) {
		t.Error("mov cr0, eax with PG set in EAX not seen as turning on paging")
	}
	mr := r.machineRegs()
	if mr.GPR[x86asm.EAX] != 0xe0000011 || mr.GPR[x86asm.ESP] != 0x6ff8 || mr.DSBase != 0x10000 || mr.SSBase != 0x20000 || mr.ESBase != 0 {
		t.Errorf("registers for matching accesses: %+v", mr)
	}
	if r.paging() || !r.protected() || r.mode() != 32 {
		t.Errorf("paging %v protected %v mode %d", r.paging(), r.protected(), r.mode())
	}
	r.gpr["EAX"] = 0x11
	if r.enablesPaging(physReader(ram, nil)) {
		t.Error("mov cr0 without PG seen as turning on paging")
	}
	// Real mode at the reset vector, read from our firmware image.
	rm, _ := parseRegisters("EIP=0000fff0 EFL=00000002\nCS =f000 ffff0000 0000ffff 00009b00\nCR0=60000010\n")
	st = rm.state(physReader(ram, realmode.Firmware))
	if st.Mode != "real mode" || st.Linear != 0xfffffff0 || !strings.HasPrefix(st.Insn, "jmp") {
		t.Errorf("reset vector: %+v", st)
	}
	if _, ok := parseRegisters("Error: no CPU\n"); ok {
		t.Error("parsed registers out of an error")
	}
}

func TestCanaryFillCheck(t *testing.T) {
	const base = 0x1000ffd // not aligned to the pattern
	mem := make([]byte, 3*canaryPeriod+123)
	fillCanary(mem, base)
	if got := checkCanary(mem, base); len(got) != 0 {
		t.Fatalf("fresh canary reports changes: %v", got)
	}
	for i := range mem {
		if mem[i] == 0 || mem[i] == 0xff || mem[i] != canaryByte(base+uint64(i)) {
			t.Fatalf("canary byte %d is %#x", i, mem[i])
		}
	}
	// A 4-byte store of 0xDEADBEEF whose second byte happens to equal
	// the canary still counts as one 4-byte write.
	at := 0x1800 - 3
	a := base + uint64(at)
	binary.LittleEndian.PutUint32(mem[at:], 0xDEADBEEF)
	mem[at+1] = canaryByte(a + 1)
	// A 1-byte store far away is a second write.
	mem[100] ^= 0x10
	got := checkCanary(mem, base)
	want := []memmap.Range{{Start: base + 100, End: base + 101}, {Start: a, End: a + 4}}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	// Zeros over a whole period: one range.
	clear(mem)
	got = checkCanary(mem, base)
	if len(got) != 1 || got[0] != (memmap.Range{Start: base, End: base + uint64(len(mem))}) {
		t.Errorf("zeroed: %v", got)
	}
}

func TestCanaryRanges(t *testing.T) {
	bad := []memmap.Range{{Start: 16 << 20, End: 32 << 20}, {Start: 250 << 20, End: 300 << 20}, {Start: 20 << 20, End: 24 << 20}}
	pl := []loader.Placement{{Start: 17 << 20, Size: 1 << 20}, {Start: 0x7000, Size: 0x1000}}
	got := canaryRanges(bad, pl, 256<<20)
	want := []memmap.Range{{Start: 16 << 20, End: 17 << 20}, {Start: 18 << 20, End: 32 << 20}, {Start: 250 << 20, End: 256 << 20}}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestCanaryWatch(t *testing.T) {
	ram := make([]byte, 1<<20)
	w := &canaryWatch{ram: ram, ranges: []memmap.Range{{Start: 0x10000, End: 0x20000}, {Start: 0x40000, End: 0x40100}}}
	for _, r := range w.ranges {
		fillCanary(ram[r.Start:r.End], r.Start)
	}
	ram[0x30000] = 1 // outside the bad ranges: not watched
	if acc := w.check(); len(acc) != 0 {
		t.Fatalf("untouched: %v", acc)
	}
	binary.LittleEndian.PutUint32(ram[0x18000:], 0)
	acc := w.check()
	if len(acc) != 1 || acc[0] != (machine.BadAccess{Addr: 0x18000, Size: 4, Write: true, CPU: -1}) {
		t.Fatalf("got %+v", acc)
	}
	if acc := w.check(); len(acc) != 0 {
		t.Errorf("the same write reported twice: %+v", acc)
	}
	ram[0x400ff] ^= 0xff
	if acc := w.check(); len(acc) != 1 || acc[0].Addr != 0x400ff || acc[0].Size != 1 {
		t.Errorf("second write: %+v", acc)
	}
	if w.interval() < 25*time.Millisecond {
		t.Errorf("interval %v", w.interval())
	}
	w.cost = 100 * time.Millisecond
	if w.interval() != 400*time.Millisecond {
		t.Errorf("interval after a 100 ms check: %v", w.interval())
	}
}

// fakeQMP serves one QMP connection: greeting, then handle per command.
func fakeQMP(t *testing.T, conn net.Conn, handle func(cmd string, args json.RawMessage, reply func(v any))) {
	t.Helper()
	enc := json.NewEncoder(conn)
	dec := json.NewDecoder(conn)
	go func() {
		defer conn.Close()
		enc.Encode(map[string]any{"QMP": map[string]any{"version": map[string]any{}, "capabilities": []string{"oob"}}})
		for {
			var req struct {
				Execute   string          `json:"execute"`
				Arguments json.RawMessage `json:"arguments"`
				ID        json.RawMessage `json:"id"`
			}
			if err := dec.Decode(&req); err != nil {
				return
			}
			handle(req.Execute, req.Arguments, func(v any) {
				m := map[string]any{"id": req.ID}
				switch v := v.(type) {
				case *qmpError:
					m["error"] = v
				case qmpEvent:
					enc.Encode(map[string]any{"event": v.Event, "data": v.Data, "timestamp": map[string]int{"seconds": 1}})
					return
				default:
					m["return"] = v
				}
				enc.Encode(m)
			})
		}
	}()
}

func TestQMPClient(t *testing.T) {
	srv, cli := net.Pipe()
	var got []string
	fakeQMP(t, srv, func(cmd string, args json.RawMessage, reply func(any)) {
		got = append(got, cmd)
		switch cmd {
		case "qmp_capabilities", "cont":
			reply(map[string]any{})
		case "query-status":
			// An event may come before the reply.
			reply(qmpEvent{Event: "STOP", Data: json.RawMessage(`{}`)})
			reply(map[string]any{"status": "internal-error", "running": false})
		case "human-monitor-command":
			var a map[string]string
			json.Unmarshal(args, &a)
			if a["command-line"] != "info registers" {
				reply(&qmpError{Class: "GenericError", Desc: "bad command"})
				return
			}
			reply(sampleRegisters)
		case "quit":
			reply(qmpEvent{Event: "SHUTDOWN", Data: json.RawMessage(`{"guest":false,"reason":"host-qmp-quit"}`)})
			reply(map[string]any{})
			srv.Close()
		default:
			reply(&qmpError{Class: "CommandNotFound", Desc: "The command " + cmd + " has not been found"})
		}
	})
	c := newQMP(cli)
	defer c.close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.awaitGreeting(ctx); err != nil {
		t.Fatal(err)
	}
	// Both in flight at once, as a run starts the guest.
	caps, cont := c.send(ctx, "qmp_capabilities", nil), c.send(ctx, "cont", nil)
	for _, call := range []*qmpCall{caps, cont} {
		if _, err := call.wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	st, err := c.status(ctx)
	if err != nil || st != "internal-error" {
		t.Fatalf("status %q, %v", st, err)
	}
	select {
	case <-c.Events():
	case <-time.After(time.Second):
		t.Fatal("no event signal")
	}
	if ev := c.takeEvents(); len(ev) != 1 || ev[0].Event != "STOP" {
		t.Fatalf("events %+v", ev)
	}
	text, err := c.hmp(ctx, "info registers")
	if err != nil || !strings.Contains(text, "EIP=00100043") {
		t.Fatalf("hmp: %q, %v", text, err)
	}
	_, err = c.execute(ctx, "no-such", nil)
	var qe *qmpError
	if !errors.As(err, &qe) || qe.Class != "CommandNotFound" {
		t.Fatalf("error %v", err)
	}
	c.execute(ctx, "quit", nil)
	select {
	case <-c.Closed():
	case <-time.After(time.Second):
		t.Fatal("closed connection not seen")
	}
	if _, err := c.execute(ctx, "cont", nil); !errors.Is(err, errQMPClosed) {
		t.Errorf("command after close: %v", err)
	}
	var shutdown shutdownData
	if ev := c.takeEvents(); len(ev) != 1 || json.Unmarshal(ev[0].Data, &shutdown) != nil || shutdown.Guest || shutdown.Reason != "host-qmp-quit" {
		t.Errorf("events %+v", ev)
	}
	if want := []string{"qmp_capabilities", "cont", "query-status", "human-monitor-command", "no-such", "quit"}; !slices.Equal(got, want) {
		t.Errorf("server saw %q", got)
	}
}

func TestQMPUnixSocketTimeout(t *testing.T) {
	// A QEMU that never greets: the wait gives up with the context.
	dir := t.TempDir()
	ln, err := net.Listen("unix", filepath.Join(dir, "q.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			time.Sleep(2 * time.Second)
			c.Close()
		}
	}()
	conn, err := net.Dial("unix", filepath.Join(dir, "q.sock"))
	if err != nil {
		t.Fatal(err)
	}
	c := newQMP(conn)
	defer c.close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := c.awaitGreeting(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("greeting: %v", err)
	}
}

func TestQEMUError(t *testing.T) {
	in := "qemu-system-i386: warning: TCG doesn't support requested feature\n" +
		"qemu-system-i386: -bios x: Could not open 'x'\n" +
		"qemu-system-i386: terminating on signal 15 from pid 1\n"
	if got := qemuError(in); got != "qemu-system-i386: -bios x: Could not open 'x'" {
		t.Errorf("got %q", got)
	}
}

func TestNoQEMU(t *testing.T) {
	plan := &loader.Plan{MemSize: 16 << 20, Map: memmap.New(16<<20, loader.FirmwareHigh)}
	_, err := Backend{Binary: "/nonexistent/qemu-system-i386"}.Run(context.Background(), plan, machine.Options{})
	if !errors.Is(err, ErrNoQEMU) {
		t.Errorf("got %v, want ErrNoQEMU", err)
	}
	if _, err := (Backend{Accel: "hvf"}).Run(context.Background(), plan, machine.Options{}); err == nil {
		t.Error("unknown accelerator accepted")
	}
}

func TestUnwrap(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "real-qemu")
	os.WriteFile(exe, []byte("\x7fELF"), 0o755)
	script := filepath.Join(dir, "qemu-system-i386")
	os.WriteFile(script, []byte("#! /bin/sh\n# redirect xen-specific invocations\nxenredir=/usr/libexec/xen-qemu-system-i386\nexe="+exe+"\nexec \"$exe\" \"$@\"\n"), 0o755)
	if got := unwrap(script); got != exe {
		t.Errorf("unwrap(Debian wrapper) = %q, want %q", got, exe)
	}
	if got := unwrap(exe); got != exe {
		t.Errorf("unwrap(binary) = %q", got)
	}
	other := filepath.Join(dir, "other")
	os.WriteFile(other, []byte("#!/bin/sh\nexe=/bin/true\nexec qemu \"$@\"\n"), 0o755)
	if got := unwrap(other); got != other {
		t.Errorf("a script that is not Debian's wrapper was unwrapped to %q", got)
	}
}

func TestTailBuffer(t *testing.T) {
	var b tailBuffer
	b.Write(bytes.Repeat([]byte("x"), tailMax))
	b.Write([]byte("end"))
	if s := b.String(); len(s) != tailMax || !strings.HasSuffix(s, "xend") {
		t.Errorf("len %d suffix %q", len(s), s[len(s)-4:])
	}
}

// TestQEMUEnv: QEMU's malloc asks for huge pages, with what tunables the
// user set kept, and the user's own choice of that tunable winning.
func TestQEMUEnv(t *testing.T) {
	for _, tc := range []struct{ in, want []string }{
		{[]string{"A=1"}, []string{"A=1", "GLIBC_TUNABLES=glibc.malloc.hugetlb=1"}},
		{[]string{"GLIBC_TUNABLES=glibc.malloc.arena_max=2", "B=2"}, []string{"B=2", "GLIBC_TUNABLES=glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"}},
		{[]string{"GLIBC_TUNABLES=glibc.malloc.hugetlb=0"}, []string{"GLIBC_TUNABLES=glibc.malloc.hugetlb=0"}},
		{[]string{"GLIBC_TUNABLES="}, []string{"GLIBC_TUNABLES=glibc.malloc.hugetlb=1"}},
	} {
		if got := qemuEnv(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("qemuEnv(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
