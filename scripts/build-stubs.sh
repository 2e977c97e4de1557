#!/usr/bin/env bash
# Builds the guest-side stubs in realmode/ into the blobs that Go embeds.
# The blobs are committed so `go build` needs no assembler; CI rebuilds them
# and fails if they differ from the committed copies.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in as ld; do
	command -v "$tool" >/dev/null || { echo "build-stubs: $tool not found (install binutils)" >&2; exit 1; }
done
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# The stub and the BIOS it sets up (bios.S) share the image: firmware.ld
# places both .text sections from offset 0 and each file's layout table.
as --32 -o "$out/firmware.o" realmode/firmware.S
as --32 -o "$out/bios.o" realmode/bios.S
ld -m elf_i386 -T realmode/firmware.ld -o "$out/firmware.bin" "$out/firmware.o" "$out/bios.o"
size=$(stat -c %s "$out/firmware.bin")
if [ "$size" -ne 65536 ]; then
	echo "build-stubs: firmware.bin is $size bytes, want 65536" >&2
	exit 1
fi
cp "$out/firmware.bin" realmode/firmware.bin
echo "realmode/firmware.bin: $size bytes"

# The probe guest: flat 32-bit code, a raw image loaded at 0x100000.
as --32 -o "$out/probe.o" realmode/probe.S
ld -m elf_i386 -Ttext=0x100000 -e probe_start --oformat binary -o realmode/probe.bin "$out/probe.o"
echo "realmode/probe.bin: $(stat -c %s realmode/probe.bin) bytes"

# The memtest guest: flat 32-bit code, a raw image loaded at 0x10000.
as --32 -o "$out/memtest.o" realmode/memtest.S
ld -m elf_i386 -Ttext=0x10000 -e memtest_start --oformat binary -o realmode/memtest.bin "$out/memtest.o"
echo "realmode/memtest.bin: $(stat -c %s realmode/memtest.bin) bytes"
