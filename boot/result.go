package boot

import (
	"time"

	"kvmboot/loader"
	"kvmboot/loader/memmap"
	"kvmboot/machine"
	"kvmboot/machine/faults"
	"kvmboot/machine/memtest"
)

// Result is the outcome of a run, shaped as DESIGN.md §3's result JSON.
type Result struct {
	Outcome  machine.Outcome   `json:"outcome,omitempty"`
	ExitCode int               `json:"exit_code"`
	Reason   string            `json:"reason"`
	Kernel   loader.KernelInfo `json:"kernel"`
	VMM      VMM               `json:"vmm,omitempty"`
	Accel    string            `json:"accel,omitempty"` // QEMU's accelerator
	VMMWhy   string            `json:"why,omitempty"`   // why this backend

	CPUs            int    `json:"cpus"` // the machine's processors (--smp)
	LoadAddress     uint64 `json:"load_address"`
	LinkAddress     uint64 `json:"link_address"`
	Entry           uint64 `json:"entry"`
	Relocations     int    `json:"relocations"`
	SkippedAbsolute int    `json:"relocations_skipped_absolute"`
	Why             string `json:"placement_reason,omitempty"`

	Placements     []PlacementJSON     `json:"placements"`
	MemoryMap      []RegionJSON        `json:"memory_map"`
	BadRAMAccesses []machine.BadAccess `json:"bad_ram_accesses"`

	GuestExit    *uint32            `json:"guest_exit,omitempty"`
	Stub         *machine.StubCount `json:"stub,omitempty"`
	CPU          *machine.CPUState  `json:"cpu,omitempty"`
	BIOSLog      []string           `json:"bios_log,omitempty"`
	Exits        uint64             `json:"vm_exits"`
	ConsoleBytes int64              `json:"console_bytes"`
	ConsoleTail  []string           `json:"-"`
	Timings      Timings            `json:"timings_ms"`
	// PeakRSSKB is this process's peak resident set (getrusage), which for
	// the QEMU backend excludes QEMU itself and the guest RAM it holds.
	PeakRSSKB int64 `json:"peak_rss_kb"`

	Memtest   *memtest.Report `json:"memtest,omitempty"`    // --memtest: what the in-guest test found (memtest.go)
	FaultyRAM *faults.Stats   `json:"faulty_ram,omitempty"` // --faulty-ram: what the guest did to it
}

// PlacementJSON is one placed piece; End is exclusive.
type PlacementJSON struct {
	What  string `json:"what"`
	Name  string `json:"name,omitempty"`
	Start uint64 `json:"start"`
	End   uint64 `json:"end"`
}

// RegionJSON is one memory-map entry.
type RegionJSON struct {
	Start uint64      `json:"start"`
	End   uint64      `json:"end"`
	Type  memmap.Kind `json:"type"`
}

// Timings are in milliseconds, where a run's time goes. Load is reading
// and planning: Read (the kernel, initrd, modules and disk image), Cache
// (the decompression cache's hash, lookup and verification), Decompress (a
// cache miss), Relocate, and Plan (the rest of planning: parsing, placing,
// boot information, checksums). Setup is the backend's start to the
// guest's first instruction: QEMUExec (the run's start to QEMU's process
// started), QEMUReady (QEMU's own start-up, to its first QMP answer) and
// RAMWrite (the plan written into guest RAM) are parts of it. A backend
// that can start before the plan exists (QEMU) starts first, so Load and
// Setup overlap: FirstInstruction is the run's start to the guest's first
// instruction, kvmboot's whole share. Guest is the first instruction to
// the guest's end, Boot to the end of the backend's run (QEMU's exit
// included), Total all of it; QEMUCPU is the CPU time QEMU used (QEMU
// backends), which machine load does not inflate.
type Timings struct {
	Load             float64 `json:"load"`
	Read             float64 `json:"read"`
	Cache            float64 `json:"cache"`
	Decompress       float64 `json:"decompress"`
	Relocate         float64 `json:"relocate"`
	Plan             float64 `json:"plan"`
	QEMUExec         float64 `json:"qemu_exec,omitempty"`
	QEMUReady        float64 `json:"qemu_ready,omitempty"`
	RAMWrite         float64 `json:"ram_write,omitempty"`
	Setup            float64 `json:"setup"`
	FirstInstruction float64 `json:"first_instruction"`
	Guest            float64 `json:"guest,omitempty"`
	Boot             float64 `json:"boot"`
	Total            float64 `json:"total"`
	QEMUCPU          float64 `json:"qemu_cpu,omitempty"`
}

func (r *Result) fromPlan(p *loader.Plan) {
	st := p.Stages
	r.Timings.Cache, r.Timings.Decompress, r.Timings.Relocate = machine.Millis(st.Cache), machine.Millis(st.Decompress), machine.Millis(st.Relocate)
	r.Timings.Plan = machine.Millis(st.Build - st.Cache - st.Decompress - st.Relocate)
	r.Kernel, r.CPUs = p.Kernel, p.NumCPUs()
	r.LoadAddress, r.LinkAddress, r.Entry = p.LoadAddress, p.LinkAddress, uint64(p.Entry.EIP)
	r.Relocations, r.SkippedAbsolute, r.Why = p.Relocations, p.SkippedAbsolute, p.Why
	r.Placements = r.Placements[:0]
	for _, pl := range p.Sorted() {
		r.Placements = append(r.Placements, PlacementJSON{What: pl.What, Name: pl.Name, Start: pl.Start, End: pl.End()})
	}
	for _, reg := range p.Map.Regions() {
		r.MemoryMap = append(r.MemoryMap, RegionJSON{Start: reg.Start, End: reg.End, Type: reg.Kind})
	}
}

// fromMachine fills in what the backend reports; the backend started
// since after the run's start.
func (r *Result) fromMachine(m *machine.Result, qemuCodes bool, since time.Duration) {
	r.Outcome, r.ExitCode, r.Reason = m.Outcome, m.Status, m.Reason
	if m.GuestRan {
		v := m.GuestValue
		r.GuestExit = &v
		if qemuCodes {
			r.ExitCode = machine.QEMUStatus(v)
		}
	}
	r.BadRAMAccesses = m.BadRAMAccesses
	if r.BadRAMAccesses == nil {
		r.BadRAMAccesses = []machine.BadAccess{}
	}
	r.Stub, r.Exits, r.CPU, r.BIOSLog = m.Stub, m.Exits, m.CPU, m.BIOSLog
	r.FaultyRAM = m.Faulty
	r.VMM = VMM(m.Backend)
	t := &r.Timings
	t.Setup, t.FirstInstruction = machine.Millis(m.Setup), machine.Millis(since+m.Setup)
	if m.Exec > 0 {
		t.QEMUExec, t.QEMUReady = machine.Millis(since+m.Exec), machine.Millis(m.Ready)
	}
	t.RAMWrite, t.Guest = machine.Millis(m.RAMWrite), machine.Millis(m.Guest)
	t.Boot = machine.Millis(m.Boot)
	t.QEMUCPU = machine.Millis(m.QEMUCPU)
}

// PlanResult describes a plan in the result object's shape (no outcome),
// for `kvmboot plan --json`.
func PlanResult(p *loader.Plan) *Result {
	r := &Result{}
	r.fromPlan(p)
	return r
}
