#!/usr/bin/env bash
# Builds the PC conformance programs in e2e/conformance/pc/ (Multiboot ELFs
# that e2e/conformance_pc_test.go boots on every backend and under QEMU's
# -kernel): ticks.S, the real-mode timer check, and acpi.c, the ACPI table
# reader. The ELFs are committed so that `go test` needs no compiler; CI
# rebuilds them and fails if they differ (`make check-blobs`). The output
# is reproducible with the same toolchain (Debian 12: gcc 12, binutils
# 2.40): no build-id, no debug info, no .comment, sources compiled by
# relative name, so no path reaches the files.
set -euo pipefail
cd "$(dirname "$0")/../e2e/conformance/pc"
CC=${CC:-gcc}
for tool in "$CC" as ld; do
	command -v "$tool" >/dev/null || { echo "build-conformance-pc: $tool not found (install gcc and binutils)" >&2; exit 1; }
done
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
LDFLAGS=(-m elf_i386 -nostdlib -static --build-id=none -z max-page-size=4096 -z noexecstack --no-warn-rwx-segments -T linker.ld)
# Freestanding i386 C without gcc-multilib: as scripts/build-testkernel.sh.
CFLAGS=(-m32 -march=i686 -std=gnu11 -Os -g0
	-ffreestanding -nostdlib -fno-builtin -fno-pie -fno-pic
	-fno-stack-protector -fno-asynchronous-unwind-tables -fno-unwind-tables
	-fcf-protection=none -mgeneral-regs-only
	-fno-tree-loop-distribute-patterns -fno-common
	-Wall -Wextra -Werror)

# The real-mode check reuses the BIOS test programs' console (console.inc).
as --32 -I ../../biostest -o "$out/ticks.o" ticks.S
ld "${LDFLAGS[@]}" -o "$out/ticks.elf" "$out/ticks.o"
cp "$out/ticks.elf" ticks.elf
echo "e2e/conformance/pc/ticks.elf: $(stat -c %s ticks.elf) bytes"

# The ACPI table reader: C behind a Multiboot entry.
as --32 -o "$out/mbentry.o" mbentry.S
"$CC" "${CFLAGS[@]}" -c acpi.c -o "$out/acpi.o"
ld "${LDFLAGS[@]}" -o "$out/acpi.elf" "$out/mbentry.o" "$out/acpi.o"
cp "$out/acpi.elf" acpi.elf
echo "e2e/conformance/pc/acpi.elf: $(stat -c %s acpi.elf) bytes"
