package devices

import (
	"testing"
	"time"

	"kvmboot/realmode"
)

// pmAt is a PM block on a bus, with a clock the test moves.
func pmAt(t *testing.T) (*Bus, *time.Time, *int) {
	t.Helper()
	now := time.Unix(1000, 0)
	offs := 0
	pm := &ACPIPM{Now: func() time.Time { return now }, PowerOff: func() { offs++ }}
	var b Bus
	pm.Attach(&b)
	return &b, &now, &offs
}

// TestACPIPMTimer: 3.579545 MHz from the VM's start, 24 bits, any access
// width; TMR_STS sets when bit 23 changes and clears when written 1.
func TestACPIPMTimer(t *testing.T) {
	b, now, _ := pmAt(t)
	tmr := uint16(realmode.PMBase + 8)
	if v := b.In(tmr, 4); v != 0 {
		t.Fatalf("timer at start = %#x", v)
	}
	*now = now.Add(time.Second)
	if v := b.In(tmr, 4); v != PMTimerHz {
		t.Fatalf("after 1 s: %d, want %d", v, PMTimerHz)
	}
	if lo, hi := b.In(tmr, 2), b.In(tmr+2, 2); lo|hi<<16 != PMTimerHz {
		t.Errorf("16-bit halves %#x %#x", lo, hi)
	}
	sts := uint16(realmode.PMBase)
	if b.In(sts, 2)&pmTmrSts != 0 {
		t.Error("TMR_STS set before bit 23 changed")
	}
	*now = now.Add(2 * time.Second) // 10.7 M counts: past 1<<23 and 1<<24
	if v := b.In(tmr, 4); v != (3*PMTimerHz)&0xFFFFFF {
		t.Errorf("after 3 s: %#x, want the count mod 2^24", v)
	}
	if b.In(sts, 2)&pmTmrSts == 0 {
		t.Error("TMR_STS clear after bit 23 changed")
	}
	b.Out(sts, 2, pmTmrSts)
	if b.In(sts, 2)&pmTmrSts != 0 {
		t.Error("TMR_STS still set after writing 1")
	}
}

// TestACPIPMControl: ACPI mode from the start, TMR_EN not offered, the
// other enables and control bits kept, write-only bits read 0; soft-off
// (SLP_TYP 0, SLP_EN) powers off, other sleep types do not.
func TestACPIPMControl(t *testing.T) {
	b, _, offs := pmAt(t)
	en, cnt := uint16(realmode.PMBase+2), uint16(realmode.PMBase+4)
	if v := b.In(cnt, 2); v != pmSCIEn {
		t.Errorf("PM1a control at hand-off = %#x, want SCI_EN", v)
	}
	b.Out(en, 2, 0x0121) // TMR_EN, GBL_EN, PWRBTN_EN
	if v := b.In(en, 2); v != 0x0120 {
		t.Errorf("PM1a enable = %#x, want TMR_EN dropped", v)
	}
	if v := b.In(realmode.PMBase, 4); v != 0x0120<<16 {
		t.Errorf("the event block as one dword = %#x", v)
	}
	b.Out(cnt, 2, 5<<pmSlpTypShift|pmSlpEn|pmWriteOnly|2) // a sleep type this machine does not have
	if *offs != 0 {
		t.Error("SLP_TYP 5 powered off")
	}
	if v := b.In(cnt, 2); v != 5<<pmSlpTypShift|2|pmSCIEn {
		t.Errorf("PM1a control = %#x: SLP_EN and GBL_RLS must read 0", v)
	}
	b.Out(cnt+1, 1, pmSlpEn>>8) // a byte write: SLP_TYP 0, SLP_EN
	if *offs != 1 {
		t.Errorf("soft-off powered off %d times, want 1", *offs)
	}
}
