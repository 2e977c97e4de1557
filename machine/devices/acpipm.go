package devices

import (
	"time"

	"kvmboot/realmode"
)

// ACPIPM is the fixed ACPI hardware of our KVM machine, the block the
// loader's FADT describes at realmode.PMBase, laid out as a PIIX4's:
//
//	+0  PM1a status (16 bits, write 1 to clear), +2 PM1a enable (16 bits)
//	+4  PM1a control (16 bits)
//	+8  PM timer: a 24-bit count at 3.579545 MHz, from the VM's start
//
// It hands over in ACPI mode (SCI_EN reads 1; the FADT has no SMI command
// port) and never raises the SCI: the timer's overflow event is not
// offered (TMR_EN reads 0; TMR_STS still sets when bit 23 of the count
// changes, as the specification asks), and the machine has no power or
// sleep button, RTC alarm or firmware to signal anything else. Soft-off,
// SLP_TYP 0 with SLP_EN in PM1a control (the DSDT's _S5), calls PowerOff;
// there are no other sleep states.
type ACPIPM struct {
	PowerOff func()
	// Now is the clock the timer counts on (time.Now when nil).
	Now func() time.Time

	start   time.Time
	cleared uint64 // the count when TMR_STS was last cleared
	enable  uint16
	control uint16
}

// PM timer and register bits (ACPI 6.3, 4.8.3).
const (
	PMTimerHz     = 3579545
	pmTimerBits   = 24
	pmTmrSts      = 1 << 0  // PM1 status: bit 23 of the timer changed
	pmTmrEn       = 1 << 0  // PM1 enable: not offered
	pmSCIEn       = 1 << 0  // PM1 control: ACPI mode
	pmWriteOnly   = 1 << 2  // PM1 control: GBL_RLS (and SLP_EN) read as 0
	pmSlpTypShift = 10      // PM1 control: sleep type, 3 bits
	pmSlpEn       = 1 << 13 // PM1 control: enter the sleep type
	pmEvtLen      = 4
	pmCntLen      = 2
	pmTmrLen      = 4
)

func (p *ACPIPM) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

// Attach registers the three blocks on bus; the timer counts from now.
func (p *ACPIPM) Attach(b *Bus) {
	p.start = p.now()
	b.Register(realmode.PMBase, pmEvtLen, Func{InFunc: p.inEvt, OutFunc: p.outEvt})
	b.Register(realmode.PMBase+4, pmCntLen, Func{InFunc: p.inCnt, OutFunc: p.outCnt})
	b.Register(realmode.PMBase+8, pmTmrLen, Func{InFunc: p.inTmr})
}

// count is the PM timer's count since Attach, all its bits.
func (p *ACPIPM) count() uint64 {
	d := p.now().Sub(p.start)
	return uint64(d/time.Second)*PMTimerHz + uint64(d%time.Second)*PMTimerHz/uint64(time.Second)
}

// status is PM1a status: TMR_STS once bit 23 changed since it was cleared.
func (p *ACPIPM) status() uint16 {
	if p.count()>>(pmTimerBits-1) != p.cleared>>(pmTimerBits-1) {
		return pmTmrSts
	}
	return 0
}

// window is what an access of size bytes at byte offset off reads from a
// block whose registers, little endian from its start, are regs.
func window(regs uint32, off, size int) uint32 {
	return (regs >> (8 * off)) & ones(size)
}

func (p *ACPIPM) inEvt(port uint16, size int) uint32 {
	return window(uint32(p.status())|uint32(p.enable)<<16, int(port-realmode.PMBase), size)
}

func (p *ACPIPM) outEvt(port uint16, size int, v uint32) {
	off := int(port - realmode.PMBase)
	mask := ones(size) << (8 * off)
	v = (v << (8 * off)) & mask
	if uint16(v)&pmTmrSts != 0 {
		p.cleared = p.count()
	}
	if en := uint16(mask >> 16); en != 0 {
		p.enable = (p.enable&^en | uint16(v>>16)) &^ pmTmrEn
	}
}

func (p *ACPIPM) inCnt(port uint16, size int) uint32 {
	return window(uint32(p.control|pmSCIEn), int(port-realmode.PMBase-4), size)
}

func (p *ACPIPM) outCnt(port uint16, size int, v uint32) {
	off := int(port - realmode.PMBase - 4)
	mask := uint16(ones(size) << (8 * off))
	w := uint16(v << (8 * off))
	if mask&pmSlpEn != 0 && w&pmSlpEn != 0 && w>>pmSlpTypShift&7 == 0 && p.PowerOff != nil {
		p.PowerOff()
	}
	p.control = (p.control&^mask | w&mask) &^ (pmSlpEn | pmWriteOnly)
}

func (p *ACPIPM) inTmr(port uint16, size int) uint32 {
	return window(uint32(p.count()&(1<<pmTimerBits-1)), int(port-realmode.PMBase-8), size)
}
