#!/usr/bin/env bash
# Builds the loader conformance images in e2e/conformance/ from their GNU as
# sources: Linux-boot-protocol images with a raw 32-bit part for protocols
# 2.03, 2.07 and 2.12 (linux-raw.S), a Multiboot kernel that reads argv[0]
# and a Multiboot ELF with one segment below 640K and one at 1M. The outputs
# are committed so that `go test` needs no assembler; CI rebuilds them and
# fails if they differ (`make check-blobs`). They depend only on the sources
# and binutils: sources are assembled by relative name from their folder,
# and raw binaries and these ELF files carry no timestamps or paths.
set -euo pipefail
cd "$(dirname "$0")/../e2e/conformance"
for tool in as ld; do
	command -v "$tool" >/dev/null || { echo "build-conformance-loader: $tool not found (install binutils)" >&2; exit 1; }
done
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# Protocol 2.NN is the version word 0x02NN in hex: 2.12 is 0x020c.
for v in 203:0x0203 207:0x0207 212:0x020c; do
	name=linux-raw-${v%%:*}
	as --32 --defsym PROTO="${v#*:}" -o "$out/$name.o" linux-raw.S
	ld -m elf_i386 -Ttext=0 -e _start --oformat binary -o "$name.bin" "$out/$name.o"
done
for prog in multiboot-argv0 multiboot-twoseg; do
	as --32 -o "$out/$prog.o" "$prog.S"
	ld -m elf_i386 -T "$prog.ld" --build-id=none -z noexecstack --no-warn-rwx-segments -o "$prog.elf" "$out/$prog.o"
done
for f in linux-raw-*.bin multiboot-*.elf; do
	echo "e2e/conformance/$f: $(stat -c %s "$f") bytes"
done
