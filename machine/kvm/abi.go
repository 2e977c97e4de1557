package kvm

// KVM definitions from <linux/kvm.h> that kvmboot needs beyond what
// github.com/bobuhiro11/gokvm/kvm provides.

// Exit reasons (kvm_run.exit_reason).
const (
	exitUnknown       = 0
	exitException     = 1
	exitIO            = 2
	exitDebug         = 4
	exitHLT           = 5
	exitMMIO          = 6
	exitShutdown      = 8
	exitFailEntry     = 9
	exitIntr          = 10
	exitInternalError = 17
	exitSystemEvent   = 24
)

var exitNames = map[uint32]string{
	exitUnknown: "UNKNOWN", exitException: "EXCEPTION", exitIO: "IO", exitDebug: "DEBUG",
	exitHLT: "HLT", exitMMIO: "MMIO", exitShutdown: "SHUTDOWN", exitFailEntry: "FAIL_ENTRY",
	exitIntr: "INTR", exitInternalError: "INTERNAL_ERROR", exitSystemEvent: "SYSTEM_EVENT",
}

// Offsets into the mmap'd struct kvm_run.
const (
	runImmediateExit = 1
	runExitReason    = 8
	runUnion         = 32 // the per-exit union

	// KVM_EXIT_IO
	ioDirection  = runUnion + 0 // u8: 0 in, 1 out
	ioSize       = runUnion + 1 // u8
	ioPort       = runUnion + 2 // u16
	ioCount      = runUnion + 4 // u32
	ioDataOffset = runUnion + 8 // u64, from the start of kvm_run

	// KVM_EXIT_MMIO
	mmioPhysAddr = runUnion + 0  // u64
	mmioData     = runUnion + 8  // [8]u8
	mmioLen      = runUnion + 16 // u32
	mmioIsWrite  = runUnion + 20 // u8

	// KVM_EXIT_INTERNAL_ERROR
	internalSuberror = runUnion + 0 // u32
	internalNData    = runUnion + 4 // u32
	internalData     = runUnion + 8 // [16]u64

	// KVM_EXIT_FAIL_ENTRY
	failEntryReason = runUnion + 0 // u64

	// KVM_EXIT_DEBUG (x86 kvm_debug_exit_arch)
	debugException = runUnion + 0 // u32
	debugPC        = runUnion + 8 // u64, linear address

	// KVM_EXIT_SYSTEM_EVENT
	systemEventType = runUnion + 0 // u32
)

// ioctl numbers: _IOW(KVMIO, nr, size) = 1<<30 | size<<16 | 0xAE<<8 | nr.
const (
	// KVM_SET_IDENTITY_MAP_ADDR takes a pointer to a u64; gokvm's wrapper
	// passes a pointer to a u32, so the kernel reads 4 bytes past it.
	ioctlSetIdentityMapAddr = 1<<30 | 8<<16 | 0xAE<<8 | 0x48
	// KVM_SET_GUEST_DEBUG is a vCPU ioctl; gokvm's SingleStep issues it on
	// the VM fd and sets a hardware-breakpoint bit by accident.
	ioctlSetGuestDebug = 1<<30 | 72<<16 | 0xAE<<8 | 0x9B
	// KVM_SET_GSI_ROUTING takes struct kvm_irq_routing (u32 nr, u32
	// flags, then the entries); gokvm's wrapper lays each entry out in 24
	// bytes, the kernel's struct kvm_irq_routing_entry has 48.
	ioctlSetGSIRouting = 1<<30 | 8<<16 | 0xAE<<8 | 0x6A
	// KVM_CREATE_PIT2 takes struct kvm_pit_config (64 bytes).
	ioctlCreatePIT2 = 1<<30 | 64<<16 | 0xAE<<8 | 0x77
	// KVM_RUN has no argument: _IO(KVMIO, 0x80).
	ioctlRun = 0xAE<<8 | 0x80
	// KVM_(UN)REGISTER_COALESCED_MMIO take struct kvm_coalesced_mmio_zone
	// (u64 addr, u32 size, u32 pio); gokvm's wrappers cannot set pio.
	ioctlRegisterCoalesced   = 1<<30 | 16<<16 | 0xAE<<8 | 0x67
	ioctlUnregisterCoalesced = 1<<30 | 16<<16 | 0xAE<<8 | 0x68
)

// struct kvm_coalesced_mmio_ring, a page of every vCPU's kvm_run mapping
// (at the page KVM_CAP_COALESCED_MMIO names): u32 first, the next entry
// for us to take; u32 last, the next for KVM to fill; then entries of
// struct kvm_coalesced_mmio: u64 phys_addr (the port for port I/O), u32
// len, u32 pio, u8 data[8].
const (
	ringFirst     = 0
	ringLast      = 4
	ringEntries   = 8
	ringEntrySize = 24
	ringEntryLen  = 8
	ringEntryData = 16
	ringMax       = (pageSize - ringEntries) / ringEntrySize // KVM_COALESCED_MMIO_MAX
)

// struct kvm_irq_routing_entry: u32 gsi, u32 type, u32 flags, u32 pad,
// then a 32-byte union whose irqchip member is u32 irqchip, u32 pin.
const (
	irqRoutingHeaderSize = 8
	irqRoutingEntrySize  = 48
	irqRoutingIRQChip    = 1 // KVM_IRQ_ROUTING_IRQCHIP
	irqchipPICMaster     = 0 // KVM_IRQCHIP_PIC_MASTER
	irqchipPICSlave      = 1
	irqchipIOAPIC        = 2
	ioapicPins           = 24
)

// pitSpeakerDummy (KVM_PIT_SPEAKER_DUMMY) makes the in-kernel PIT answer
// port 0x61 too: channel 2's gate (bit 0) and output (bit 5), which
// Linux's TSC calibration against the PIT reads.
const pitSpeakerDummy = 1

// struct kvm_guest_debug control bits.
const (
	guestDebugEnable     = 0x1
	guestDebugSingleStep = 0x2
)

// CPUID bits kvmboot masks: executing these makes kvm_pvm end the guest
// with KVM_EXIT_INTERNAL_ERROR (DESIGN.md §7). kvm_pvm itself ignores the
// mask (KVM_GET_CPUID2 after KVM_SET_CPUID2 shows the host's leaf 1 again),
// but other KVMs honour it.
const (
	cpuidLeaf1ECXRDRAND = 1 << 30
	cpuidLeaf7EBXRDSEED = 1 << 18
	cpuidMaxSupported   = 256 // entries asked of KVM_GET_SUPPORTED_CPUID
)

// The hypervisor CPUID leaves Linux looks for before it uses KVM's
// paravirtual features (kvmclock among them): leaf 1's hypervisor bit, the
// signature leaf and the features leaf (KVM_CPUID_SIGNATURE, _FEATURES).
const (
	cpuidLeaf1ECXHypervisor = 1 << 31
	cpuidKVMSignature       = 0x40000000
	cpuidKVMFeatures        = 0x40000001
)

// kvmSignature is "KVMKVMKVM\0\0\0" as EBX, ECX, EDX.
var kvmSignature = [3]uint32{0x4b4d564b, 0x564b4d56, 0x0000004d}

// Addresses KVM needs for its own structures on Intel hosts: an identity
// page table for real mode and a TSS (three pages), both well above RAM.
const (
	identityMapAddr = 0xFFFBC000
	tssAddr         = 0xFFFBD000
)
