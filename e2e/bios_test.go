package e2e

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"kvmboot/loader"
	"kvmboot/loader/memmap"
	"kvmboot/machine"
	"kvmboot/machine/kvm"
	"kvmboot/machine/qemu"
	"kvmboot/realmode"
)

// The BIOS test programs (e2e/biostest, built by scripts/build-biostest.sh):
// raw real-mode blobs that the stub far-jumps to, which call the BIOS's
// services with good and bad inputs and print one `bt: ` line per call.
// The expected lines come from the tables (loader.BIOSTables) and the
// loader's models of each service, so a line that differs is a disagreement
// between the assembly and its Go model, on either backend.
var (
	//go:embed biostest/services.bin
	btServices []byte
	//go:embed biostest/disk.bin
	btDisk []byte
	//go:embed biostest/boot19.bin
	btBoot19 []byte
)

const (
	btSeg     = 0x1000 // the programs run at btSeg:0, DS=ES=SS=btSeg
	btSP      = 0xFFF0
	btMem     = 64 << 20
	btHigh    = 0x200000 // services.S: the int 15h AH=87h source
	btDiskAt  = 0x800000
	btDiskLen = 2048*512 + 300 // a partial last sector: 2049 sectors
	btSMAP    = loader.E820Signature
)

// btBadRAM makes E820 show a type 5 entry.
var btBadRAM = []memmap.Range{{Start: 16 << 20, End: 17 << 20}}

type btBackend struct {
	name string
	b    machine.Backend
	need func(testing.TB)
}

func btBackends() []btBackend {
	return []btBackend{
		{"kvm", kvm.Backend{}, requireKVM},
		{"qemu", qemu.Backend{}, requireQEMU},
	}
}

// btPlan builds the plan for a test program by hand, as a loader would:
// the memory map with the EBDA reserved, the BIOS tables, the program, the
// optional disk image and extra pieces, and a real-mode entry.
// With noTables the plan leaves the tables out, as a loader that knows
// nothing of the BIOS would: the handlers must then answer "nothing here".
func btPlan(t *testing.T, prog []byte, disk []byte, noTables bool, extra ...loader.Placement) (*loader.Plan, []byte) {
	t.Helper()
	m := memmap.New(btMem, loader.FirmwareHigh)
	loader.MarkBIOSAreas(m)
	for _, b := range btBadRAM {
		m.Set(b, memmap.KindBad)
	}
	var d *loader.Disk
	if disk != nil {
		d = &loader.Disk{Addr: btDiskAt, Size: uint64(len(disk))}
	}
	tables, err := loader.BIOSTables(m, btMem, d)
	if err != nil {
		t.Fatal(err)
	}
	plan := &loader.Plan{
		Kernel:  loader.KernelInfo{Path: "(bios test)", Format: "raw", Protocol: "realmode"},
		MemSize: btMem,
		Map:     m,
		Placements: append([]loader.Placement{
			loader.BIOSTablesPlacement(tables),
			{What: "program", Start: btSeg << 4, Data: prog, Size: uint64(len(prog))},
		}, extra...),
		Entry:  loader.EntryState{RealModeEntry: btSeg << 16, RealModeSeg: btSeg, RealModeSP: btSP},
		Verify: true,
	}
	if d != nil {
		// Not verified: the stub's checksum of a megabyte costs time on an
		// emulating KVM, and the reads are checked byte for byte anyway.
		plan.Placements = append(plan.Placements, loader.Placement{What: "disk", Start: d.Addr, Data: disk, Size: d.Span().Size()})
	}
	if noTables {
		plan.Placements = plan.Placements[1:]
		tables = nil
	}
	if err := plan.Finish(); err != nil {
		t.Fatal(err)
	}
	return plan, tables
}

// btRun boots the plan and returns the `bt: ` lines and the result.
func btRun(t *testing.T, be btBackend, plan *loader.Plan) ([]string, *machine.Result, string) {
	t.Helper()
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := be.b.Run(ctx, plan, machine.Options{Timeout: 90 * time.Second, Console: machine.NewConsole(&out, nil), BadRAM: btBadRAM})
	if err != nil {
		t.Fatalf("%s: %v", be.name, err)
	}
	lines := prefixedLines(out.String(), "bt: ")
	t.Logf("%s: %s in %v (backend %s, %d exits)", be.name, res.Outcome, res.Boot.Round(time.Millisecond), res.Backend, res.Exits)
	if len(lines) == 1 && lines[0] == "bt: no bios" {
		t.Fatalf("%s: the IVT has no int 10h handler: the firmware did not set up the BIOS", be.name)
	}
	return lines, res, out.String()
}

// btRegs is what a dump line shows.
type btRegs struct {
	cf, zf             bool
	eax, ebx, ecx, edx uint32
	es                 uint16
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (r btRegs) line(label string) string {
	return fmt.Sprintf("bt: %s cf=%d zf=%d eax=%08x ebx=%08x ecx=%08x edx=%08x es=%04x kept",
		label, b2i(r.cf), b2i(r.zf), r.eax, r.ebx, r.ecx, r.edx, r.es)
}

// The register helpers for expected values.
func setAH(r uint32, ah uint8) uint32       { return r&^0xFF00 | uint32(ah)<<8 }
func setAL(r uint32, al uint8) uint32       { return r&^0xFF | uint32(al) }
func setX(r uint32, x uint16) uint32        { return r&^0xFFFF | uint32(x) }
func memLine(label string, b []byte) string { return "bt: " + label + " " + hex.EncodeToString(b) }

// fail returns r after a failed call: CF=1, AH=status.
func (r btRegs) fail(status uint8) btRegs {
	r.cf, r.eax = true, setAH(r.eax, status)
	return r
}

func (r btRegs) ok() btRegs { r.cf = false; return r }

// compareLines reports the first difference and every line on failure.
func compareLines(t *testing.T, name string, got, want []string, check func(i int, got string) (bool, string)) {
	t.Helper()
	bad := false
	for i := 0; i < max(len(got), len(want)); i++ {
		var g, w string
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if check != nil && strings.HasPrefix(w, "CHECK ") {
			if ok, why := check(i, g); !ok {
				t.Errorf("%s: line %d: %q: %s", name, i, g, why)
				bad = true
			}
			continue
		}
		if g != w {
			t.Errorf("%s: line %d:\n got  %q\n want %q", name, i, g, w)
			bad = true
			break
		}
	}
	if bad {
		t.Logf("%s: all lines:\n%s", name, strings.Join(got, "\n"))
	}
}

func TestBIOSServices(t *testing.T) {
	pattern := make([]byte, 4096)
	for i := range pattern {
		pattern[i] = byte(i*13 + 5)
	}
	for _, be := range btBackends() {
		t.Run(be.name, func(t *testing.T) {
			be.need(t)
			plan, tables := btPlan(t, btServices, nil, false, loader.Placement{What: "pattern", Start: btHigh, Data: pattern, Size: uint64(len(pattern))})
			lines, res, console := btRun(t, be, plan)
			if res.Outcome != machine.Pass {
				t.Fatalf("%s: %s\nconsole:\n%s", res.Outcome, res.Reason, console)
			}
			want := servicesWant(t, tables, pattern)
			compareLines(t, be.name, lines, want, func(i int, got string) (bool, string) { return checkTimeLine(want[i], got) })
			checkLog(t, lines, []realmode.BIOSLogEntry{
				{Vector: 0x15, AX: 0x2404, Count: 1, BX: 0x2222, CX: 0x3333, DX: 0x4444},
				{Vector: 0x15, AX: 0x5300, Count: 2, BX: 0x2222, CX: 0x3333, DX: 0x4444},
				{Vector: 0x15, AX: 0xE980, Count: 1, BX: 0x2222, CX: 0x3333, DX: 0x4444},
				{Vector: 0x10, AX: 0x1A00, Count: 1, BX: 0x2222, CX: 0x3333, DX: 0x4444},
				{Vector: 0x16, AX: 0x0500, Count: 1, BX: 0x2222, CX: 0x3333, DX: 0x4444},
				{Vector: 0x1A, AX: 0x0300, Count: 1, BX: 0x2222, CX: 0x3333, DX: 0x4444},
			}, len(btServices))
		})
	}
}

// servicesWant is services.S's output, call by call.
func servicesWant(t *testing.T, tables, pattern []byte) []string {
	mem, err := loader.ReadBIOSMemory(tables)
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	bda := make([]byte, 0x20)
	le.PutUint16(bda[0x00:], 0x3F8)
	le.PutUint16(bda[0x0E:], realmode.EBDAAddr>>4)
	le.PutUint16(bda[0x10:], realmode.BIOSEquipment)
	le.PutUint16(bda[0x13:], mem.BaseKiB)
	w := []string{
		memLine("bda-400", bda),
		memLine("bda-449", []byte{3, 80, 0}),
		memLine("bda-475", []byte{0}),
		memLine("bda-484", []byte{24, 16, 0}),
		memLine("ebda", []byte{1, 0}),
		// 256 vectors in the ROM; the 8 services and 16 IRQs differ from
		// the default; the timer (08h) has a handler of its own.
		"bt: ivt rom=0100 default=e8 irq0-7=01 irq8-15=08",
	}
	in := btRegs{cf: true, eax: 0x11111111, ebx: 0x22222222, ecx: 0x33333333, edx: 0x44444444, es: btSeg}
	r := in
	r.eax = setX(r.eax, realmode.BIOSEquipment)
	w = append(w, r.line("int11"))
	r.eax = setX(in.eax, mem.BaseKiB)
	w = append(w, r.line("int12"))

	// E820 into 3000:0100, walked to the end.
	entries, err := loader.E820All(tables)
	if err != nil {
		t.Fatal(err)
	}
	e820 := btRegs{cf: true, eax: 0xE820, ecx: 20, edx: btSMAP, es: 0x3000}
	for i, e := range entries {
		_, next, _ := loader.E820Next(tables, uint32(i))
		r := e820
		r.cf, r.eax, r.ebx = false, btSMAP, next
		w = append(w, r.line("e820"), memLine("e820-entry", e.Bytes()))
	}
	for _, bad := range []struct {
		label         string
		ebx, ecx, edx uint32
	}{
		{"e820-signature", 0, 20, btSMAP + 1},
		{"e820-ecx19", 0, 19, btSMAP},
		{"e820-ebx-count", uint32(len(entries)), 20, btSMAP},
		{"e820-ebx128", 128, 20, btSMAP},
		{"e820-ebx10001", 0x10001, 20, btSMAP},
		{"e820-ebx-1", 0xFFFFFFFF, 20, btSMAP},
	} {
		_, _, err := loader.E820Call(tables, bad.edx, bad.ebx, bad.ecx)
		var be *loader.BIOSError
		if !errors.As(err, &be) {
			t.Fatalf("%s: the model accepts it", bad.label)
		}
		r := e820
		r.ebx, r.ecx, r.edx = bad.ebx, bad.ecx, bad.edx
		w = append(w, r.fail(be.Status).line(bad.label))
	}
	okE820 := func(label string, ebx uint32, ecx uint32) string {
		_, next, err := loader.E820Call(tables, btSMAP, ebx, ecx)
		if err != nil {
			t.Fatal(err)
		}
		r := e820
		r.cf, r.eax, r.ebx, r.ecx = false, btSMAP, next, 20
		return r.line(label)
	}
	w = append(w, okE820("e820-ecx24", 0, 24), okE820("e820-if", 1, 20), okE820("e820-df", 1, 20),
		memLine("e820-df-entry", entries[1].Bytes()))

	in.eax, in.es = 0, 0x3000 // ES still holds the E820 buffer's segment
	// call is a service call with AX=ax and the rest of in as it is then.
	call := func(ax uint32) btRegs { r := in; r.eax = ax; return r }
	r = call(0xE801).ok()
	r.eax, r.ebx, r.ecx, r.edx = uint32(mem.E801AX), setX(r.ebx, mem.E801BX), setX(r.ecx, mem.E801AX), setX(r.edx, mem.E801BX)
	e801 := r
	w = append(w, r.line("e801"))
	r = call(0x8800).ok()
	r.eax = uint32(mem.ExtKiB)
	w = append(w, r.line("ext88"))
	config := []byte{8, 0, 0xFC, 0, 0, 0x64, 0, 0, 0, 0}
	off := bytes.Index(realmode.Firmware, config)
	if off < 0 {
		t.Fatal("no int 15h C0h table in the firmware image")
	}
	r = call(0).ok()
	r.ebx, r.es = setX(r.ebx, uint16(off)), 0xF000
	w = append(w, r.line("config"), memLine("config-table", config))
	in.es = btSeg
	r = call(0).ok()
	r.ebx = 2
	w = append(w, r.line("ec00"))
	r = call(0).ok()
	r.ecx, r.edx = 0, 1000
	w = append(w, r.line("wait"))
	for _, a := range []struct {
		label string
		ax    uint32
	}{{"a20-support", 0x0003}, {"a20-status-on", 0x0001}, {"a20-off", 0x0000}, {"a20-status-off", 0x0000}, {"a20-on", 0x0001}, {"a20-status-again", 0x0001}} {
		r := call(a.ax).ok()
		if a.label == "a20-support" {
			r.ebx = setX(r.ebx, 2)
		}
		w = append(w, r.line(a.label))
	}
	w = append(w, call(0x2404).fail(loader.BIOSUnsupported).line("a20-unknown"))
	r = call(0).ok()
	r.ecx = 16
	w = append(w, r.line("move"), memLine("move-data", pattern[0x10:0x30]))
	w = append(w, call(0x5300).fail(loader.BIOSUnsupported).line("apm"),
		call(0x5300).fail(loader.BIOSUnsupported).line("apm-again"))
	// Under SS=4000h, DS=5555h, ES:DI=3000:0300.
	w = append(w, okE820("e820-ss", 0, 20))
	e801.es = 0x3000
	w = append(w, e801.line("e801-ss"))
	r = call(0xE980).fail(loader.BIOSUnsupported)
	r.es = 0x3000
	w = append(w, r.line("ist-ss"))

	// int 10h: the text goes out through AH=0Eh, the last LF in "tty".
	w = append(w, "bt: tty via int 10h", call(0x0E0A).line("tty"))
	r = call(0x5003)
	r.ebx = 0x22220022
	w = append(w, r.line("video-mode"))
	r = call(0x0300)
	r.ebx, r.ecx, r.edx = 0x22220000, 0x33330607, 0x44440000
	w = append(w, r.line("cursor"))
	r = call(0x1200)
	r.ebx = 0x22220010
	w = append(w, r.line("ega-info"), call(0x014F).line("vbe"), call(0x0003).line("set-mode"), call(0x1A00).line("vga-dcc"))

	// int 16h
	r = call(0x0100)
	r.zf = true
	r2 := call(0x1100)
	r2.zf = true
	w = append(w, call(0).line("key-read"), call(0).line("key-read-ext"), r.line("key-check"), r2.line("key-check-ext"),
		call(0x0200).line("shift"), call(0).line("shift-ext"), call(0x0305).line("typematic"), call(0x0500).line("key-store"))

	// int 1Ah: checked against the host's clock.
	w = append(w, "CHECK time", "CHECK ticks", "CHECK date", call(0x0300).line("set-time"))

	in = btRegs{cf: true, eax: 0x11111111, ebx: 0x22222222, ecx: 0x33333333, edx: 0x44444444, es: btSeg}
	w = append(w, in.line("irq0"), in.line("irq15"), in.line("vector60"))
	return append(w, "CHECK log-head", "CHECK log", "bt: done")
}

var btLast struct{ secs int }

// checkTimeLine checks the int 1Ah lines against the host's UTC clock
// (both backends' RTCs run on it), and lets the log lines through to
// checkLog.
func checkTimeLine(want, got string) (bool, string) {
	label := strings.TrimPrefix(want, "CHECK ")
	if label == "log-head" || label == "log" {
		return strings.HasPrefix(got, "bt: "+label+" "), "want the BIOS log"
	}
	f := map[string]uint64{}
	for _, kv := range strings.Fields(got)[2:] {
		k, v, ok := strings.Cut(kv, "=")
		if ok {
			n, _ := strconv.ParseUint(v, 16, 32)
			f[k] = n
		}
	}
	if !strings.HasPrefix(got, "bt: "+label+" cf=0 ") || !strings.HasSuffix(got, " kept") || f["eax"] != 0 {
		return false, "want CF=0, AX=0, registers kept"
	}
	bcd := func(b uint64) (int, bool) { return int(b>>4)*10 + int(b&15), b>>4 < 10 && b&15 < 10 }
	now := time.Now().UTC()
	ch, cl, dh, dl := f["ecx"]>>8&0xFF, f["ecx"]&0xFF, f["edx"]>>8&0xFF, f["edx"]&0xFF
	switch label {
	case "time":
		h, ok1 := bcd(ch)
		m, ok2 := bcd(cl)
		s, ok3 := bcd(dh)
		if !ok1 || !ok2 || !ok3 || h > 23 || m > 59 || s > 59 || dl > 1 {
			return false, "not a BCD time"
		}
		btLast.secs = h*3600 + m*60 + s
		host := now.Hour()*3600 + now.Minute()*60 + now.Second()
		if d := (host - btLast.secs + 86400) % 86400; d > 300 && d < 86400-300 {
			return false, fmt.Sprintf("guest time %02d:%02d:%02d, host %s", h, m, s, now.Format("15:04:05"))
		}
	case "ticks":
		// The count was set from the RTC at reset and advances only while
		// the program runs with interrupts on (one call here): it lags the
		// time read just before by the program's run so far.
		ticks := int(f["ecx"]&0xFFFF)<<16 | int(f["edx"]&0xFFFF)
		secs := float64(ticks) * 86400 / realmode.TicksPerDay
		if d := secs - float64(btLast.secs); (d < -60 || d > 3) && btLast.secs < 86390 {
			return false, fmt.Sprintf("ticks %d = %.1f s, the time said %d s", ticks, secs, btLast.secs)
		}
	case "date":
		c, ok1 := bcd(ch)
		y, ok2 := bcd(cl)
		mo, ok3 := bcd(dh)
		d, ok4 := bcd(dl)
		if !ok1 || !ok2 || !ok3 || !ok4 {
			return false, "not a BCD date"
		}
		guest := time.Date(c*100+y, time.Month(mo), d, 0, 0, 0, 0, time.UTC)
		if diff := now.Sub(guest); diff < -24*time.Hour || diff > 48*time.Hour {
			return false, fmt.Sprintf("guest date %s, host %s", guest.Format("2006-01-02"), now.Format("2006-01-02"))
		}
	}
	return true, ""
}

// checkLog decodes the log the program dumped with realmode's decoder and
// compares it with the unknown calls the program made.
func checkLog(t *testing.T, lines []string, want []realmode.BIOSLogEntry, progSize int) {
	t.Helper()
	tables := make([]byte, realmode.BIOSTablesSize)
	binary.LittleEndian.PutUint32(tables, realmode.BIOSTablesMagic)
	binary.LittleEndian.PutUint16(tables[realmode.BIOSOffVersion:], realmode.BIOSTablesVersion)
	for _, l := range lines {
		var at int
		var h string
		switch {
		case strings.HasPrefix(l, "bt: log-head "):
			at, h = realmode.BIOSOffLogUsed, strings.TrimPrefix(l, "bt: log-head ")
		case strings.HasPrefix(l, "bt: log "):
			at, h = realmode.BIOSOffLog, strings.TrimPrefix(l, "bt: log ")
		default:
			continue
		}
		b, err := hex.DecodeString(h)
		if err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		copy(tables[at:], b)
	}
	got, dropped, err := realmode.ReadBIOSLog(tables)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range realmode.DecodeBIOSLog(tables) {
		t.Log(l)
	}
	if dropped != 0 || len(got) != len(want) {
		t.Fatalf("log has %d entries (%d dropped), want %d: %+v", len(got), dropped, len(want), got)
	}
	for i, e := range got {
		if e.CS != btSeg || int(e.IP) > progSize || e.IP == 0 {
			t.Errorf("entry %d: called from %04x:%04x, not from the program", i, e.CS, e.IP)
		}
		e.CS, e.IP = 0, 0
		if e != want[i] {
			t.Errorf("entry %d = %+v, want %+v", i, e, want[i])
		}
	}
}

// btDiskImage is a disk whose sectors say who they are: sector n starts
// with n (u32), then bytes n*7+i.
func btDiskImage() []byte {
	img := make([]byte, btDiskLen)
	for i := range img {
		n, o := i/512, i%512
		if o < 4 {
			img[i] = byte(uint32(n) >> (8 * o))
		} else {
			img[i] = byte(n*7 + o)
		}
	}
	return img
}

func TestBIOSDisk(t *testing.T) {
	img := btDiskImage()
	for _, be := range btBackends() {
		for _, variant := range []string{"disk", "nodisk", "notables"} {
			name := be.name + "/" + variant
			t.Run(name, func(t *testing.T) {
				be.need(t)
				var disk []byte
				if variant == "disk" {
					disk = img
				}
				plan, tables := btPlan(t, btDisk, disk, variant == "notables")
				lines, res, console := btRun(t, be, plan)
				if res.Outcome != machine.Pass {
					t.Fatalf("%s: %s\nconsole:\n%s", res.Outcome, res.Reason, console)
				}
				compareLines(t, name, lines, diskWant(t, tables, img), func(i int, got string) (bool, string) {
					return checkTimeLine("CHECK log", strings.Replace(got, "log-head", "log", 1))
				})
				var log []realmode.BIOSLogEntry
				if variant != "notables" { // without tables there is no log
					log = append(log, realmode.BIOSLogEntry{Vector: 0x13, AX: 0x1500, Count: 1, BX: 0x2222, CX: 0x3333, DX: 0x0080})
				}
				checkLog(t, lines, log, len(btDisk))
			})
		}
	}
}

// diskWant is disk.S's output, call by call, from the models.
func diskWant(t *testing.T, tables, img []byte) []string {
	padded := make([]byte, (len(img)+511)/512*512)
	copy(padded, img)
	sector := func(n uint32) []byte { return padded[n*512 : n*512+512] }
	_, noDrive := loader.ReadBIOSDisk(tables, 0x80)
	status := func(err error) uint8 {
		var be *loader.BIOSError
		if !errors.As(err, &be) {
			t.Fatalf("not a BIOS error: %v", err)
		}
		return be.Status
	}
	in := btRegs{cf: true, ebx: 0x22222222, ecx: 0x33333333, edx: 0x80, es: btSeg}
	call := func(ax uint32) btRegs { r := in; r.eax = ax; return r }
	w := []string{memLine("bda-475", []byte{byte(b2i(noDrive == nil))})}

	r := call(0x4100)
	r.ebx = 0x55AA
	if noDrive != nil {
		w = append(w, r.fail(1).line("ext-check"))
	} else {
		r = r.ok()
		r.eax, r.ebx, r.ecx = 0x2100, 0xAA55, 0x33330001
		w = append(w, r.line("ext-check"))
	}
	r = call(0x4100)
	r.ebx = 0x1234
	w = append(w, r.fail(1).line("ext-check-nosig"))
	r = call(0x4100)
	r.ebx, r.edx = 0x55AA, 0x81
	w = append(w, r.fail(1).line("ext-check-81"))
	cx, dx, err := loader.DriveParams(tables, 0x80)
	if err != nil {
		w = append(w, call(0x0800).fail(status(err)).line("params"))
	} else {
		r := call(0).ok()
		r.ecx, r.edx = setX(r.ecx, cx), uint32(dx)
		w = append(w, r.line("params"))
	}
	r = call(0x0800)
	r.edx = 0x81
	w = append(w, r.fail(1).line("params-81"))
	if noDrive != nil {
		w = append(w, call(0).fail(1).line("reset"), call(0x4300).fail(1).line("write"))
	} else {
		w = append(w, call(0).ok().line("reset"), call(0x4300).fail(loader.BIOSWriteProtect).line("write"))
	}
	w = append(w, call(0x1500).fail(1).line("disk-type"))

	// AH=48h with DS:SI = 3000:0000, size word 0x1E.
	buf := make([]byte, 0x1E)
	buf[0] = 0x1E
	var sectors uint32
	if p, err := loader.ExtParams(tables, 0x80, 0x1E); err != nil {
		w = append(w, call(0x4800).fail(status(err)).line("ext-params"))
	} else {
		copy(buf, p)
		sectors = binary.LittleEndian.Uint32(p[16:])
		w = append(w, call(0).ok().line("ext-params"))
	}
	w = append(w, memLine("ext-params-buf", buf), call(0x4800).fail(1).line("ext-params-small"))

	// AH=42h reads: the packet at 3000:0100.
	bufMem := make([]byte, 0x2000) // the program's buffer at 2000:0000
	read := func(label string, count, seg, off uint16, lba uint32, high uint32) {
		dap := make([]byte, 16)
		dap[0] = 0x10
		binary.LittleEndian.PutUint16(dap[2:], count)
		binary.LittleEndian.PutUint16(dap[4:], off)
		binary.LittleEndian.PutUint16(dap[6:], seg)
		binary.LittleEndian.PutUint32(dap[8:], lba)
		binary.LittleEndian.PutUint32(dap[12:], high)
		cp, err := loader.ExtendedRead(tables, 0x80, loader.DAP{Size: 0x10, Count: count, Segment: seg, Offset: off, LBA: uint64(high)<<32 | uint64(lba)})
		if err != nil {
			w = append(w, call(0x4200).fail(status(err)).line(label))
			if noDrive == nil {
				binary.LittleEndian.PutUint16(dap[2:], 0) // nothing transferred
			}
		} else {
			w = append(w, call(0).ok().line(label))
			if cp.Dst >= 0x20000 && cp.Dst+cp.Len <= 0x20000+uint32(len(bufMem)) {
				copy(bufMem[cp.Dst-0x20000:], padded[cp.Src-btDiskAt:cp.Src-btDiskAt+cp.Len])
			} else {
				t.Fatalf("%s: the model copies to %#x", label, cp.Dst)
			}
		}
		w = append(w, memLine(label+"-dap", dap))
	}
	read("read", 3, 0x2000, 0, 5, 0)
	var sum uint32
	for i := 0; i < 3*512; i += 4 {
		sum += binary.LittleEndian.Uint32(bufMem[i:])
	}
	w = append(w, fmt.Sprintf("bt: read-sum %08x", sum))
	read("read-last", 1, 0x2000, 0x800, sectors-1, 0)
	read("read-across-end", 2, 0x2000, 0, sectors-1, 0)
	read("read-past-end", 1, 0x2000, 0, sectors, 0)
	read("read-lba-high", 1, 0x2000, 0, 1, 1)
	read("read-count0", 0, 0x2000, 0, 0, 0)
	read("read-count128", 128, 0x2000, 0, 0, 0)
	read("read-ffff", 1, 0xFFFF, 0, 0, 0)
	read("read-f100", 127, 0xF100, 0, 0, 0)
	read("read-if", 1, 0x2000, 0x1000, 7, 0)
	w = append(w, call(0x4200).fail(1).line("read-short-dap"))
	n := len(w)
	read("read-ss", 1, 0x2000, 0x1200, 9, 0)
	w[n] = strings.Replace(w[n], "es="+fmt.Sprintf("%04x", btSeg), "es=5555", 1)
	for _, o := range []int{0, 0x200, 0x400, 0x800, 0x1000, 0x1200} {
		w = append(w, memLine(fmt.Sprintf("buf-%04x", o), bufMem[o:o+16]))
	}

	// AH=02h into 2000:1400.
	chs := func(label string, ax, bx, cx, dx uint16) {
		r := btRegs{cf: true, eax: uint32(ax), ebx: uint32(bx), ecx: uint32(cx), edx: uint32(dx), es: 0x2000}
		cp, err := loader.CHSRead(tables, ax, cx, dx, 0x2000, bx)
		switch {
		case err == nil:
			r = r.ok()
			r.eax = setAH(r.eax, 0)
			copy(bufMem[cp.Dst-0x20000:], padded[cp.Src-btDiskAt:cp.Src-btDiskAt+cp.Len])
		case noDrive != nil || uint8(dx) != 0x80:
			r = r.fail(status(err)) // AL untouched: the drive check comes first
		default:
			r = r.fail(status(err))
			r.eax = setAL(r.eax, 0)
		}
		w = append(w, r.line(label))
	}
	chs("chs-0-0-1", 0x0201, 0x1400, 0x0001, 0x0080)
	chs("chs-0-1-3", 0x0202, 0x1600, 0x0003, 0x0180)
	chs("chs-sector0", 0x0201, 0x1400, 0x0000, 0x0080)
	chs("chs-head255", 0x0201, 0x1400, 0x0001, 0xFF80)
	chs("chs-count0", 0x0200, 0x1400, 0x0001, 0x0080)
	chs("chs-c1023", 0x0201, 0x1400, 0xFFFF, 0x0080)
	chs("chs-81", 0x0201, 0x1400, 0x0001, 0x0081)
	for _, o := range []int{0x1400, 0x1600, 0x1800} {
		w = append(w, memLine(fmt.Sprintf("buf-%04x", o), bufMem[o:o+16]))
	}
	if noDrive == nil && !bytes.Equal(bufMem[0x1600:0x1610], sector(65)[:16]) {
		t.Fatal("the CHS model does not read LBA 65 for C0 H1 S3")
	}
	return append(w, "CHECK log-head", "CHECK log", "bt: done")
}

// TestBIOSBootstrap: int 19h prints its message and ends the run with
// debug-exit 125: there is nothing to boot.
func TestBIOSBootstrap(t *testing.T) {
	for _, be := range btBackends() {
		t.Run(be.name, func(t *testing.T) {
			be.need(t)
			plan, _ := btPlan(t, btBoot19, nil, false)
			lines, res, console := btRun(t, be, plan)
			if !res.GuestRan || res.GuestValue != realmode.BIOSExitBootstrap {
				t.Fatalf("%s (%s), want debug-exit %d\nconsole:\n%s", res.Outcome, res.Reason, realmode.BIOSExitBootstrap, console)
			}
			if !strings.Contains(console, "kvmboot bios: int 19h: no boot device, halting") || len(lines) != 1 || lines[0] != "bt: int 19h" {
				t.Fatalf("console:\n%s", console)
			}
		})
	}
}
