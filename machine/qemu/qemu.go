package qemu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"kvmboot/loader"
	"kvmboot/loader/memmap"
	"kvmboot/machine"
	"kvmboot/machine/faults"
)

// DefaultBinary is the QEMU kvmboot runs, looked up in PATH.
const DefaultBinary = "qemu-system-i386"

// ErrNoQEMU reports that qemu-system-i386 cannot be found or run.
var ErrNoQEMU = errors.New("qemu-system-i386 not found (install it: apt-get install qemu-system-x86)")

// ErrNeedPlugin is the error of faulty RAM or a trace under a QEMU that
// did not load kvmboot's TCG plugin, for errors.Is.
var ErrNeedPlugin = errors.New("need kvmboot's TCG plugin")

// Backend runs plans under qemu-system-i386, one QEMU process per run.
type Backend struct {
	// Accel is "tcg" (the default) or "kvm".
	Accel string
	// Binary is the QEMU to run: DefaultBinary from PATH when empty.
	Binary string
	// Log receives notes about the run.
	Log func(string)
	// Kernel selects the reference run: QEMU's own -kernel loader and
	// SeaBIOS instead of our firmware and the plan's placements.
	Kernel bool
	// KernelImage is the kernel file's content for the reference run when
	// the kernel has no file of its own (the built-in test kernel), and
	// KernelName the name of the file it gets (QEMU passes its path to a
	// Multiboot kernel as argv[0]).
	KernelImage []byte
	KernelName  string
	// Minimal runs our firmware on QEMU's ISA PC (no PCI, I/O APIC, HPET
	// or ACPI PM block) with no ACPI tables, rather than on the PC.
	Minimal bool
}

// PCPlatform is QEMU's PC as our firmware tables describe it: the plan's
// processors (-smp), their local APICs and the I/O APIC (ID 0, IRQ 0 on pin 2),
// the i440FX's PCI host bridge, the PIIX4's PM block that our firmware
// puts at realmode.PMBase (SCI on IRQ 9), its HPET and 8042. QEMU 7.2's HPET has 3 timers, a 64-bit
// counter, legacy routing, revision 1, vendor 8086: the capabilities'
// low word the HPET table repeats.
var PCPlatform = loader.Platform{Name: "qemu-pc", HPET: &loader.HPET{BlockID: 0x8086A201}, I8042: true, PCI: true}

// platform is the machine our firmware runs on under b, nil for one
// without ACPI.
func (b Backend) platform() *loader.Platform {
	if b.Minimal {
		return nil
	}
	return &PCPlatform
}

// Name implements machine.Backend: "qemu/tcg", "qemu-kernel/kvm", ...
func (b Backend) Name() string {
	n := "qemu"
	if b.Kernel {
		n = "qemu-kernel"
	}
	return n + "/" + b.accel()
}

func (b Backend) accel() string {
	if b.Accel == "" {
		return AccelTCG
	}
	return b.Accel
}

// BinaryPath is the QEMU binary a Backend with no Binary runs (what PATH's
// qemu-system-i386 leads to), or ErrNoQEMU.
func BinaryPath() (string, error) { return lookBinary("") }

// lookBinary finds the QEMU binary.
func lookBinary(bin string) (string, error) {
	if bin == "" {
		bin = DefaultBinary
	}
	p, err := exec.LookPath(bin)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrNoQEMU, err)
	}
	return unwrap(p), nil
}

// wrapperExe finds the binary in Debian's qemu-system-i386, a shell script
// that runs "exe=/usr/libexec/qemu-system-i386" unless it is given -xen-*
// options (kvmboot never passes them).
var wrapperExe = regexp.MustCompile(`(?m)^exe=(/\S+)$`)

// unwrap returns the binary a Debian QEMU wrapper script runs, or p: going
// straight to it saves a shell's start-up on every run.
func unwrap(p string) string {
	f, err := os.Open(p)
	if err != nil {
		return p
	}
	defer f.Close()
	head := make([]byte, 4096)
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	if !bytes.HasPrefix(head, []byte("#!")) || !bytes.Contains(head, []byte("xen")) {
		return p
	}
	m := wrapperExe.FindSubmatch(head)
	if m == nil {
		return p
	}
	exe := string(m[1])
	if st, err := os.Stat(exe); err != nil || !st.Mode().IsRegular() || st.Mode()&0o111 == 0 {
		return p
	}
	return exe
}

// Run boots plan under QEMU and watches it until an outcome. The error is
// for failures to start QEMU (ErrNoQEMU among them); everything the guest
// did is in the Result.
func (b Backend) Run(ctx context.Context, plan *loader.Plan, opts machine.Options) (*machine.Result, error) {
	st, err := b.Start(ctx, machine.ShapeOf(plan), opts)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	return st.Run(ctx, plan)
}

// Start implements machine.Starter: it starts QEMU, paused, for a plan of
// shape s (guest RAM, firmware and ACPI tables, kvmboot's plugin), so
// that QEMU's start-up (its shared libraries, machine init) overlaps the
// planning. The reference run needs the plan on QEMU's command line
// (-kernel, -append): it starts QEMU in Run.
func (b Backend) Start(ctx context.Context, s machine.Shape, opts machine.Options) (machine.Started, error) {
	start := time.Now()
	accel := b.accel()
	if accel != AccelTCG && accel != AccelKVM {
		return nil, fmt.Errorf("QEMU accelerator %q: want tcg or kvm", accel)
	}
	bin, err := lookBinary(b.Binary)
	if err != nil {
		return nil, err
	}
	if err := machine.CheckMemSize(s.MemSize); err != nil {
		return nil, err
	}
	r := &run{b: b, accel: accel, bin: bin, shape: s, memSize: s.MemSize, opts: opts, log: b.Log, start: start}
	if r.log == nil {
		r.log = func(string) {}
	}
	if r.opts.Console == nil {
		r.opts.Console = machine.NewConsole(nil, nil)
	}
	if b.Kernel {
		return r, nil
	}
	if err := r.prepare(); err != nil {
		r.Close()
		return nil, err
	}
	if err := r.spawn(); err != nil {
		r.Close()
		return nil, err
	}
	r.handshakeLater(ctx)
	return r, nil
}

// Run implements machine.Started: it writes plan into guest RAM, lets the
// guest run and watches it until an outcome.
func (r *run) Run(ctx context.Context, plan *loader.Plan) (*machine.Result, error) {
	r.plan = plan
	var err error
	if r.b.Kernel {
		r.start = time.Now() // Start did nothing: the planning is not QEMU's
		if err = r.prepare(); err == nil {
			if err = r.spawn(); err == nil {
				err = r.handshake(ctx)
			}
		}
	} else if err = r.place(); err == nil {
		err = r.awaitHandshake()
	}
	if err != nil && ctx.Err() == nil && r.plug != nil && strings.Contains(err.Error(), "plugin") {
		if r.faulty != nil || r.opts.Trace != nil {
			return nil, fmt.Errorf("--faulty-ram and --trace under QEMU %w, which this QEMU did not load: %w", ErrNeedPlugin, err)
		}
		// A QEMU that cannot load plugins: bad RAM is watched as
		// before the plugin, through canaries.
		r.log("QEMU did not load kvmboot's plugin (" + err.Error() + "): bad RAM is watched through canaries, writes only and without the instruction")
		r.abandonStart()
		r.plug.close()
		r.plug, r.launch.Plugin = nil, ""
		r.fillCanaries()
		if err = r.spawn(); err == nil {
			err = r.handshake(ctx)
		}
	}
	if err == nil {
		err = r.cont(ctx)
	}
	if err != nil {
		if ctx.Err() != nil {
			// Interrupted while QEMU came up (at any step of it): the
			// outcome a signal has later in the run, not a start failure.
			res := machine.Interrupted()
			res.Backend = r.b.Name()
			return res, nil
		}
		return nil, err
	}
	res := r.watch(ctx)
	res.Backend = r.b.Name()
	if !r.b.Kernel {
		res.BIOSLog = r.mem.BIOSLog()
	}
	if r.com2File != nil {
		if _, err := io.Copy(r.opts.COM2, r.com2File); err != nil {
			r.log("COM2: " + err.Error())
		}
	}
	return res, nil
}

// Close implements machine.Started: QEMU is killed if it still runs, and
// every file of the run removed.
func (r *run) Close() { r.cleanup() }

// run is one QEMU run.
type run struct {
	b       Backend
	accel   string
	bin     string
	shape   machine.Shape // what Start was given; the plan must match it
	memSize uint64
	plan    *loader.Plan // nil until Run
	opts    machine.Options
	log     func(string)
	start   time.Time

	dir     string
	ramPath string
	ramFile *os.File // guest RAM: the plan is written through it
	ram     []byte   // guest RAM mapped, for what reads or patches it in place
	mem     *machine.GuestMemory
	rom     []byte // our firmware image, nil for the reference run
	tables  []byte // the ACPI tables the firmware points at, nil for none
	launch  launch
	canary  *canaryWatch
	badNote string      // why bad RAM could not be passed on (reference run)
	plug    *tcgPlugin  // kvmboot's TCG plugin, when it watches or traces
	faulty  *faults.Set // faulty RAM (the plugin applies its models)
	plugErr error       // sending the plugin its configuration failed

	ln        *net.UnixListener
	cmd       *exec.Cmd
	stderr    tailBuffer
	exited    chan *os.ProcessState // the process state once QEMU is gone
	conEOF    chan struct{}         // closed when QEMU's stdout is drained
	qmp       *qmpClient
	execAt    time.Time     // QEMU's process started
	readyAt   time.Time     // QEMU answered QMP
	ramWrite  time.Duration // writing the plan into guest RAM
	setupDone time.Time     // the guest's first instruction (cont answered)
	shaken    chan error    // the handshake Start began, until Run takes it
	closed    bool
	accesses  []machine.BadAccess
	logFile   *os.File          // QEMU's -D log, open past its removal
	com2File  *os.File          // the guest's COM2 output, likewise
	regs      *cpuRegs          // read at a crash
	cpu       *machine.CPUState // the same, for the result
}

// prepare makes the private folder, the RAM file and what QEMU loads:
// our firmware (Start), or for the reference run the plan's files.
func (r *run) prepare() error {
	var err error
	if r.dir, err = os.MkdirTemp(shmDir(), "kvmboot-qemu-"); err != nil { // mode 0700
		return err
	}
	if err := r.makeRAM(); err != nil {
		return err
	}
	l := &r.launch
	l.Accel, l.MemSize, l.CPUs, l.RAMPath = r.accel, r.memSize, r.shape.CPUs, r.ramPath
	l.QMPPath = filepath.Join(r.dir, "qmp.sock")
	l.LogPath = filepath.Join(r.dir, "qemu.log")
	if r.opts.CountStub {
		r.log("--count-stub needs the KVM backend (single-stepping); QEMU runs without it")
	}
	l.ISA = r.b.Minimal
	if r.opts.COM2 != nil {
		l.COM2Path = filepath.Join(r.dir, "com2")
	}
	if r.b.Kernel {
		err = r.prepareKernel()
	} else {
		err = r.prepareFirmware()
	}
	if err != nil {
		return err
	}
	r.canary = &canaryWatch{ram: r.ram}
	if r.faulty, err = faults.NewSet(faults.Subtract(r.opts.Faulty, r.opts.BadRAM), r.opts.FaultSeed); err != nil { // declared bad RAM stays bad
		return err
	}
	// Our plan under TCG: kvmboot's plugin watches bad and faulty RAM and
	// traces. The reference run (QEMU's loader and SeaBIOS move guest RAM
	// around from QEMU's own threads) and QEMU's KVM accelerator (no
	// plugins) keep the canaries.
	trace := r.opts.Trace != nil && r.opts.TraceLimit > 0
	bad := canaryRanges(r.opts.BadRAM, nil, r.memSize)
	if !r.b.Kernel && r.accel == AccelTCG && (len(bad) > 0 || r.faulty != nil || trace) {
		if r.plug, err = newTCGPlugin(r, bad, r.faulty, trace); err != nil {
			return err
		}
		l.Plugin = pluginArg
		return nil
	}
	if r.faulty != nil {
		return fmt.Errorf("--faulty-ram under QEMU needs --accel=tcg and kvmboot's firmware (--vmm=qemu): kvmboot's TCG plugin applies the fault models")
	}
	if trace {
		r.log("--trace under QEMU needs --accel=tcg and --vmm=qemu (kvmboot's TCG plugin); this run is not traced")
	}
	if r.b.Kernel {
		// Before QEMU starts: its -kernel loader writes guest RAM as it
		// comes up, and is watched like the kernel.
		r.fillCanaries()
	}
	return nil
}

// fillCanaries fills bad RAM with the canary pattern for a run without the
// plugin. The plan's pieces are the loader's bytes even where it put them
// into bad RAM on purpose (a forced address): they get no canary. QEMU's
// own loader in the reference run is guest code and is watched like the
// kernel.
func (r *run) fillCanaries() {
	var placed []loader.Placement
	if !r.b.Kernel {
		placed = r.plan.Placements
	}
	bad := canaryRanges(r.opts.BadRAM, placed, r.memSize)
	for _, rg := range bad {
		fillCanary(r.ram[rg.Start:rg.End], rg.Start)
	}
	r.canary = &canaryWatch{ram: r.ram, ranges: bad}
}

// makeRAM creates guest RAM as a file in /dev/shm (or the temporary
// directory where there is no /dev/shm), keeps it open for writing the
// plan and maps it.
func (r *run) makeRAM() error {
	f, err := os.CreateTemp(shmDir(), "kvmboot-") // O_EXCL, mode 0600, unique name
	if err != nil {
		return fmt.Errorf("guest RAM file: %w", err)
	}
	r.ramFile, r.ramPath = f, f.Name()
	if err := f.Truncate(int64(r.memSize)); err != nil {
		return fmt.Errorf("guest RAM file: %w", err)
	}
	r.ram, err = unix.Mmap(int(f.Fd()), 0, int(r.memSize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("mapping the guest RAM file: %w", err)
	}
	r.mem = machine.NewGuestMemory(r.ram)
	return nil
}

// shmDir is where a run keeps its files: /dev/shm, a tmpfs (creating and
// removing files there costs less than on a disk's file system), else the
// temporary directory.
func shmDir() string {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() && unix.Access("/dev/shm", unix.W_OK) == nil {
		return "/dev/shm"
	}
	return os.TempDir()
}

// writeFile writes a file QEMU reads into the private folder.
func (r *run) writeFile(name string, data []byte) (string, error) {
	p := filepath.Join(r.dir, name)
	return p, os.WriteFile(p, data, 0o600)
}

// prepareFirmware writes the firmware image for the machine and keeps the
// ACPI tables it points at for the plan's ACPI page.
func (r *run) prepareFirmware() error {
	rom, tables, err := machine.Firmware(r.b.platform(), r.shape)
	if err != nil {
		return err
	}
	r.rom, r.tables = rom, tables
	r.launch.BIOS, err = r.writeFile("firmware.bin", rom)
	return err
}

// place writes the plan into guest RAM, which QEMU shares and has not
// touched (its machine loads nothing into RAM: the firmware is a ROM), and
// without the plugin fills bad RAM with canaries. QEMU may be starting
// meanwhile; the guest runs only once connect sends cont.
func (r *run) place() error {
	if got := machine.ShapeOf(r.plan); got != r.shape {
		return fmt.Errorf("the plan (%s of RAM, ACPI page %v, %d CPUs) %w (%s, %v, %d CPUs)",
			memmap.FormatSize(got.MemSize), got.ACPI, got.CPUs, machine.ErrShapeMismatch, memmap.FormatSize(r.shape.MemSize), r.shape.ACPI, r.shape.CPUs)
	}
	plan, err := machine.WithACPITables(r.plan, r.tables)
	if err != nil {
		return err
	}
	if r.accel == AccelKVM && machine.EmulatingKVM() {
		r.log("KVM is kvm_pvm: RDRAND cannot be hidden from the guest here, and a guest that runs it stops with a KVM internal error")
	}
	start := time.Now()
	for _, p := range plan.Placements {
		if p.End() > r.memSize || uint64(len(p.Data)) > p.Size {
			return fmt.Errorf("%s at %#x-%#x is outside guest RAM", p.What, p.Start, p.End())
		}
		// Through the file, not the mapping: the kernel copies into the
		// page cache without a fault per page (the file is new: what a
		// placement does not write is zero).
		if _, err := r.ramFile.WriteAt(p.Data, int64(p.Start)); err != nil {
			return fmt.Errorf("placing %s: %w", p.What, err)
		}
	}
	r.ramWrite = time.Since(start)
	if r.opts.AfterPlace != nil {
		r.opts.AfterPlace(r.ram) // what the hook changes reaches the guest: RAM is shared
	}
	if r.plug == nil {
		r.fillCanaries()
	}
	return nil
}

// prepareKernel sets up the reference run: -kernel, -append, -initrd.
func (r *run) prepareKernel() error {
	p := r.plan
	switch p.Kernel.Format {
	case "bzimage", "elf32", "multiboot-aout":
	default:
		return fmt.Errorf("--vmm=qemu-kernel: QEMU's -kernel loads a bzImage or an uncompressed Multiboot ELF, not a %s kernel (decompress it first)", p.Kernel.Format)
	}
	kernel := p.Kernel.Path
	if r.b.KernelImage != nil {
		var err error
		if kernel, err = r.writeFile(r.b.KernelName, r.b.KernelImage); err != nil {
			return err
		}
	}
	r.launch.Kernel = kernel
	r.launch.Append = p.Cmdline
	bad := memmap.Merge(r.opts.BadRAM)
	switch p.Kernel.Protocol {
	case loader.ProtocolMultiboot:
		if len(p.ModuleArgs) > 0 {
			initrd, err := multibootInitrd(p.ModuleArgs)
			if err != nil {
				return err
			}
			r.launch.Initrd = initrd
		}
		if len(bad) > 0 {
			r.badNote = "QEMU's Multiboot loader cannot pass bad RAM to the kernel: its memory map shows it as available"
			r.log(r.badNote)
		}
	default:
		if p.Initrd != "" {
			r.launch.Initrd = optEscape(p.Initrd)
		}
		if mm := memmap.FormatMemmap(bad); mm != "" {
			r.launch.Append = strings.TrimSpace(r.launch.Append + " " + mm)
		}
	}
	return nil
}

// spawn starts QEMU paused, listening first on the QMP socket QEMU
// connects to.
func (r *run) spawn() error {
	var err error
	r.ln, err = net.ListenUnix("unix", &net.UnixAddr{Name: r.launch.QMPPath, Net: "unix"})
	if err != nil {
		return fmt.Errorf("QMP socket: %w", err)
	}
	r.cmd = exec.Command(r.bin, r.launch.args()...)
	r.cmd.Env = qemuEnv(os.Environ())
	r.cmd.Stderr = &r.stderr
	if r.plug != nil {
		r.cmd.ExtraFiles = r.plug.files()
	}
	// QEMU dies with kvmboot. The signal goes when the thread that forked
	// QEMU ends, so that thread stays locked until QEMU is gone.
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	r.cmd.Stdout = pw
	r.exited = make(chan *os.ProcessState, 1)
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := r.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		r.cmd.Wait()
		r.exited <- r.cmd.ProcessState
	}()
	err = <-started
	pw.Close()
	if err != nil {
		pr.Close()
		r.cmd = nil
		return fmt.Errorf("starting %s: %w", r.bin, err)
	}
	r.execAt = time.Now()
	// A refused write means QEMU has already closed the plugin's socket:
	// it is on its way out. The handshake reports that with QEMU's own
	// words, where Run can fall back to canaries.
	r.plugErr = nil
	if testHookSpawned != nil {
		testHookSpawned(r.cmd.Process.Pid)
	}
	if r.plug != nil {
		r.plugErr = r.plug.started()
	}
	r.conEOF = make(chan struct{})
	go func() {
		defer close(r.conEOF)
		defer pr.Close()
		io.CopyBuffer(r.opts.Console, pr, make([]byte, 16<<10))
	}()
	return nil
}

// handshake takes QEMU's QMP connection and waits until QEMU answers,
// which it does from its main loop, after machine init: QEMU has then
// opened every file of the run, and they are removed. The guest waits
// (-S) for cont.
func (r *run) handshake(ctx context.Context) error {
	if r.plugErr != nil {
		select { // let QEMU finish saying why
		case st := <-r.exited:
			r.exited <- st
		case <-time.After(5 * time.Second):
		}
		return r.startError("starting QEMU", r.plugErr)
	}
	conn, err := r.accept(ctx)
	if err != nil {
		return err
	}
	r.qmp = newQMP(conn)
	hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := r.qmp.awaitGreeting(hctx); err != nil {
		return r.startError("QMP greeting", err)
	}
	if _, err := r.qmp.execute(hctx, "qmp_capabilities", nil); err != nil {
		return r.startError("QMP handshake", err)
	}
	r.readyAt = time.Now()
	// Remove every file now, so that a kvmboot killed from here on leaves
	// nothing behind (QEMU dies with it). Only QEMU's log and COM2 are
	// read later, through descriptors opened now.
	r.logFile, _ = os.Open(r.launch.LogPath)
	if r.launch.COM2Path != "" {
		r.com2File, _ = os.Open(r.launch.COM2Path)
	}
	os.Remove(r.ramPath)
	os.RemoveAll(r.dir)
	if testHookStarted != nil {
		testHookStarted(r.cmd.Process.Pid, r.dir, r.ramPath)
	}
	return nil
}

// handshakeLater runs handshake while the plan is made; awaitHandshake
// takes its outcome.
func (r *run) handshakeLater(ctx context.Context) {
	r.shaken = make(chan error, 1)
	go func() { r.shaken <- r.handshake(ctx) }()
}

func (r *run) awaitHandshake() error {
	err := <-r.shaken
	r.shaken = nil
	return err
}

// cont lets the guest run: its first instruction is QEMU's next turn.
// kvmboot's plugin is answered from now on: its first message that needs
// an answer comes when the guest starts, and it reads the plan.
func (r *run) cont(ctx context.Context) error {
	if r.plug != nil {
		r.plug.serve()
	}
	hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err := r.qmp.execute(hctx, "cont", nil)
	r.setupDone = time.Now()
	if err != nil {
		// A guest can run and exit before QEMU answers: QEMU then
		// closes the connection, and its exit status is the outcome.
		select {
		case <-r.qmp.Closed():
		case <-time.After(2 * time.Second):
			return r.startError("starting the guest", err)
		}
	}
	return nil
}

// abandonStart undoes a spawn and handshake that failed, so that they can run again:
// QEMU is gone (startError killed it) and its console drained.
func (r *run) abandonStart() {
	if r.qmp != nil {
		r.qmp.close()
		r.qmp = nil
	}
	r.ln.Close()
	os.Remove(r.launch.QMPPath)
	r.drainConsole()
	r.cmd, r.conEOF, r.ln = nil, nil, nil
	r.stderr = tailBuffer{}
}

// accept waits for QEMU to connect to the QMP socket, or to fail.
func (r *run) accept(ctx context.Context) (net.Conn, error) {
	type accepted struct {
		c   net.Conn
		err error
	}
	ch := make(chan accepted, 1)
	go func() {
		c, err := r.ln.Accept()
		ch <- accepted{c, err}
	}()
	timer := time.NewTimer(60 * time.Second)
	defer timer.Stop()
	var fail error
	select {
	case a := <-ch:
		if a.err == nil {
			return a.c, nil
		}
		fail = a.err
	case st := <-r.exited:
		r.exited <- st // keep it for cleanup
		fail = fmt.Errorf("exited (%v)", st)
	case <-ctx.Done():
		fail = ctx.Err()
	case <-timer.C:
		fail = errors.New("no QMP connection within 60s")
	}
	r.ln.Close()
	if a := <-ch; a.c != nil {
		a.c.Close()
	}
	return nil, r.startError("starting QEMU", fail)
}

// startError describes a QEMU that did not come up, with its stderr.
func (r *run) startError(what string, err error) error {
	r.kill()
	msg := strings.TrimSpace(r.stderr.String())
	if msg != "" {
		return fmt.Errorf("%s: %v: %s", what, err, msg)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// kill ends QEMU at once and waits for it.
func (r *run) kill() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	select {
	case st := <-r.exited:
		r.exited <- st
		return
	default:
	}
	r.cmd.Process.Kill()
	st := <-r.exited
	r.exited <- st
}

// quit asks QEMU to exit through QMP, and kills it if it does not.
func (r *run) quit() {
	if r.qmp != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		r.qmp.execute(ctx, "quit", nil)
		cancel()
		select {
		case st := <-r.exited:
			r.exited <- st
			return
		case <-time.After(2 * time.Second):
		}
	}
	r.kill()
}

// testHookStarted, when set, learns QEMU's pid and the files of a run once
// the guest is about to start (and the files are removed).
var testHookStarted func(pid int, dir, ramPath string)

// testHookSpawned, when set, runs as soon as QEMU's process exists, before
// kvmboot's plugin is sent its configuration.
var testHookSpawned func(pid int)

// stopReason is how the watch loop decided to end.
type stopReason int

const (
	endExited stopReason = iota // QEMU exited by itself (debug-exit)
	endPaused                   // the guest is paused: registers can be read, then quit
	endKill                     // end at once
)

// shutdownInfo is a guest that reset or powered off the machine.
type shutdownInfo struct {
	reason string // QMP's reason: guest-reset, guest-shutdown, ...
	regs   string
}

// watch runs the guest until an outcome.
func (r *run) watch(ctx context.Context) *machine.Result {
	var (
		res      *machine.Result
		end      stopReason
		byGuest  bool // the guest ended the run: exit, reset, power-off, emulation failure
		shutdown *shutdownInfo
		st       *os.ProcessState
		deadline <-chan time.Time
		qmpDone  = r.qmp.Closed()
	)
	if r.opts.Timeout > 0 {
		t := time.NewTimer(r.opts.Timeout)
		defer t.Stop()
		deadline = t.C
	}
	poll := time.NewTimer(r.canary.interval())
	defer poll.Stop()
	if len(r.canary.ranges) == 0 {
		poll.Stop()
	}
	cmdCtx := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), 5*time.Second)
	}

	for res == nil && shutdown == nil {
		select {
		case st = <-r.exited:
			r.exited <- st
			res, end, byGuest = r.exitResult(st), endExited, true
		case <-r.qmp.Events():
			for _, ev := range r.qmp.takeEvents() {
				if res == nil && shutdown == nil {
					res, shutdown, end, byGuest = r.qmpEvent(ev)
				}
			}
		case <-qmpDone:
			qmpDone = nil // QEMU is exiting: its status follows
		case <-r.opts.Console.Done():
			res, end = r.opts.Console.Verdict().Result(), endKill
		case <-deadline:
			c, cancel := cmdCtx()
			r.qmp.execute(c, "stop", nil)
			cancel()
			res, end = machine.TimedOut(r.opts.Timeout), endPaused
		case <-ctx.Done():
			res, end = machine.Interrupted(), endKill
		case acc := <-r.plug.stopped():
			res, end = machine.BadRAMCrash(acc), endKill
		case err := <-r.plug.broken():
			res, end = &machine.Result{Outcome: machine.Error, Status: machine.StatusError, Reason: "kvmboot's QEMU plugin: " + err.Error()}, endKill
		case <-poll.C:
			if acc := r.canary.check(); len(acc) > 0 {
				r.accesses = append(r.accesses, acc...)
				if r.opts.BadRAMPolicy != machine.BadRAMRecord {
					res, end = badRAMCrash(acc[0]), endKill
				}
			}
			poll.Reset(r.canary.interval())
		}
	}
	ended := time.Now()
	switch end {
	case endPaused:
		r.quit()
	case endKill:
		r.kill()
	}
	r.drainConsole()
	r.plug.finish()
	if shutdown != nil {
		res = r.shutdownResult(shutdown)
	}
	// The guest printed before it ended the run, but kvmboot reads the
	// console through a pipe and may learn of the end first: a line that
	// ends the run (a panic, the --expect match) wins, as it does on our
	// KVM machine, where it stops the guest before its next instruction.
	if v := r.opts.Console.Verdict(); v != nil && byGuest {
		res, r.cpu = v.Result(), nil
	}
	// The last look at the canaries: a write just before the guest's exit.
	if acc := r.canary.check(); len(acc) > 0 {
		r.accesses = append(r.accesses, acc...)
		if r.opts.BadRAMPolicy != machine.BadRAMRecord && res.Outcome != machine.Error && !strings.HasPrefix(res.Reason, badRAMPrefix) {
			was := res.Reason
			res = badRAMCrash(acc[0])
			res.Reason += " (the run then ended: " + was + ")"
		}
	}
	if r.badNote != "" {
		res.Reason += " (note: " + r.badNote + ")"
	}
	res.BadRAMAccesses = r.accesses
	if r.plug != nil {
		res.BadRAMAccesses = append(res.BadRAMAccesses, r.plug.accesses...)
		res.Faulty = r.faulty.Stats()
	}
	if res.Outcome == machine.Crash || res.Outcome == machine.Error {
		res.CPU = r.cpu
	}
	res.Setup = r.setupDone.Sub(r.start)
	res.Exec, res.Ready, res.RAMWrite = r.execAt.Sub(r.start), r.readyAt.Sub(r.execAt), r.ramWrite
	res.Guest = ended.Sub(r.setupDone)
	st = <-r.exited // QEMU is gone: quit and kill waited for it
	r.exited <- st
	res.Boot = time.Since(r.setupDone)
	res.QEMUCPU = st.UserTime() + st.SystemTime()
	if e := strings.TrimSpace(r.stderr.String()); e != "" {
		r.log("QEMU said: " + e)
	}
	return res
}

// qmpEvent reads an event QEMU sent while the guest ran: a reset or
// power-off by the guest (shutdown, the registers read now), a shutdown
// from the host, or a stop for an emulation failure or a guest panic.
// Other events change nothing: all results are zero.
func (r *run) qmpEvent(ev qmpEvent) (res *machine.Result, shutdown *shutdownInfo, end stopReason, byGuest bool) {
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	switch ev.Event {
	case "SHUTDOWN":
		var d shutdownData
		_ = json.Unmarshal(ev.Data, &d)
		if !d.Guest {
			return &machine.Result{Outcome: machine.Error, Status: machine.StatusError, Reason: "QEMU was shut down from the host (" + d.Reason + ")"}, nil, endKill, false
		}
		return nil, &shutdownInfo{reason: d.Reason, regs: r.registers(c)}, endPaused, true
	case "STOP":
		status, err := r.qmp.status(c)
		if err == nil && (status == "internal-error" || status == "guest-panicked") {
			regs := r.registers(c)
			msg := "QEMU stopped the guest: " + status + stderrNote(r.stderr.String())
			if r.accel == AccelKVM && status == "internal-error" {
				msg += " (an instruction this host's KVM cannot emulate? RDRAND cannot be hidden from guests here)"
			}
			return machine.Crashed("%s: %s", msg, regs), nil, endPaused, true
		}
	}
	return nil, nil, 0, false
}

const badRAMPrefix = "guest touched bad RAM"

func badRAMCrash(a machine.BadAccess) *machine.Result {
	return machine.Crashed("%s: %d-byte write at %#x (found by the canary check: QEMU does not say which instruction)", badRAMPrefix, a.Size, a.Addr)
}

// exitResult is the outcome of a QEMU that exited by itself.
func (r *run) exitResult(st *os.ProcessState) *machine.Result {
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return machine.Crashed("QEMU died: %v%s", ws.Signal(), stderrNote(r.stderr.String()))
	}
	return exitResult(st.ExitCode(), r.stderr.String(), r.mem, r.plan)
}

func stderrNote(s string) string {
	if s = strings.TrimSpace(s); s == "" {
		return ""
	}
	return " (" + firstLine(s) + ")"
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// registers reads the vCPUs' registers through QMP, keeps the bootstrap
// processor's for the result and describes them all: QEMU does not say
// which processor reset the machine or stopped.
func (r *run) registers(ctx context.Context) string {
	n := r.plan.NumCPUs()
	var states []string
	if n > 1 {
		states = append(states, fmt.Sprintf("QEMU does not say which of the %d processors", n))
	}
	for cpu := range n {
		text, err := r.qmp.hmpOn(ctx, cpu, "info registers")
		if err != nil {
			states = append(states, fmt.Sprintf("CPU %d: registers unavailable: %v", cpu, err))
			continue
		}
		regs, ok := parseRegisters(text)
		if !ok {
			states = append(states, fmt.Sprintf("CPU %d: registers unavailable: %s", cpu, firstLine(text)))
			continue
		}
		state := regs.state(r.read())
		state.CPU = cpu
		if cpu == 0 {
			r.regs, r.cpu = regs, state
		}
		states = append(states, state.String())
	}
	return strings.Join(states, "; ")
}

// read fetches guest physical memory for disassembly.
func (r *run) read() func(addr uint64, n int) []byte { return physReader(r.ram, r.rom) }

// shutdownResult turns a guest reset or power-off into a crash, reading
// QEMU's log (complete now that QEMU has exited) for the cause.
func (r *run) shutdownResult(s *shutdownInfo) *machine.Result {
	switch s.reason {
	case "guest-reset":
		var log []byte
		if r.logFile != nil {
			log, _ = io.ReadAll(io.NewSectionReader(r.logFile, 0, 1<<40))
		}
		triple, how := resetCause(string(log))
		if triple && r.accel == AccelKVM && machine.EmulatingKVM() && r.regs != nil && r.regs.enablesPaging(r.read()) {
			return &machine.Result{Outcome: machine.Error, Status: machine.StatusError, Reason: "this host's KVM (kvm_pvm) cannot run paged 32-bit guests: the guest triple-faulted turning on paging; " +
				"boot it with --accel=tcg (" + s.regs + ")"}
		}
		if triple {
			return machine.Crashed("%s: %s", how, s.regs)
		}
		return machine.Crashed("guest reset the machine: %s: %s", how, s.regs)
	case "guest-panic":
		return machine.Crashed("guest reported a panic to QEMU: %s", s.regs)
	default:
		return machine.Crashed("guest shut the machine down (%s): %s", s.reason, s.regs)
	}
}

// drainConsole waits until QEMU's console output is all read.
func (r *run) drainConsole() {
	if r.conEOF == nil {
		return
	}
	select {
	case <-r.conEOF:
	case <-time.After(5 * time.Second):
		r.log("QEMU's console did not close 5s after QEMU ended")
	}
}

// cleanup kills QEMU if it still runs and removes every file of the run.
// It runs once; later calls do nothing.
func (r *run) cleanup() {
	if r.closed {
		return
	}
	r.closed = true
	if r.shaken != nil {
		// A handshake still under way (the plan never came): QEMU's
		// death ends it, one way or another.
		r.kill()
		r.ln.Close()
		r.awaitHandshake()
	}
	r.kill()
	r.plug.close()
	if r.qmp != nil {
		r.qmp.close()
	}
	if r.ln != nil {
		r.ln.Close()
	}
	r.drainConsole()
	for _, f := range []*os.File{r.logFile, r.com2File, r.ramFile} {
		if f != nil {
			f.Close()
		}
	}
	if r.ram != nil {
		unix.Munmap(r.ram)
		r.ram = nil
	}
	if r.ramPath != "" {
		os.Remove(r.ramPath)
	}
	if r.dir != "" {
		os.RemoveAll(r.dir)
	}
}

// tailBuffer keeps the last 64 KiB written to it.
type tailBuffer struct {
	mu sync.Mutex
	b  []byte
}

const tailMax = 64 << 10

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > tailMax {
		t.b = append(t.b[:0], t.b[len(t.b)-tailMax:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
