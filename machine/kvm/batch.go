package kvm

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"time"

	gokvm "github.com/bobuhiro11/gokvm/kvm"

	"kvmboot/machine/devices"
)

// portBatch has KVM queue the guest's writes to the UARTs' data ports in
// its coalesced ring (KVM_CAP_COALESCED_PIO) instead of exiting to us for
// each. Linux's 8250 console reads LSR and writes THR for every byte: two
// exits to us a byte, most of a Linux boot's when it logs to a serial
// console; queueing the writes takes a Debian boot's exits to kvmboot from
// 38,100 to 21,500 in the nested lab. (KVM still intercepts each write:
// what is saved is the way out to user space and back.) The memtest
// channel on COM2 writes a byte at a time too. A queued write reaches its
// UART late, so a port is queued only while a write there does nothing
// the guest could notice before its next exit (devices.UART.OutputOnly).
// The ring is taken under runner.mu before every exit we handle, so that
// the devices see the guest's accesses in its order, and every
// batchPeriod, so that the console keeps up with a guest that does not
// exit.
type portBatch struct {
	ring     []byte
	ports    []*batchedPort
	register func(port uint16, on bool) error // KVM's zone for one data port
	failed   bool                             // a register failed: nothing changes from then on
}

type batchedPort struct {
	uart   *devices.UART
	port   uint16 // the UART's data port (THR)
	queued bool
}

// batchPeriod is how often the ring is taken while no exit takes it.
const batchPeriod = 50 * time.Millisecond

// newPortBatch returns nil when this KVM cannot queue port writes.
func newPortBatch(vm *VM) *portBatch {
	if n, err := gokvm.CheckExtension(vm.dev.Fd(), gokvm.CapCoalescedPIO); err != nil || n == 0 {
		return nil
	}
	page, err := gokvm.CheckExtension(vm.dev.Fd(), gokvm.CapCoalescedMMIO)
	run := vm.vcpus[0].run // every vCPU's mapping holds the VM's one ring
	if err != nil || page == 0 || int(page+1)*pageSize > len(run) {
		return nil
	}
	vmFd := uintptr(vm.vmFd)
	return &portBatch{
		ring:     run[page*pageSize : (page+1)*pageSize],
		register: func(port uint16, on bool) error { return setCoalescedPIO(vmFd, on, port, 1) },
	}
}

// add queues writes to u's data port, at port, whenever u allows it (sync).
func (b *portBatch) add(u *devices.UART, port uint16) {
	b.ports = append(b.ports, &batchedPort{uart: u, port: port})
}

// sync queues each port's writes exactly while its UART allows it. It
// runs after every exit we handle: only an exit changes a UART's state.
func (b *portBatch) sync() error {
	if b.failed {
		return nil
	}
	for _, p := range b.ports {
		if want := p.uart.OutputOnly(); want != p.queued {
			if err := b.register(p.port, want); err != nil {
				b.failed = true
				return fmt.Errorf("queueing writes to port %#x in KVM's coalesced ring (%v): %w", p.port, want, err)
			}
			p.queued = want
		}
	}
	return nil
}

// take hands every queued write to out, in the order the guest made them.
func (b *portBatch) take(out func(port uint16, size int, v uint32)) {
	first, last := ringIndex(b.ring, ringFirst), ringIndex(b.ring, ringLast)
	i, end := atomic.LoadUint32(first), atomic.LoadUint32(last)
	if i >= ringMax || end >= ringMax {
		return // not a ring KVM wrote
	}
	for ; i != end; i = (i + 1) % ringMax {
		e := b.ring[ringEntries+int(i)*ringEntrySize:][:ringEntrySize]
		if n := binary.LittleEndian.Uint32(e[ringEntryLen:]); n == 1 || n == 2 || n == 4 {
			out(uint16(binary.LittleEndian.Uint64(e)), int(n), leUint(e[ringEntryData:ringEntryData+n]))
		}
		atomic.StoreUint32(first, (i+1)%ringMax) // the entry is KVM's again
	}
}
