// Package devices holds the PC devices kvmboot emulates in user space:
// plain Go state machines driven by port reads and writes, tested without
// KVM. The in-kernel irqchip and PIT of KVM cover the rest.
package devices

import "io"

// UART register offsets from the base port.
const (
	uartData = 0 // RBR (read) / THR (write); DLL when DLAB
	uartIER  = 1 // DLM when DLAB
	uartIIR  = 2 // IIR (read) / FCR (write)
	uartLCR  = 3
	uartMCR  = 4
	uartLSR  = 5
	uartMSR  = 6
	uartSCR  = 7
)

const (
	lcrDLAB = 0x80

	ierRDI  = 0x01 // received data available
	ierTHRI = 0x02 // transmitter holding register empty
	ierRLSI = 0x04 // receiver line status

	iirNone = 0x01
	iirTHRI = 0x02
	iirRDI  = 0x04
	iirFIFO = 0xC0 // FIFOs enabled: what a 16550A reports

	lsrDR   = 0x01
	lsrTHRE = 0x20
	lsrTEMT = 0x40

	mcrDTR  = 0x01
	mcrRTS  = 0x02
	mcrOUT1 = 0x04
	mcrOUT2 = 0x08 // gates the interrupt line on a PC
	mcrLoop = 0x10

	msrCTS = 0x10
	msrDSR = 0x20
	msrRI  = 0x40
	msrDCD = 0x80

	fcrEnable = 0x01
	fcrClrRX  = 0x02

	rxMax = 4096 // bytes of input held before more are dropped
)

// UART is a 16550A serial port: enough of it for polling code and for
// Linux's 8250 driver (scratch, IER and loopback probes, FIFO detection,
// THRE and receive interrupts). Transmission is instant: a byte written to
// THR goes to Out and THR is empty again.
type UART struct {
	Out io.Writer
	// IRQ is called when the interrupt line changes level.
	IRQ func(level bool)

	ier, lcr, mcr, scr, fcr byte
	dll, dlm                byte
	thrPending              bool // THRE interrupt pending until IIR is read or THR written
	rx                      []byte
	irqLevel                bool
}

// NewUART returns a UART in its reset state writing to out.
func NewUART(out io.Writer, irq func(bool)) *UART {
	return &UART{Out: out, IRQ: irq, dll: 1} // 115200 baud
}

// Receive queues input for the guest.
func (u *UART) Receive(p []byte) {
	room := rxMax - len(u.rx)
	u.rx = append(u.rx, p[:min(room, len(p))]...)
	u.update()
}

// ReadReg reads the register at offset off (0..7).
func (u *UART) ReadReg(off uint16) byte {
	switch off {
	case uartData:
		if u.lcr&lcrDLAB != 0 {
			return u.dll
		}
		if len(u.rx) == 0 {
			return 0
		}
		b := u.rx[0]
		u.rx = u.rx[1:]
		u.update()
		return b
	case uartIER:
		if u.lcr&lcrDLAB != 0 {
			return u.dlm
		}
		return u.ier
	case uartIIR:
		iir := u.iir()
		if iir&0x0F == iirTHRI {
			u.thrPending = false // reading IIR clears a THRE interrupt
			u.update()
		}
		if u.fcr&fcrEnable != 0 {
			iir |= iirFIFO
		}
		return iir
	case uartLCR:
		return u.lcr
	case uartMCR:
		return u.mcr
	case uartLSR:
		lsr := byte(lsrTHRE | lsrTEMT)
		if len(u.rx) > 0 {
			lsr |= lsrDR
		}
		return lsr
	case uartMSR:
		if u.mcr&mcrLoop != 0 {
			// Loopback wires the modem outputs to the inputs.
			var msr byte
			if u.mcr&mcrDTR != 0 {
				msr |= msrDSR
			}
			if u.mcr&mcrRTS != 0 {
				msr |= msrCTS
			}
			if u.mcr&mcrOUT1 != 0 {
				msr |= msrRI
			}
			if u.mcr&mcrOUT2 != 0 {
				msr |= msrDCD
			}
			return msr
		}
		return msrDCD | msrDSR | msrCTS
	case uartSCR:
		return u.scr
	}
	return 0xFF
}

// WriteReg writes v to the register at offset off (0..7).
func (u *UART) WriteReg(off uint16, v byte) {
	switch off {
	case uartData:
		if u.lcr&lcrDLAB != 0 {
			u.dll = v
			return
		}
		if u.mcr&mcrLoop != 0 {
			u.Receive([]byte{v})
		} else if u.Out != nil {
			u.Out.Write([]byte{v})
		}
		u.thrPending = true
		u.update()
	case uartIER:
		if u.lcr&lcrDLAB != 0 {
			u.dlm = v
			return
		}
		old := u.ier
		u.ier = v & 0x0F
		if u.ier&ierTHRI != 0 && old&ierTHRI == 0 {
			u.thrPending = true // THR is always empty
		}
		u.update()
	case uartIIR:
		u.fcr = v &^ (fcrClrRX | 0x04)
		if v&fcrClrRX != 0 {
			u.rx = u.rx[:0]
		}
		u.update()
	case uartLCR:
		u.lcr = v
	case uartMCR:
		u.mcr = v & 0x1F
		u.update()
	case uartSCR:
		u.scr = v
	}
}

// OutputOnly reports whether a write to the data port does nothing but
// send a byte out (or set the divisor's low byte): no THRE interrupt that
// it would re-arm, no loopback into the receiver. A VMM may then take such
// writes late, as long as it keeps them in order with the UART's other
// accesses.
func (u *UART) OutputOnly() bool { return u.ier&ierTHRI == 0 && u.mcr&mcrLoop == 0 }

// iir returns the highest-priority pending interrupt, without FIFO bits.
func (u *UART) iir() byte {
	switch {
	case u.ier&ierRDI != 0 && len(u.rx) > 0:
		return iirRDI
	case u.ier&ierTHRI != 0 && u.thrPending:
		return iirTHRI
	}
	return iirNone
}

func (u *UART) update() {
	level := u.iir() != iirNone && u.mcr&mcrOUT2 != 0
	if level != u.irqLevel {
		u.irqLevel = level
		if u.IRQ != nil {
			u.IRQ(level)
		}
	}
}
