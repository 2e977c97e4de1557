// Package memtest is the host side of kvmboot's in-guest memory test: it
// builds the plan that boots the memtest guest (realmode.Memtest) through
// the normal entry stub, runs it on any backend, decodes the failures the
// guest reports over COM2 (frame.go) and coalesces the failing pages into
// bad ranges for the real boot.
package memtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"kvmboot/loader"
	"kvmboot/loader/memmap"
	"kvmboot/machine"
	"kvmboot/machine/faults"
	"kvmboot/realmode"
)

// Modes.
const (
	Quick    = "quick"
	Thorough = "thorough"
)

// PageSize is the granularity of the test and of what it reports.
const PageSize = 4096

// ParseMode reads a --memtest value ("" is quick).
func ParseMode(s string) (string, error) {
	switch s {
	case "", Quick:
		return Quick, nil
	case Thorough:
		return Thorough, nil
	}
	return "", fmt.Errorf("--memtest=%s: want quick or thorough", s)
}

// Config is one memory test.
type Config struct {
	Mode    string // Quick (default) or Thorough
	Seed    uint64 // varies the patterns (and drives the flip fault model)
	MemSize uint64
	// BadRAM is declared bad: never tested, trapped if touched.
	BadRAM []memmap.Range
	// Ranges limits the test (--memtest-range); nil tests all usable RAM.
	Ranges []memmap.Range
	// Verify has the entry stub check the guest's checksum before the jump.
	Verify bool
}

// Reserved is what the memory test never touches: the entry stub's GDT,
// TSS, stack and parameter block, and the memtest guest itself.
var Reserved = []memmap.Range{
	{Start: realmode.StubLow, End: realmode.StubHigh},
	{Start: realmode.MemtestAddr, End: realmode.MemtestEnd},
}

// TestRanges returns the pages the test covers: the RAM the memory map calls
// usable (declared bad RAM excluded), within cfg.Ranges when given, minus
// Reserved, shrunk to whole pages (a page partly bad or reserved is not
// tested).
func TestRanges(cfg Config) ([]memmap.Range, error) {
	m := memmap.NewWithBadRAM(cfg.MemSize, loader.FirmwareHigh, cfg.BadRAM)
	for _, r := range Reserved {
		m.Set(r, memmap.KindReserved)
	}
	usable := m.Ranges(memmap.KindRAM)
	if cfg.Ranges != nil {
		var in []memmap.Range
		for _, want := range memmap.Merge(cfg.Ranges) {
			for _, u := range usable {
				if r := clip(want, u); r.Start < r.End {
					in = append(in, r)
				}
			}
		}
		usable = in
	}
	var out []memmap.Range
	for _, r := range usable {
		r.Start = (r.Start + PageSize - 1) &^ (PageSize - 1)
		r.End &^= PageSize - 1
		if r.Start < r.End {
			out = append(out, r)
		}
	}
	out = memmap.Merge(out)
	if len(out) == 0 {
		return nil, errors.New("memtest: no whole page of usable RAM to test in the given ranges")
	}
	if len(out) > realmode.MemtestMaxRanges {
		return nil, fmt.Errorf("memtest: %d separate ranges to test, the guest takes at most %d (declared bad RAM splits memory too finely)", len(out), realmode.MemtestMaxRanges)
	}
	return out, nil
}

// clip is the part of r inside within; empty (Start >= End) when they do
// not overlap.
func clip(r, within memmap.Range) memmap.Range {
	return memmap.Range{Start: max(r.Start, within.Start), End: min(r.End, within.End)}
}

// Pages counts the pages in rs.
func Pages(rs []memmap.Range) uint64 {
	var n uint64
	for _, r := range rs {
		n += r.Size() / PageSize
	}
	return n
}

// Plan returns the boot plan of the memtest guest for cfg and the ranges
// it tests.
func Plan(cfg Config) (*loader.Plan, []memmap.Range, error) {
	mode, err := ParseMode(cfg.Mode)
	if err != nil {
		return nil, nil, err
	}
	ranges, err := TestRanges(cfg)
	if err != nil {
		return nil, nil, err
	}
	pairs := make([][2]uint64, len(ranges))
	for i, r := range ranges {
		pairs[i] = [2]uint64{r.Start, r.End}
	}
	guestMode := uint32(realmode.MemtestQuick)
	if mode == Thorough {
		guestMode = realmode.MemtestThorough
	}
	table, err := realmode.EncodeMemtestTable(guestMode, GuestSeed(cfg.Seed), pairs)
	if err != nil {
		return nil, nil, err
	}
	plan := &loader.Plan{
		Kernel:  loader.KernelInfo{Path: "(memtest " + mode + ")", Format: "raw", Protocol: loader.ProtocolELF},
		MemSize: cfg.MemSize,
		Map:     memmap.NewWithBadRAM(cfg.MemSize, loader.FirmwareHigh, cfg.BadRAM),
		Verify:  cfg.Verify,
		Placements: []loader.Placement{
			{What: "memtest", Name: "memtest guest", Start: realmode.MemtestAddr, Data: realmode.Memtest, Size: uint64(len(realmode.Memtest)), Verify: true},
			{What: "memtest", Name: "memtest table", Start: realmode.MemtestTable, Data: table, Size: uint64(len(table)), Verify: true},
		},
		Entry:       loader.EntryState{EIP: realmode.MemtestAddr, EBX: realmode.MemtestTable},
		LinkAddress: realmode.MemtestAddr,
		LoadAddress: realmode.MemtestAddr,
		Why:         "the memtest guest runs at a fixed address",
	}
	if err := plan.Finish(); err != nil {
		return nil, nil, err
	}
	return plan, ranges, nil
}

// GuestSeed is the 32-bit seed the guest gets for cfg.Seed.
func GuestSeed(seed uint64) uint32 { return uint32(seed) ^ uint32(seed>>32) }

// RangeJSON is a range in the result JSON; End is exclusive.
type RangeJSON struct {
	Start uint64 `json:"start"`
	End   uint64 `json:"end"`
}

func toJSON(rs []memmap.Range) []RangeJSON {
	out := make([]RangeJSON, 0, len(rs))
	for _, r := range rs {
		out = append(out, RangeJSON{Start: r.Start, End: r.End})
	}
	return out
}

// Report is the result JSON's "memtest" object.
type Report struct {
	// Complete is false when the guest did not finish its report (the
	// run's reason says why); the rest is what arrived.
	Complete bool        `json:"complete"`
	Mode     string      `json:"mode"`
	Seed     uint64      `json:"seed"`
	Backend  string      `json:"backend"`
	Ranges   []RangeJSON `json:"ranges_tested"`
	// PagesTested is what the guest reported in its done frame.
	PagesTested  uint64      `json:"pages_tested"`
	FailingPages uint64      `json:"failing_pages"`
	Failing      []RangeJSON `json:"failing_ranges"`
	// BadRAM and Memmap are the failing ranges as GRUB/memtest86+ and
	// Linux write them; --bad-ram reads both back.
	BadRAM string `json:"badram,omitempty"`
	Memmap string `json:"memmap,omitempty"`
	// Failures are the first MaxFailures fail frames, in order.
	Failures []Fail `json:"failures"`
	// TimeMS is the whole memtest boot, VM setup included; NsPerPage is
	// the guest's run time per page tested.
	TimeMS    float64 `json:"time_ms"`
	GuestMS   float64 `json:"guest_ms"`
	NsPerPage float64 `json:"ns_per_page"`
	// InstructionsPerPage is measured by single-stepping the guest over a
	// few pages (CountInstructions), when asked for.
	InstructionsPerPage float64       `json:"instructions_per_page,omitempty"`
	Frames              DecoderStats  `json:"frames"`
	Ignored             uint64        `json:"ignored_frames"`
	Exits               uint64        `json:"vm_exits"`
	Faulty              *faults.Stats `json:"faulty_ram,omitempty"`

	failing []memmap.Range
}

// FailingRanges returns the coalesced failing ranges.
func (r *Report) FailingRanges() []memmap.Range { return slices.Clone(r.failing) }

// MaxFailures is how many fail frames a report keeps in detail.
const MaxFailures = 64

// Session collects the frames of one memtest run and checks them against
// the ranges the host asked for: nothing outside them can be reported bad.
type Session struct {
	tested  []memmap.Range
	hello   *Hello
	done    *Done
	failing []memmap.Range
	merged  int // len(failing) after the last merge
	details []Fail
	ignored uint64
}

// NewSession starts a session for a test of the given ranges.
func NewSession(tested []memmap.Range) *Session {
	return &Session{tested: memmap.Merge(tested)}
}

// maxRun bounds the pages one fail frame can name (4 GiB of them).
const maxRun = 1 << 20

// Frame handles one frame (a Decoder's OnFrame).
func (s *Session) Frame(f Frame) {
	switch f.Type {
	case TypeHello:
		h, ok := ParseHello(f.Payload)
		if !ok || s.hello != nil {
			s.ignored++
			return
		}
		s.hello = &h
	case TypeFail:
		fl, ok := ParseFail(f.Payload)
		if !ok || fl.Pages == 0 || s.hello == nil || s.done != nil {
			s.ignored++
			return
		}
		fl.TestName = realmode.MemtestTestName(fl.Test)
		page := uint64(fl.Addr) &^ (PageSize - 1)
		run := memmap.Range{Start: page, End: page + uint64(min(fl.Pages, maxRun))*PageSize}
		hit := false
		for _, t := range s.tested {
			if r := clip(run, t); r.Start < r.End {
				s.failing = append(s.failing, r)
				hit = true
			}
		}
		if !hit {
			s.ignored++
			return
		}
		if len(s.details) < MaxFailures {
			s.details = append(s.details, fl)
		}
		// Keep the list bounded whatever the guest sends: merged, it
		// holds at most one range per tested page.
		if len(s.failing) > 2*s.merged+1024 {
			s.failing = memmap.Merge(s.failing)
			s.merged = len(s.failing)
		}
	case TypeDone:
		d, ok := ParseDone(f.Payload)
		if !ok || s.done != nil || s.hello == nil {
			s.ignored++
			return
		}
		s.done = &d
	default:
		s.ignored++
	}
}

// Failing returns the failing pages coalesced into ranges.
func (s *Session) Failing() []memmap.Range { return memmap.Merge(s.failing) }

// Complete says whether the guest sent its hello and done frames.
func (s *Session) Complete() bool { return s.hello != nil && s.done != nil }

// CoalescePages turns failing page addresses (any order, duplicates
// allowed, any address inside the page) into sorted, merged ranges.
func CoalescePages(pages []uint64) []memmap.Range {
	rs := make([]memmap.Range, 0, len(pages))
	for _, p := range pages {
		p &^= PageSize - 1
		rs = append(rs, memmap.Range{Start: p, End: p + PageSize})
	}
	return memmap.Merge(rs)
}

// Error is a memtest run that did not complete; Result is the backend's
// result when the guest ran.
type Error struct {
	Msg    string
	Result *machine.Result
}

func (e *Error) Error() string { return "memtest: " + e.Msg }

// Run boots the memtest guest for cfg on b and returns its report. opts
// carries the VM configuration (timeout, bad-RAM policy, faulty RAM); its
// BadRAM is set from cfg and its COM2 to the decoder (teed to opts.COM2
// when set, to keep the raw stream). The machine result is returned too.
func Run(ctx context.Context, b machine.Backend, cfg Config, opts machine.Options) (*Report, *machine.Result, error) {
	if cfg.Mode == "" {
		cfg.Mode = Quick
	}
	plan, ranges, err := Plan(cfg)
	if err != nil {
		return nil, nil, err
	}
	sess := NewSession(ranges)
	dec := &Decoder{OnFrame: sess.Frame}
	var sink io.Writer = dec
	if opts.COM2 != nil {
		sink = io.MultiWriter(dec, opts.COM2)
	}
	opts.COM2 = sink
	opts.BadRAM = plan.Map.Ranges(memmap.KindBad)
	start := time.Now()
	mr, err := b.Run(ctx, plan, opts)
	if err != nil {
		return nil, nil, err
	}
	dec.Close()
	rep := &Report{
		Mode: cfg.Mode, Seed: cfg.Seed, Backend: mr.Backend, Ranges: toJSON(ranges),
		TimeMS: machine.Millis(time.Since(start)), GuestMS: machine.Millis(mr.Boot), Frames: dec.Stats(), Ignored: sess.ignored,
		Exits: mr.Exits, Faulty: mr.Faulty, Failures: sess.details,
	}
	if rep.Backend == "" {
		rep.Backend = b.Name()
	}
	if rep.Failures == nil {
		rep.Failures = []Fail{}
	}
	rep.failing = sess.Failing()
	rep.Failing = toJSON(rep.failing)
	rep.FailingPages = Pages(rep.failing)
	rep.BadRAM = memmap.FormatBadRAM(rep.failing)
	rep.Memmap = memmap.FormatMemmap(rep.failing)
	if sess.done != nil {
		rep.PagesTested = uint64(sess.done.Tested)
		if rep.PagesTested > 0 {
			rep.NsPerPage = float64(mr.Boot.Nanoseconds()) / float64(rep.PagesTested)
		}
	}
	if err := check(mr, sess, ranges, b.Name()); err != nil {
		return rep, mr, err
	}
	rep.Complete = true
	return rep, mr, nil
}

// check says why a memtest run cannot be trusted, if it cannot.
func check(mr *machine.Result, sess *Session, ranges []memmap.Range, backend string) error {
	if mr.Outcome != machine.Pass && !(mr.GuestRan && mr.Outcome == machine.Fail) {
		return &Error{Msg: fmt.Sprintf("the guest did not finish: %s: %s", mr.Outcome, mr.Reason), Result: mr}
	}
	if mr.GuestRan {
		switch mr.GuestValue {
		case realmode.MemtestExitOK:
		case realmode.MemtestExitBadTable:
			return &Error{Msg: "the guest found no valid table (a kvmboot bug)", Result: mr}
		case realmode.MemtestExitNoUART:
			return &Error{Msg: fmt.Sprintf("no UART answers at COM2 (0x2f8) on the %s backend: the memtest reports over COM2", backend), Result: mr}
		case realmode.MemtestExitUARTStuck:
			return &Error{Msg: "COM2 stopped accepting bytes: failures may be missing", Result: mr}
		default:
			return &Error{Msg: fmt.Sprintf("the guest ended with debug-exit value %d", mr.GuestValue), Result: mr}
		}
	}
	if !sess.Complete() {
		return &Error{Msg: fmt.Sprintf("the guest's report on COM2 is incomplete (hello %v, done %v) on the %s backend", sess.hello != nil, sess.done != nil, backend), Result: mr}
	}
	if want := Pages(ranges); uint64(sess.done.Tested) != want || uint64(sess.hello.Pages) != want {
		return &Error{Msg: fmt.Sprintf("the guest tested %d pages (announced %d), the host asked for %d", sess.done.Tested, sess.hello.Pages, want), Result: mr}
	}
	return nil
}

// CountInstructions measures the memtest guest's instructions per clean
// page by single-stepping it (KVM backend: machine.Options.Trace) over one
// and over three pages of RAM at 16 MiB (or the lowest tested RAM above
// 1 MiB) and halving the difference. Single-stepping counts a string
// instruction with a rep prefix once; the memtest guest uses none.
func CountInstructions(ctx context.Context, b machine.Backend, cfg Config, opts machine.Options) (float64, error) {
	ranges, err := TestRanges(Config{MemSize: cfg.MemSize, BadRAM: cfg.BadRAM, Ranges: cfg.Ranges})
	if err != nil {
		return 0, err
	}
	var at uint64
	for _, r := range ranges {
		if r.Size() >= 3*PageSize && r.Start >= 1<<20 {
			at = r.Start
			if r.Contains(memmap.Range{Start: 16 << 20, End: 16<<20 + 3*PageSize}) {
				at = 16 << 20
			}
			break
		}
	}
	if at == 0 {
		return 0, errors.New("memtest: no 3 pages of tested RAM above 1 MiB to count instructions on")
	}
	count := func(pages uint64) (uint64, error) {
		c := cfg
		c.Ranges = []memmap.Range{{Start: at, End: at + pages*PageSize}}
		var n uint64
		o := opts
		o.Trace = func(string) { n++ }
		o.TraceAll, o.TraceLimit = true, 1<<40
		_, mr, err := Run(ctx, b, c, o)
		if err != nil {
			return 0, err
		}
		if mr.Outcome != machine.Pass {
			return 0, fmt.Errorf("memtest: counting run: %s: %s", mr.Outcome, mr.Reason)
		}
		return n, nil
	}
	one, err := count(1)
	if err != nil {
		return 0, err
	}
	three, err := count(3)
	if err != nil {
		return 0, err
	}
	if three <= one {
		return 0, fmt.Errorf("memtest: single-stepping counted %d instructions for 1 page and %d for 3: does this backend single-step?", one, three)
	}
	return float64(three-one) / 2, nil
}
