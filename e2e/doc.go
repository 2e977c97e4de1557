// Package e2e boots real kernels with kvmboot: our test kernel on every
// backend this host has, Debian's i386 kernel through the compressed-ELF
// path and its own setup code, the conformance images of e2e/conformance
// beside QEMU's -kernel, misbehaving guests. Tests skip with a reason when /dev/kvm,
// qemu-system-i386 or the fetched Debian kernel is missing, and fail
// instead when KVMBOOT_REQUIRE_KVM, KVMBOOT_REQUIRE_QEMU or
// KVMBOOT_REQUIRE_KERNEL is 1 (CI sets all three).
package e2e
