#!/usr/bin/env bash
# Runs one command inside the nested KVM lab (e2e/lab): an outer VM under
# QEMU's TCG with AMD SVM and nested paging, Debian's amd64 kernel and
# kvm_amd, so that kvmboot's own VMM meets a real KVM on hosts with none.
# Prints the command's output and exits with its status. Inside, kvmboot is
# a static build of this tree on PATH, Debian's i386 kernel is
# /lab/kernels/vmlinuz and the e2e guest initramfs /lab/guest-initramfs.cpio.gz.
#
#   scripts/kvm-lab.sh -- kvmboot probe
#   scripts/kvm-lab.sh -- kvmboot run --vmm=kvm --bad-ram 16M-48M \
#       --initrd /lab/guest-initramfs.cpio.gz --cmdline 'console=ttyS0 quiet' /lab/kernels/vmlinuz
#   scripts/kvm-lab.sh -repeat 20 -- kvmboot run ...   # each run retried on an outer VM freeze
#
# Flags before -- go to e2e/cmd/kvmlab run (-cpu, -append, -kvm-amd, -keep, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-lab.sh >&2
exec go run ./e2e/cmd/kvmlab run "$@"
