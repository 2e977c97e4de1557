package boot

import (
	"kvmboot/loader"
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
	Type  loader.Kind `json:"type"`
}

// Timings are in milliseconds: load is reading and planning, boot is the
// backend's run (VM setup included), total is all of it; qemu_cpu is the
// CPU time QEMU used (QEMU backends), which machine load does not inflate.
type Timings struct {
	Load    float64 `json:"load"`
	Setup   float64 `json:"setup"`
	Boot    float64 `json:"boot"`
	Total   float64 `json:"total"`
	QEMUCPU float64 `json:"qemu_cpu,omitempty"`
}

func (r *Result) fromPlan(p *loader.Plan) {
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

func (r *Result) fromMachine(m *machine.Result, qemuCodes bool) {
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
	r.Timings.Setup = machine.Millis(m.Setup)
	r.Timings.Boot = machine.Millis(m.Boot)
	r.Timings.QEMUCPU = machine.Millis(m.QEMUCPU)
}

// PlanResult describes a plan in the result object's shape (no outcome),
// for `kvmboot plan --json`.
func PlanResult(p *loader.Plan) *Result {
	r := &Result{}
	r.fromPlan(p)
	return r
}
