package qemu

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/arch/x86/x86asm"
	"golang.org/x/sys/unix"

	"kvmboot/loader/memmap"
	"kvmboot/machine"
	"kvmboot/machine/faults"
	"kvmboot/machine/qemu/plugin"
)

// maxIdentified bounds how many bad-RAM accesses of one run get their
// instruction: each costs a register read through QMP (about a
// millisecond) while the guest waits. Later ones are recorded without it.
const maxIdentified = 1000

// tcgPlugin is one run's side of kvmboot's TCG plugin (package plugin):
// QEMU loads the embedded shared object from a memfd (nothing to install
// beside kvmboot, and a memfd is not subject to a noexec /dev/shm) and
// talks to kvmboot over a socketpair, both inherited; serve answers the
// plugin's messages on one goroutine while the guest runs.
type tcgPlugin struct {
	r      *run
	so     *os.File // memfd holding the shared object
	child  *os.File // QEMU's end of the socket, closed once QEMU has it
	conn   *os.File // kvmboot's end
	connFD int
	config plugin.Config
	bad    []memmap.Range // declared bad RAM inside guest RAM, merged
	faulty *faults.Set

	stop    chan machine.BadAccess // the access that ends the run (stop policy)
	failed  chan error             // the plugin broke the protocol
	done    chan struct{}          // closed when serve returns
	serving bool

	// serve's state; others read it only after done.
	accesses   []machine.BadAccess
	identified int
	restores   map[uint64][]saved // by access address: what DONE puts back
	lastSerial uint64             // block run and instruction index of
	lastIndex  int                // the last identified access
	blocks     map[uint32]*tracedBlock
	traceLines int
	traceOver  bool
}

// saved is guest RAM as it was before an access kvmboot let through.
type saved struct {
	addr  uint64
	bytes []byte
}

// tracedBlock is a translated block being traced, with the vCPU's state
// when QEMU translated it (which every run of the block shares).
type tracedBlock struct {
	block  *plugin.Block
	mode   int
	cs     uint16
	csBase uint64
}

// pluginArg is -plugin's value: QEMU inherits the shared object as fd 3
// and the socket as fd 4 (cmd.ExtraFiles, in files' order).
const pluginArg = "/proc/self/fd/3,fd=4"

// newTCGPlugin prepares the plugin for a run: bad RAM (already clipped to
// guest RAM) and faulty RAM to watch, and whether to trace.
func newTCGPlugin(r *run, bad []memmap.Range, faulty *faults.Set, trace bool) (*tcgPlugin, error) {
	var st unix.Stat_t
	if err := unix.Stat(r.ramPath, &st); err != nil {
		return nil, fmt.Errorf("guest RAM file: %w", err)
	}
	p := &tcgPlugin{
		r: r, bad: bad, faulty: faulty,
		config: plugin.Config{RAMSize: r.memSize, RAMMajor: unix.Major(st.Dev), RAMMinor: unix.Minor(st.Dev), RAMInode: st.Ino},
		stop:   make(chan machine.BadAccess, 1), failed: make(chan error, 1), done: make(chan struct{}),
		restores: map[uint64][]saved{}, blocks: map[uint32]*tracedBlock{},
	}
	for _, b := range bad {
		p.config.Ranges = append(p.config.Ranges, plugin.Range{Start: b.Start, End: b.End, Class: plugin.ClassBad})
	}
	if len(bad) > 0 {
		p.config.Flags |= plugin.ConfigBlocks
	}
	for _, f := range faulty.List() {
		class := uint32(plugin.ClassFaulty)
		if f.Model.Kind == faults.Flip {
			class = plugin.ClassFlip
		}
		p.config.Ranges = append(p.config.Ranges, plugin.Range{Start: f.Start, End: f.End, Class: class})
	}
	// Declared bad RAM was cut out of the faulty ranges: none overlap.
	slices.SortFunc(p.config.Ranges, func(a, b plugin.Range) int { return cmp.Compare(a.Start, b.Start) })
	if trace {
		p.config.Flags |= plugin.ConfigTrace
	}
	fd, err := unix.MemfdCreate("kvmboot-tcg.so", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("memfd for QEMU's plugin: %w", err)
	}
	p.so = os.NewFile(uintptr(fd), "kvmboot-tcg.so")
	if _, err := p.so.Write(plugin.SharedObject); err != nil {
		p.close()
		return nil, fmt.Errorf("memfd for QEMU's plugin: %w", err)
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		p.close()
		return nil, fmt.Errorf("socket for QEMU's plugin: %w", err)
	}
	// Blocking, read by one goroutine: a reply goes out as soon as the
	// kernel wakes that thread, without the runtime's poller in between
	// (each message holds up the guest). shut wakes a blocked read.
	p.connFD = fds[0]
	p.conn = os.NewFile(uintptr(fds[0]), "kvmboot-plugin")
	p.child = os.NewFile(uintptr(fds[1]), "kvmboot-plugin-qemu")
	return p, nil
}

// files are what QEMU inherits, in pluginArg's order.
func (p *tcgPlugin) files() []*os.File { return []*os.File{p.so, p.child} }

// started runs once QEMU is: it gives up QEMU's descriptors and sends the
// configuration, which the plugin reads while QEMU loads it.
func (p *tcgPlugin) started() error {
	p.so.Close()
	p.child.Close()
	p.so, p.child = nil, nil
	if _, err := p.conn.Write(p.config.Encode()); err != nil {
		return fmt.Errorf("configuring QEMU's plugin: %w", err)
	}
	return nil
}

// serve starts answering the plugin; r.qmp must be set.
func (p *tcgPlugin) serve() {
	p.serving = true
	go func() {
		defer close(p.done)
		if err := p.loop(); err != nil {
			p.failed <- err
		}
	}()
}

// loop reads and answers messages until QEMU closes its end.
func (p *tcgPlugin) loop() error {
	in := bufio.NewReader(p.conn)
	for {
		m, err := plugin.ReadMessage(in)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil // QEMU is gone, or shut ended the read
		}
		if err != nil {
			return err
		}
		reply, answer := uint32(0), true
		switch m.Type {
		case plugin.MsgHello:
			err, answer = plugin.ParseHello(m.Payload), false
		case plugin.MsgStart:
			p.faulty.Materialize(p.r.ram)
		case plugin.MsgFault:
			var f plugin.Fault
			if f, err = plugin.ParseFault(m.Payload); err == nil && f.Phys >= p.r.memSize {
				err = fmt.Errorf("an access at %#x, beyond guest RAM", f.Phys)
			}
			if err == nil {
				answer = p.fault(f)
			}
		case plugin.MsgDone:
			var addr uint64
			if addr, err = plugin.ParseDone(m.Payload); err == nil {
				p.done1(addr)
			}
		case plugin.MsgWritten:
			var w plugin.Written
			if w, err = plugin.ParseWritten(m.Payload); err == nil {
				err = p.written(w)
			}
		case plugin.MsgBlock:
			var id uint32
			var b *plugin.Block
			if id, b, err = plugin.ParseTraceBlock(m.Payload); err == nil {
				reply = p.traceBlock(id, b)
			}
		case plugin.MsgExec:
			var id uint32
			var i int
			if id, i, err = plugin.ParseExec(m.Payload); err == nil {
				p.traceExec(id, i)
			}
			answer = false
		default:
			err = fmt.Errorf("unknown message type %d", m.Type)
		}
		if err != nil {
			return fmt.Errorf("plugin message %d: %w", m.Type, err)
		}
		if answer {
			if _, err := p.conn.Write(plugin.Reply(reply)); err != nil {
				return nil // QEMU is gone
			}
		}
	}
}

// window is where an access at addr may reach: up to 16 bytes, within its
// page and guest RAM.
func (p *tcgPlugin) window(addr uint64) memmap.Range {
	return memmap.Range{Start: addr, End: min(addr+16, (addr|0xFFF)+1, p.r.memSize)}
}

// fault handles an access about to happen. It reports false when the run
// ends there (stop policy): the vCPU then waits until QEMU is killed.
func (p *tcgPlugin) fault(f plugin.Fault) bool {
	win := p.window(f.Phys)
	var undo []saved
	save := func(r memmap.Range) []byte {
		b := append([]byte(nil), p.r.ram[r.Start:r.End]...)
		undo = append(undo, saved{r.Start, b})
		return p.r.ram[r.Start:r.End]
	}
	if bad := overlapping(p.bad, win); len(bad) > 0 {
		if acc, ok := p.identify(f); ok {
			p.accesses = append(p.accesses, acc)
			if p.r.opts.BadRAMPolicy != machine.BadRAMRecord {
				select {
				case p.stop <- acc:
				default:
				}
				return false
			}
		}
		// As on our KVM machine: bad RAM keeps what it held, so a write
		// is lost (DONE puts the bytes back) and a read sees every bit
		// flipped.
		for _, r := range bad {
			b := save(r)
			if !f.Write {
				for i := range b {
					b[i] = ^b[i]
				}
			}
		}
	}
	if !f.Write {
		if at, mask := p.faulty.FlipRead(f.Phys); mask != 0 {
			save(memmap.Range{Start: at, End: at + 1})[0] ^= mask
		}
	}
	p.restores[f.Phys] = append(p.restores[f.Phys], undo...)
	return true
}

// done1 puts back what fault changed for the access at addr, now that it
// has happened.
func (p *tcgPlugin) done1(addr uint64) {
	undo := p.restores[addr]
	for i := len(undo) - 1; i >= 0; i-- {
		copy(p.r.ram[undo[i].addr:], undo[i].bytes)
	}
	delete(p.restores, addr)
}

// written applies the fault models to a write to faulty RAM.
func (p *tcgPlugin) written(w plugin.Written) error {
	if w.Window+uint64(len(w.Before)) > p.r.memSize {
		return fmt.Errorf("write report beyond guest RAM: %#x+%d", w.Window, len(w.Before))
	}
	p.faulty.Wrote(p.r.ram, w.Window, w.Before)
	return nil
}

// overlapping returns the parts of rs inside w.
func overlapping(rs []memmap.Range, w memmap.Range) []memmap.Range {
	var out []memmap.Range
	for _, r := range rs {
		if r.Overlaps(w) {
			out = append(out, memmap.Range{Start: max(r.Start, w.Start), End: min(r.End, w.End)})
		}
	}
	return out
}

// registers reads the registers of vCPU cpu while it waits in the
// plugin. QEMU keeps them current in its CPU state before every guest
// memory access, and at the start of a translation; only EIP lags inside
// a block.
func (p *tcgPlugin) registers(cpu int) (*cpuRegs, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	text, err := p.r.qmp.hmpOn(ctx, cpu, "info registers")
	if err != nil {
		return nil, err
	}
	regs, ok := parseRegisters(text)
	if !ok {
		return nil, errors.New(firstLine(text))
	}
	return regs, nil
}

// identify names the instruction of a bad-RAM access about to happen: the
// instruction of the block that runs whose memory operand, with the
// registers as they are now, is where the access goes. It reports false
// when that access does not reach bad RAM after all: a watched window is
// 16 bytes and an access can be shorter; without the instruction, only
// the byte at the address is known to be accessed (QEMU fetching code
// next to bad bytes, to translate it, is no access to them).
func (p *tcgPlugin) identify(f plugin.Fault) (machine.BadAccess, bool) {
	acc := machine.BadAccess{Addr: f.Phys, Size: 1, Write: f.Write, CPU: f.CPU}
	touched := len(overlapping(p.bad, memmap.Range{Start: f.Phys, End: f.Phys + 1})) > 0
	if p.identified >= maxIdentified {
		return acc, touched
	}
	p.identified++
	regs, err := p.registers(f.CPU)
	if err != nil {
		acc.Insn = "(registers unavailable: " + err.Error() + ")"
		return acc, touched
	}
	acc.IP = (regs.csBase + regs.gpr["EIP"]) & 0xFFFFFFFF
	if f.Insns == 0 {
		acc.Insn = "(no translated block has run)"
		return acc, touched
	}
	block, err := p.blockCode(f.CPU, f.Vaddr, f.Insns, regs)
	if err != nil {
		acc.Insn = fmt.Sprintf("(the code of the block at %#x is unreadable: %v)", f.Vaddr, err)
		return acc, touched
	}
	first := 0
	if f.Serial == p.lastSerial {
		first = p.lastIndex // the same run of the block: not an earlier instruction
	}
	i, inst, op, ok := accessInBlock(block, first, regs, f.Phys, f.Write)
	if !ok {
		acc.IP = block.Addr(min(first, len(block.Insns)))
		acc.Insn = fmt.Sprintf("(no instruction of the block at %#x reaches %#x)", f.Vaddr, f.Phys)
		return acc, touched
	}
	p.lastSerial, p.lastIndex = f.Serial, i
	acc.IP = block.Addr(i)
	acc.Insn = x86asm.IntelSyntax(inst, acc.IP, nil)
	acc.Size = int(op.Size - offsetIn(op, f.Phys, regs.paging()))
	return acc, len(overlapping(p.bad, memmap.Range{Start: f.Phys, End: f.Phys + uint64(acc.Size)})) > 0
}

// blockCode reads and splits the code of the block of n instructions at
// linear address vaddr that vCPU cpu runs, decoding it in the vCPU's mode
// (regs) as QEMU did: from guest RAM or our firmware when paging is off,
// else through QEMU's monitor, which walks that vCPU's page tables.
func (p *tcgPlugin) blockCode(cpu int, vaddr uint64, n int, regs *cpuRegs) (*plugin.Block, error) {
	want := 15 * n
	var code []byte
	if !regs.paging() {
		code = p.r.read()(vaddr, want)
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		text, err := p.r.qmp.hmpOn(ctx, cpu, fmt.Sprintf("x /%dxb %#x", want, vaddr))
		if err != nil {
			return nil, err
		}
		code = parseMemoryDump(text)
	}
	b := &plugin.Block{Vaddr: vaddr}
	for len(b.Insns) < n && len(code) > 0 {
		inst, err := x86asm.Decode(code, regs.mode())
		if err != nil {
			break
		}
		b.Insns = append(b.Insns, code[:inst.Len:inst.Len])
		code = code[inst.Len:]
	}
	if len(b.Insns) == 0 {
		return nil, errors.New("nothing decodes there")
	}
	return b, nil
}

// parseMemoryDump reads the bytes of the monitor's "x /Nxb" output
// ("02001000: 0x89 0x10 ..."), up to a line it cannot read (past mapped
// memory the monitor says "Cannot access memory").
func parseMemoryDump(text string) []byte {
	var out []byte
	for _, line := range strings.Split(text, "\n") {
		_, rest, ok := strings.Cut(strings.TrimSpace(line), ": ")
		if !ok {
			break
		}
		for _, f := range strings.Fields(rest) {
			v, err := strconv.ParseUint(strings.TrimPrefix(f, "0x"), 16, 8)
			if err != nil || !strings.HasPrefix(f, "0x") {
				return out
			}
			out = append(out, byte(v))
		}
	}
	return out
}

// accessInBlock finds, from instruction first on, the first instruction of
// b with a memory operand at phys, one that writes for a write and reads
// for a read if there is one.
func accessInBlock(b *plugin.Block, first int, regs *cpuRegs, phys uint64, write bool) (int, x86asm.Inst, machine.Operand, bool) {
	mr, paging, mode := regs.machineRegs(), regs.paging(), regs.mode()
	found := -1
	var fInst x86asm.Inst
	var fOp machine.Operand
	for i := first; i < len(b.Insns); i++ {
		inst, err := x86asm.Decode(b.Insns[i], mode)
		if err != nil || !machine.HasMem(inst) {
			continue
		}
		for _, op := range mr.Operands(inst) {
			if offsetIn(op, phys, paging) >= op.Size {
				continue
			}
			if accessKindFits(inst, write) {
				return i, inst, op, true
			}
			if found < 0 {
				found, fInst, fOp = i, inst, op
			}
		}
	}
	return found, fInst, fOp, found >= 0
}

// offsetIn is how far into op the byte at phys lies (op.Size or more: not
// in it). With paging on, linear and physical addresses share only their
// offset in the page.
func offsetIn(op machine.Operand, phys uint64, paging bool) uint32 {
	if paging {
		return (uint32(phys) - op.Linear) & 0xFFF
	}
	if phys > 0xFFFFFFFF {
		return op.Size
	}
	return uint32(phys) - op.Linear
}

// accessKindFits says whether inst makes the kind of access (write or
// read) its memory operand took.
func accessKindFits(inst x86asm.Inst, write bool) bool {
	switch inst.Op {
	case x86asm.STOSB, x86asm.STOSW, x86asm.STOSD, x86asm.PUSH, x86asm.PUSHA, x86asm.PUSHAD,
		x86asm.PUSHF, x86asm.PUSHFD, x86asm.CALL:
		return write
	case x86asm.MOVSB, x86asm.MOVSW, x86asm.MOVSD:
		return true
	case x86asm.CMP, x86asm.TEST, x86asm.BT: // compare and test only read
		return !write
	}
	_, dst := inst.Args[0].(x86asm.Mem)
	if write {
		return dst
	}
	return !dst || inst.Op != x86asm.MOV // a mov to memory does not read it
}

// traceBlock decides whether to trace a block QEMU translates, from the
// state of vCPU 0 now (the block's state: the trace follows the
// bootstrap processor); the plugin waits for the answer.
func (p *tcgPlugin) traceBlock(id uint32, b *plugin.Block) uint32 {
	o, entry := p.r.opts, p.r.plan.Entry
	if p.traceOver {
		return plugin.TraceDone
	}
	// --trace=real follows the real-mode code up to the kernel's 32-bit
	// entry, as on our KVM machine; --trace=all goes on to the limit.
	if !o.TraceAll && entry.RealModeEntry == 0 && b.Vaddr == uint64(entry.EIP) {
		p.traceOver = true
		return plugin.TraceDone
	}
	regs, err := p.registers(0)
	if err != nil {
		p.r.log("--trace: registers unavailable, tracing stops: " + err.Error())
		p.traceOver = true
		return plugin.TraceDone
	}
	if regs.protected() && !o.TraceAll {
		return 0
	}
	p.blocks[id] = &tracedBlock{block: b, mode: regs.mode(), cs: uint16(regs.csSel), csBase: regs.csBase}
	return plugin.TraceBlock
}

// traceExec prints an instruction about to run.
func (p *tcgPlugin) traceExec(id uint32, i int) {
	b := p.blocks[id]
	if p.traceOver || b == nil || i >= len(b.block.Insns) {
		return
	}
	linear := b.block.Addr(i)
	eip := uint64(uint32(linear - b.csBase))
	p.r.opts.Trace(machine.TraceLine(b.mode, b.cs, eip, linear, b.block.Insns[i]))
	if p.traceLines++; p.traceLines >= p.r.opts.TraceLimit {
		p.traceOver = true
	}
}

// stopped delivers the access that ends the run; nil without a plugin.
func (p *tcgPlugin) stopped() <-chan machine.BadAccess {
	if p == nil {
		return nil
	}
	return p.stop
}

// broken delivers a protocol failure; nil without a plugin.
func (p *tcgPlugin) broken() <-chan error {
	if p == nil {
		return nil
	}
	return p.failed
}

// finish waits for serve to see QEMU's end (QEMU has exited), or ends it.
func (p *tcgPlugin) finish() {
	if p == nil || !p.serving {
		return
	}
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.shut()
		<-p.done
	}
}

// shut ends serve's reads and writes.
func (p *tcgPlugin) shut() { unix.Shutdown(p.connFD, unix.SHUT_RDWR) }

// close releases the descriptors.
func (p *tcgPlugin) close() {
	if p == nil {
		return
	}
	if p.serving {
		p.shut()
		<-p.done
	}
	for _, f := range []*os.File{p.so, p.child, p.conn} {
		if f != nil {
			f.Close()
		}
	}
}
