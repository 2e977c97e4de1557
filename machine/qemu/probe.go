package qemu

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"kvmboot/machine"
	"kvmboot/realmode"
)

// ProbeResult is what this host's QEMU can do for kvmboot.
type ProbeResult struct {
	Binary  string `json:"binary"`
	Found   bool   `json:"found"`
	Version string `json:"version,omitempty"`
	Error   string `json:"error,omitempty"`
	// TCG: the probe guest ran through our firmware under TCG and turned
	// on 32-bit paging.
	TCG       bool    `json:"tcg"`
	TCGDetail string  `json:"tcg_detail,omitempty"`
	TCGMillis float64 `json:"tcg_run_ms"`
	// KVM: the probe guest ran under -accel kvm; KVMPaging: it could also
	// turn on 32-bit paging there (what an i386 Linux kernel needs).
	KVM             bool    `json:"kvm"`
	KVMDetail       string  `json:"kvm_detail,omitempty"`
	KVMPaging       bool    `json:"kvm_paging32"`
	KVMPagingDetail string  `json:"kvm_paging_detail,omitempty"`
	KVMMillis       float64 `json:"kvm_run_ms"`
}

// CanBootLinuxKVM says whether QEMU with KVM can run a paged 32-bit guest.
func (p *ProbeResult) CanBootLinuxKVM() bool { return p.Found && p.KVM && p.KVMPaging }

// Probe finds qemu-system-i386 and boots the probe guest (realmode.Probe)
// through our firmware: under TCG with paging, under KVM without and with.
func Probe(ctx context.Context) *ProbeResult {
	p := &ProbeResult{Binary: DefaultBinary}
	bin, err := lookBinary("")
	if err != nil {
		p.Error = err.Error()
		return p
	}
	p.Binary, p.Found = bin, true
	out, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		p.Error = fmt.Sprintf("%s --version: %v", bin, err)
		return p
	}
	p.Version = strings.TrimPrefix(firstLine(strings.TrimSpace(string(out))), "QEMU emulator version ")

	res, d, err := probeRun(ctx, AccelTCG, realmode.ProbePaging)
	p.TCG, p.TCGMillis = ok(res, err), machine.Millis(d)
	if !p.TCG {
		p.TCGDetail = machine.Describe(res, err)
	}

	if f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0); err != nil {
		p.KVMDetail = "no usable /dev/kvm: " + err.Error()
		return p
	} else {
		f.Close()
	}
	res, d, err = probeRun(ctx, AccelKVM, realmode.ProbeSpin)
	p.KVM, p.KVMMillis = ok(res, err), machine.Millis(d)
	if !p.KVM {
		p.KVMDetail = machine.Describe(res, err)
		return p
	}
	res, _, err = probeRun(ctx, AccelKVM, realmode.ProbePaging)
	p.KVMPaging = ok(res, err)
	if !p.KVMPaging {
		p.KVMPagingDetail = machine.Describe(res, err)
	}
	return p
}

// probeRun boots the probe guest with test in EAX (and a loop count of 1)
// and returns the result and how long the whole run took.
func probeRun(ctx context.Context, accel string, test uint32) (*machine.Result, time.Duration, error) {
	plan, err := machine.ProbePlan(test, 1)
	if err != nil {
		return nil, 0, err
	}
	start := time.Now()
	res, err := Backend{Accel: accel}.Run(ctx, plan, machine.Options{Timeout: 20 * time.Second})
	return res, time.Since(start), err
}

func ok(res *machine.Result, err error) bool { return err == nil && res.Outcome == machine.Pass }
