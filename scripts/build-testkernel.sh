#!/bin/sh
# build-testkernel.sh: build the kvmboot test kernel (e2e/testkernel) into
# e2e/testkernel/build/ and copy it to boot/testkernel/testkernel.elf, the
# copy that `go build` embeds.
#
# The output is reproducible byte for byte with the same toolchain (Debian 12:
# gcc 12, binutils 2.40): no build-id, no debug info, no .comment, and the
# sources are compiled by relative name from their own directory, so no path
# reaches the ELF file. CI rebuilds it and runs `git diff --exit-code`.
#
# Usage: scripts/build-testkernel.sh    (from anywhere; `make testkernel`)
# Environment: CC (default gcc), LD (default ld), READELF (default readelf).
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
src=$root/e2e/testkernel
out=$src/build
dest=$root/boot/testkernel/testkernel.elf

CC=${CC:-gcc}
LD=${LD:-ld}
READELF=${READELF:-readelf}

die() {
	echo "build-testkernel: $*" >&2
	exit 1
}

for tool in "$CC" "$LD" "$READELF"; do
	command -v "$tool" >/dev/null 2>&1 ||
		die "'$tool' not found: install gcc and binutils (Debian: apt-get install gcc binutils)"
done

# Freestanding i386 code without gcc-multilib: no libc, no libgcc, no PIE
# (Debian's gcc defaults to it), no stack protector, no SSE/x87, no unwind
# tables, no CET notes; loops must not turn into memset/memcpy calls.
CFLAGS="-m32 -march=i686 -std=gnu11 -Os -g0
	-ffreestanding -nostdlib -fno-builtin -fno-pie -fno-pic
	-fno-stack-protector -fno-asynchronous-unwind-tables -fno-unwind-tables
	-fcf-protection=none -mgeneral-regs-only
	-fno-tree-loop-distribute-patterns -fno-common
	-ffile-prefix-map=$src=.
	-Wall -Wextra -Werror"
LDFLAGS="-m elf_i386 -nostdlib -static --emit-relocs --build-id=none
	-z max-page-size=4096 -z noexecstack -T linker.ld"

mkdir -p "$out"
cd "$src"
# shellcheck disable=SC2086 # word splitting of the flag lists is intended
"$CC" $CFLAGS -c entry.S -o build/entry.o
# shellcheck disable=SC2086
"$CC" $CFLAGS -c ap.S -o build/ap.o
# shellcheck disable=SC2086
"$CC" $CFLAGS -c kernel.c -o build/kernel.o
# shellcheck disable=SC2086
"$LD" $LDFLAGS -o build/testkernel.elf build/entry.o build/ap.o build/kernel.o

# Sanity checks on what the loaders rely on.
elf=build/testkernel.elf
"$READELF" -h "$elf" | grep -q 'Type:.*EXEC' || die "$elf is not ET_EXEC"
"$READELF" -h "$elf" | grep -q 'Machine:.*80386' || die "$elf is not i386"
"$READELF" -S "$elf" | grep -q '\.rel\.text' || die "$elf has no .rel.text (--emit-relocs?)"
"$READELF" -s "$elf" | grep -Eq ' ABS kt_abs_magic$' || die "kt_abs_magic is not an absolute symbol"
# The Multiboot header magic must be in the first 8 KiB, 4-byte aligned
# (one little-endian dword per line of od's output).
od -An -tx4 -v -w4 -N 8192 "$elf" | grep -q '^ *1badb002$' ||
	die "Multiboot header is not in the first 8 KiB of $elf"
if "$READELF" -r "$elf" | grep -Eq 'R_386_(GOT|PLT|GOTOFF|GOTPC)'; then
	die "$elf has GOT/PLT relocations (built as PIC?)"
fi

# The real-mode part: raw 16-bit code, offset 0 is its entry. kvmboot mkelf
# puts it into the kernel's note (see boot/testkernel and e2e/realmode_test.go).
# shellcheck disable=SC2086
"$CC" $CFLAGS -c realmode.S -o build/realmode.o
"$LD" -m elf_i386 -nostdlib --build-id=none -Ttext=0 -e rm_entry --oformat binary -o build/realmode.bin build/realmode.o
rm_code=$(wc -c <build/realmode.bin)
[ "$rm_code" -lt 256 ] || die "realmode.bin is $rm_code bytes: it must end before RM_RESULTS (0x100)"
"$READELF" -s "$elf" | grep -Eq ' kt_realmode_addr$' || die "kt_realmode_addr missing from $elf"

mkdir -p "$(dirname "$dest")"
cp "$elf" "$dest"
cp build/realmode.bin "$(dirname "$dest")/realmode.bin"
chmod 0644 "$dest" "$(dirname "$dest")/realmode.bin"
echo "build-testkernel: $(wc -c <"$dest") bytes -> boot/testkernel/testkernel.elf, $rm_code bytes -> boot/testkernel/realmode.bin"
