package qemu

import (
	"fmt"
	"strings"
)

// Accelerators QEMU can use.
const (
	AccelTCG = "tcg"
	AccelKVM = "kvm"
)

// CPU models: TCG offers everything it emulates (SSE4.2 for the stub's
// crc32, RDRAND too: TCG implements it), as an AMD family 6 model 6, whose
// stepping 1 makes it an Athlon that Linux takes as fit for SMP (with QEMU's
// stepping 3 and no MP bit, which QEMU cannot set, every processor but the
// first warns "This combination of AMD processors is not suitable for SMP"
// and taints the kernel); under KVM the host's CPU, without the MSR that
// makes QEMU 7.2 abort on nested KVMs (DESIGN.md §7).
const (
	cpuTCG = "max,stepping=1"
	cpuKVM = "host,arch-capabilities=off"
)

// launch is everything that shapes QEMU's command line.
type launch struct {
	Accel   string
	MemSize uint64
	CPUs    int    // -smp; 0 or 1 leaves QEMU's default, one
	RAMPath string // memory-backend-file path (shared with kvmboot)
	// BIOS is our firmware image; empty means QEMU's own (SeaBIOS).
	BIOS string
	// ISA picks QEMU's ISA PC for our firmware (Backend.Minimal; see
	// the package doc); otherwise it runs on the PC.
	ISA bool
	// Kernel, Append and Initrd are for the reference run (-kernel).
	Kernel, Append, Initrd string
	QMPPath                string // unix socket kvmboot listens on
	LogPath                string // -D: the -d and -trace output
	// COM2Path, when set, receives the guest's second serial port (the
	// memtest guest's report channel).
	COM2Path string
	// Plugin, when set, is -plugin's value: kvmboot's TCG plugin.
	Plugin string
}

// optEscape doubles commas, QEMU's escape inside an option value.
func optEscape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// args returns QEMU's command line (without the binary).
func (l *launch) args() []string {
	cpu := cpuTCG
	if l.Accel == AccelKVM {
		cpu = cpuKVM
	}
	machine := "pc,memory-backend=ram"
	switch {
	case l.ISA:
		machine = "isapc,memory-backend=ram"
	case l.BIOS == "":
		// The reference run: QEMU's default PC, as `qemu -kernel` users
		// know it.
	default:
		// A PC: its ACPI PM block (the PIIX4's, which our firmware
		// enables) and HPET, as our ACPI tables describe them (PCPlatform).
		// The SMBus's SPD EEPROMs and the VMware port are left out, and so
		// is the TPR-patching ROM.
		machine += ",smbus=off,vmport=off"
	}
	a := []string{
		"-nodefaults", "-no-user-config", "-display", "none",
		"-S", // paused until kvmboot has QMP
		"-machine", machine,
		"-accel", l.accelOption(),
		"-cpu", cpu,
		// -m as well: left out, it means 128M, more than a smaller
		// backend, which the ISA PC (no memory hotplug) refuses.
		"-m", fmt.Sprintf("%dk", l.MemSize>>10),
		"-object", fmt.Sprintf("memory-backend-file,id=ram,size=%d,mem-path=%s,share=on", l.MemSize, optEscape(l.RAMPath)),
	}
	if l.CPUs > 1 {
		// A socket each, as on our KVM machine: QEMU 7.2 makes them
		// cores of one socket, and SeaBIOS's MP table (the reference
		// run's) then lists only the socket's first.
		a = append(a, "-smp", fmt.Sprintf("%d,sockets=%d", l.CPUs, l.CPUs))
	}
	if l.BIOS != "" {
		a = append(a, "-bios", l.BIOS, "-global", "apic-common.vapic=off")
	}
	if l.Kernel != "" {
		a = append(a, "-kernel", l.Kernel)
		if l.Append != "" {
			a = append(a, "-append", l.Append)
		}
		if l.Initrd != "" {
			a = append(a, "-initrd", l.Initrd)
		}
	}
	a = append(a, "-chardev", "stdio,id=con,signal=off", "-serial", "chardev:con")
	if l.COM2Path != "" {
		a = append(a, "-chardev", "file,id=com2,path="+optEscape(l.COM2Path), "-serial", "chardev:com2")
	}
	if l.Plugin != "" {
		a = append(a, "-plugin", l.Plugin)
	}
	a = append(a,
		"-device", "isa-debug-exit,iobase=0xf4,iosize=4",
		"-chardev", "socket,id=qmp,path="+optEscape(l.QMPPath), "-mon", "chardev=qmp,mode=control",
		"-no-reboot", "-no-shutdown",
		"-d", "cpu_reset", "-D", l.LogPath,
		"-trace", "pckbd_kbd_write_command", "-trace", "port92_write",
	)
	if l.Accel == AccelKVM {
		// Under KVM only this event tells a triple fault (exit reason 8,
		// KVM_EXIT_SHUTDOWN) from a reset request.
		a = append(a, "-trace", "kvm_run_exit")
	}
	return a
}

// accelOption is -accel's value. Several processors under TCG run each
// on a thread of its own (QEMU 7.2 does so for an i386 guest on an x86
// host), except with kvmboot's plugin: it watches guest RAM by
// protecting pages, and one vCPU let through a page for an access would
// open it to the others' accesses; on one thread (thread=single) the
// vCPUs take turns and none slips through.
func (l *launch) accelOption() string {
	if l.Accel == AccelTCG && l.CPUs > 1 && l.Plugin != "" {
		return AccelTCG + ",thread=single"
	}
	return l.Accel
}

// multibootInitrd joins Multiboot module strings (path first) into QEMU's
// -initrd list: comma separated, commas inside a string doubled.
func multibootInitrd(mods []string) (string, error) {
	parts := make([]string, len(mods))
	for i, m := range mods {
		if strings.TrimSpace(m) == "" {
			return "", fmt.Errorf("module %d has an empty string: QEMU's Multiboot loader takes the file name from it", i+1)
		}
		parts[i] = optEscape(m)
	}
	return strings.Join(parts, ","), nil
}

// mallocHugePages is the glibc tunable (2.35 and later; older ones ignore
// it) that makes QEMU's malloc ask for transparent huge pages. QEMU's
// start-up is mostly page faults (its shared libraries' relocations, then
// its heap), and on hosts where a fault costs 10-15 us it cut QEMU's CPU
// time to its first QMP answer by about a third (README, Measured).
const mallocHugePages = "glibc.malloc.hugetlb=1"

// qemuEnv is QEMU's environment: env with mallocHugePages added to
// GLIBC_TUNABLES, unless the user set that tunable already.
func qemuEnv(env []string) []string {
	out := make([]string, 0, len(env)+1)
	tunables := "GLIBC_TUNABLES=" + mallocHugePages
	for _, kv := range env {
		v, ok := strings.CutPrefix(kv, "GLIBC_TUNABLES=")
		if !ok {
			out = append(out, kv)
			continue
		}
		switch {
		case v == "":
		case strings.Contains(v, "glibc.malloc.hugetlb="):
			tunables = kv
		default:
			tunables = kv + ":" + mallocHugePages
		}
	}
	return append(out, tunables)
}
