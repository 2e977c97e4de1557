#!/usr/bin/env bash
# Builds the BIOS test programs in e2e/biostest/ (raw real-mode blobs that
# e2e/bios_test.go loads at 0x10000) from their GNU as sources. The blobs
# are committed so that `go test` needs no assembler; CI rebuilds them and
# fails if they differ (`make check-blobs`). The output depends only on
# the sources and binutils: raw binaries carry no timestamps or paths.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in as ld; do
	command -v "$tool" >/dev/null || { echo "build-biostest: $tool not found (install binutils)" >&2; exit 1; }
done
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for src in e2e/biostest/*.S; do
	name=$(basename "$src" .S)
	as --32 -I e2e/biostest -o "$out/$name.o" "$src"
	ld -m elf_i386 -Ttext=0 -e _start --oformat binary -o "$out/$name.bin" "$out/$name.o"
	cp "$out/$name.bin" "e2e/biostest/$name.bin"
	echo "e2e/biostest/$name.bin: $(stat -c %s "$out/$name.bin") bytes"
done
