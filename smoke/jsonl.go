package smoke

import (
	"bufio"
	"encoding/json"
	"io"

	"kvmboot/boot"
)

// Record is one line of the JSON lines file: one attempt of one case.
type Record struct {
	Case     string `json:"case"`
	Kernel   string `json:"kernel"`
	Scenario string `json:"scenario"`
	VMM      string `json:"vmm"` // the vmm label asked for; result.vmm is what ran
	Attempt  int    `json:"attempt"`
	// Verdict is this attempt's: pass or what went wrong.
	Verdict Kind   `json:"verdict"`
	Reason  string `json:"reason,omitempty"`
	// Final marks a case's last attempt; CaseVerdict is then the case's
	// verdict (flaky when an earlier attempt failed).
	Final       bool         `json:"final"`
	CaseVerdict Kind         `json:"case_verdict,omitempty"`
	Want        string       `json:"want"`
	Console     string       `json:"console"`
	WallMS      float64      `json:"wall_ms"`
	Error       string       `json:"error,omitempty"`
	Result      *boot.Result `json:"result"`
}

// JSONL writes a Record per attempt as it finishes.
type JSONL struct {
	w   *bufio.Writer
	enc *json.Encoder
	err error
}

// NewJSONL returns an observer writing to w.
func NewJSONL(w io.Writer) *JSONL {
	bw := bufio.NewWriter(w)
	return &JSONL{w: bw, enc: json.NewEncoder(bw)}
}

func (j *JSONL) Start(*Report)      {}
func (j *JSONL) Started(*Case, int) {}
func (j *JSONL) Done(*Report)       { j.flush() }

// Err is the first write error.
func (j *JSONL) Err() error { return j.err }

func (j *JSONL) flush() { j.keep(j.w.Flush()) }

func (j *JSONL) keep(err error) {
	if j.err == nil {
		j.err = err
	}
}

func (j *JSONL) Finished(cr *CaseResult, a *Attempt, final bool) {
	c := cr.Case
	rec := Record{
		Case: c.Name, Kernel: c.Kernel, Scenario: c.Scenario, VMM: c.VMM, Attempt: a.N,
		Verdict: a.Kind, Reason: a.Reason, Final: final, Want: c.Want.String(),
		Console: a.Console, WallMS: ms(a.Wall), Error: a.Err, Result: a.Result,
	}
	if final {
		rec.CaseVerdict = cr.Kind
	}
	j.keep(j.enc.Encode(&rec))
	j.flush() // a line per attempt as it ends: a killed run keeps what it did
}
