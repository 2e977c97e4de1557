// Package kvm is kvmboot's own virtual machine on /dev/kvm: i386 guest RAM
// in memory slots with bad RAM left out (so that every guest access to it
// exits and is recorded), a vCPU per processor, the first (the bootstrap
// processor) starting at the x86 reset vector in our firmware image and
// the others waiting for INIT and SIPI in KVM's in-kernel local APICs,
// KVM's in-kernel irqchip and PIT wired as a PC's (pcGSIRouting), and the
// few devices of machine/devices. The ioctls come
// from github.com/bobuhiro11/gokvm/kvm where its wrappers are right; abi.go
// and kvm_unsafe.go hold the rest.
package kvm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"

	gokvm "github.com/bobuhiro11/gokvm/kvm"
	"golang.org/x/sys/unix"

	"kvmboot/internal/hugemem"
	"kvmboot/loader/memmap"
	"kvmboot/machine"
	"kvmboot/machine/faults"
	"kvmboot/realmode"
)

// DevicePath is where the KVM device lives.
const DevicePath = "/dev/kvm"

const pageSize = 4096

// VM is one KVM virtual machine.
type VM struct {
	dev   *os.File // kept open: gokvm only holds its Fd, and a finalized File would close it
	vmFd  int
	vcpus []*vcpu // vcpus[i] has vCPU ID and local APIC ID i; 0 is the bootstrap processor
	ram   []byte  // guest RAM, host mapping; offset = guest physical address
	// ramMapping holds ram, which starts at its first huge-page boundary.
	ramMapping []byte
	rom        []byte // firmware image, host mapping
	// empty is all-ones, read-only, mapped over the low-memory hole below
	// the firmware: reads there (Linux scans it for ROMs and tables) need
	// no exit; writes still exit, and are ignored.
	empty []byte
	mem   *machine.GuestMemory
	// backed lists the guest-physical ranges in memory slots; an access
	// outside them exits as MMIO.
	backed []memmap.Range
	bad    []memmap.Range
	faulty *faults.Set // --faulty-ram: left out of the slots like bad RAM, every access served through its fault model
	slots  int
}

// ErrNoKVM reports that /dev/kvm cannot be used.
var ErrNoKVM = errors.New("no usable /dev/kvm")

// Available reports whether /dev/kvm can be opened for VMs (nil), or why
// not, as ErrNoKVM. Tests and the probe ask it before booting anything.
func Available() error {
	dev, err := openDevice()
	if err != nil {
		return err
	}
	return dev.Close()
}

func openDevice() (*os.File, error) {
	dev, err := os.OpenFile(DevicePath, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoKVM, err)
	}
	return dev, nil
}

// createVM is KVM_CREATE_VM, again while a signal interrupts it: KVM
// registers the VM's MMU notifier by taking every mapping lock of the
// process, which gives up with EINTR when a signal is pending, and Go's
// runtime signals its threads (SIGURG) to preempt goroutines.
func createVM(dev *os.File) (uintptr, error) {
	for {
		fd, err := gokvm.CreateVM(dev.Fd())
		if !errors.Is(err, unix.EINTR) {
			return fd, err
		}
	}
}

// vcpu is one virtual CPU.
type vcpu struct {
	id  int
	fd  int
	run []byte // mmap'd struct kvm_run
}

// New creates a VM with one processor and memSize bytes of RAM, leaving
// the pages that hold any byte of bad out of its memory slots, and the
// firmware image as built.
func New(memSize uint64, bad []memmap.Range) (*VM, error) {
	return newVM(memSize, 1, bad, nil, realmode.Firmware)
}

// newVM is New with cpus processors, faulty RAM and the firmware image
// rom (the plan's, machine.ForPlatform).
func newVM(memSize uint64, cpus int, bad []memmap.Range, faulty *faults.Set, rom []byte) (vm *VM, err error) {
	if err := machine.CheckMemSize(memSize); err != nil {
		return nil, err
	}
	if err := machine.CheckCPUs(cpus); err != nil {
		return nil, err
	}
	dev, err := openDevice()
	if err != nil {
		return nil, err
	}
	// Every error return below sets the result to nil before this runs:
	// close the partly built VM through its own variable.
	built := &VM{dev: dev, vmFd: -1, bad: memmap.Merge(bad), faulty: faulty}
	vm = built
	defer func() {
		if err != nil {
			built.Close()
		}
	}()
	fd, err := createVM(dev)
	if err != nil {
		return nil, fmt.Errorf("KVM_CREATE_VM: %w", err)
	}
	vm.vmFd = int(fd)
	// Memory slots first: on kvm_pvm a slot added after the irqchip and
	// PIT exist costs 5-8 ms (memslot updates wait for their users).
	if err := vm.mapMemory(memSize, rom); err != nil {
		return nil, err
	}
	if err := gokvm.SetTSSAddr(fd, tssAddr); err != nil {
		return nil, fmt.Errorf("KVM_SET_TSS_ADDR: %w", err)
	}
	if err := setIdentityMapAddr(fd, identityMapAddr); err != nil {
		return nil, fmt.Errorf("KVM_SET_IDENTITY_MAP_ADDR: %w", err)
	}
	if err := gokvm.CreateIRQChip(fd); err != nil {
		return nil, fmt.Errorf("KVM_CREATE_IRQCHIP: %w", err)
	}
	if err := setGSIRouting(fd, pcGSIRouting()); err != nil {
		return nil, fmt.Errorf("KVM_SET_GSI_ROUTING: %w", err)
	}
	if err := createPIT2(fd, pitSpeakerDummy); err != nil {
		return nil, fmt.Errorf("KVM_CREATE_PIT2: %w", err)
	}
	if err := vm.createVCPUs(cpus); err != nil {
		return nil, err
	}
	return vm, nil
}

// pcGSIRouting is a PC's interrupt routing for KVM's in-kernel irqchip,
// as QEMU sets it: ISA IRQs 0-15 to the 8259s (but IRQ 2, the cascade),
// and to the I/O APIC pin of the same number, except IRQ 0, which a PC
// wires to pin 2 (the MADT's override, loader.ACPITables); GSIs 16-23 to
// the I/O APIC alone. KVM's default puts IRQ 0, the PIT, on pin 0. The
// table is struct kvm_irq_routing with its entries.
func pcGSIRouting() []byte {
	type route struct{ gsi, chip, pin uint32 }
	var routes []route
	for irq := range uint32(16) {
		if irq != 2 {
			routes = append(routes, route{irq, irqchipPICMaster + irq/8, irq % 8})
		}
	}
	for gsi := range uint32(ioapicPins) {
		switch gsi {
		case 0:
			routes = append(routes, route{0, irqchipIOAPIC, 2})
		case 2:
		default:
			routes = append(routes, route{gsi, irqchipIOAPIC, gsi})
		}
	}
	le := binary.LittleEndian
	b := make([]byte, irqRoutingHeaderSize+irqRoutingEntrySize*len(routes))
	le.PutUint32(b, uint32(len(routes)))
	for i, r := range routes {
		e := b[irqRoutingHeaderSize+irqRoutingEntrySize*i:]
		le.PutUint32(e, r.gsi)
		le.PutUint32(e[4:], irqRoutingIRQChip)
		le.PutUint32(e[16:], r.chip)
		le.PutUint32(e[20:], r.pin)
	}
	return b
}

// mapMemory maps guest RAM and the firmware image rom and registers the
// slots.
func (vm *VM) mapMemory(memSize uint64, rom []byte) error {
	var err error
	if vm.ramMapping, vm.ram, err = mapGuestRAM(memSize); err != nil {
		return err
	}
	vm.mem = machine.NewGuestMemory(vm.ram)
	vm.rom, err = unix.Mmap(-1, 0, realmode.ROMSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return fmt.Errorf("mapping the firmware image: %w", err)
	}
	copy(vm.rom, rom)
	vm.empty, err = unix.Mmap(-1, 0, realmode.ROMBase-memmap.LowRAMEnd, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return fmt.Errorf("mapping the low-memory hole: %w", err)
	}
	for i := range vm.empty {
		vm.empty[i] = 0xFF
	}

	unbacked := append(slices.Clone(vm.bad), vm.faulty.Ranges()...)
	vm.backed = backedRanges(memSize, unbacked)
	hole := holeRanges(unbacked)
	limit, _ := gokvm.CheckExtension(vm.dev.Fd(), gokvm.CapNRMemSlots)
	if need := len(vm.backed) + len(hole) + 2; limit > 0 && need > int(limit) {
		return fmt.Errorf("bad RAM splits guest memory into %d pieces; this KVM allows %d memory slots", len(vm.backed), int(limit)-len(hole)-2)
	}
	for _, r := range vm.backed {
		if err := vm.addSlot(r.Start, vm.ram[r.Start:r.End], false); err != nil {
			return err
		}
	}
	for _, r := range hole {
		if err := vm.addSlot(r.Start, vm.empty[r.Start-memmap.LowRAMEnd:r.End-memmap.LowRAMEnd], true); err != nil {
			return err
		}
	}
	for _, at := range []uint64{realmode.ROMBase, realmode.ROMHigh} {
		if err := vm.addSlot(at, vm.rom, true); err != nil {
			return err
		}
	}
	return nil
}

// mapGuestRAM maps memSize bytes of guest RAM, returning the mapping to
// unmap and, inside it, RAM that starts on a huge-page boundary and asks the
// host for huge pages. KVM maps guest memory 2 MiB at a time only where the
// host does and where guest-physical and host addresses agree modulo 2 MiB;
// otherwise every 4 KiB page the guest first touches costs a nested-page
// fault (7,900 of a Debian boot's 49,000 VM exits in the lab).
func mapGuestRAM(memSize uint64) (mapping, ram []byte, err error) {
	mapping, err = unix.Mmap(-1, 0, int(memSize)+hugemem.PageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, nil, fmt.Errorf("mapping %s of guest RAM: %w", memmap.FormatSize(memSize), err)
	}
	skip := (hugemem.PageSize - hostAddr(mapping)%hugemem.PageSize) % hugemem.PageSize
	ram = mapping[skip : skip+memSize : skip+memSize]
	unix.Madvise(ram, unix.MADV_HUGEPAGE) // a hint: EINVAL on a host without transparent huge pages
	return mapping, ram, nil
}

func (vm *VM) addSlot(guest uint64, host []byte, readOnly bool) error {
	region := gokvm.UserspaceMemoryRegion{
		Slot:          uint32(vm.slots),
		GuestPhysAddr: guest,
		MemorySize:    uint64(len(host)),
		UserspaceAddr: hostAddr(host),
	}
	if readOnly {
		region.SetMemReadonly()
	}
	if err := gokvm.SetUserMemoryRegion(uintptr(vm.vmFd), &region); err != nil {
		return fmt.Errorf("KVM_SET_USER_MEMORY_REGION %#x+%#x: %w", guest, len(host), err)
	}
	vm.slots++
	return nil
}

// backedRanges is guest RAM minus the PC's low-memory hole minus every page
// that holds a byte of bad RAM.
func backedRanges(memSize uint64, bad []memmap.Range) []memmap.Range {
	return memmap.Subtract([]memmap.Range{{Start: 0, End: memmap.LowRAMEnd}, {Start: memmap.HighRAMStart, End: memSize}}, pageHoles(bad))
}

// holeRanges is the low-memory hole below the firmware image, minus every
// page that holds a byte of bad (declared bad RAM there stays trapped).
func holeRanges(bad []memmap.Range) []memmap.Range {
	return memmap.Subtract([]memmap.Range{{Start: memmap.LowRAMEnd, End: realmode.ROMBase}}, pageHoles(bad))
}

// pageHoles are the pages that hold a byte of bad.
func pageHoles(bad []memmap.Range) []memmap.Range {
	holes := make([]memmap.Range, len(bad))
	for i, b := range bad {
		holes[i] = memmap.Range{Start: b.Start &^ (pageSize - 1), End: (b.End + pageSize - 1) &^ (pageSize - 1)}
	}
	return holes
}

// createVCPUs creates vCPUs 0 to n-1. With the in-kernel irqchip, KVM
// starts vCPU 0 at the reset vector and leaves the others waiting for
// INIT and SIPI, as a PC's application processors wait; each local APIC's
// ID is its vCPU's.
func (vm *VM) createVCPUs(n int) error {
	if limit := vm.maxVCPUs(); n > limit {
		return fmt.Errorf("%d processors: this host's KVM runs at most %d in a VM", n, limit)
	}
	size, err := gokvm.GetVCPUMMmapSize(vm.dev.Fd())
	if err != nil {
		return fmt.Errorf("KVM_GET_VCPU_MMAP_SIZE: %w", err)
	}
	supported := &gokvm.CPUID{Nent: cpuidMaxSupported, Entries: make([]gokvm.CPUIDEntry2, cpuidMaxSupported)}
	if err := gokvm.GetSupportedCPUID(vm.dev.Fd(), supported); err != nil {
		return fmt.Errorf("KVM_GET_SUPPORTED_CPUID: %w", err)
	}
	for id := range n {
		fd, err := gokvm.CreateVCPU(uintptr(vm.vmFd), id)
		if err != nil {
			return fmt.Errorf("KVM_CREATE_VCPU %d: %w", id, err)
		}
		c := &vcpu{id: id, fd: int(fd)}
		vm.vcpus = append(vm.vcpus, c) // closed with the VM from here on
		if c.run, err = unix.Mmap(c.fd, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
			return fmt.Errorf("mapping kvm_run of vCPU %d: %w", id, err)
		}
		entries := guestCPUID(slices.Clone(supported.Entries[:supported.Nent]), uint32(id))
		if err := gokvm.SetCPUID2(uintptr(c.fd), &gokvm.CPUID{Nent: uint32(len(entries)), Entries: entries}); err != nil {
			return fmt.Errorf("KVM_SET_CPUID2 of vCPU %d: %w", id, err)
		}
	}
	return nil
}

// maxVCPUs is how many vCPUs this KVM runs in a VM: KVM_CAP_MAX_VCPUS,
// else KVM_CAP_NR_VCPUS, else 4 (KVM's API documentation).
func (vm *VM) maxVCPUs() int {
	for _, c := range []gokvm.Capability{gokvm.CapMAXVCPUS, gokvm.CapNRVCPUS} {
		if n, err := gokvm.CheckExtension(vm.dev.Fd(), c); err == nil && n > 0 {
			return int(n)
		}
	}
	return 4
}

// Memory returns guest RAM.
func (vm *VM) Memory() *machine.GuestMemory { return vm.mem }

// Close releases everything the VM holds. It is safe on a partly built VM.
func (vm *VM) Close() error {
	for _, c := range vm.vcpus {
		if c.run != nil {
			unix.Munmap(c.run)
		}
		unix.Close(c.fd)
	}
	vm.vcpus = nil
	for _, m := range [][]byte{vm.ramMapping, vm.rom, vm.empty} {
		if m != nil {
			unix.Munmap(m)
		}
	}
	vm.ramMapping, vm.ram, vm.rom, vm.empty = nil, nil, nil, nil
	if vm.vmFd >= 0 {
		unix.Close(vm.vmFd)
		vm.vmFd = -1
	}
	if vm.dev != nil {
		vm.dev.Close()
		vm.dev = nil
	}
	return nil
}
