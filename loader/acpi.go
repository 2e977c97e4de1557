package loader

import (
	"encoding/binary"
	"fmt"

	"kvmboot/loader/memmap"
	"kvmboot/realmode"
)

// ACPI tables for the machine a backend builds (ACPI 6.3; facts from the
// specification, chapter 5). Every plan reserves one page of RAM for them,
// ACPIRegion, marked ACPI (E820 type 3) at the top of good RAM below 4 GiB
// as PC firmware keeps its tables; the backend that runs the plan knows
// its machine and writes the tables there (ACPITables), and their root
// pointer (RSDP) into the F segment of its copy of the firmware image,
// where the standard search finds it (realmode.RSDPOffset). A machine
// without ACPI gets neither: the page stays zero and the search finds
// nothing.
//
// The machines are PCs: a local APIC per processor at ACPILocalAPICAddr,
// one I/O APIC (ID 0, 24 pins from GSI 0) at ACPIIOAPICAddr with ISA IRQ 0
// on pin 2, the 8259s, the fixed ACPI hardware of a PIIX4 at
// realmode.PMBase (PM1a event and control blocks, a 24-bit PM timer, the
// SCI on IRQ 9, level-triggered, active high), the reset register at
// 0xCF9, an RTC with a century byte, no VGA. The FADT is not
// hardware-reduced: Linux then drops the 8259s and the legacy IRQs, and
// the serial console's interrupt with them.

// Platform is what the tables say about a machine beyond what every
// machine here has.
type Platform struct {
	// Name identifies the machine in the tables' OEM table ID (up to 8
	// characters).
	Name string
	// CPUs is the number of processors: local APIC IDs and ACPI processor
	// UIDs 0 to CPUs-1. machine.ForPlatform takes the plan's.
	CPUs int
	// HPET is the machine's HPET at ACPIHPETAddr, nil when it has none.
	HPET *HPET
	// I8042 says the machine has an 8042 keyboard controller (ports 60h
	// and 64h).
	I8042 bool
	// PCI says the machine has a PCI host bridge (configuration mechanism
	// 1 at 0xCF8): the DSDT then describes it, bus 0 to 255, the I/O
	// ports but 0xCF8-0xCFF, the VGA window and the memory from the end
	// of RAM to the I/O APIC.
	PCI bool
}

// HPET describes an HPET.
type HPET struct {
	// BlockID is the event timer block ID: the low 32 bits of the HPET's
	// general capabilities register (revision, timers, counter size,
	// legacy routing, vendor).
	BlockID uint32
}

// Addresses of the devices the tables describe.
const (
	ACPILocalAPICAddr = 0xFEE00000
	ACPIIOAPICAddr    = 0xFEC00000
	ACPIHPETAddr      = 0xFED00000
)

// ACPITablesSize is the RAM reserved for the tables: enough for the
// largest Platform (ACPIMaxCPUs processors, an HPET).
const ACPITablesSize = 0x1000

// ACPIMaxCPUs is the most processors the tables describe: xAPIC IDs are 8
// bits and 0xFF is the broadcast ID.
const ACPIMaxCPUs = 255

// Table signatures and what the tables hold. OEM fields: kvmboot's.
const (
	acpiOEMID        = "KVMBT "
	acpiCreatorID    = "KVMB"
	acpiHeaderSize   = 36
	acpiRSDPRevision = 2 // ACPI 2.0 and later: XSDT
	acpiFACSSize     = 64
	acpiFADTSize     = 276 // ACPI 6.0 and later
	acpiHPETSize     = 56

	// FADT fields
	fadtFlagWBINVD      = 1 << 0
	fadtFlagC1          = 1 << 2
	fadtFlagPowerButton = 1 << 4 // none as a fixed feature
	fadtFlagSleepButton = 1 << 5 // likewise
	fadtFlagFixRTC      = 1 << 6 // no RTC wake status in PM1
	fadtFlagResetReg    = 1 << 10
	bootArchLegacy      = 1 << 0 // ISA devices (the serial ports)
	bootArch8042        = 1 << 1
	bootArchNoVGA       = 1 << 2
	acpiSCIIRQ          = 9
	acpiCenturyIndex    = 0x32 // RTC register of the century
	acpiResetPort       = 0xCF9
	acpiResetValue      = 0x06 // a hard reset
	gasSystemMemory     = 0
	gasSystemIO         = 1
	gasAccessByte       = 1

	// MADT entries
	madtPCATCompat   = 1 // the 8259s are there (and must be masked to use the I/O APIC)
	madtLocalAPIC    = 0
	madtIOAPIC       = 1
	madtOverride     = 2
	madtLocalNMI     = 4
	madtEnabled      = 1
	madtLevelHigh    = 0x000D // active high, level-triggered
	madtAllCPUs      = 0xFF
	ioapicIRQ0Pin    = 2
	localNMIOnLINT1  = 1
	madtHeaderSize   = acpiHeaderSize + 8
	madtLocalSize    = 8
	madtIOAPICSize   = 12
	madtOverrideSize = 10
	madtNMISize      = 6
)

// ACPISignatures are the tables ACPITables writes for p, in the order
// the RSDT and XSDT list them, then those the FADT points to.
func ACPISignatures(p Platform) []string {
	s := []string{"FACP", "APIC"}
	if p.HPET != nil {
		s = append(s, "HPET")
	}
	return append(s, "DSDT", "FACS")
}

// ACPITables builds the tables describing p, with memSize bytes of RAM
// from address 0, for the page at addr (a plan's ACPI page) and the RSDP
// that points at them (realmode.RSDPSize bytes, for the firmware image's
// F segment). Every pointer is 32-bit: the page must lie below 4 GiB.
func ACPITables(p Platform, addr, memSize uint64) (tables, rsdp []byte, err error) {
	switch {
	case p.CPUs < 1 || p.CPUs > ACPIMaxCPUs:
		return nil, nil, fmt.Errorf("ACPI tables: %d processors, want 1 to %d", p.CPUs, ACPIMaxCPUs)
	case len(p.Name) > 8:
		return nil, nil, fmt.Errorf("ACPI tables: machine name %q is longer than the 8 characters of an OEM table ID", p.Name)
	case addr%acpiFACSSize != 0 || addr+ACPITablesSize > 1<<32:
		return nil, nil, fmt.Errorf("ACPI tables at %#x: want a 64-byte aligned page below 4 GiB", addr)
	case p.PCI && memSize >= ACPIIOAPICAddr:
		return nil, nil, fmt.Errorf("ACPI tables: %s of RAM leaves no PCI memory below the I/O APIC", memmap.FormatSize(memSize))
	}
	w := &acpiWriter{p: p, base: addr}
	facs := w.add(acpiFACS())
	dsdt := w.add(w.table("DSDT", 2, acpiDSDTBody(p, memSize)))
	listed := []uint32{
		w.add(w.table("FACP", 6, acpiFADTBody(p, facs, dsdt))),
		w.add(w.table("APIC", 5, acpiMADTBody(p))),
	}
	if p.HPET != nil {
		listed = append(listed, w.add(w.table("HPET", 1, acpiHPETBody(*p.HPET))))
	}
	rsdt := make([]byte, 0, 4*len(listed))
	xsdt := make([]byte, 0, 8*len(listed))
	for _, a := range listed {
		rsdt = binary.LittleEndian.AppendUint32(rsdt, a)
		xsdt = binary.LittleEndian.AppendUint64(xsdt, uint64(a))
	}
	rsdtAt := w.add(w.table("RSDT", 1, rsdt))
	xsdtAt := w.add(w.table("XSDT", 1, xsdt))
	if len(w.b) > ACPITablesSize {
		return nil, nil, fmt.Errorf("ACPI tables: %d bytes, more than the %d reserved", len(w.b), ACPITablesSize)
	}
	return w.b, acpiRSDP(rsdtAt, xsdtAt), nil
}

// acpiWriter lays tables out one after another from base.
type acpiWriter struct {
	p    Platform
	base uint64
	b    []byte
}

// add appends a table 16-byte aligned (the FACS, first, is 64-byte
// aligned with the page) and returns its guest address.
func (w *acpiWriter) add(t []byte) uint32 {
	for len(w.b)%16 != 0 {
		w.b = append(w.b, 0)
	}
	at := uint32(w.base) + uint32(len(w.b))
	w.b = append(w.b, t...)
	return at
}

// table is a system description table: the common header (its checksum
// making the whole table sum to 0), then body.
func (w *acpiWriter) table(sig string, revision byte, body []byte) []byte {
	t := make([]byte, acpiHeaderSize, acpiHeaderSize+len(body))
	copy(t, sig)
	binary.LittleEndian.PutUint32(t[4:], uint32(acpiHeaderSize+len(body)))
	t[8] = revision
	copy(t[10:16], acpiOEMID)
	copy(t[16:24], fmt.Sprintf("%-8s", w.p.Name))
	binary.LittleEndian.PutUint32(t[24:], 1) // OEM revision
	copy(t[28:32], acpiCreatorID)
	binary.LittleEndian.PutUint32(t[32:], 1) // creator revision
	t = append(t, body...)
	t[9] = acpiChecksum(t)
	return t
}

// acpiChecksum is the byte that makes b sum to 0 (mod 256).
func acpiChecksum(b []byte) byte {
	var sum byte
	for _, c := range b {
		sum += c
	}
	return -sum
}

// acpiRSDP is the root pointer: revision 2, with both the RSDT and the
// XSDT; its first 20 bytes and all 36 each sum to 0.
func acpiRSDP(rsdt, xsdt uint32) []byte {
	b := make([]byte, realmode.RSDPSize)
	copy(b, "RSD PTR ")
	copy(b[9:15], acpiOEMID)
	b[15] = acpiRSDPRevision
	binary.LittleEndian.PutUint32(b[16:], rsdt)
	binary.LittleEndian.PutUint32(b[20:], realmode.RSDPSize)
	binary.LittleEndian.PutUint64(b[24:], uint64(xsdt))
	b[8] = acpiChecksum(b[:20])
	b[32] = acpiChecksum(b)
	return b
}

// acpiFACS is the firmware ACPI control structure: no waking vector, the
// global lock free. It has no checksum.
func acpiFACS() []byte {
	b := make([]byte, acpiFACSSize)
	copy(b, "FACS")
	binary.LittleEndian.PutUint32(b[4:], acpiFACSSize)
	b[32] = 2 // version
	return b
}

// AML opcodes (ACPI 6.3, 20.3).
const (
	amlZero      = 0x00
	amlName      = 0x08
	amlDWord     = 0x0C
	amlScope     = 0x10
	amlBuffer    = 0x11
	amlPackage   = 0x12
	amlWord      = 0x0B
	amlExtPrefix = 0x5B
	amlDevice    = 0x82 // after amlExtPrefix
	amlRoot      = '\\'
)

// acpiDSDTBody is the DSDT's AML:
//
//	Name (_S5, Package (4) {0, 0, 0, 0})   soft-off is SLP_TYP 0 in
//	                                        PM1a_CNT, as on a PIIX4
//	Scope (\_SB) { Device (PCI0) {...} }   with p.PCI: acpiPCI0
func acpiDSDTBody(p Platform, memSize uint64) []byte {
	b := []byte{amlName, '_', 'S', '5', '_', amlPackage, 0x06, 0x04, amlZero, amlZero, amlZero, amlZero}
	if p.PCI {
		b = append(b, amlScope)
		b = append(b, amlPkg(append([]byte{amlRoot, '_', 'S', 'B', '_'}, acpiPCI0(memSize)...))...)
	}
	return b
}

// amlPkg is body behind its PkgLength, which counts itself (one byte up
// to 63 bytes in all, else two: 12 bits).
func amlPkg(body []byte) []byte {
	if n := len(body) + 1; n < 0x40 {
		return append([]byte{byte(n)}, body...)
	}
	n := len(body) + 2
	return append([]byte{0x40 | byte(n&0x0F), byte(n >> 4)}, body...)
}

// acpiPCI0 is the PCI host bridge of a PC, as an OS needs it to scan bus 0:
//
//	Device (PCI0) {
//	    Name (_HID, EisaId ("PNP0A03"))
//	    Name (_UID, 0)
//	    Name (_CRS, ResourceTemplate () {
//	        WordBusNumber  0-0xFF
//	        IO             0xCF8, 8 bytes (configuration ports, consumed)
//	        WordIO         0-0xCF7, 0xD00-0xFFFF
//	        DWordMemory    0xA0000-0xBFFFF (VGA window)
//	        DWordMemory    memSize-0xFEBFFFFF (below the I/O APIC)
//	    })
//	}
func acpiPCI0(memSize uint64) []byte {
	le := binary.LittleEndian
	// Address space descriptors: large item, length, type, flags (the
	// bridge produces it, min and max fixed), type-specific flags, then
	// granularity, min, max, translation and length in words or dwords.
	word := func(typ, specific byte, min, max uint16) []byte {
		b := []byte{0x88, 13, 0, typ, 0x0C, specific, 0, 0}
		for _, v := range []uint16{min, max, 0, max - min + 1} {
			b = le.AppendUint16(b, v)
		}
		return b
	}
	dword := func(specific byte, min, max uint32) []byte {
		b := []byte{0x87, 23, 0, 0, 0x0C, specific, 0, 0, 0, 0}
		for _, v := range []uint32{min, max, 0, max - min + 1} {
			b = le.AppendUint32(b, v)
		}
		return b
	}
	const ioEntireRange, memCacheableRW, memUncachedRW = 3, 0x03, 0x01
	var crs []byte
	crs = append(crs, word(2, 0, 0, 0xFF)...)                         // bus numbers
	crs = append(crs, 0x47, 0x01, 0xF8, 0x0C, 0xF8, 0x0C, 0x01, 0x08) // IO (Decode16, 0xCF8, 0xCF8, 1, 8)
	crs = append(crs, word(1, ioEntireRange, 0, 0xCF7)...)
	crs = append(crs, word(1, ioEntireRange, 0xD00, 0xFFFF)...)
	crs = append(crs, dword(memCacheableRW, 0xA0000, 0xBFFFF)...)
	crs = append(crs, dword(memUncachedRW, uint32(memSize), ACPIIOAPICAddr-1)...)
	crs = append(crs, 0x79, 0) // end tag, no checksum
	buf := append([]byte{amlWord}, le.AppendUint16(nil, uint16(len(crs)))...)
	dev := []byte{'P', 'C', 'I', '0'}
	dev = append(dev, amlName, '_', 'H', 'I', 'D', amlDWord, 0x41, 0xD0, 0x0A, 0x03) // EisaId ("PNP0A03")
	dev = append(dev, amlName, '_', 'U', 'I', 'D', amlZero)
	dev = append(dev, amlName, '_', 'C', 'R', 'S', amlBuffer)
	dev = append(dev, amlPkg(append(buf, crs...))...)
	return append([]byte{amlExtPrefix, amlDevice}, amlPkg(dev)...)
}

// gas is a generic address structure.
func gas(space, bits, access byte, addr uint64) []byte {
	b := []byte{space, bits, 0, access, 0, 0, 0, 0, 0, 0, 0, 0}
	binary.LittleEndian.PutUint64(b[4:], addr)
	return b
}

// acpiFADTBody is the FADT after its header: the PM block at
// realmode.PMBase, SCI on IRQ 9, no SMI command port (the firmware hands
// over in ACPI mode), no C2/C3, the reset register, the boot flags of p.
func acpiFADTBody(p Platform, facs, dsdt uint32) []byte {
	b := make([]byte, acpiFADTSize-acpiHeaderSize)
	le := binary.LittleEndian
	at := func(off int) []byte { return b[off-acpiHeaderSize:] }
	le.PutUint32(at(36), facs)
	le.PutUint32(at(40), dsdt)
	le.PutUint16(at(46), acpiSCIIRQ)
	le.PutUint32(at(56), realmode.PMBase)   // PM1a_EVT_BLK
	le.PutUint32(at(64), realmode.PMBase+4) // PM1a_CNT_BLK
	le.PutUint32(at(76), realmode.PMBase+8) // PM_TMR_BLK
	at(88)[0] = 4                           // PM1_EVT_LEN
	at(89)[0] = 2                           // PM1_CNT_LEN
	at(91)[0] = 4                           // PM_TMR_LEN
	le.PutUint16(at(96), 0x0FFF)            // P_LVL2_LAT: no C2
	le.PutUint16(at(98), 0x0FFF)            // P_LVL3_LAT: no C3
	at(108)[0] = acpiCenturyIndex
	boot := uint16(bootArchLegacy | bootArchNoVGA)
	if p.I8042 {
		boot |= bootArch8042
	}
	le.PutUint16(at(109), boot)
	le.PutUint32(at(112), fadtFlagWBINVD|fadtFlagC1|fadtFlagPowerButton|fadtFlagSleepButton|fadtFlagFixRTC|fadtFlagResetReg)
	copy(at(116), gas(gasSystemIO, 8, gasAccessByte, acpiResetPort))
	at(128)[0] = acpiResetValue
	at(131)[0] = 3 // FADT minor version: ACPI 6.3
	le.PutUint64(at(140), uint64(dsdt))
	copy(at(148), gas(gasSystemIO, 32, 0, realmode.PMBase))   // X_PM1a_EVT_BLK
	copy(at(172), gas(gasSystemIO, 16, 0, realmode.PMBase+4)) // X_PM1a_CNT_BLK
	copy(at(208), gas(gasSystemIO, 32, 0, realmode.PMBase+8)) // X_PM_TMR_BLK
	return b
}

// acpiMADTBody is the MADT after its header: the local APICs, the I/O
// APIC, ISA IRQ 0 on GSI 2 and the SCI level-triggered, NMI on every
// processor's LINT1.
func acpiMADTBody(p Platform) []byte {
	le := binary.LittleEndian
	b := le.AppendUint32(nil, ACPILocalAPICAddr)
	b = le.AppendUint32(b, madtPCATCompat)
	for i := range p.CPUs {
		b = append(b, madtLocalAPIC, madtLocalSize, byte(i), byte(i))
		b = le.AppendUint32(b, madtEnabled)
	}
	b = append(b, madtIOAPIC, madtIOAPICSize, 0, 0)
	b = le.AppendUint32(b, ACPIIOAPICAddr)
	b = le.AppendUint32(b, 0) // GSI base
	for _, o := range []struct {
		irq   byte
		gsi   uint32
		flags uint16
	}{{0, ioapicIRQ0Pin, 0}, {acpiSCIIRQ, acpiSCIIRQ, madtLevelHigh}} {
		b = append(b, madtOverride, madtOverrideSize, 0, o.irq)
		b = le.AppendUint32(b, o.gsi)
		b = le.AppendUint16(b, o.flags)
	}
	b = append(b, madtLocalNMI, madtNMISize, madtAllCPUs, 0, 0, localNMIOnLINT1)
	return b
}

// acpiHPETBody is the HPET table after its header: block ID, the
// registers at ACPIHPETAddr, HPET number 0, no minimum tick, no page
// protection.
func acpiHPETBody(h HPET) []byte {
	b := binary.LittleEndian.AppendUint32(nil, h.BlockID)
	b = append(b, gas(gasSystemMemory, 64, 0, ACPIHPETAddr)...)
	return append(b, 0, 0, 0, 0)
}

// ReserveACPI marks the page the ACPI tables live in as KindACPI: the
// highest good RAM page below 4 GiB, where PC firmware keeps its tables
// (in conventional memory above the stub only when all RAM above 1 MiB is
// bad). Build calls it for every plan, before anything is placed.
func ReserveACPI(m *memmap.Map) (memmap.Range, error) {
	at, _, err := NewAllocator(m).Find(Request{What: "ACPI tables", Size: ACPITablesSize, Align: ACPITablesSize, Min: lowInfoMin, Max: 1 << 32, Policy: PolicyHighest})
	if err != nil {
		return memmap.Range{}, err
	}
	r := memmap.Range{Start: at, End: at + ACPITablesSize}
	m.Set(r, memmap.KindACPI)
	return r, nil
}
