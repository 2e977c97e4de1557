package lab

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// OuterCPU is what QEMU's monitor shows of the outer VM's CPU (`info
// registers`, `info lapic`): enough to tell a CPU that waits for an
// interrupt from one that will never take the interrupt it has.
type OuterCPU struct {
	Halted bool // HLT=1
	// InGuest: the CPU runs the nested guest. The outer kernel runs in
	// long mode, and QEMU dumps a CPU outside it (the i386 guest of our
	// VMM) in the legacy form, EIP and EFL; IF is then the guest's.
	InGuest bool
	IF      bool   // RFLAGS.IF
	RIP     uint64 // where it stands
	IRR     []int  // vectors requested of the local APIC
	ISR     []int  // vectors in service
	PPR     int    // processor priority
	Timer   string // the APIC timer line
}

var (
	reHLT = regexp.MustCompile(`\bHLT=(\d)`)
	reRFL = regexp.MustCompile(`\b[RE]FL=([0-9a-fA-F]+)`)
	reRIP = regexp.MustCompile(`\b[RE]IP=([0-9a-fA-F]+)`)
	rePPR = regexp.MustCompile(`\bPPR (0x[0-9a-fA-F]+)`)
)

// ParseOuterCPU reads `info registers` and `info lapic` of QEMU's x86
// monitor. ok is false when either lacks what a verdict needs.
func ParseOuterCPU(registers, lapic string) (cpu OuterCPU, ok bool) {
	hlt, rfl, rip := reHLT.FindStringSubmatch(registers), reRFL.FindStringSubmatch(registers), reRIP.FindStringSubmatch(registers)
	ppr := rePPR.FindStringSubmatch(lapic)
	if hlt == nil || rfl == nil || ppr == nil {
		return cpu, false
	}
	cpu.Halted = hlt[1] == "1"
	cpu.InGuest = !strings.HasPrefix(rfl[0], "R")
	flags, _ := strconv.ParseUint(rfl[1], 16, 64)
	cpu.IF = flags&(1<<9) != 0
	if rip != nil {
		cpu.RIP, _ = strconv.ParseUint(rip[1], 16, 64)
	}
	p, _ := strconv.ParseUint(ppr[1], 0, 8)
	cpu.PPR = int(p)
	for _, l := range strings.Split(lapic, "\n") {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "IRR":
			cpu.IRR = vectors(f[1:])
		case "ISR":
			cpu.ISR = vectors(f[1:])
		case "Timer":
			cpu.Timer = strings.Join(f, " ")
		}
	}
	return cpu, true
}

// vectors are the numbers among a line's fields ("(none)" has none).
func vectors(fields []string) []int {
	var v []int
	for _, f := range fields {
		if n, err := strconv.Atoi(strings.Trim(f, "(),")); err == nil && n >= 0 && n < 256 {
			v = append(v, n)
		}
	}
	return v
}

// Deliverable is the highest requested vector the CPU should take now:
// its priority class above the processor priority's, and interrupts
// enabled. -1 when there is none.
func (c OuterCPU) Deliverable() int {
	if !c.IF {
		return -1
	}
	return c.requested()
}

// requested is the highest requested vector above the processor
// priority's class, whatever IF says; -1 when there is none.
func (c OuterCPU) requested() int {
	if len(c.IRR) == 0 {
		return -1
	}
	v := slices.Max(c.IRR)
	if v>>4 <= c.PPR>>4 {
		return -1
	}
	return v
}

// Frozen says the CPU keeps an interrupt waiting that it should have
// taken: halted with it deliverable (a real CPU leaves HLT for it at
// once, so it never wakes up), or running the nested guest with it
// requested (KVM runs its guests so that the host's interrupts end them,
// whatever the guest's IF). QEMU 7.2's SVM emulation leaves an outer VM
// like this (DESIGN.md §7).
func (c OuterCPU) Frozen() bool {
	if c.InGuest {
		return c.requested() >= 0
	}
	return c.Halted && c.Deliverable() >= 0
}

func (c OuterCPU) String() string {
	where := ""
	if c.InGuest {
		where = "in the nested guest, "
	}
	return fmt.Sprintf("%sHLT=%d IF=%d RIP=%#x IRR=%v ISR=%v PPR=%#x; %s", where, b2i(c.Halted), b2i(c.IF), c.RIP, c.IRR, c.ISR, c.PPR, c.Timer)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
