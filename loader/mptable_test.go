package loader

import (
	"encoding/binary"
	"slices"
	"strings"
	"testing"

	"kvmboot/realmode"
)

// mpMachine is what an OS learns from an MP table.
type mpMachine struct {
	cpus      []byte // local APIC IDs, in table order
	bsp       int    // index in cpus of the bootstrap processor, -1 for none
	buses     map[byte]string
	ioapics   map[byte]uint32 // ID -> address
	irqPin    map[byte]byte   // ISA IRQ -> I/O APIC pin (vectored interrupts)
	irqFlags  map[byte]uint16
	localInts map[byte]byte // interrupt type -> LINTIN pin, for all local APICs
}

// parseMP reads an MP table as an OS does: the floating pointer, then the
// configuration table at its address (given here as config), every
// checksum and length checked, the entries in the order the specification
// asks (processors, buses, I/O APICs, I/O then local interrupts).
func parseMP(t *testing.T, floating, config []byte) mpMachine {
	t.Helper()
	le := binary.LittleEndian
	if len(floating) != 16 || string(floating[:4]) != "_MP_" || floating[8] != 1 || floating[9] != 4 || -acpiChecksum(floating) != 0 {
		t.Fatalf("floating pointer % x", floating)
	}
	if le.Uint32(floating[4:]) != MPConfigAddr || floating[11] != 0 {
		t.Fatalf("floating pointer: table at %#x, feature bytes % x", le.Uint32(floating[4:]), floating[11:16])
	}
	if string(config[:4]) != "PCMP" || int(le.Uint16(config[4:])) != len(config) || config[6] != 4 || -acpiChecksum(config) != 0 {
		t.Fatalf("configuration table header % x (%d bytes)", config[:mpConfigHdrSize], len(config))
	}
	if le.Uint32(config[36:]) != ACPILocalAPICAddr || le.Uint16(config[40:]) != 0 {
		t.Fatalf("local APIC at %#x, extended table %d bytes", le.Uint32(config[36:]), le.Uint16(config[40:]))
	}
	m := mpMachine{bsp: -1, buses: map[byte]string{}, ioapics: map[byte]uint32{}, irqPin: map[byte]byte{}, irqFlags: map[byte]uint16{}, localInts: map[byte]byte{}}
	last := byte(0)
	e := config[mpConfigHdrSize:]
	for i := 0; i < int(le.Uint16(config[34:])); i++ {
		if len(e) == 0 {
			t.Fatalf("entry %d: the table ends", i)
		}
		if e[0] < last {
			t.Errorf("entry %d of type %d after one of type %d", i, e[0], last)
		}
		last = e[0]
		size := mpOtherSize
		if e[0] == mpProcessor {
			size = mpProcessorSize
		}
		if len(e) < size {
			t.Fatalf("entry %d of type %d: %d bytes left", i, e[0], len(e))
		}
		switch e[0] {
		case mpProcessor:
			if e[3]&mpCPUEnabled == 0 || e[2] != mpAPICVersion {
				t.Errorf("processor %d: flags %#x version %#x", e[1], e[3], e[2])
			}
			if e[3]&mpCPUBootstrap != 0 {
				if m.bsp >= 0 {
					t.Errorf("two bootstrap processors")
				}
				m.bsp = len(m.cpus)
			}
			m.cpus = append(m.cpus, e[1])
		case mpBus:
			m.buses[e[1]] = string(e[2:8])
		case mpIOAPIC:
			if e[3]&mpIOAPICOn == 0 {
				t.Errorf("I/O APIC %d disabled", e[1])
			}
			m.ioapics[e[1]] = le.Uint32(e[4:])
		case mpIOInt:
			if m.buses[e[4]] != "ISA   " || e[1] != mpIntINT {
				t.Errorf("I/O interrupt % x: not a vectored interrupt from the ISA bus", e[:8])
			}
			if _, ok := m.ioapics[e[6]]; !ok {
				t.Errorf("I/O interrupt % x: to no I/O APIC", e[:8])
			}
			if _, dup := m.irqPin[e[5]]; dup {
				t.Errorf("ISA IRQ %d assigned twice", e[5])
			}
			m.irqPin[e[5]], m.irqFlags[e[5]] = e[7], le.Uint16(e[2:])
		case mpLocalInt:
			if e[6] != mpAllLocal {
				t.Errorf("local interrupt % x: not for every local APIC", e[:8])
			}
			m.localInts[e[1]] = e[7]
		default:
			t.Fatalf("entry %d: unknown type %d", i, e[0])
		}
		e = e[size:]
	}
	if len(e) != 0 {
		t.Errorf("%d bytes after the last entry", len(e))
	}
	return m
}

// TestMPTable: the MP table lists the processors (the first the bootstrap
// processor), the ISA bus, the I/O APIC and a PC's interrupt wiring, the
// same machine as the MADT says, for 1 to 64 processors.
func TestMPTable(t *testing.T) {
	for _, cpus := range []int{1, 2, 4, 64} {
		p := Platform{Name: "test", CPUs: cpus}
		floating, config, err := MPTable(p)
		if err != nil {
			t.Fatalf("%d CPUs: %v", cpus, err)
		}
		m := parseMP(t, floating, config)
		if want := madtCPUs(t, p); !slices.Equal(m.cpus, want) || m.bsp != 0 {
			t.Errorf("%d CPUs: APIC IDs %v (bootstrap #%d), the MADT's %v", cpus, m.cpus, m.bsp, want)
		}
		if len(m.buses) != 1 || m.buses[mpISABus] != "ISA   " {
			t.Errorf("buses %q", m.buses)
		}
		if len(m.ioapics) != 1 || m.ioapics[0] != ACPIIOAPICAddr {
			t.Errorf("I/O APICs %#v", m.ioapics)
		}
		for irq := range byte(16) {
			pin, ok := m.irqPin[irq]
			switch {
			case irq == 2 && ok:
				t.Errorf("IRQ 2 (the cascade) assigned to pin %d", pin)
			case irq == 0 && pin != 2, irq != 0 && irq != 2 && pin != irq:
				t.Errorf("IRQ %d on pin %d (assigned %v)", irq, pin, ok)
			}
			if want := map[byte]uint16{9: madtLevelHigh}[irq]; m.irqFlags[irq] != want {
				t.Errorf("IRQ %d flags %#x, want %#x", irq, m.irqFlags[irq], want)
			}
		}
		if len(m.localInts) != 2 || m.localInts[mpIntExtINT] != 0 || m.localInts[mpIntNMI] != 1 {
			t.Errorf("local interrupts %v: want ExtINT on LINT0, NMI on LINT1", m.localInts)
		}
		if _, err := realmode.WithTables(realmode.ROMTables{MPFloating: floating, MPConfig: config}); err != nil {
			t.Errorf("%d CPUs: %v", cpus, err)
		}
	}
}

// madtCPUs are the local APIC IDs the MADT for p lists.
func madtCPUs(t *testing.T, p Platform) []byte {
	t.Helper()
	var ids []byte
	e := acpiMADTBody(p)[8:]
	for len(e) >= 2 && int(e[1]) <= len(e) && e[1] > 0 {
		if e[0] == madtLocalAPIC {
			ids = append(ids, e[3])
		}
		e = e[e[1]:]
	}
	return ids
}

func TestMPTableRefused(t *testing.T) {
	for _, tc := range []struct {
		cpus int
		want string
	}{{0, "0 processors"}, {ACPIMaxCPUs + 1, "256 processors"}, {ACPIMaxCPUs, "more than the firmware image's"}} {
		// The message states the platform's limit: its contract.
		if _, _, err := MPTable(Platform{Name: "test", CPUs: tc.cpus}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%d CPUs: %v, want an error saying %q", tc.cpus, err, tc.want)
		}
	}
}
