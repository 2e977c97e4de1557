package loader

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"testing"

	"kvmboot/loader/memmap"
	"kvmboot/realmode"
)

// acpiImage is guest memory holding the tables of ACPITables at base.
type acpiImage struct {
	base   uint64
	tables []byte
}

// at returns n bytes at guest address a, failing the test when they are
// outside the tables' bytes.
func (m acpiImage) at(t *testing.T, what string, a uint64, n int) []byte {
	t.Helper()
	if a < m.base || a+uint64(n) > m.base+uint64(len(m.tables)) {
		t.Fatalf("%s at %#x+%#x lies outside the tables %#x+%#x", what, a, n, m.base, len(m.tables))
	}
	return m.tables[a-m.base : a-m.base+uint64(n)]
}

// table reads the table at a: its header checked (length, checksum) and
// its signature returned with it.
func (m acpiImage) table(t *testing.T, a uint64) (string, []byte) {
	t.Helper()
	hdr := m.at(t, "table header", a, acpiHeaderSize)
	n := binary.LittleEndian.Uint32(hdr[4:])
	tb := m.at(t, string(hdr[:4]), a, int(n))
	if sum := -acpiChecksum(tb); sum != 0 {
		t.Errorf("%s at %#x: bytes sum to %#x, not 0", hdr[:4], a, sum)
	}
	if string(tb[10:16]) != acpiOEMID || string(tb[28:32]) != acpiCreatorID {
		t.Errorf("%s: OEM %q creator %q", hdr[:4], tb[10:16], tb[28:32])
	}
	return string(hdr[:4]), tb
}

// parseACPI walks the tables from the RSDP as an OS does and returns every
// table by signature (the FACS included), checking every checksum, that
// the RSDT and XSDT list the same tables, and that the FADT's 32- and
// 64-bit DSDT pointers agree.
func parseACPI(t *testing.T, m acpiImage, rsdp []byte) map[string][]byte {
	t.Helper()
	le := binary.LittleEndian
	if len(rsdp) != realmode.RSDPSize || string(rsdp[:8]) != "RSD PTR " || rsdp[15] != 2 || le.Uint32(rsdp[20:]) != realmode.RSDPSize {
		t.Fatalf("RSDP % x", rsdp)
	}
	if -acpiChecksum(rsdp[:20]) != 0 || -acpiChecksum(rsdp) != 0 {
		t.Fatalf("RSDP checksums: % x", rsdp)
	}
	found := map[string][]byte{}
	var lists [2][]uint64
	for i, root := range []struct {
		sig   string
		addr  uint64
		entry int
	}{{"RSDT", uint64(le.Uint32(rsdp[16:])), 4}, {"XSDT", le.Uint64(rsdp[24:]), 8}} {
		sig, tb := m.table(t, root.addr)
		if sig != root.sig || (len(tb)-acpiHeaderSize)%root.entry != 0 {
			t.Fatalf("root table %s (%d bytes), want %s", sig, len(tb), root.sig)
		}
		for o := acpiHeaderSize; o < len(tb); o += root.entry {
			a := uint64(le.Uint32(tb[o:]))
			if root.entry == 8 {
				a = le.Uint64(tb[o:])
			}
			lists[i] = append(lists[i], a)
		}
	}
	if !slices.Equal(lists[0], lists[1]) {
		t.Errorf("RSDT lists %#x, XSDT %#x", lists[0], lists[1])
	}
	for _, a := range lists[0] {
		sig, tb := m.table(t, a)
		if found[sig] != nil {
			t.Errorf("two %s tables", sig)
		}
		found[sig] = tb
	}
	fadt := found["FACP"]
	if fadt == nil {
		t.Fatal("no FADT")
	}
	dsdt := le.Uint32(fadt[40:])
	if uint64(dsdt) != le.Uint64(fadt[140:]) {
		t.Errorf("FADT: DSDT %#x, X_DSDT %#x", dsdt, le.Uint64(fadt[140:]))
	}
	if sig, tb := m.table(t, uint64(dsdt)); sig == "DSDT" {
		found[sig] = tb
	}
	facs := uint64(le.Uint32(fadt[36:]))
	if f := m.at(t, "FACS", facs, acpiFACSSize); facs%64 == 0 && string(f[:4]) == "FACS" && le.Uint32(f[4:]) == acpiFACSSize {
		found["FACS"] = f
	}
	return found
}

// madtEntry is one entry of the MADT's list.
type madtEntry struct {
	typ  byte
	body []byte // after type and length
}

func madtEntries(t *testing.T, madt []byte) []madtEntry {
	t.Helper()
	var out []madtEntry
	for o := madtHeaderSize; o < len(madt); {
		if o+2 > len(madt) || madt[o+1] < 2 || o+int(madt[o+1]) > len(madt) {
			t.Fatalf("MADT entry at %d runs past the table (%d bytes)", o, len(madt))
		}
		out = append(out, madtEntry{madt[o], madt[o+2 : o+int(madt[o+1])]})
		o += int(madt[o+1])
	}
	return out
}

func TestACPITables(t *testing.T) {
	qemuPC := Platform{Name: "qemu-pc", CPUs: 1, HPET: &HPET{BlockID: 0x8086A201}, I8042: true, PCI: true}
	for _, tc := range []struct {
		name string
		p    Platform
		at   uint64
	}{
		{"kvm", Platform{Name: "kvm", CPUs: 1}, 256<<20 - ACPITablesSize},
		{"qemu-pc", qemuPC, 0x3fff000},
		{"255 CPUs", Platform{Name: "big", CPUs: ACPIMaxCPUs, HPET: qemuPC.HPET, PCI: true}, 0xBFFFF000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := tc.at + ACPITablesSize
			tables, rsdp, err := ACPITables(tc.p, tc.at, mem)
			if err != nil {
				t.Fatal(err)
			}
			if len(tables) > ACPITablesSize {
				t.Fatalf("%d bytes of tables", len(tables))
			}
			found := parseACPI(t, acpiImage{tc.at, tables}, rsdp)
			var sigs []string
			for s := range found {
				sigs = append(sigs, s)
			}
			want := ACPISignatures(tc.p)
			slices.Sort(sigs)
			slices.Sort(want)
			if !slices.Equal(sigs, want) {
				t.Fatalf("tables %v, want %v", sigs, want)
			}
			for s, tb := range found {
				if s != "FACS" && !bytes.Equal(tb[16:24], []byte(fmt.Sprintf("%-8s", tc.p.Name))) {
					t.Errorf("%s: OEM table ID %q", s, tb[16:24])
				}
			}
			checkFADT(t, found["FACP"], tc.p)
			checkMADT(t, found["APIC"], tc.p)
			if h := found["HPET"]; h != nil {
				le := binary.LittleEndian
				if len(h) != acpiHPETSize || le.Uint32(h[36:]) != tc.p.HPET.BlockID || h[40] != gasSystemMemory || le.Uint64(h[44:]) != ACPIHPETAddr {
					t.Errorf("HPET table % x", h)
				}
			}
			checkDSDT(t, found["DSDT"][acpiHeaderSize:], tc.p, mem)
		})
	}
}

// amlPkgBody reads a PkgLength at b and returns what it covers after
// itself, failing unless that is all of b.
func amlPkgBody(t *testing.T, b []byte) []byte {
	t.Helper()
	n, hdr := int(b[0]&0x3F), 1
	if b[0]>>6 == 1 {
		n, hdr = int(b[0]&0x0F)|int(b[1])<<4, 2
	}
	if b[0]>>6 > 1 || n != len(b) {
		t.Fatalf("PkgLength % x says %d bytes, %d follow", b[:hdr], n, len(b))
	}
	return b[hdr:]
}

// checkDSDT reads the DSDT's AML: _S5, then with p.PCI the \_SB scope
// holding PCI0, whose _CRS resource template is walked to its end tag.
func checkDSDT(t *testing.T, aml []byte, p Platform, memSize uint64) {
	t.Helper()
	s5 := []byte{0x08, '_', 'S', '5', '_', 0x12, 0x06, 0x04, 0, 0, 0, 0} // soft-off is SLP_TYP 0
	if !bytes.HasPrefix(aml, s5) {
		t.Fatalf("DSDT AML % x: no _S5 package first", aml)
	}
	rest := aml[len(s5):]
	if !p.PCI {
		if len(rest) != 0 {
			t.Errorf("DSDT of a machine without PCI goes on: % x", rest)
		}
		return
	}
	if rest[0] != amlScope {
		t.Fatalf("after _S5: % x", rest)
	}
	scope := amlPkgBody(t, rest[1:])
	if !bytes.HasPrefix(scope, []byte("\\_SB_\x5b\x82")) {
		t.Fatalf("scope % x", scope)
	}
	dev := amlPkgBody(t, scope[7:])
	hid := []byte("PCI0\x08_HID\x0c\x41\xd0\x0a\x03\x08_UID\x00\x08_CRS\x11")
	if !bytes.HasPrefix(dev, hid) {
		t.Fatalf("PCI0 % x", dev)
	}
	buf := amlPkgBody(t, dev[len(hid):])
	le := binary.LittleEndian
	if buf[0] != amlWord || int(le.Uint16(buf[1:])) != len(buf)-3 {
		t.Fatalf("_CRS buffer size % x for %d bytes", buf[:3], len(buf)-3)
	}
	var got []string
	for r := buf[3:]; ; {
		if r[0]&0x80 == 0 { // small item: type in bits 3-6, length in 0-2
			typ, n := r[0]>>3&0x0F, int(r[0]&7)
			if typ == 0x0F {
				if n != 1 || len(r) != 2 {
					t.Errorf("end tag % x", r)
				}
				break
			}
			if typ == 0x08 {
				got = append(got, fmt.Sprintf("io %#x+%d", le.Uint16(r[2:]), r[7]))
			}
			r = r[1+n:]
			continue
		}
		n := int(le.Uint16(r[1:]))
		switch r[0] {
		case 0x88:
			got = append(got, fmt.Sprintf("%s %#x-%#x len %#x", map[byte]string{1: "io", 2: "bus"}[r[3]], le.Uint16(r[8:]), le.Uint16(r[10:]), le.Uint16(r[14:])))
		case 0x87:
			got = append(got, fmt.Sprintf("mem %#x-%#x len %#x", le.Uint32(r[10:]), le.Uint32(r[14:]), le.Uint32(r[22:])))
		}
		r = r[3+n:]
	}
	want := []string{"bus 0x0-0xff len 0x100", "io 0xcf8+8", "io 0x0-0xcf7 len 0xcf8", "io 0xd00-0xffff len 0xf300",
		"mem 0xa0000-0xbffff len 0x20000", fmt.Sprintf("mem %#x-0xfebfffff len %#x", memSize, ACPIIOAPICAddr-memSize)}
	if !slices.Equal(got, want) {
		t.Errorf("PCI0._CRS:\n got  %q\n want %q", got, want)
	}
}

func checkFADT(t *testing.T, f []byte, p Platform) {
	t.Helper()
	le := binary.LittleEndian
	if len(f) != acpiFADTSize || f[8] != 6 {
		t.Fatalf("FADT: %d bytes, revision %d", len(f), f[8])
	}
	for _, c := range []struct {
		what      string
		got, want uint64
	}{
		{"SCI_INT", uint64(le.Uint16(f[46:])), 9},
		{"SMI_CMD", uint64(le.Uint32(f[48:])), 0}, // handed over in ACPI mode
		{"PM1a_EVT_BLK", uint64(le.Uint32(f[56:])), realmode.PMBase},
		{"PM1a_CNT_BLK", uint64(le.Uint32(f[64:])), realmode.PMBase + 4},
		{"PM_TMR_BLK", uint64(le.Uint32(f[76:])), realmode.PMBase + 8},
		{"PM1_EVT_LEN", uint64(f[88]), 4},
		{"PM1_CNT_LEN", uint64(f[89]), 2},
		{"PM_TMR_LEN", uint64(f[91]), 4},
		{"X_PM1a_EVT_BLK", le.Uint64(f[152:]), realmode.PMBase},
		{"X_PM1a_EVT_BLK width", uint64(f[149]), 32},
		{"X_PM1a_CNT_BLK", le.Uint64(f[176:]), realmode.PMBase + 4},
		{"X_PM1a_CNT_BLK width", uint64(f[173]), 16},
		{"X_PM_TMR_BLK", le.Uint64(f[212:]), realmode.PMBase + 8},
		{"X_PM_TMR_BLK width", uint64(f[209]), 32},
		{"reset register", le.Uint64(f[120:]), 0xCF9},
		{"reset value", uint64(f[128]), 6},
		{"century", uint64(f[108]), 0x32},
		{"hardware-reduced flag", uint64(le.Uint32(f[112:]) >> 20 & 1), 0},
		{"reset-register flag", uint64(le.Uint32(f[112:]) >> 10 & 1), 1},
		{"24-bit PM timer", uint64(le.Uint32(f[112:]) >> 8 & 1), 0},
		{"8042 boot flag", uint64(le.Uint16(f[109:]) >> 1 & 1), uint64(b2u(p.I8042))},
		{"no-VGA boot flag", uint64(le.Uint16(f[109:]) >> 2 & 1), 1},
	} {
		if c.got != c.want {
			t.Errorf("FADT %s = %#x, want %#x", c.what, c.got, c.want)
		}
	}
}

func b2u(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

func checkMADT(t *testing.T, m []byte, p Platform) {
	t.Helper()
	le := binary.LittleEndian
	if le.Uint32(m[36:]) != ACPILocalAPICAddr || le.Uint32(m[40:]) != madtPCATCompat {
		t.Errorf("MADT: local APIC %#x flags %#x", le.Uint32(m[36:]), le.Uint32(m[40:]))
	}
	var cpus []byte
	var ioapics, overrides, nmis []string
	for _, e := range madtEntries(t, m) {
		switch e.typ {
		case madtLocalAPIC:
			if e.body[0] != e.body[1] || le.Uint32(e.body[2:]) != madtEnabled {
				t.Errorf("local APIC entry % x", e.body)
			}
			cpus = append(cpus, e.body[1])
		case madtIOAPIC:
			ioapics = append(ioapics, fmt.Sprintf("id %d at %#x from GSI %d", e.body[0], le.Uint32(e.body[2:]), le.Uint32(e.body[6:])))
		case madtOverride:
			overrides = append(overrides, fmt.Sprintf("bus %d IRQ %d -> GSI %d flags %#x", e.body[0], e.body[1], le.Uint32(e.body[2:]), le.Uint16(e.body[6:])))
		case madtLocalNMI:
			nmis = append(nmis, fmt.Sprintf("cpu %#x flags %#x LINT%d", e.body[0], le.Uint16(e.body[1:]), e.body[3]))
		default:
			t.Errorf("MADT entry of type %d", e.typ)
		}
	}
	for i, id := range cpus {
		if int(id) != i {
			t.Errorf("processor %d has APIC ID %d", i, id)
		}
	}
	got := fmt.Sprintf("%d CPUs; %s; %s; %s", len(cpus), strings.Join(ioapics, ", "), strings.Join(overrides, ", "), strings.Join(nmis, ", "))
	want := fmt.Sprintf("%d CPUs; id 0 at 0xfec00000 from GSI 0; bus 0 IRQ 0 -> GSI 2 flags 0x0, bus 0 IRQ 9 -> GSI 9 flags 0xd; cpu 0xff flags 0x0 LINT1", p.CPUs)
	if got != want {
		t.Errorf("MADT:\n got  %s\n want %s", got, want)
	}
}

func TestACPITablesRefused(t *testing.T) {
	for _, tc := range []struct {
		p    Platform
		at   uint64
		want string
	}{
		{Platform{Name: "x", CPUs: 0}, 0x100000, "0 processors"},
		{Platform{Name: "x", CPUs: ACPIMaxCPUs + 1}, 0x100000, "256 processors"},
		{Platform{Name: "longer than eight", CPUs: 1}, 0x100000, "8 characters"},
		{Platform{Name: "x", CPUs: 1}, 0x100010, "aligned"},
		{Platform{Name: "x", CPUs: 1}, 1 << 32, "below 4 GiB"},
	} {
		// The message states the platform's limit: its contract.
		if _, _, err := ACPITables(tc.p, tc.at, 64<<20); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v at %#x: %v, want %q", tc.p, tc.at, err, tc.want)
		}
	}
	// The message states the platform's limit: its contract.
	if _, _, err := ACPITables(Platform{Name: "x", CPUs: 1, PCI: true}, 0x100000, ACPIIOAPICAddr); err == nil || !strings.Contains(err.Error(), "no PCI memory") {
		t.Errorf("RAM up to the I/O APIC with PCI: %v", err)
	}
}

// TestReserveACPI: the tables take the highest good page, below the bad
// RAM at the top, and nothing when there is no good page above the stub.
func TestReserveACPI(t *testing.T) {
	for _, tc := range []struct {
		mem  uint64
		bad  []memmap.Range
		want memmap.Range
	}{
		{64 << 20, nil, memmap.Range{Start: 64<<20 - 0x1000, End: 64 << 20}},
		{64 << 20, []memmap.Range{{Start: 60 << 20, End: 64 << 20}}, memmap.Range{Start: 60<<20 - 0x1000, End: 60 << 20}},
		{64 << 20, []memmap.Range{{Start: 64<<20 - 1, End: 64 << 20}}, memmap.Range{Start: 64<<20 - 0x2000, End: 64<<20 - 0x1000}},
		// All RAM above 1 MiB bad: below the EBDA.
		{64 << 20, []memmap.Range{{Start: 1 << 20, End: 64 << 20}}, memmap.Range{Start: 0x9E000, End: 0x9F000}},
	} {
		m := memmap.NewWithBadRAM(tc.mem, FirmwareHigh, tc.bad)
		MarkBIOSAreas(m)
		r, err := ReserveACPI(m)
		if err != nil || r != tc.want || !m.IsAll(r, memmap.KindACPI) {
			t.Errorf("mem %s bad %v: %v %v, map %v; want %v", memmap.FormatSize(tc.mem), tc.bad, r, err, m.Regions(), tc.want)
		}
	}
	if r, err := ReserveACPI(memmap.NewWithBadRAM(64<<20, FirmwareHigh, []memmap.Range{{Start: 0x8000, End: 64 << 20}})); err == nil {
		t.Errorf("all RAM above the stub bad: got %v", r)
	}
}
