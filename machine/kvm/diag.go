package kvm

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	gokvm "github.com/bobuhiro11/gokvm/kvm"
)

// diagnose describes why a guest may have stopped making progress, for a
// run that timed out, once its vCPUs are joined: each vCPU (its state,
// whether it waits for INIT or SIPI, its local APIC: is the timer
// running, is an interrupt requested, in service?), the in-kernel PIT and
// PICs (is IRQ 0 requested, masked?) and KVM's counters for this VM (are
// interrupts still injected?).
func (r *runner) diagnose() string {
	var parts []string
	for _, c := range r.cpus {
		var mp gokvm.MPState
		if err := gokvm.GetMPState(uintptr(c.c.fd), &mp); err == nil && mp.State != gokvm.MPStateRunnable {
			parts = append(parts, fmt.Sprintf("CPU %d: %s", c.c.id, mpStateNames[mp.State]))
			if mp.State == gokvm.MPStateUninitialized || mp.State == gokvm.MPStateInitReceived {
				continue // never started: nothing more to say
			}
		}
		parts = append(parts, c.cpuState())
		var lapic gokvm.LAPICState
		if err := gokvm.GetLocalAPIC(uintptr(c.c.fd), &lapic); err == nil {
			parts = append(parts, describeLAPIC(lapic.Regs[:]))
		}
	}
	var pit gokvm.PITState2
	if err := gokvm.GetPIT2(uintptr(r.vm.vmFd), &pit); err == nil {
		parts = append(parts, describePIT(&pit))
	}
	for chip, name := range []string{"PIC master", "PIC slave"} {
		c := gokvm.IRQChip{ChipID: uint32(chip)}
		if err := gokvm.GetIRQChip(uintptr(r.vm.vmFd), &c); err == nil {
			parts = append(parts, describePIC(name, c.Chip[:]))
		}
	}
	if s := vmStats(r.vm.vmFd); s != "" {
		parts = append(parts, "KVM counters: "+s)
	}
	return strings.Join(parts, "; ")
}

// mpStateNames say what a vCPU that is not running does (KVM_GET_MP_STATE).
var mpStateNames = map[uint32]string{
	gokvm.MPStateUninitialized: "waiting for INIT (never started)",
	gokvm.MPStateInitReceived:  "waiting for SIPI (never started)",
	gokvm.MPStateHalted:        "halted",
	gokvm.MPStateSipiReceived:  "starting (SIPI received)",
}

// describePIT is channel 0's state: the timer behind IRQ 0.
func describePIT(p *gokvm.PITState2) string {
	c := p.Channels[0]
	return fmt.Sprintf("PIT ch0 mode %d count %d gate %d", c.Mode, c.Count, c.Gate)
}

// describePIC is one 8259's registers (struct kvm_pic_state: last_irr,
// irr, imr, isr, priority_add, irq_base, ...).
func describePIC(name string, s []byte) string {
	return fmt.Sprintf("%s IRR %#02x IMR %#02x ISR %#02x base %#02x", name, s[1], s[2], s[3], s[5])
}

// Local APIC register offsets (the 1 KiB page KVM_GET_LAPIC returns).
const (
	apicTPR   = 0x80
	apicPPR   = 0xA0
	apicSVR   = 0xF0
	apicISR   = 0x100
	apicIRR   = 0x200
	apicLVTT  = 0x320
	apicLVT0  = 0x350
	apicTMICT = 0x380
	apicTMCCT = 0x390
)

// describeLAPIC is the local APIC's state: enabled, priorities, requested
// and in-service vectors, the timer and LINT0 (the 8259's way in).
func describeLAPIC(regs []byte) string {
	reg := func(off int) uint32 { return binary.LittleEndian.Uint32(regs[off:]) }
	return fmt.Sprintf("LAPIC SVR %#x TPR %#x PPR %#x IRR %v ISR %v LVTT %#x TMICT %d TMCCT %d LVT0 %#x",
		reg(apicSVR), reg(apicTPR), reg(apicPPR), apicVectors(regs, apicIRR), apicVectors(regs, apicISR),
		reg(apicLVTT), reg(apicTMICT), reg(apicTMCCT), reg(apicLVT0))
}

// apicVectors lists the vectors set in a 256-bit APIC register (eight
// 32-bit words 16 bytes apart).
func apicVectors(regs []byte, off int) []int {
	var v []int
	for w := 0; w < 8; w++ {
		bits := binary.LittleEndian.Uint32(regs[off+16*w:])
		for b := 0; b < 32; b++ {
			if bits&(1<<b) != 0 {
				v = append(v, 32*w+b)
			}
		}
	}
	return v
}

// statNames are KVM's debugfs counters that tell a guest waiting for an
// interrupt from one that gets none.
var statNames = []string{"exits", "io_exits", "mmio_exits", "halt_exits", "irq_exits", "irq_window_exits", "irq_injections", "request_irq_exits", "signal_exits", "insn_emulation"}

// vmStats reads this VM's counters, "" without debugfs.
func vmStats(vmFd int) string {
	dir := statsDir(vmFd)
	if dir == "" {
		return ""
	}
	var out []string
	for _, n := range statNames {
		if v, ok := readStat(dir, n); ok {
			out = append(out, fmt.Sprintf("%s=%d", n, v))
		}
	}
	return strings.Join(out, " ")
}

// statsDir is this VM's folder in KVM's debugfs, "" when there is none.
// KVM names it TID-FD after the thread that created the VM: the one
// whose TID is a thread of this process.
func statsDir(vmFd int) string {
	dirs, _ := filepath.Glob(filepath.Join("/sys/kernel/debug/kvm", fmt.Sprintf("*-%d", vmFd)))
	for _, d := range dirs {
		tid, _, _ := strings.Cut(filepath.Base(d), "-")
		if _, err := os.Stat(filepath.Join("/proc/self/task", tid)); err == nil {
			return d
		}
	}
	return ""
}

func readStat(dir, name string) (uint64, bool) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return 0, false
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return v, err == nil
}
