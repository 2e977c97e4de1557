package kvm

import (
	"context"
	"fmt"
	"os"
	"time"

	"kvmboot/machine"
	"kvmboot/realmode"
)

// ProbeResult is what this host's KVM can do for kvmboot.
type ProbeResult struct {
	Device string `json:"device"`
	// Usable is false when /dev/kvm cannot be opened or a VM not made.
	Usable bool   `json:"usable"`
	Error  string `json:"error,omitempty"`
	// Module is the KVM vendor module loaded: kvm_intel, kvm_amd, kvm_pvm.
	Module string `json:"module"`
	// RealMode and ProtectedMode: our stub ran from the reset vector to a
	// 32-bit entry. Paging32: a guest could turn on 32-bit paging.
	RealMode      bool   `json:"real_mode"`
	ProtectedMode bool   `json:"protected_mode"`
	Paging32      bool   `json:"paging32"`
	PagingDetail  string `json:"paging_detail,omitempty"`
	// InstructionsPerSecond is measured on a guest loop in protected mode
	// (no exits): how fast this KVM runs guest code, whatever runs it
	// underneath (hardware, or an emulator such as kvm_pvm, or QEMU's TCG
	// for a KVM nested in it).
	InstructionsPerSecond float64 `json:"instructions_per_second"`
	// SetupMillis is VM creation to the first KVM_RUN.
	SetupMillis float64 `json:"setup_ms"`
}

// SlowSpeed is the probe loop's rate below which a KVM is not worth
// booting Linux on: kvm_pvm, which emulates every instruction, manages a
// few million a second, QEMU's TCG some hundreds of millions.
const SlowSpeed = 100e6

// CanBootLinux says whether an i386 Linux kernel can run on this KVM at
// a useful speed.
func (p *ProbeResult) CanBootLinux() bool {
	return p.Usable && p.Paging32 && p.InstructionsPerSecond >= SlowSpeed
}

// vendorModules are the KVM modules kvmboot knows, in the order probed.
var vendorModules = []string{"kvm_intel", "kvm_amd", "kvm_pvm"}

// Probe boots two tiny guests through the real entry stub: a timed loop
// (real mode, protected mode, instructions per second) and a paging test.
func Probe(ctx context.Context) *ProbeResult {
	p := &ProbeResult{Device: DevicePath, Module: "none"}
	for _, m := range vendorModules {
		if _, err := os.Stat("/sys/module/" + m); err == nil {
			p.Module = m
			break
		}
	}
	vm, err := New(machine.ProbeMem, nil)
	if err != nil {
		p.Error = err.Error()
		return p
	}
	vm.Close()
	p.Usable = true

	base, err := probeRun(ctx, realmode.ProbeSpin, 1)
	if err != nil || base.Outcome != machine.Pass {
		p.Error = fmt.Sprintf("the entry stub did not reach a 32-bit guest: %s", machine.Describe(base, err))
		return p
	}
	p.RealMode, p.ProtectedMode = true, true
	p.SetupMillis = machine.Millis(base.Setup)

	// Grow the loop until it takes long enough to time against the fixed
	// cost of a boot.
	for n := uint32(300_000); ; n *= 10 {
		res, err := probeRun(ctx, realmode.ProbeSpin, n)
		if err != nil || res.Outcome != machine.Pass {
			p.Error = "timing loop: " + machine.Describe(res, err)
			break
		}
		if d := res.Boot - base.Boot; d > 50*time.Millisecond || n >= 300_000_000 {
			p.InstructionsPerSecond = 2 * float64(n-1) / max(d, time.Microsecond).Seconds()
			break
		}
	}

	res, err := probeRun(ctx, realmode.ProbePaging, 0)
	p.Paging32 = err == nil && res.Outcome == machine.Pass
	if !p.Paging32 {
		p.PagingDetail = machine.Describe(res, err)
	}
	return p
}

func probeRun(ctx context.Context, test, count uint32) (*machine.Result, error) {
	plan, err := machine.ProbePlan(test, count)
	if err != nil {
		return nil, err
	}
	return Backend{}.Run(ctx, plan, machine.Options{Timeout: 20 * time.Second})
}
