// Package machine runs a boot plan on a backend and turns what the guest
// did into an outcome. The backends live in subpackages (kvm, qemu); this
// package holds what they share: outcomes, results, the console sink and the
// exit-status contract of DESIGN.md §3.
package machine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"kvmboot/loader"
	"kvmboot/loader/memmap"
	"kvmboot/machine/faults"
	"kvmboot/realmode"
)

// Outcome is how a run ended.
type Outcome string

const (
	Pass    Outcome = "pass"    // debug-exit 0, or --expect seen
	Fail    Outcome = "fail"    // debug-exit with a non-zero value
	Timeout Outcome = "timeout" // the run's deadline passed
	Crash   Outcome = "crash"   // triple fault, panic seen, bad RAM touched, checksum mismatch
	Error   Outcome = "error"   // could not boot, or interrupted
)

// Exit statuses of `kvmboot run` (DESIGN.md §3).
const (
	StatusTimeout = 124
	StatusCrash   = 125
	StatusError   = 126
	// MaxGuestStatus is the largest value a guest can report through the
	// debug-exit port and have passed through as the exit status.
	MaxGuestStatus = 123
)

// MaxMemory is the largest guest RAM of every backend: it must end below
// the PCI hole and the firmware image at the top of the 32-bit space.
const MaxMemory = 3 << 30

// ErrMemSize is CheckMemSize's error, for errors.Is.
var ErrMemSize = errors.New("must be a multiple of 4K between 2M and " + memmap.FormatSize(MaxMemory))

// CheckMemSize rejects a guest RAM size no backend can give.
func CheckMemSize(size uint64) error {
	if size%4096 != 0 || size < 2<<20 || size > MaxMemory {
		return fmt.Errorf("guest memory %s: %w", memmap.FormatSize(size), ErrMemSize)
	}
	return nil
}

// MaxCPUs is the most processors a machine has (--smp): far below what
// KVM, QEMU's PC and the firmware tables allow (the MP table's slot
// holds about 180), as many as kvmboot's users boot.
const MaxCPUs = 64

// CheckCPUs rejects a processor count no backend runs.
func CheckCPUs(n int) error {
	if n < 1 || n > MaxCPUs {
		return fmt.Errorf("%d processors: want 1 to %d", n, MaxCPUs)
	}
	return nil
}

// Millis is d in milliseconds, to the microsecond, for reports.
func Millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// BadRAMPolicy says what a bad-RAM access does to the run.
type BadRAMPolicy string

const (
	BadRAMStop   BadRAMPolicy = "stop"   // end the run as a crash (default)
	BadRAMRecord BadRAMPolicy = "record" // record it and go on
)

// ParseBadRAMPolicy reads a policy name; "" is BadRAMStop.
func ParseBadRAMPolicy(s string) (BadRAMPolicy, error) {
	switch p := BadRAMPolicy(s); p {
	case "":
		return BadRAMStop, nil
	case BadRAMStop, BadRAMRecord:
		return p, nil
	}
	return "", fmt.Errorf("unknown bad-RAM policy %q: want stop or record", s)
}

// BadAccess is one guest access to bad RAM.
type BadAccess struct {
	Addr  uint64 `json:"addr"`
	Size  int    `json:"size"`
	Write bool   `json:"write"`
	IP    uint64 `json:"ip"`             // linear address of the instruction, when known
	Insn  string `json:"insn,omitempty"` // the instruction disassembled in the vCPU's mode
	// CPU is the processor that made the access (0 the bootstrap
	// processor), -1 when the backend cannot tell (QEMU's canaries).
	CPU int `json:"cpu"`
}

// Options are the per-run settings every backend honours.
type Options struct {
	Timeout      time.Duration
	Console      *Console
	BadRAMPolicy BadRAMPolicy
	// BadRAM lists the ranges the guest must not touch.
	BadRAM []memmap.Range
	// CountStub single-steps the stub and counts its instructions and exits
	// up to the kernel's entry (KVM backend only).
	CountStub bool
	// Trace, when non-nil, receives one line per instruction run
	// (machine.TraceLine), up to TraceLimit.
	Trace      func(line string)
	TraceLimit int
	TraceAll   bool // keep tracing after the CPU leaves real mode
	// AfterPlace is a test hook: it runs after the plan is in guest memory
	// and before the first instruction, with guest RAM as a byte slice.
	AfterPlace func(ram []byte)
	Faulty     []faults.Range // RAM that misbehaves undeclared (--faulty-ram): our KVM machine, QEMU with TCG; FaultSeed drives the flip model
	FaultSeed  uint64
	COM2       io.Writer // receives what the guest sends on the second UART (0x2f8, the memtest channel); nil: no COM2
}

// StubCount is what CountStub measured.
type StubCount struct {
	Instructions uint64 `json:"instructions"`
	Exits        uint64 `json:"exits"`
	// Complete: single-stepping reached the kernel's entry. A host KVM
	// that loses single-step traps leaves it false, and the counts cover
	// only what was stepped (they do not measure the stub).
	Complete bool `json:"complete"`
}

// Result is what a backend reports about one run.
type Result struct {
	Outcome  Outcome
	Status   int    // the process exit status for this outcome
	Reason   string // one line, or several for crash details
	GuestRan bool   // the guest wrote to the debug-exit port
	// GuestValue is what the guest wrote to the debug-exit port.
	GuestValue     uint32
	BadRAMAccesses []BadAccess
	Stub           *StubCount
	CPU            *CPUState // the vCPU at a crash, when the backend can read it
	// BIOSLog lists the BIOS services the guest asked for that our BIOS
	// does not provide (realmode.DecodeBIOSLog).
	BIOSLog []string
	Exits   uint64
	Boot    time.Duration // first instruction to the end
	Setup   time.Duration // backend start to first instruction
	// What Setup and Boot are made of, for the backends that tell (zero
	// otherwise). Exec is the backend's start to its VMM process's start
	// (QEMU's exec), Ready that process's start to its first answer
	// (QEMU's own start-up), RAMWrite the time spent writing the plan into
	// guest RAM, Guest the first instruction to the guest's end (Boot
	// without the teardown).
	Exec, Ready, RAMWrite, Guest time.Duration
	// QEMUCPU is the CPU time (user and system) QEMU used, for the QEMU
	// backends: what a guest costs, whatever else the host runs.
	QEMUCPU time.Duration
	Backend string        // "kvm", "qemu/tcg", ...
	Faulty  *faults.Stats // what the guest did to faulty RAM (with Options.Faulty)
}

// Backend executes a plan.
type Backend interface {
	Name() string
	Run(ctx context.Context, plan *loader.Plan, opts Options) (*Result, error)
}

// Shape is what a machine needs to know of a plan before the plan exists:
// its RAM and the page it reserves for ACPI tables (loader.BootMap gives
// both from the memory size and the bad RAM, without the kernel), and its
// processors, which the firmware's MP and ACPI tables list.
type Shape struct {
	MemSize uint64
	ACPI    memmap.Range
	CPUs    int
}

// ShapeOf is the shape of a plan.
func ShapeOf(p *loader.Plan) Shape {
	return Shape{MemSize: p.MemSize, ACPI: p.ACPI, CPUs: p.NumCPUs()}
}

// ErrShapeMismatch is the error of running a plan on a machine started for
// another shape, for errors.Is.
var ErrShapeMismatch = errors.New("does not fit the machine started for it")

// A Starter is a backend whose machine takes long enough to start that it
// is worth starting while the plan is made: QEMU's process start-up
// overlaps reading and relocating the kernel.
type Starter interface {
	Backend
	// Start starts the machine for a plan of shape s, paused before its
	// first instruction. opts.BadRAM must be the plan's bad ranges.
	Start(ctx context.Context, s Shape, opts Options) (Started, error)
}

// Started is a machine waiting for its plan.
type Started interface {
	// Run places plan, which must have the shape the machine was started
	// for, and runs it as Backend.Run does. It is called at most once.
	Run(ctx context.Context, plan *loader.Plan) (*Result, error)
	// Close stops the machine and frees what it holds. It may be called
	// after Run, and more than once.
	Close()
}

// GuestExit turns a debug-exit write into a result.
func GuestExit(v uint32) *Result {
	r := &Result{GuestRan: true, GuestValue: v, Status: int(v)}
	switch {
	case v == 0:
		r.Outcome = Pass
		r.Reason = "guest wrote 0 to the debug-exit port"
	case v <= MaxGuestStatus:
		r.Outcome = Fail
		r.Reason = fmt.Sprintf("guest wrote %d to the debug-exit port", v)
	default:
		r.Outcome = Fail
		r.Status = StatusCrash
		r.Reason = fmt.Sprintf("guest wrote %#x to the debug-exit port (guests report 0..%d)", v, MaxGuestStatus)
	}
	return r
}

// DebugExit is GuestExit for a run whose guest memory and plan are at hand:
// the entry stub's failure value becomes a crash naming the piece whose
// checksum failed. mem or plan may be nil.
func DebugExit(v uint32, mem *GuestMemory, plan *loader.Plan) *Result {
	if v == realmode.ExitStubFailed && mem != nil && plan != nil {
		if why := StubFailure(mem.StubState(), plan); why != "" {
			return Crashed("%s", why)
		}
	}
	return GuestExit(v)
}

// Crashed builds a crash result.
func Crashed(format string, args ...any) *Result {
	return &Result{Outcome: Crash, Status: StatusCrash, Reason: fmt.Sprintf(format, args...)}
}

// TimedOut builds a timeout result.
func TimedOut(d time.Duration) *Result {
	return &Result{Outcome: Timeout, Status: StatusTimeout, Reason: fmt.Sprintf("no result within %v", d)}
}

// Interrupted builds the result of a run stopped by a signal or a cancelled context.
func Interrupted() *Result {
	return &Result{Outcome: Error, Status: StatusError, Reason: "interrupted"}
}

// QEMUStatus maps a guest's debug-exit value v to (v<<1)|1, the status
// QEMU's isa-debug-exit gives, for harnesses written against QEMU.
func QEMUStatus(v uint32) int { return int((v<<1)|1) & 0xff }

// CPUState is a vCPU's state at a crash, for reports.
type CPUState struct {
	CPU    int    `json:"cpu"` // which processor: 0 is the bootstrap processor
	Mode   string `json:"mode"`
	CS     uint16 `json:"cs"`
	EIP    uint32 `json:"eip"`
	Linear uint32 `json:"linear_ip"`
	EAX    uint32 `json:"eax"`
	EBX    uint32 `json:"ebx"`
	ECX    uint32 `json:"ecx"`
	EDX    uint32 `json:"edx"`
	ESI    uint32 `json:"esi"`
	EDI    uint32 `json:"edi"`
	EBP    uint32 `json:"ebp"`
	ESP    uint32 `json:"esp"`
	EFLAGS uint32 `json:"eflags"`
	CR0    uint32 `json:"cr0"`
	CR3    uint32 `json:"cr3"`
	CR4    uint32 `json:"cr4"`
	Insn   string `json:"insn"` // the instruction at EIP, in the CPU's mode
}

// ModeName names the CPU mode from CR0 and the code segment's size.
func ModeName(cr0 uint64, bits int) string {
	name := "real mode"
	switch {
	case cr0&1 != 0 && bits == 32:
		name = "32-bit protected mode"
	case cr0&1 != 0:
		name = "16-bit protected mode"
	}
	if cr0&(1<<31) != 0 {
		name += ", paging on"
	}
	return name
}

func (c *CPUState) String() string {
	return fmt.Sprintf("CPU %d, %s, cs=%#x eip=%#x (linear %#x) eax=%#x ebx=%#x ecx=%#x edx=%#x esi=%#x edi=%#x ebp=%#x esp=%#x eflags=%#x cr0=%#x cr3=%#x cr4=%#x, at eip: %s",
		c.CPU, c.Mode, c.CS, c.EIP, c.Linear, c.EAX, c.EBX, c.ECX, c.EDX, c.ESI, c.EDI, c.EBP, c.ESP, c.EFLAGS, c.CR0, c.CR3, c.CR4, c.Insn)
}
