package devices

import (
	"bytes"
	"slices"
	"testing"
)

// Register offsets and bits as Linux's include/uapi/linux/serial_reg.h
// spells them, written out here so that the tests do not share the
// implementation's constants.
const (
	tRBR = 0 // also THR, DLL
	tIER = 1 // also DLM
	tIIR = 2 // also FCR
	tLCR = 3
	tMCR = 4
	tLSR = 5
	tMSR = 6
	tSCR = 7
)

// irqRecorder remembers every call of the UART's IRQ callback.
type irqRecorder struct{ calls []bool }

func (r *irqRecorder) irq(level bool) { r.calls = append(r.calls, level) }

// last returns the current line level as the callbacks reported it.
func (r *irqRecorder) last() bool { return len(r.calls) > 0 && r.calls[len(r.calls)-1] }

func newTestUART() (*UART, *bytes.Buffer, *irqRecorder) {
	var out bytes.Buffer
	rec := &irqRecorder{}
	return NewUART(&out, rec.irq), &out, rec
}

// The probe sequence of Linux's autoconfig() (drivers/tty/serial/8250/8250_port.c):
// every step must answer as a 16550A does, or Linux decides there is no
// UART (or a lesser one) and the console stays silent.
func TestUARTLinuxProbe(t *testing.T) {
	u, _, _ := newTestUART()

	// Scratch register: Linux writes patterns and reads them back.
	for _, v := range []byte{0xA5, 0x5A, 0x00, 0xFF} {
		u.WriteReg(tSCR, v)
		if got := u.ReadReg(tSCR); got != v {
			t.Errorf("SCR: wrote %#02x, read %#02x", v, got)
		}
	}

	// IER: "serial_out(IER, 0); ... serial_out(IER, 0x0F); status2 =
	// serial_in(IER) & 0x0F" must give 0 then 0x0F. The top nibble is
	// reserved and reads as 0.
	for _, tc := range []struct{ write, want byte }{
		{0x00, 0x00},
		{0x0F, 0x0F},
		{0xFF, 0x0F}, // reserved bits do not stick
		{0x05, 0x05},
	} {
		u.WriteReg(tIER, tc.write)
		if got := u.ReadReg(tIER); got != tc.want {
			t.Errorf("IER: wrote %#02x, read %#02x, want %#02x", tc.write, got, tc.want)
		}
	}
	u.WriteReg(tIER, 0)

	// Loopback: MCR = LOOP|OUT2|RTS (0x1A) must give MSR & 0xF0 == 0x90
	// (RTS->CTS, OUT2->DCD); Linux checks exactly this.
	u.WriteReg(tMCR, 0x1A)
	if got := u.ReadReg(tMSR) & 0xF0; got != 0x90 {
		t.Errorf("loopback MSR&0xF0 = %#02x, want 0x90", got)
	}
	// And every modem output maps to its input: DTR->DSR, RTS->CTS,
	// OUT1->RI, OUT2->DCD.
	for _, tc := range []struct{ mcr, msr byte }{
		{0x10, 0x00},
		{0x11, 0x20},
		{0x12, 0x10},
		{0x14, 0x40},
		{0x18, 0x80},
		{0x1F, 0xF0},
	} {
		u.WriteReg(tMCR, tc.mcr)
		if got := u.ReadReg(tMSR) & 0xF0; got != tc.msr {
			t.Errorf("loopback MCR=%#02x: MSR&0xF0 = %#02x, want %#02x", tc.mcr, got, tc.msr)
		}
	}
	u.WriteReg(tMCR, 0)
	// Out of loopback a terminal is connected: DCD, DSR, CTS.
	if got := u.ReadReg(tMSR) & 0xF0; got != 0xB0 {
		t.Errorf("MSR&0xF0 without loopback = %#02x, want 0xb0", got)
	}

	// FIFO detection: "serial_out(FCR, UART_FCR_ENABLE_FIFO); scratch =
	// serial_in(IIR) >> 6" is 3 for a 16550A with working FIFOs.
	if got := u.ReadReg(tIIR); got != 0x01 {
		t.Errorf("IIR before FIFOs = %#02x, want 0x01 (no interrupt, no FIFO bits)", got)
	}
	u.WriteReg(tIIR, 0x01)
	if got := u.ReadReg(tIIR); got>>6 != 3 || got&0x0F != 0x01 {
		t.Errorf("IIR with FIFOs = %#02x, want 0xc1", got)
	}
	u.WriteReg(tIIR, 0x00)
	if got := u.ReadReg(tIIR); got&0xC0 != 0 {
		t.Errorf("IIR after disabling FIFOs = %#02x, want top bits clear", got)
	}
}

// The divisor latch hides RBR/THR and IER while DLAB is set; clearing DLAB
// brings them back untouched.
func TestUARTDivisorLatch(t *testing.T) {
	u, out, _ := newTestUART()
	u.WriteReg(tIER, 0x05)

	u.WriteReg(tLCR, 0x83) // DLAB, 8N1
	if got := u.ReadReg(tLCR); got != 0x83 {
		t.Errorf("LCR = %#02x, want 0x83", got)
	}
	if dll, dlm := u.ReadReg(tRBR), u.ReadReg(tIER); dll != 1 || dlm != 0 {
		t.Errorf("reset divisor = %#02x:%#02x, want 0x00:0x01 (115200 baud)", dlm, dll)
	}
	u.WriteReg(tRBR, 0x0C) // 9600 baud
	u.WriteReg(tIER, 0x00)
	if dll, dlm := u.ReadReg(tRBR), u.ReadReg(tIER); dll != 0x0C || dlm != 0 {
		t.Errorf("divisor = %#02x:%#02x, want 0x00:0x0c", dlm, dll)
	}
	u.WriteReg(tIER, 0x12)
	if got := u.ReadReg(tIER); got != 0x12 {
		t.Errorf("DLM = %#02x, want 0x12 (all 8 bits)", got)
	}
	if out.Len() != 0 {
		t.Errorf("writing DLL sent %q to the output", out.Bytes())
	}

	u.WriteReg(tLCR, 0x03)
	if got := u.ReadReg(tIER); got != 0x05 {
		t.Errorf("IER after DLAB = %#02x, want 0x05 (untouched by DLM writes)", got)
	}
	u.WriteReg(tRBR, 'x')
	if out.String() != "x" {
		t.Errorf("output = %q, want %q", out.String(), "x")
	}
	u.WriteReg(tLCR, 0x83)
	if got := u.ReadReg(tRBR); got != 0x0C {
		t.Errorf("DLL after a THR write = %#02x, want 0x0c", got)
	}
}

// Transmission is instant: LSR always shows THR and the shifter empty, so
// polling code never waits, and the bytes go out unchanged.
func TestUARTTransmit(t *testing.T) {
	u, out, _ := newTestUART()
	for i := 0; i < 3; i++ {
		if got := u.ReadReg(tLSR); got != 0x60 {
			t.Errorf("LSR = %#02x, want 0x60 (THRE|TEMT)", got)
		}
		u.WriteReg(tRBR, byte('a'+i))
	}
	u.WriteReg(tRBR, 0x00)
	u.WriteReg(tRBR, 0xFF)
	if want := "abc\x00\xff"; out.String() != want {
		t.Errorf("output = %q, want %q", out.String(), want)
	}
	// A nil Out is allowed: the bytes go nowhere.
	u.Out = nil
	u.WriteReg(tRBR, 'z')
}

// THRE interrupts as Linux's 8250 driver uses them: raised when IER bit 1
// is set (THR is always empty), seen on the line only with OUT2, cleared
// by reading IIR, raised again by a THR write.
func TestUARTTHREInterrupt(t *testing.T) {
	u, _, rec := newTestUART()

	// IER THRI without OUT2: IIR shows it, the line stays low (a PC
	// gates the UART's interrupt with OUT2).
	u.WriteReg(tIER, 0x02)
	if len(rec.calls) != 0 {
		t.Fatalf("IRQ calls %v without OUT2, want none", rec.calls)
	}
	u.WriteReg(tMCR, 0x08) // OUT2
	if want := []bool{true}; !slices.Equal(rec.calls, want) {
		t.Fatalf("IRQ calls after OUT2 = %v, want %v", rec.calls, want)
	}
	if got := u.ReadReg(tIIR); got != 0x02 {
		t.Errorf("IIR = %#02x, want 0x02 (THRE)", got)
	}
	if want := []bool{true, false}; !slices.Equal(rec.calls, want) {
		t.Fatalf("IRQ calls after reading IIR = %v, want %v", rec.calls, want)
	}
	if got := u.ReadReg(tIIR); got != 0x01 {
		t.Errorf("IIR after it was read = %#02x, want 0x01 (cleared)", got)
	}
	u.WriteReg(tRBR, 'x')
	if want := []bool{true, false, true}; !slices.Equal(rec.calls, want) {
		t.Fatalf("IRQ calls after a THR write = %v, want %v", rec.calls, want)
	}
	if got := u.ReadReg(tIIR); got != 0x02 {
		t.Errorf("IIR after a THR write = %#02x, want 0x02", got)
	}

	// (That read cleared it again.) A THR write raises it, dropping OUT2
	// lowers the line, and the interrupt stays pending behind the gate.
	u.WriteReg(tRBR, 'y')
	u.WriteReg(tMCR, 0x00)
	if !slices.Equal(rec.calls, []bool{true, false, true, false, true, false}) {
		t.Errorf("IRQ calls after dropping OUT2 = %v", rec.calls)
	}
	if got := u.ReadReg(tIIR); got != 0x02 {
		t.Errorf("IIR without OUT2 = %#02x, want 0x02", got)
	}
	// With FIFOs the same interrupt reads as 0xC2.
	u.WriteReg(tIIR, 0x01)
	u.WriteReg(tRBR, 'z')
	if got := u.ReadReg(tIIR); got != 0xC2 {
		t.Errorf("IIR with FIFOs = %#02x, want 0xc2", got)
	}
}

// Linux's startup test for UART_BUG_THRE: IER=THRI, read IIR, IER=0,
// IER=THRI, read IIR. A UART that does not re-raise THRE on the second
// enable is marked buggy and driven by a timer.
func TestUARTTHRERearm(t *testing.T) {
	u, _, _ := newTestUART()
	u.WriteReg(tMCR, 0x0B) // DTR|RTS|OUT2
	u.WriteReg(tIER, 0x02)
	_ = u.ReadReg(tLSR)
	iir1 := u.ReadReg(tIIR)
	u.WriteReg(tIER, 0x00)
	u.WriteReg(tIER, 0x02)
	iir := u.ReadReg(tIIR)
	u.WriteReg(tIER, 0x00)
	if iir1&0x01 != 0 || iir&0x01 != 0 {
		t.Errorf("IIR after enabling THRI = %#02x, then %#02x: want an interrupt pending both times", iir1, iir)
	}
	// Disabled THRI: no interrupt identified even though THR is empty.
	if got := u.ReadReg(tIIR); got != 0x01 {
		t.Errorf("IIR with IER=0 = %#02x, want 0x01", got)
	}
}

func TestUARTReceive(t *testing.T) {
	u, _, rec := newTestUART()
	if got := u.ReadReg(tLSR) & 0x01; got != 0 {
		t.Errorf("LSR.DR set with nothing received")
	}
	if got := u.ReadReg(tRBR); got != 0 {
		t.Errorf("RBR with nothing received = %#02x, want 0", got)
	}
	u.Receive([]byte("hi"))
	if len(rec.calls) != 0 {
		t.Errorf("IRQ calls %v with interrupts disabled", rec.calls)
	}
	for _, want := range []byte("hi") {
		if got := u.ReadReg(tLSR); got != 0x61 {
			t.Errorf("LSR = %#02x, want 0x61 (DR|THRE|TEMT)", got)
		}
		if got := u.ReadReg(tRBR); got != want {
			t.Errorf("RBR = %q, want %q", got, want)
		}
	}
	if got := u.ReadReg(tLSR); got != 0x60 {
		t.Errorf("LSR after draining = %#02x, want 0x60", got)
	}
	// An empty Receive changes nothing.
	u.Receive(nil)
	if got := u.ReadReg(tLSR); got != 0x60 {
		t.Errorf("LSR after an empty Receive = %#02x, want 0x60", got)
	}
}

// Received data outranks THRE in IIR (16550 priorities: line status,
// received data, THRE, modem status), and reading IIR while it reports
// received data does not clear a pending THRE.
func TestUARTInterruptPriority(t *testing.T) {
	u, _, rec := newTestUART()
	u.WriteReg(tMCR, 0x08)
	u.WriteReg(tIER, 0x03) // RDI|THRI
	u.Receive([]byte("ab"))
	for i := 0; i < 2; i++ {
		if got := u.ReadReg(tIIR); got != 0x04 {
			t.Errorf("IIR with data and THRE pending = %#02x, want 0x04", got)
		}
	}
	u.ReadReg(tRBR)
	if got := u.ReadReg(tIIR); got != 0x04 {
		t.Errorf("IIR with one byte left = %#02x, want 0x04", got)
	}
	u.ReadReg(tRBR)
	if got := u.ReadReg(tIIR); got != 0x02 {
		t.Errorf("IIR after draining = %#02x, want 0x02 (THRE still pending)", got)
	}
	if got := u.ReadReg(tIIR); got != 0x01 {
		t.Errorf("IIR after THRE was read = %#02x, want 0x01", got)
	}
	// The line went up once and stayed up from the first interrupt until
	// IIR cleared the last one: RDI handing over to THRE is no edge.
	if want := []bool{true, false}; !slices.Equal(rec.calls, want) {
		t.Errorf("IRQ calls = %v, want %v", rec.calls, want)
	}

	// RX interrupt alone.
	u.WriteReg(tIER, 0x01)
	u.Receive([]byte("c"))
	if got := u.ReadReg(tIIR); got != 0x04 {
		t.Errorf("IIR = %#02x, want 0x04", got)
	}
	if !rec.last() {
		t.Errorf("line low with received data and IER.RDI")
	}
	u.ReadReg(tRBR)
	if rec.last() {
		t.Errorf("line high after the data was read")
	}
}

// The IRQ callback reports level changes only: the KVM backend turns each
// call into an ioctl, and a repeated level would be wasted work (or, with
// an edge-triggered consumer, a spurious interrupt).
func TestUARTIRQOnlyOnChange(t *testing.T) {
	u, _, rec := newTestUART()
	u.WriteReg(tMCR, 0x08)
	u.WriteReg(tIER, 0x01)
	u.Receive([]byte("a"))
	u.Receive([]byte("b"))
	u.Receive([]byte("c"))
	u.WriteReg(tMCR, 0x08)
	u.WriteReg(tIER, 0x01)
	u.ReadReg(tLSR)
	u.ReadReg(tRBR)
	u.ReadReg(tRBR)
	if want := []bool{true}; !slices.Equal(rec.calls, want) {
		t.Fatalf("IRQ calls = %v, want %v", rec.calls, want)
	}
	u.ReadReg(tRBR)
	u.ReadReg(tRBR)
	u.ReadReg(tIIR)
	if want := []bool{true, false}; !slices.Equal(rec.calls, want) {
		t.Fatalf("IRQ calls = %v, want %v", rec.calls, want)
	}
	// A nil callback is allowed.
	u.IRQ = nil
	u.Receive([]byte("d"))
}

// Loopback turns transmitted bytes into received ones and sends nothing.
func TestUARTLoopbackData(t *testing.T) {
	u, out, _ := newTestUART()
	u.WriteReg(tMCR, 0x10)
	u.WriteReg(tRBR, 'q')
	if out.Len() != 0 {
		t.Errorf("loopback sent %q to the output", out.Bytes())
	}
	if got := u.ReadReg(tLSR) & 0x01; got != 1 {
		t.Fatalf("LSR.DR clear after a loopback write")
	}
	if got := u.ReadReg(tRBR); got != 'q' {
		t.Errorf("RBR = %q, want 'q'", got)
	}
}

// Input is bounded: a host that pastes megabytes into a guest that does
// not read must not grow our memory. FCR bit 1 empties the buffer.
func TestUARTReceiveBounded(t *testing.T) {
	u, _, _ := newTestUART()
	const held = 4096
	big := bytes.Repeat([]byte("0123456789"), 500) // 5000 bytes
	u.Receive(big)
	u.Receive([]byte("dropped"))
	n := 0
	for u.ReadReg(tLSR)&0x01 != 0 {
		if got, want := u.ReadReg(tRBR), big[n]; got != want {
			t.Fatalf("byte %d = %q, want %q", n, got, want)
		}
		n++
		if n > len(big) {
			break
		}
	}
	if n != held {
		t.Errorf("kept %d bytes, want %d", n, held)
	}
	// Room again after reading: the bound is on what is held.
	u.Receive([]byte("ok"))
	if got := u.ReadReg(tRBR); got != 'o' {
		t.Errorf("RBR after refilling = %q, want 'o'", got)
	}

	u.Receive([]byte("junk"))
	u.WriteReg(tIIR, 0x03) // enable FIFOs, clear RX
	if got := u.ReadReg(tLSR) & 0x01; got != 0 {
		t.Errorf("LSR.DR set after FCR cleared the receive FIFO")
	}
	if got := u.ReadReg(tIIR); got != 0xC1 {
		t.Errorf("IIR after FCR=0x03 = %#02x, want 0xc1 (FIFOs on, clear bit not kept)", got)
	}
}

func TestUARTUnknownOffset(t *testing.T) {
	u, _, _ := newTestUART()
	if got := u.ReadReg(8); got != 0xFF {
		t.Errorf("ReadReg(8) = %#02x, want 0xff", got)
	}
	u.WriteReg(8, 0x12) // ignored, must not panic
	u.WriteReg(tLSR, 0x00)
	u.WriteReg(tMSR, 0x00)
	if got := u.ReadReg(tLSR); got != 0x60 {
		t.Errorf("LSR after a write to it = %#02x, want 0x60 (read-only)", got)
	}
}
