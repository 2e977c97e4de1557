package boot

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"kvmboot/boot/testkernel"
	"kvmboot/loader"
	"kvmboot/machine"
	"kvmboot/machine/kvm"
	"kvmboot/machine/qemu"
)

// VMM names a backend (Config.VMM, --vmm).
type VMM string

// The backends.
const (
	VMMAuto       VMM = "auto"        // chosen from the host probe
	VMMKVM        VMM = "kvm"         // our KVM machine
	VMMQEMU       VMM = "qemu"        // our firmware and plan under qemu-system-i386
	VMMQEMUKernel VMM = "qemu-kernel" // QEMU's own -kernel path, a reference
)

// VMMs lists every backend name, auto first.
var VMMs = []VMM{VMMAuto, VMMKVM, VMMQEMU, VMMQEMUKernel}

func (v VMM) String() string { return string(v) }

// AccelAuto lets kvmboot choose QEMU's accelerator (Config.Accel); the
// others are qemu.AccelKVM and qemu.AccelTCG.
const AccelAuto = "auto"

// Machine is the PC a backend presents (Config.Machine, --machine).
type Machine string

// The machines.
const (
	MachinePC      Machine = "pc"      // a PC with ACPI tables (and under QEMU an HPET, PIIX4 PM, PCI); "" means pc
	MachineMinimal Machine = "minimal" // no ACPI tables; under QEMU the ISA PC, which starts sooner
)

// Machines lists every machine name.
var Machines = []Machine{MachinePC, MachineMinimal}

func (m Machine) String() string { return string(m) }

// Choice is the backend a boot runs on, and why.
type Choice struct {
	VMM   VMM    `json:"vmm"`             // kvm, qemu or qemu-kernel
	Accel string `json:"accel,omitempty"` // QEMU's accelerator: tcg or kvm
	Why   string `json:"why"`
}

func (c Choice) String() string {
	s := "--vmm=" + c.VMM.String()
	if c.Accel != "" {
		s += " --accel=" + c.Accel
	}
	return s
}

// newBackend returns the backend a validated cfg selects (probing the
// host for auto). Its Name is the VMM; choiceOf tells the accelerator and
// the reason.
func newBackend(ctx context.Context, cfg Config) (machine.Backend, error) {
	minimal := cfg.Machine == MachineMinimal
	c, err := choose(ctx, cfg)
	if err != nil {
		return nil, err
	}
	var b machine.Backend
	switch c.VMM {
	case VMMKVM:
		b = kvm.Backend{Log: cfg.Log, Minimal: minimal}
	case VMMQEMU:
		b = qemu.Backend{Accel: c.Accel, Log: cfg.Log, Minimal: minimal}
	case VMMQEMUKernel:
		qb := qemu.Backend{Accel: c.Accel, Log: cfg.Log, Kernel: true, Minimal: minimal}
		if cfg.Kernel == "" {
			qb.KernelImage, qb.KernelName = testkernel.ELF, testkernel.FileName
		}
		b = qb
	}
	return &chosen{Backend: b, choice: c}, nil
}

// chosen is a backend with the reason it was chosen. It reports its VMM
// (kvm, qemu, qemu-kernel) as the result's backend; the accelerator goes
// beside it.
type chosen struct {
	machine.Backend
	choice Choice
}

func (c *chosen) Name() string { return c.choice.VMM.String() }

func (c *chosen) Run(ctx context.Context, plan *loader.Plan, opts machine.Options) (*machine.Result, error) {
	res, err := c.Backend.Run(ctx, plan, opts)
	if res != nil {
		res.Backend = c.choice.VMM.String()
	}
	return res, err
}

// starterOf returns b's backend as a machine.Starter, when it is one.
func starterOf(b machine.Backend) (machine.Starter, bool) {
	if c, ok := b.(*chosen); ok {
		b = c.Backend
	}
	st, ok := b.(machine.Starter)
	return st, ok
}

// choiceOf returns the accelerator and the reason for a backend that
// newBackend returned ("" for others).
func choiceOf(b machine.Backend) (accel, why string) {
	if c, ok := b.(*chosen); ok {
		return c.choice.Accel, c.choice.Why
	}
	return "", ""
}

// choose picks the backend for a validated cfg's VMM and Accel: explicit
// names as given, auto from the host probe (cached per host boot).
func choose(ctx context.Context, cfg Config) (Choice, error) {
	accel := cmp.Or(cfg.Accel, AccelAuto)
	switch vmm := cmp.Or(cfg.VMM, VMMAuto); vmm {
	case VMMKVM:
		return Choice{VMM: VMMKVM, Why: "--vmm=kvm"}, nil
	case VMMQEMU, VMMQEMUKernel:
		if accel != AccelAuto {
			return Choice{VMM: vmm, Accel: accel, Why: fmt.Sprintf("--vmm=%s --accel=%s", vmm, accel)}, nil
		}
		h, err := ProbeHost(ctx, false)
		if err != nil {
			return Choice{}, err
		}
		c, err := h.QEMUChoice()
		c.VMM = vmm
		if vmm == VMMQEMU {
			c = preferTCG(c, cfg)
		}
		return c, err
	}
	// auto
	if accel != AccelAuto {
		return Choice{VMM: VMMQEMU, Accel: accel, Why: fmt.Sprintf("--accel=%s names a QEMU accelerator", accel)}, nil
	}
	if cfg.CountStub {
		return Choice{VMM: VMMKVM, Why: "--count-stub single-steps the vCPU, which only our KVM machine does"}, nil
	}
	h, err := ProbeHost(ctx, false)
	if err != nil {
		return Choice{}, err
	}
	c, err := h.AutoChoice()
	return preferTCG(c, cfg), err
}

// preferTCG turns a choice of QEMU with KVM into QEMU with TCG when cfg
// injects faulty RAM or traces: kvmboot's TCG plugin does both, and QEMU
// runs plugins only under TCG.
func preferTCG(c Choice, cfg Config) Choice {
	if c.VMM != VMMQEMU || c.Accel != qemu.AccelKVM || len(cfg.Faulty) == 0 && cfg.Trace == nil {
		return c
	}
	c.Accel = qemu.AccelTCG
	c.Why += "; but --faulty-ram and --trace need TCG, where kvmboot's plugin sees every access and instruction"
	return c
}

// ProbeFormat is the version of the probe cache's format: a cache written
// with another is probed again.
const ProbeFormat = 1

// HostProbe is what this host's KVM and QEMU can do for kvmboot.
type HostProbe struct {
	Format  int    `json:"format"`
	Version string `json:"kvmboot_version"`
	BootID  string `json:"boot_id"`
	// QEMUBinary identifies the QEMU probed (path, size, modification
	// time): installing or upgrading QEMU makes the cache stale.
	QEMUBinary string            `json:"qemu_binary"`
	Probed     time.Time         `json:"probed_at"`
	KVM        *kvm.ProbeResult  `json:"kvm"`
	QEMU       *qemu.ProbeResult `json:"qemu"`
	// Auto is what --vmm=auto picks, or AutoError why nothing can run.
	Auto      Choice `json:"auto"`
	AutoError string `json:"auto_error,omitempty"`
	// CacheFile is where the result is kept; Cached says it came from
	// there rather than from probing now.
	CacheFile string `json:"cache_file,omitempty"`
	Cached    bool   `json:"cached"`
}

// ProbeHost returns the host probe: from the cache for this host boot when
// it is there and current, else by probing both backends now (and caching
// the result). refresh probes even when the cache is current.
func ProbeHost(ctx context.Context, refresh bool) (*HostProbe, error) {
	key := currentProbeKey()
	path := probeCachePath(key.BootID)
	if path != "" && !refresh {
		if h, ok := loadProbe(path, key); ok {
			return h, nil
		}
	}
	h := &HostProbe{Format: key.Format, Version: key.Version, BootID: key.BootID, QEMUBinary: key.QEMUBinary, Probed: time.Now().UTC()}
	h.KVM = kvm.Probe(ctx)
	h.QEMU = qemu.Probe(ctx)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("probing the host: %w", err)
	}
	h.decide()
	if path != "" {
		if err := saveProbe(path, h); err == nil {
			h.CacheFile = path
		}
	}
	return h, nil
}

// probeKey is what a cached probe must match.
type probeKey struct {
	Format     int
	Version    string
	BootID     string
	QEMUBinary string
}

func currentProbeKey() probeKey {
	return probeKey{Format: ProbeFormat, Version: kvmbootVersion(), BootID: bootID(), QEMUBinary: qemuBinaryID()}
}

// kvmbootVersion is the module version and VCS revision of this binary.
func kvmbootVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		switch {
		case s.Key == "vcs.revision":
			v += " " + s.Value
		case s.Key == "vcs.modified" && s.Value == "true":
			v += "+modified"
		}
	}
	return v
}

// bootID identifies this boot of the host.
func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

func qemuBinaryID() string {
	p, err := qemu.BinaryPath()
	if err != nil {
		return "none"
	}
	st, err := os.Stat(p)
	if err != nil {
		return "none"
	}
	return fmt.Sprintf("%s %d %d", p, st.Size(), st.ModTime().UnixNano())
}

// probeCachePath is the cache file for a host boot, "" without a cache dir.
func probeCachePath(boot string) string {
	dir, err := os.UserCacheDir()
	if err != nil || boot == "" || strings.ContainsAny(boot, "/\\") {
		return ""
	}
	return filepath.Join(dir, "kvmboot", "probe-"+boot+".json")
}

// loadProbe reads a cached probe; ok is false when the file is missing,
// unreadable or was written for another key.
func loadProbe(path string, key probeKey) (*HostProbe, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, false
	}
	var h HostProbe
	if err := json.Unmarshal(b, &h); err != nil || h.KVM == nil || h.QEMU == nil {
		return nil, false
	}
	if h.Format != key.Format || h.Version != key.Version || h.BootID != key.BootID || h.QEMUBinary != key.QEMUBinary {
		return nil, false
	}
	h.decide() // the choice follows this binary's rules, not the file's
	h.CacheFile, h.Cached = path, true
	return &h, true
}

// saveProbe writes the probe atomically (a temporary file renamed over the
// cache file) and removes the caches of earlier host boots.
func saveProbe(path string, h *HostProbe) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	saved := *h
	saved.CacheFile, saved.Cached = "", false
	b, err := json.MarshalIndent(&saved, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".probe-*.tmp")
	if err != nil {
		return err
	}
	_, err = f.Write(append(b, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return err
	}
	old, _ := filepath.Glob(filepath.Join(dir, "probe-*.json"))
	for _, o := range old {
		if o != path {
			os.Remove(o)
		}
	}
	return nil
}

// decide fills in what auto picks.
func (h *HostProbe) decide() {
	c, err := h.AutoChoice()
	h.Auto, h.AutoError = c, ""
	if err != nil {
		h.Auto, h.AutoError = Choice{}, err.Error()
	}
}

// AutoChoice is --vmm=auto: our KVM machine when this host's KVM runs
// 32-bit paging fast enough (kvm.SlowSpeed), else QEMU with KVM when that runs a
// paged guest, else QEMU with TCG; with no QEMU, our KVM machine for
// kernels that need no paging.
func (h *HostProbe) AutoChoice() (Choice, error) {
	k, q := h.KVM, h.QEMU
	if k.CanBootLinux() {
		return Choice{VMM: VMMKVM, Why: fmt.Sprintf("this host's KVM (%s) runs 32-bit paging (the probe's guest loop ran %.3g instructions/s)", k.Module, k.InstructionsPerSecond)}, nil
	}
	why := kvmLimit(k)
	if q.CanBootLinuxKVM() {
		return Choice{VMM: VMMQEMU, Accel: qemu.AccelKVM, Why: why + "; QEMU's KVM accelerator runs a paged 32-bit guest"}, nil
	}
	if q.Found && q.TCG {
		return Choice{VMM: VMMQEMU, Accel: qemu.AccelTCG, Why: why + "; " + qemuKVMLimit(q) + "; QEMU with TCG runs a paged 32-bit guest"}, nil
	}
	if k.Usable && k.ProtectedMode {
		return Choice{VMM: VMMKVM, Why: why + "; " + qemuLimit(q) + ": our KVM machine boots kernels that do not turn on paging"}, nil
	}
	return Choice{}, fmt.Errorf("no backend can boot here: %s; %s", why, qemuLimit(q))
}

// QEMUChoice is --accel=auto: KVM when QEMU's KVM accelerator runs a
// paged 32-bit guest, else TCG.
func (h *HostProbe) QEMUChoice() (Choice, error) {
	q := h.QEMU
	if !q.Found {
		return Choice{}, fmt.Errorf("%w", qemu.ErrNoQEMU)
	}
	if q.CanBootLinuxKVM() {
		return Choice{VMM: VMMQEMU, Accel: qemu.AccelKVM, Why: "QEMU's KVM accelerator runs a paged 32-bit guest"}, nil
	}
	if q.TCG {
		return Choice{VMM: VMMQEMU, Accel: qemu.AccelTCG, Why: qemuKVMLimit(q) + "; TCG runs a paged 32-bit guest"}, nil
	}
	return Choice{}, errors.New("QEMU cannot run kvmboot's probe guest: " + qemuLimit(q))
}

// kvmLimit says why our KVM machine is not the first choice.
func kvmLimit(k *kvm.ProbeResult) string {
	switch {
	case !k.Usable:
		return "no usable /dev/kvm (" + k.Error + ")"
	case !k.ProtectedMode:
		return "our KVM machine cannot run the entry stub (" + k.Error + ")"
	case !k.Paging32:
		return fmt.Sprintf("this host's KVM (%s) cannot run 32-bit paging (%.3g guest instructions/s)", k.Module, k.InstructionsPerSecond)
	default:
		return fmt.Sprintf("this host's KVM (%s) runs 32-bit paging, but the probe's guest loop ran only %.3g instructions/s (below %.0e: it emulates guest code)", k.Module, k.InstructionsPerSecond, kvm.SlowSpeed)
	}
}

// qemuKVMLimit says why QEMU's KVM accelerator is not used.
func qemuKVMLimit(q *qemu.ProbeResult) string {
	switch {
	case !q.KVM:
		return "QEMU's KVM accelerator does not run the probe guest (" + short(q.KVMDetail) + ")"
	default:
		return "QEMU's KVM accelerator cannot run 32-bit paging either"
	}
}

// qemuLimit says why QEMU cannot be used at all.
func qemuLimit(q *qemu.ProbeResult) string {
	switch {
	case !q.Found:
		return "qemu-system-i386 not found"
	case q.Error != "":
		return "QEMU: " + q.Error
	default:
		return "QEMU with TCG does not run the probe guest (" + short(q.TCGDetail) + ")"
	}
}

// short cuts a probe detail to its first clause: register dumps belong
// in `kvmboot probe`, not in every result.
func short(s string) string {
	if i := strings.Index(s, ": "); i >= 0 {
		if j := strings.Index(s[i+2:], ": "); j >= 0 {
			return s[:i+2+j]
		}
	}
	return s
}
