package kvm

import (
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// setIdentityMapAddr issues KVM_SET_IDENTITY_MAP_ADDR with the u64 the
// kernel expects.
func setIdentityMapAddr(vmFd uintptr, addr uint64) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, vmFd, ioctlSetIdentityMapAddr, uintptr(unsafe.Pointer(&addr)))
	if errno != 0 {
		return errno
	}
	return nil
}

// setGSIRouting issues KVM_SET_GSI_ROUTING with a table in the kernel's
// layout (pcGSIRouting).
func setGSIRouting(vmFd uintptr, table []byte) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, vmFd, ioctlSetGSIRouting, uintptr(unsafe.Pointer(&table[0])))
	if errno != 0 {
		return errno
	}
	return nil
}

// guestDebug is struct kvm_guest_debug for x86.
type guestDebug struct {
	control  uint32
	_        uint32
	debugReg [8]uint64
}

// setGuestDebug turns single-stepping of the vCPU on or off.
func setGuestDebug(vcpuFd uintptr, singleStep bool) error {
	var d guestDebug
	if singleStep {
		d.control = guestDebugEnable | guestDebugSingleStep
	}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, vcpuFd, ioctlSetGuestDebug, uintptr(unsafe.Pointer(&d)))
	if errno != 0 {
		return errno
	}
	return nil
}

// requestImmediateExit sets kvm_run.immediate_exit from another thread, so
// that a KVM_RUN that has not yet entered the guest returns at once.
// Bytes 0..3 of kvm_run are request_interrupt_window, immediate_exit and
// padding; we never set the first, so an atomic OR of the word is safe.
func requestImmediateExit(run []byte) {
	atomic.OrUint32((*uint32)(unsafe.Pointer(&run[0])), 1<<(8*runImmediateExit))
}

// clearImmediateExit undoes requestImmediateExit, for a vCPU that runs on
// after a nudge.
func clearImmediateExit(run []byte) {
	atomic.AndUint32((*uint32)(unsafe.Pointer(&run[0])), ^uint32(1<<(8*runImmediateExit)))
}

// pitConfig is struct kvm_pit_config.
type pitConfig struct {
	flags uint32
	_     [15]uint32
}

// createPIT2 creates the in-kernel PIT with flags; gokvm's CreatePIT2
// passes none.
func createPIT2(vmFd uintptr, flags uint32) error {
	c := pitConfig{flags: flags}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, vmFd, ioctlCreatePIT2, uintptr(unsafe.Pointer(&c)))
	if errno != 0 {
		return errno
	}
	return nil
}

// coalescedZone is struct kvm_coalesced_mmio_zone.
type coalescedZone struct {
	addr uint64
	size uint32
	pio  uint32
}

// setCoalescedPIO has KVM queue guest writes to ports [port, port+n) in
// its coalesced ring (register), or exit for them again.
func setCoalescedPIO(vmFd uintptr, register bool, port uint16, n uint32) error {
	z := coalescedZone{addr: uint64(port), size: n, pio: 1}
	req := uintptr(ioctlUnregisterCoalesced)
	if register {
		req = ioctlRegisterCoalesced
	}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, vmFd, req, uintptr(unsafe.Pointer(&z)))
	if errno != 0 {
		return errno
	}
	return nil
}

// ringIndex is the u32 at off in the coalesced ring's header, which KVM
// updates from other threads.
func ringIndex(ring []byte, off int) *uint32 { return (*uint32)(unsafe.Pointer(&ring[off])) }

// hostAddr is the host virtual address of a mapping, for memory slots.
func hostAddr(b []byte) uint64 { return uint64(uintptr(unsafe.Pointer(&b[0]))) }
