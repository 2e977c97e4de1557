package kvm

import (
	"encoding/binary"
	"slices"
	"testing"

	gokvm "github.com/bobuhiro11/gokvm/kvm"
)

// guestCPUID hides RDRAND (leaf 1 ECX bit 30) and RDSEED (leaf 7 subleaf 0
// EBX bit 18), which end the run on kvm_pvm, sets the hypervisor bit (leaf
// 1 ECX bit 31) and KVM's signature, gives each processor its APIC ID and
// a package of its own (one core, one thread), and changes nothing else.
func TestGuestCPUID(t *testing.T) {
	const all = 0xFFFFFFFF
	features := gokvm.CPUIDEntry2{Function: cpuidKVMFeatures, Eax: 0x01007afb}
	entries := []gokvm.CPUIDEntry2{
		{Function: 0, Eax: 0x1F, Ebx: all, Ecx: all, Edx: all},
		{Function: 1, Eax: all, Ebx: all, Ecx: all, Edx: all},
		{Function: 4, Index: 0, Eax: 0x1C004121, Ebx: all, Ecx: all, Edx: all}, // 8 cores, 2 threads share this cache
		{Function: 7, Index: 0, Eax: all, Ebx: all, Ecx: all, Edx: all},
		{Function: 7, Index: 1, Eax: all, Ebx: all, Ecx: all, Edx: all},
		{Function: 0xB, Index: 0, Eax: 1, Ebx: 2, Ecx: 0x100, Edx: 5}, // the host's: 2 threads a core
		{Function: 0xB, Index: 1, Eax: 4, Ebx: 16, Ecx: 0x201, Edx: 5},
		{Function: 0xB, Index: 2, Eax: 0, Ebx: 0, Ecx: 2, Edx: 5},
		{Function: 0x1F, Index: 0, Eax: 1, Ebx: 2, Ecx: 0x100, Edx: 5},
		{Function: 0x80000001, Eax: all, Ebx: all, Ecx: all, Edx: all},
		{Function: 0x80000008, Eax: all, Ebx: all, Ecx: all, Edx: all},
		{Function: 0x8000001E, Eax: 5, Ebx: 0x102, Ecx: 0, Edx: 0},
		{Function: 1, Ecx: 0x00000001}, // RDRAND already clear
		features,
	}
	got := guestCPUID(slices.Clone(entries), 3)
	want := []gokvm.CPUIDEntry2{
		{Function: 0, Eax: 0x1F, Ebx: all, Ecx: all, Edx: all},
		{Function: 1, Eax: all, Ebx: 0x0301FFFF, Ecx: 0xBFFFFFFF, Edx: 0xEFFFFFFF},
		{Function: 4, Index: 0, Eax: 0x00000121, Ebx: all, Ecx: all, Edx: all},
		{Function: 7, Index: 0, Eax: all, Ebx: 0xFFFBFFFF, Ecx: all, Edx: all},
		{Function: 7, Index: 1, Eax: all, Ebx: all, Ecx: all, Edx: all},
		{Function: 0xB, Index: 0, Eax: 0, Ebx: 1, Ecx: 0x100, Edx: 3},
		{Function: 0xB, Index: 1, Eax: 0, Ebx: 1, Ecx: 0x201, Edx: 3},
		{Function: 0xB, Index: 2, Eax: 0, Ebx: 0, Ecx: 2, Edx: 3},
		{Function: 0x1F, Index: 0, Eax: 0, Ebx: 1, Ecx: 0x100, Edx: 3},
		{Function: 0x80000001, Eax: all, Ebx: all, Ecx: 0xFFBFFFFD, Edx: all},
		{Function: 0x80000008, Eax: all, Ebx: all, Ecx: 0xFFFF0F00, Edx: all},
		{Function: 1, Ebx: 0x03010000, Ecx: 0x80000001},
		features,
		{Function: cpuidKVMSignature, Eax: cpuidKVMFeatures, Ebx: 0x4b4d564b, Ecx: 0x564b4d56, Edx: 0x4d}, // "KVMKVMKVM\0\0\0"
	}
	if !slices.Equal(got, want) {
		t.Errorf("guestCPUID:\n got %+v\nwant %+v", got, want)
	}
	var sig []byte
	for _, r := range []uint32{got[13].Ebx, got[13].Ecx, got[13].Edx} {
		sig = binary.LittleEndian.AppendUint32(sig, r)
	}
	if string(sig) != "KVMKVMKVM\x00\x00\x00" {
		t.Errorf("signature %q", sig)
	}
	if got := guestCPUID(slices.Clone(entries), 0); got[1].Ebx>>24 != 0 || got[5].Edx != 0 {
		t.Errorf("the bootstrap processor's APIC ID: leaf 1 %#x, leaf 0xB %#x", got[1].Ebx, got[5].Edx)
	}

	// KVM's own signature leaf is kept, its signature written over; a
	// KVM without a features leaf gets no signature.
	got = guestCPUID([]gokvm.CPUIDEntry2{{Function: cpuidKVMSignature, Eax: 0x40000001, Ebx: 1}, features}, 0)
	if len(got) != 2 || got[0].Ebx != 0x4b4d564b || got[0].Eax != cpuidKVMFeatures {
		t.Errorf("with KVM's signature leaf: %+v", got)
	}
	if got = guestCPUID([]gokvm.CPUIDEntry2{{Function: 1}}, 0); len(got) != 1 || got[0].Ecx != cpuidLeaf1ECXHypervisor {
		t.Errorf("without a features leaf: %+v", got)
	}
	if got = guestCPUID(nil, 0); len(got) != 0 {
		t.Errorf("no entries: %+v", got)
	}
}
