package kvm

import (
	"context"
	"encoding/binary"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	gokvm "github.com/bobuhiro11/gokvm/kvm"
	"golang.org/x/arch/x86/x86asm"
	"golang.org/x/sys/unix"

	"kvmboot/loader"
	"kvmboot/loader/memmap"
	"kvmboot/machine"
	"kvmboot/machine/devices"
	"kvmboot/machine/faults"
	"kvmboot/realmode"
)

// Backend runs plans on a fresh VM each.
type Backend struct {
	// Log receives notes about the run (unhandled ports, ROM writes).
	Log func(string)
	// Minimal leaves the ACPI tables out: a PC from before ACPI.
	Minimal bool
}

// Platform is our VM as the firmware tables describe it (loader.MPTable,
// loader.ACPITables): the plan's processors, each with KVM's in-kernel
// local APIC, the in-kernel I/O APIC (with a PC's IRQ routing,
// pcGSIRouting), 8259s and PIT, the PM block of devices.ACPIPM, the RTC
// and reset port of devices.System; no HPET and no 8042 keyboard
// controller (port 64h only answers the reset command).
var Platform = loader.Platform{Name: "kvmboot"}

// platform is the machine b describes to the guest, nil for none.
func (b Backend) platform() *loader.Platform {
	if b.Minimal {
		return nil
	}
	return &Platform
}

// Name implements machine.Backend.
func (Backend) Name() string { return "kvm" }

// Run boots plan and watches it until an outcome. The error is for
// failures to set up the VM; everything the guest does is in the Result.
func (b Backend) Run(ctx context.Context, plan *loader.Plan, opts machine.Options) (*machine.Result, error) {
	start := time.Now()
	faulty, err := faults.NewSet(faults.Subtract(opts.Faulty, opts.BadRAM), opts.FaultSeed) // declared bad RAM stays bad
	if err != nil {
		return nil, err
	}
	rom, plan, err := machine.ForPlatform(plan, b.platform())
	if err != nil {
		return nil, err
	}
	vm, err := newVM(plan.MemSize, plan.NumCPUs(), opts.BadRAM, faulty, rom)
	if err != nil {
		return nil, err
	}
	defer vm.Close()
	if err := vm.mem.Load(plan); err != nil {
		return nil, fmt.Errorf("placing the plan: %w", err)
	}
	if opts.AfterPlace != nil {
		opts.AfterPlace(vm.ram)
	}
	r := newRunner(vm, plan, opts, b.Log)
	setup := time.Now()
	res := r.run(ctx)
	res.Setup = setup.Sub(start)
	res.Boot = time.Since(setup)
	res.BadRAMAccesses = r.badAccesses
	res.BIOSLog = vm.mem.BIOSLog()
	res.Faulty = vm.faulty.Stats()
	res.Backend = "kvm"
	return res, nil
}

// Why a run stops when no vCPU ended it (runner.why).
const (
	stopNone int32 = iota
	stopTimeout
	stopCancel
	stopLostInterrupts
	stopGuest // a vCPU ended the run: runner.result says how
)

// runner is one run: a thread per vCPU (vcpuRunner.loop), each in KVM_RUN
// until one of them or the watcher ends the run. What the vCPUs share,
// the devices, guest RAM that exits serve, the outcome and the records,
// is theirs under mu, one exit at a time.
type runner struct {
	vm     *VM
	plan   *loader.Plan
	opts   machine.Options
	log    func(string)
	cpus   []*vcpuRunner
	why    atomic.Int32
	stop   chan struct{} // closed once the run must end: the vCPUs are kicked until they do
	once   sync.Once
	nudges atomic.Int32 // nudge calls, all vCPUs

	mu          sync.Mutex
	bus         devices.Bus
	batch       *portBatch // the UARTs' queued writes; nil when KVM cannot queue them
	result      *machine.Result
	cpu         *machine.CPUState // the vCPU that ended the run, for the result
	current     *vcpuRunner       // the vCPU whose exit is being handled
	badAccesses []machine.BadAccess
	loggedPages map[uint64]bool
}

// vcpuRunner is one vCPU's side of a run. Only the bootstrap processor is
// single-stepped (--count-stub, --trace).
type vcpuRunner struct {
	r     *runner
	c     *vcpu
	tid   atomic.Int32 // its thread, once it runs
	done  atomic.Bool  // its loop has returned
	nudge atomic.Bool  // the watcher asks it to nudge KVM
	exits uint64

	stepping   bool
	steps      uint64
	stepExits  uint64
	traceLines int
	stub       *machine.StubCount
	// afterExit is where the vCPU stood at an I/O or MMIO exit while
	// single-stepping, when the exiting instruction had retired; lastPC is
	// the linear address of the last single-step stop.
	afterExit *insnAt
	lastPC    uint64
}

func newRunner(vm *VM, plan *loader.Plan, opts machine.Options, log func(string)) *runner {
	r := &runner{vm: vm, plan: plan, opts: opts, log: log, loggedPages: map[uint64]bool{}, stop: make(chan struct{})}
	if r.log == nil {
		r.log = func(string) {}
	}
	for _, c := range vm.vcpus {
		r.cpus = append(r.cpus, &vcpuRunner{r: r, c: c})
	}
	r.bus.Log = r.log
	var console = opts.Console
	if console == nil {
		console = machine.NewConsole(nil, nil)
		r.opts.Console = console
	}
	uart := devices.NewUART(console, func(level bool) {
		lvl := uint32(0)
		if level {
			lvl = 1
		}
		gokvm.IRQLineStatus(uintptr(vm.vmFd), 4, lvl)
	})
	r.bus.Register(devices.PortCOM1, 8, devices.UARTPorts{UART: uart, Base: devices.PortCOM1})
	r.batch = newPortBatch(vm)
	if r.batch != nil {
		r.batch.add(uart, devices.PortCOM1)
	}
	if opts.COM2 != nil { // polled only (the memtest channel): no interrupt line
		com2 := devices.NewUART(opts.COM2, nil)
		r.bus.Register(devices.PortCOM2, 8, devices.UARTPorts{UART: com2, Base: devices.PortCOM2})
		if r.batch != nil {
			r.batch.add(com2, devices.PortCOM2)
		}
	}
	r.syncBatch()
	sys := &devices.System{MemSize: plan.MemSize, Exit: r.guestExit, Reset: r.reset}
	sys.Attach(&r.bus)
	pm := &devices.ACPIPM{PowerOff: func() {
		r.crash("guest shut the machine down (ACPI soft-off): %s", r.current.cpuState())
	}}
	pm.Attach(&r.bus)
	return r
}

// takeBatch hands the writes KVM queued to their devices, under mu:
// before an exit is handled, so that they come first, as in the guest.
func (r *runner) takeBatch() {
	if r.batch != nil {
		r.batch.take(r.bus.Out)
	}
}

// syncBatch has KVM queue a UART's writes exactly while they may wait,
// under mu, after an exit is handled.
func (r *runner) syncBatch() {
	if r.batch == nil {
		return
	}
	if err := r.batch.sync(); err != nil {
		r.log(err.Error() + "; the UARTs' writes exit one by one from now on, as far as KVM lets them")
	}
}

// checkConsole ends the run when the console has its verdict (--expect,
// a kernel panic), under mu.
func (r *runner) checkConsole() {
	if r.result != nil {
		return
	}
	select {
	case <-r.opts.Console.Done():
		r.finish(r.opts.Console.Verdict().Result())
	default:
	}
}

// The device callbacks run under mu, during r.current's exit.

func (r *runner) guestExit(v uint32) { r.finish(machine.DebugExit(v, r.vm.mem, r.plan)) }

func (r *runner) reset(how string) {
	r.finish(machine.Crashed("guest reset the machine from CPU %d: %s", r.current.c.id, how))
}

// crash ends the run as a crash whose reason ends with a vCPU's state
// (cpuState, which keeps it for the result).
func (r *runner) crash(format string, args ...any) { r.finish(machine.Crashed(format, args...)) }

// finish records the first outcome, under mu; later ones do not
// override it. The run then stops.
func (r *runner) finish(res *machine.Result) {
	if r.result == nil {
		r.result = res
		r.end(stopGuest)
	}
}

// end stops the run for why, unless it is stopping already.
func (r *runner) end(why int32) {
	r.why.CompareAndSwap(stopNone, why)
	r.once.Do(func() { close(r.stop) })
}

func (r *runner) stopping() bool { return r.why.Load() != stopNone }

// run runs every vCPU on a thread of its own until the run ends, then
// stops and joins them all and says how it ended.
func (r *runner) run(ctx context.Context) *machine.Result {
	var loops, helpers sync.WaitGroup
	joined := make(chan struct{})
	for _, c := range r.cpus {
		loops.Add(1)
		go func() {
			defer loops.Done()
			c.loop()
		}()
	}
	helpers.Add(2)
	go func() {
		defer helpers.Done()
		r.watch(ctx, joined)
	}()
	go func() {
		defer helpers.Done()
		r.kick(joined)
	}()
	loops.Wait()
	// The watcher and the kicker touch kvm_run: they must be gone before
	// the VM (and its mappings) is closed.
	close(joined)
	helpers.Wait()
	r.mu.Lock()
	r.takeBatch() // the console's last bytes
	r.mu.Unlock()

	var res *machine.Result
	switch r.why.Load() {
	case stopGuest:
		res = r.result
	case stopTimeout:
		res = machine.TimedOut(r.opts.Timeout)
		res.Reason += "; " + r.diagnose()
	case stopCancel:
		res = machine.Interrupted()
	default: // stopLostInterrupts
		res = &machine.Result{Outcome: machine.Error, Status: machine.StatusError, Reason: LostInterrupts + ": " + r.diagnose()}
	}
	bsp := r.cpus[0]
	if bsp.stub == nil && r.opts.CountStub { // stepping stopped short of the entry
		bsp.stub = &machine.StubCount{Instructions: bsp.steps, Exits: bsp.stepExits}
	}
	res.Stub, res.CPU = bsp.stub, r.cpu
	for _, c := range r.cpus {
		res.Exits += c.exits
	}
	return res
}

// kick makes every vCPU leave KVM_RUN once the run must end, until all
// loops have returned (joined): immediate_exit for a vCPU between two
// runs, a signal for one in KVM_RUN, in the guest or waiting there (halted,
// or an AP waiting for its SIPI).
func (r *runner) kick(joined <-chan struct{}) {
	select {
	case <-r.stop:
	case <-joined:
		return
	}
	pid := unix.Getpid()
	for {
		for _, c := range r.cpus {
			if c.done.Load() {
				continue
			}
			requestImmediateExit(c.c.run)
			if tid := c.tid.Load(); tid != 0 {
				unix.Tgkill(pid, int(tid), unix.SIGURG) // Go's runtime ignores a stray SIGURG
			}
		}
		select {
		case <-joined:
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// loop runs the vCPU on this goroutine's own OS thread, so that kick can
// interrupt KVM_RUN with a signal to exactly that thread.
func (c *vcpuRunner) loop() {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer c.done.Store(true)
	c.tid.Store(int32(unix.Gettid()))
	r := c.r
	if c.c.id == 0 && (r.opts.CountStub || r.opts.Trace != nil) {
		if err := setGuestDebug(uintptr(c.c.fd), true); err != nil {
			r.mu.Lock()
			r.finish(machine.Crashed("KVM_SET_GUEST_DEBUG: %v", err))
			r.mu.Unlock()
			return
		}
		c.stepping = true
		if at := c.next(); at != nil {
			c.lastPC = at.linear
		}
		c.traceNext()
	}
	for !r.stopping() {
		if err := runVCPU(uintptr(c.c.fd)); err == unix.EINTR || err == unix.EAGAIN {
			// A signal (ours or any other) or immediate_exit; or an AP
			// that took its INIT or SIPI while waiting for them, and
			// runs at the next KVM_RUN. kvm_run still holds the previous
			// exit, already handled.
			if c.nudge.CompareAndSwap(true, false) && !r.stopping() {
				clearImmediateExit(c.c.run)
				c.nudgeKVM()
			}
			continue
		} else if err != nil {
			r.mu.Lock()
			r.finish(&machine.Result{Outcome: machine.Error, Status: machine.StatusError, Reason: fmt.Sprintf("KVM_RUN of CPU %d: %v", c.c.id, err)})
			r.mu.Unlock()
			return
		}
		reason := binary.LittleEndian.Uint32(c.c.run[runExitReason:])
		if reason != exitIntr && reason != exitDebug {
			c.exits++
			if c.stepping {
				c.stepExits++
			}
		}
		if c.stepping && (reason == exitIO || reason == exitMMIO) {
			// An instruction that exits before it completes (in, an
			// MMIO read) leaves RIP on itself: nothing can be missed.
			if at := c.next(); at != nil && at.linear != c.lastPC {
				c.afterExit = at
			}
		}
		if reason == exitIntr || reason == exitDebug && c.stepping {
			if reason == exitDebug {
				c.handleStep()
			}
			continue
		}
		r.mu.Lock()
		r.takeBatch()
		if !r.stopping() {
			r.current = c
			c.handleExit(reason)
			r.current = nil
			r.syncBatch()
		}
		r.mu.Unlock()
	}
}

// handleExit handles an exit other than a single step, under r.mu.
func (c *vcpuRunner) handleExit(reason uint32) {
	r := c.r
	switch reason {
	case exitIO:
		c.handleIO()
	case exitMMIO:
		c.handleMMIO()
	case exitShutdown:
		if c.pagingRefused() {
			r.finish(&machine.Result{Outcome: machine.Error, Status: machine.StatusError, Reason: "this host's KVM (kvm_pvm) cannot run paged 32-bit guests: the guest triple-faulted turning on paging; " +
				"boot it with --vmm=qemu (" + c.cpuState() + ")"})
			break
		}
		r.crash("triple fault (KVM_EXIT_SHUTDOWN): %s", c.cpuState())
	case exitInternalError:
		sub := binary.LittleEndian.Uint32(c.c.run[internalSuberror:])
		r.crash("KVM internal error, suberror %d (an instruction this host's KVM cannot emulate?): %s", sub, c.cpuState())
	case exitFailEntry:
		hw := binary.LittleEndian.Uint64(c.c.run[failEntryReason:])
		r.crash("KVM could not enter the guest (hardware reason %#x): %s", hw, c.cpuState())
	case exitSystemEvent:
		ev := binary.LittleEndian.Uint32(c.c.run[systemEventType:])
		r.crash("guest system event %d (shutdown or reset): %s", ev, c.cpuState())
	default:
		name := exitNames[reason]
		if name == "" {
			name = fmt.Sprint(reason)
		}
		r.crash("unhandled KVM exit %s: %s", name, c.cpuState())
	}
	r.checkConsole()
}

// runVCPU is KVM_RUN. Unlike gokvm's Run, which turns EINTR and EAGAIN
// into success, it returns them: no new exit.
func runVCPU(vcpuFd uintptr) error {
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, vcpuFd, ioctlRun, 0); errno != 0 {
		return errno
	}
	return nil
}

// LostInterrupts starts the reason of a run that this host's KVM stopped:
// the guest halts and KVM wakes it at once, for an interrupt it then never
// injects (lostInterrupts), and nudging KVM (nudgeKVM) did not help. The
// run could go on only to its timeout.
const LostInterrupts = "this host's KVM stopped injecting interrupts"

// maxNudges is how many nudges in a row may fail to get an interrupt
// injected before the run ends with LostInterrupts.
const maxNudges = 10

// nudgeKVM makes KVM look at the vCPU's pending interrupts again, as it
// does after any change to the registers (KVM_SET_REGS raises
// KVM_REQ_EVENT). KVM waits for the guest to be able to take an
// interrupt through an interrupt window, a VM exit the CPU reports;
// QEMU 7.2's emulated SVM sometimes never reports it, and a KVM nested in
// it then holds the interrupt for good (README, "The nested KVM lab").
func (c *vcpuRunner) nudgeKVM() {
	regs, err := gokvm.GetRegs(uintptr(c.c.fd))
	if err == nil {
		err = gokvm.SetRegs(uintptr(c.c.fd), regs)
	}
	n := c.r.nudges.Add(1)
	if err != nil {
		c.r.log(fmt.Sprintf("nudging KVM to inject a pending interrupt into CPU %d: %v", c.c.id, err))
		return
	}
	c.r.log(fmt.Sprintf("KVM woke the halted guest for an interrupt it did not inject, %d s in a row: nudged CPU %d (%d)", lostAfter, c.c.id, n))
}

// lostInterrupts recognises a KVM that keeps a guest from its interrupts:
// for lostAfter samples in a row, the guest's HLT exits grew by at least
// minHalts (KVM saw an event pending, so the guest did not sleep) while
// KVM injected nothing. A guest waiting with interrupts off sleeps in HLT,
// and one whose timer ticks gets them injected: neither looks like this.
type lostInterrupts struct {
	halts, injections uint64
	run               int
	seen              bool
}

const (
	lostAfter = 3   // one-second samples
	minHalts  = 100 // HLT exits a second
)

// sample takes the VM's counters; it reports whether they show the defect
// (and starts counting again).
func (l *lostInterrupts) sample(halts, injections uint64) bool {
	if l.seen && injections == l.injections && halts >= l.halts+minHalts {
		l.run++
	} else {
		l.run = 0
	}
	l.halts, l.injections, l.seen = halts, injections, true
	if l.run >= lostAfter {
		l.run = 0
		return true
	}
	return false
}

// watch ends the run when the deadline passes or ctx is cancelled, and
// has the vCPUs nudge a KVM that holds back their interrupts, until the
// vCPUs are joined.
func (r *runner) watch(ctx context.Context, joined <-chan struct{}) {
	var deadline <-chan time.Time
	if r.opts.Timeout > 0 {
		t := time.NewTimer(r.opts.Timeout)
		defer t.Stop()
		deadline = t.C
	}
	// KVM's counters for this VM, when debugfs has them: a KVM that
	// holds back an interrupt is nudged, up to maxNudges times in a row
	// without an injection between them.
	var lost lostInterrupts
	var nudges int
	var nudgedAt uint64
	var tick <-chan time.Time
	stats := statsDir(r.vm.vmFd)
	if stats != "" {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		tick = t.C
	}
	var batched <-chan time.Time
	if r.batch != nil {
		t := time.NewTicker(batchPeriod)
		defer t.Stop()
		batched = t.C
	}
	pid := unix.Getpid()
	for {
		select {
		case <-joined:
			return
		case <-r.stop:
			return // kick takes it from here
		case <-batched:
			r.mu.Lock()
			r.takeBatch()
			r.checkConsole()
			r.mu.Unlock()
		case <-ctx.Done():
			r.end(stopCancel)
		case <-deadline:
			r.end(stopTimeout)
		case <-tick:
			halts, ok1 := readStat(stats, "halt_exits")
			injections, ok2 := readStat(stats, "irq_injections")
			if !ok1 || !ok2 || !lost.sample(halts, injections) {
				continue
			}
			if nudges > 0 && injections != nudgedAt {
				nudges = 0 // the last nudge helped
			}
			if nudges++; nudges > maxNudges {
				r.end(stopLostInterrupts)
				continue
			}
			nudgedAt = injections
			for _, c := range r.cpus {
				if tid := c.tid.Load(); tid != 0 && !c.done.Load() && c.nudge.CompareAndSwap(false, true) {
					requestImmediateExit(c.c.run)
					unix.Tgkill(pid, int(tid), unix.SIGURG)
				}
			}
		}
	}
}

func (c *vcpuRunner) handleIO() {
	r := c.r
	run := c.c.run
	out := run[ioDirection] == 1
	size := int(run[ioSize])
	port := binary.LittleEndian.Uint16(run[ioPort:])
	count := int(binary.LittleEndian.Uint32(run[ioCount:]))
	off := int(binary.LittleEndian.Uint64(run[ioDataOffset:]))
	if size != 1 && size != 2 && size != 4 || off < 0 || off+size*count > len(run) {
		r.finish(machine.Crashed("malformed KVM_EXIT_IO (port %#x size %d count %d)", port, size, count))
		return
	}
	for i := 0; i < count && r.result == nil; i++ {
		data := run[off+i*size : off+(i+1)*size]
		if out {
			r.bus.Out(port, size, leUint(data))
		} else {
			putLE(data, r.bus.In(port, size))
		}
	}
}

func (c *vcpuRunner) handleMMIO() {
	r := c.r
	run := c.c.run
	addr := binary.LittleEndian.Uint64(run[mmioPhysAddr:])
	n := int(binary.LittleEndian.Uint32(run[mmioLen:]))
	write := run[mmioIsWrite] != 0
	data := run[mmioData : mmioData+8]
	if n < 1 || n > 8 {
		r.finish(machine.Crashed("malformed KVM_EXIT_MMIO (len %d)", n))
		return
	}
	data = data[:n]
	if r.touchesBad(addr, uint64(n)) {
		c.badAccess(addr, n, write)
	}
	handled := r.vm.faulty.Access(r.vm.ram, addr, data, write) // faulty RAM: through its model
	for i := range data {
		a := addr + uint64(i)
		switch {
		case handled&(1<<i) != 0:
		case a < r.vm.mem.Size() && r.isBad(a):
			// Bad RAM keeps what it held, writes are lost, reads come
			// back with every bit flipped.
			if !write {
				data[i] = ^r.vm.ram[a]
			}
		case a < r.vm.mem.Size() && !inLowHole(a):
			// A good byte in a page we left unbacked because it also
			// holds bad bytes: serve it from RAM.
			if write {
				r.vm.ram[a] = data[i]
			} else {
				data[i] = r.vm.ram[a]
			}
		case inROM(a):
			if write {
				r.logPage(a, "guest wrote to the firmware ROM at %#x; ignored")
			} else {
				data[i] = r.vm.rom[(a-realmode.ROMBase)%realmode.ROMSize]
			}
		default:
			if write {
				r.logPage(a, "guest wrote to %#x, where there is no RAM; ignored")
			} else {
				r.logPage(a, "guest read %#x, where there is no RAM; it reads all-ones")
				data[i] = 0xFF
			}
		}
	}
}

func inLowHole(a uint64) bool { return a >= memmap.LowRAMEnd && a < memmap.HighRAMStart }

func inROM(a uint64) bool {
	return a >= realmode.ROMBase && a < realmode.ROMBase+realmode.ROMSize ||
		a >= realmode.ROMHigh && a < realmode.ROMHigh+realmode.ROMSize
}

func (r *runner) isBad(a uint64) bool {
	for _, b := range r.vm.bad {
		if a >= b.Start && a < b.End {
			return true
		}
	}
	return false
}

func (r *runner) touchesBad(addr, n uint64) bool {
	acc := memmap.Range{Start: addr, End: addr + n}
	for _, b := range r.vm.bad {
		if b.Overlaps(acc) {
			return true
		}
	}
	return false
}

func (r *runner) logPage(a uint64, format string) {
	page := a &^ (pageSize - 1)
	if !r.loggedPages[page] {
		r.loggedPages[page] = true
		r.log(fmt.Sprintf(format, a) + " (once per page)")
	}
}

func (c *vcpuRunner) badAccess(addr uint64, n int, write bool) {
	r := c.r
	acc := machine.BadAccess{Addr: addr, Size: n, Write: write, CPU: c.c.id}
	if regs, sregs, err := c.registers(); err == nil {
		cr := machine.Regs{DSBase: sregs.DS.Base, SSBase: sregs.SS.Base, ESBase: sregs.ES.Base, GPR: gprs(regs)}
		acc.IP, acc.Insn = faultingInstruction(r.readPhys, linearIP(regs, sregs), cpuMode(sregs), cr, addr, write)
	}
	r.badAccesses = append(r.badAccesses, acc)
	if r.opts.BadRAMPolicy != machine.BadRAMRecord {
		r.finish(machine.BadRAMCrash(acc))
	}
}

// registers reads the vCPU's general and segment registers.
func (c *vcpuRunner) registers() (*gokvm.Regs, *gokvm.Sregs, error) {
	regs, err := gokvm.GetRegs(uintptr(c.c.fd))
	if err != nil {
		return nil, nil, err
	}
	sregs, err := gokvm.GetSregs(uintptr(c.c.fd))
	if err != nil {
		return nil, nil, err
	}
	return regs, sregs, nil
}

// gprs maps the 32-bit general registers to their values.
func gprs(regs *gokvm.Regs) map[x86asm.Reg]uint32 {
	return map[x86asm.Reg]uint32{
		x86asm.EAX: uint32(regs.RAX), x86asm.ECX: uint32(regs.RCX), x86asm.EDX: uint32(regs.RDX), x86asm.EBX: uint32(regs.RBX),
		x86asm.ESP: uint32(regs.RSP), x86asm.EBP: uint32(regs.RBP), x86asm.ESI: uint32(regs.RSI), x86asm.EDI: uint32(regs.RDI),
	}
}

// linearIP is the linear address of the next instruction.
func linearIP(regs *gokvm.Regs, sregs *gokvm.Sregs) uint64 {
	return (sregs.CS.Base + regs.RIP) & 0xFFFFFFFF
}

func cpuMode(s *gokvm.Sregs) int {
	if s.CR0&1 == 0 || s.CS.DB == 0 {
		return 16
	}
	return 32
}

// readPhys returns up to n bytes at guest physical addr from RAM or ROM.
func (r *runner) readPhys(addr uint64, n int) []byte {
	if inROM(addr) {
		off := (addr - realmode.ROMBase) % realmode.ROMSize
		return r.vm.rom[off:min(off+uint64(n), realmode.ROMSize)]
	}
	for _, b := range r.vm.backed {
		if addr >= b.Start && addr < b.End {
			return r.vm.ram[addr:min(addr+uint64(n), b.End)]
		}
	}
	return nil
}

func (r *runner) disassemble(ip uint64, mode int) string {
	code := r.readPhys(ip, 15)
	inst, err := x86asm.Decode(code, mode)
	if err != nil {
		return fmt.Sprintf("(cannot decode % x)", code)
	}
	return x86asm.IntelSyntax(inst, ip, nil)
}

// pagingRefused reports a triple fault on the instruction that turns on
// paging, on an emulating KVM: that is the host's limit (DESIGN.md §7),
// not a guest bug.
func (c *vcpuRunner) pagingRefused() bool {
	if !machine.EmulatingKVM() {
		return false
	}
	r := c.r
	regs, sregs, err := c.registers()
	if err != nil {
		return false
	}
	gpr := gprs(regs)
	return machine.MovSetsPaging(r.readPhys(linearIP(regs, sregs), 15), cpuMode(sregs), func(src x86asm.Reg) uint64 { return uint64(gpr[src]) })
}

// cpuState describes the vCPU for a report: which, its mode, registers
// and the instruction at EIP. The first vCPU described (the one that
// crashed, or the bootstrap processor for a timeout) is the result's.
// Only the vCPU's own thread, or any once the vCPUs are joined, asks.
func (c *vcpuRunner) cpuState() string {
	r := c.r
	regs, sregs, err := c.registers()
	if err != nil {
		return fmt.Sprintf("CPU %d: registers unavailable: %v", c.c.id, err)
	}
	mode := cpuMode(sregs)
	ip := linearIP(regs, sregs)
	state := &machine.CPUState{
		CPU: c.c.id, Mode: machine.ModeName(sregs.CR0, mode), CS: sregs.CS.Selector, EIP: uint32(regs.RIP), Linear: uint32(ip),
		EAX: uint32(regs.RAX), EBX: uint32(regs.RBX), ECX: uint32(regs.RCX), EDX: uint32(regs.RDX),
		ESI: uint32(regs.RSI), EDI: uint32(regs.RDI), EBP: uint32(regs.RBP), ESP: uint32(regs.RSP),
		EFLAGS: uint32(regs.RFLAGS), CR0: uint32(sregs.CR0), CR3: uint32(sregs.CR3), CR4: uint32(sregs.CR4),
		Insn: r.disassemble(ip, mode),
	}
	if r.cpu == nil {
		r.cpu = state
	}
	return state.String()
}

// handleStep handles a single-step exit: count the stub's instructions up
// to the kernel's entry and print the trace.
func (c *vcpuRunner) handleStep() {
	r := c.r
	pc := binary.LittleEndian.Uint64(c.c.run[debugPC:]) & 0xFFFFFFFF
	if pc == c.lastPC && c.repeating() {
		return // one more iteration of the same instruction, not a new one
	}
	c.steps++
	if p := c.afterSSLoad(pc); p != nil {
		// A load of SS holds back the single-step trap for one
		// instruction: that one ran too.
		c.steps++
		c.trace(p)
	}
	c.lastPC = pc
	if p := c.afterExit; p != nil {
		// kvm_pvm runs the instruction after a completed I/O or MMIO
		// exit without a single-step trap: account for it here.
		c.afterExit = nil
		if pc != p.linear {
			c.steps++
			c.trace(p)
		}
	}
	atEntry := pc == uint64(r.plan.Entry.EIP) && r.plan.Entry.RealModeEntry == 0
	if c.stub == nil && atEntry {
		c.stub = &machine.StubCount{Instructions: c.steps, Exits: c.stepExits, Complete: true}
	}
	c.traceNext()
	// --trace=real follows the real-mode code of the stub and of the image
	// up to the kernel's 32-bit entry; --trace=all goes on to the limit.
	keepTracing := r.opts.Trace != nil && c.traceLines < r.opts.TraceLimit && (r.opts.TraceAll || !atEntry)
	if !keepTracing && (c.stub != nil || !r.opts.CountStub) {
		c.stopStepping()
	}
}

// afterSSLoad is, when the last stop was on an instruction that loads SS
// (mov ss, pop ss), the instruction after it, which ran without a stop of
// its own: the CPU holds back the trap for one instruction after a load
// of SS. nil otherwise, or when the vCPU stopped there after all.
func (c *vcpuRunner) afterSSLoad(pc uint64) *insnAt {
	r := c.r
	at := c.next()
	if at == nil {
		return nil
	}
	code := r.readPhys(c.lastPC, 15)
	inst, err := x86asm.Decode(code, at.mode)
	if err != nil || !(inst.Op == x86asm.MOV && inst.Args[0] == x86asm.SS || inst.Op == x86asm.POP && inst.Args[0] == x86asm.SS) {
		return nil
	}
	next := c.lastPC + uint64(inst.Len)
	if next == pc {
		return nil
	}
	skipped := *at
	skipped.linear, skipped.eip = next, at.eip-(pc-next)
	return &skipped
}

// repeating reports a vCPU stopped on a rep-prefixed string instruction:
// a hardware KVM's single step stops after each of its iterations.
func (c *vcpuRunner) repeating() bool {
	r := c.r
	at := c.next()
	if at == nil {
		return false
	}
	inst, err := x86asm.Decode(r.readPhys(at.linear, 15), at.mode)
	if err != nil {
		return false
	}
	for _, p := range inst.Prefix {
		if b := p & 0xFF; b == x86asm.PrefixREP || b == x86asm.PrefixREPN {
			return true
		}
	}
	return false
}

// insnAt is where the vCPU is about to execute.
type insnAt struct {
	cs        uint16
	eip       uint64
	linear    uint64
	mode      int
	protected bool
}

// next returns where the vCPU will execute next.
func (c *vcpuRunner) next() *insnAt {
	regs, sregs, err := c.registers()
	if err != nil {
		return nil
	}
	return &insnAt{cs: sregs.CS.Selector, eip: regs.RIP, linear: linearIP(regs, sregs),
		mode: cpuMode(sregs), protected: sregs.CR0&1 != 0}
}

// traceNext prints the instruction the vCPU will execute next.
func (c *vcpuRunner) traceNext() {
	if c.r.opts.Trace == nil || c.traceLines >= c.r.opts.TraceLimit {
		return
	}
	if at := c.next(); at != nil {
		c.trace(at)
	}
}

// trace prints one instruction (machine.TraceLine).
func (c *vcpuRunner) trace(at *insnAt) {
	r := c.r
	if r.opts.Trace == nil || c.traceLines >= r.opts.TraceLimit {
		return
	}
	if at.protected && !r.opts.TraceAll {
		return // protected mode: --trace=real shows only real mode
	}
	r.opts.Trace(machine.TraceLine(at.mode, at.cs, at.eip, at.linear, r.readPhys(at.linear, 15)))
	c.traceLines++
}

func (c *vcpuRunner) stopStepping() {
	if c.stepping {
		setGuestDebug(uintptr(c.c.fd), false)
		c.stepping = false
	}
}

func leUint(b []byte) uint32 {
	var v uint32
	for i, c := range b {
		v |= uint32(c) << (8 * i)
	}
	return v
}

func putLE(b []byte, v uint32) {
	for i := range b {
		b[i] = byte(v >> (8 * i))
	}
}
