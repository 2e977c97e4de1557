package qemu

import (
	"fmt"
	"strings"

	"kvmboot/loader"
	"kvmboot/machine"
)

// debugExitValue maps QEMU's exit status back to what the guest wrote to
// isa-debug-exit: QEMU exits with (v<<1)|1, so an odd status s means v =
// s>>1 (the low 7 bits of v; the rest is lost in the 8-bit status). An even
// status is QEMU ending for another reason.
func debugExitValue(status int) (uint32, bool) {
	if status < 0 || status&1 == 0 {
		return 0, false
	}
	return uint32(status&0xff) >> 1, true
}

// qemuError picks QEMU's own error lines out of its stderr: "qemu-system-
// i386: ..." lines that are not warnings. QEMU exits with status 1 after
// such an error, the same status as a guest writing 0 to isa-debug-exit.
func qemuError(stderr string) string {
	var errs []string
	for _, line := range strings.Split(stderr, "\n") {
		line = strings.TrimSpace(line)
		_, msg, ok := strings.Cut(line, ": ")
		if !ok || !strings.HasPrefix(line, "qemu-system-") || strings.HasPrefix(msg, "warning:") || strings.HasPrefix(msg, "terminating on signal") {
			continue
		}
		errs = append(errs, line)
	}
	return strings.Join(errs, "; ")
}

// exitResult turns QEMU's exit status into a result. mem is guest RAM, read
// for the stub's state when the guest wrote the stub's failure value.
func exitResult(status int, stderr string, mem *machine.GuestMemory, plan *loader.Plan) *machine.Result {
	v, ok := debugExitValue(status)
	if !ok {
		msg := fmt.Sprintf("QEMU exited with status %d before the guest reported", status)
		if e := qemuError(stderr); e != "" {
			msg += ": " + e
		}
		return &machine.Result{Outcome: machine.Error, Status: machine.StatusError, Reason: msg}
	}
	if v == 0 {
		if e := qemuError(stderr); e != "" {
			return &machine.Result{Outcome: machine.Error, Status: machine.StatusError, Reason: "QEMU failed: " + e}
		}
	}
	return machine.DebugExit(v, mem, plan)
}

// resetCause reads QEMU's log (-d cpu_reset and the reset trace events)
// after a guest-reset shutdown and says what the guest did.
func resetCause(log string) (triple bool, how string) {
	how = "reset request (port 0xcf9 or ACPI)"
	for _, line := range strings.Split(log, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "Triple fault":
			return true, "triple fault"
		case strings.HasPrefix(line, "kvm_run_exit ") && strings.HasSuffix(line, "reason 8"):
			return true, "triple fault (KVM_EXIT_SHUTDOWN)"
		case strings.HasPrefix(line, "pckbd_kbd_write_command ") && strings.HasSuffix(line, "0xfe"):
			how = "keyboard controller pulse (port 0x64 <- 0xfe)"
		case strings.HasPrefix(line, "port92_write "):
			var v uint32
			if _, err := fmt.Sscanf(line[strings.LastIndexByte(line, ' ')+1:], "0x%x", &v); err == nil && v&1 != 0 {
				how = "fast reset (port 0x92 bit 0)"
			}
		}
	}
	return false, how
}
