package loader

import (
	"encoding/binary"
	"fmt"

	"kvmboot/realmode"
)

// The Intel MultiProcessor table (MP specification 1.4, chapter 4): how
// an OS without ACPI (Linux with acpi=off, older kernels, small test
// kernels) finds the processors of a PC, its I/O APIC and its interrupt
// wiring. Both tables live in the firmware image's F segment
// (realmode.ROMTables): the 16-byte floating pointer where the
// specification's search finds it (realmode.MPFloatingOffset) and the
// configuration table it points at. They describe the same machine as
// the MADT (acpiMADTBody): processors with local APIC IDs 0 to CPUs-1,
// the first one the bootstrap processor; the I/O APIC (ID 0) at
// ACPIIOAPICAddr; ISA IRQ n on pin n but IRQ 0 on pin 2 and no IRQ 2
// (the cascade), the SCI's IRQ 9 level-triggered, active high; the 8259s
// on every local APIC's LINT0 (virtual wire mode, which the firmware sets
// up: no IMCR) and NMI on LINT1.

// MP table constants.
const (
	mpSpecRevision  = 4 // 1.4
	mpConfigHdrSize = 44
	mpProcessorSize = 20
	mpOtherSize     = 8 // bus, I/O APIC, interrupt assignments

	mpProcessor = 0
	mpBus       = 1
	mpIOAPIC    = 2
	mpIOInt     = 3
	mpLocalInt  = 4

	mpCPUEnabled   = 1
	mpCPUBootstrap = 2
	mpAPICVersion  = 0x14 // an integrated (xAPIC) local APIC, as KVM's and QEMU's report
	mpIOAPICVer    = 0x11 // as KVM's in-kernel I/O APIC reports (QEMU 7.2's says 0x20; Linux reads the register)
	mpIOAPICOn     = 1
	mpISABus       = 0
	mpIntINT       = 0 // a vectored interrupt
	mpIntNMI       = 1
	mpIntExtINT    = 3 // the 8259's
	mpAllLocal     = 0xFF
	mpISAIRQs      = 16
	mpISACascade   = 2
)

// mpOEMID and mpProductID name kvmboot in the configuration table's header.
const (
	mpOEMID     = "KVMBOOT "
	mpProductID = "PC          "
)

// MPConfigAddr is the guest address of the configuration table: the
// firmware image's slot in the F segment.
const MPConfigAddr = realmode.ROMBase + realmode.MPConfigOffset

// MPTable builds the MP floating pointer and the configuration table it
// points at (at MPConfigAddr) for p.
func MPTable(p Platform) (floating, config []byte, err error) {
	if p.CPUs < 1 || p.CPUs > ACPIMaxCPUs {
		return nil, nil, fmt.Errorf("MP table: %d processors, want 1 to %d", p.CPUs, ACPIMaxCPUs)
	}
	le := binary.LittleEndian
	var entries []byte
	n := 0
	add := func(e ...byte) {
		entries = append(entries, e...)
		n++
	}
	for i := range p.CPUs {
		flags := byte(mpCPUEnabled)
		if i == 0 {
			flags |= mpCPUBootstrap
		}
		// The CPU signature and feature flags stay 0: the processors'
		// CPUID is the backend's (KVM's, QEMU's CPU model), and an OS
		// reads CPUID itself.
		add(append([]byte{mpProcessor, byte(i), mpAPICVersion, flags}, make([]byte, 16)...)...)
	}
	add(mpBus, mpISABus, 'I', 'S', 'A', ' ', ' ', ' ')
	add(append([]byte{mpIOAPIC, 0, mpIOAPICVer, mpIOAPICOn}, le.AppendUint32(nil, ACPIIOAPICAddr)...)...)
	for irq := range byte(mpISAIRQs) {
		pin, flags := irq, uint16(0) // 0: as the ISA bus has it, edge-triggered, active high
		switch irq {
		case mpISACascade:
			continue
		case 0:
			pin = ioapicIRQ0Pin
		case acpiSCIIRQ:
			flags = madtLevelHigh // the same flags as the MADT's override
		}
		add(append(append([]byte{mpIOInt, mpIntINT}, le.AppendUint16(nil, flags)...), mpISABus, irq, 0, pin)...)
	}
	add(mpLocalInt, mpIntExtINT, 0, 0, mpISABus, 0, mpAllLocal, 0)
	add(mpLocalInt, mpIntNMI, 0, 0, mpISABus, 0, mpAllLocal, localNMIOnLINT1)

	config = make([]byte, mpConfigHdrSize, mpConfigHdrSize+len(entries))
	copy(config, "PCMP")
	le.PutUint16(config[4:], uint16(mpConfigHdrSize+len(entries)))
	config[6] = mpSpecRevision
	copy(config[8:16], mpOEMID)
	copy(config[16:28], mpProductID)
	le.PutUint16(config[34:], uint16(n))
	le.PutUint32(config[36:], ACPILocalAPICAddr)
	config = append(config, entries...)
	config[7] = acpiChecksum(config)
	if len(config) > realmode.MPConfigMax {
		return nil, nil, fmt.Errorf("MP table: %d processors need %d bytes, more than the firmware image's %d", p.CPUs, len(config), realmode.MPConfigMax)
	}

	floating = make([]byte, realmode.MPFloatingSize)
	copy(floating, "_MP_")
	le.PutUint32(floating[4:], MPConfigAddr)
	floating[8] = realmode.MPFloatingSize / 16
	floating[9] = mpSpecRevision
	// Feature bytes 1-5 zero: a configuration table is present, and the
	// machine runs in virtual wire mode (no IMCR).
	floating[10] = acpiChecksum(floating)
	return floating, config, nil
}
