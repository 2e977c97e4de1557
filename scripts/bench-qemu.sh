#!/usr/bin/env bash
# bench-qemu.sh: a small Multiboot kernel, process start to its debug-exit
# write, through `kvmboot run --vmm=qemu --accel=tcg --mem 128M` against
# plain `qemu-system-i386 -kernel` as a user types it (bench-lib.sh: the
# default PC, -m 128, -nodefaults, -serial null, -vnc none, debug-exit),
# RUNS of each (default 7), alternating, medians of wall and CPU time.
#
# The kernels: the built-in test kernel (relocatable, linked at 16 MiB)
# and the same without its relocation sections (objcopy), a non-relocatable
# Multiboot kernel linked at 16 MiB, as issue 20 measured; or KERNEL.
#
# A third command runs beside them: the same plain QEMU with, instead of
# SeaBIOS and -kernel, a 64 KiB ROM that writes the debug-exit port at the
# reset vector. It is QEMU's start and exit and nothing else: the floor
# of any loader that runs under this QEMU, kvmboot's included.
#
# Usage: scripts/bench-qemu.sh [RUNS] [KERNEL]
# Environment: KVMBOOT (a built kvmboot; built into a temp dir when unset),
#   MACHINE (kvmboot's --machine: pc, the default, or minimal).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh

runs=${1:-7}
bench_setup bench-qemu qemu-system-x86:qemu-system-i386

kernels=()
if [ -n "${2:-}" ]; then
	kernels=("$2")
else
	cp boot/testkernel/testkernel.elf "$tmp/testkernel.elf"
	kernels=("$tmp/testkernel.elf")
	if command -v objcopy >/dev/null; then
		objcopy --remove-section='.rel*' "$tmp/testkernel.elf" "$tmp/testkernel-fixed.elf"
		kernels+=("$tmp/testkernel-fixed.elf")
	fi
fi

# The floor's ROM: mov al,0; out 0xf4,al; hlt at the reset vector.
head -c 65520 /dev/zero >"$tmp/exit.rom"
printf '\xb0\x00\xe6\xf4\xf4' >>"$tmp/exit.rom"
head -c 11 /dev/zero >>"$tmp/exit.rom"
floor=("${plainqemu[@]}" -bios "$tmp/exit.rom")

echo "host load before: $(loadavg)"
for k in "${kernels[@]}"; do
	ours=("$bin" run --vmm=qemu --accel=tcg --machine="${MACHINE:-pc}" --mem 128M --console /dev/null "$k")
	ref=("${plainqemu[@]}" -kernel "$k")
	# Warm-up: page cache, kvmboot's host probe. The guest writes 0:
	# kvmboot exits 0, QEMU (0<<1)|1.
	timed 0 /dev/null "${ours[@]}"
	timed 1 /dev/null "${ref[@]}"
	: >"$tmp/ours" && : >"$tmp/ref" && : >"$tmp/floor"
	for _ in $(seq "$runs"); do
		timed 0 "$tmp/ours" "${ours[@]}"
		timed 1 "$tmp/ref" "${ref[@]}"
		timed 1 "$tmp/floor" "${floor[@]}"
	done
	report "$(basename "$k")" "$tmp/ours" "$tmp/ref"
	echo "  kvmboot ms: $(cut -d' ' -f1 "$tmp/ours" | tr '\n' ' ')"
	echo "  qemu    ms: $(cut -d' ' -f1 "$tmp/ref" | tr '\n' ' ')"
	printf '  floor: QEMU exiting at the reset vector %.1f ms (CPU %.1f) = %s of qemu -kernel (CPU %s)\n' \
		"$(median 1 "$tmp/floor")" "$(median 2 "$tmp/floor")" "$(ratio "$(median 1 "$tmp/floor")" "$(median 1 "$tmp/ref")")" \
		"$(ratio "$(median 2 "$tmp/floor")" "$(median 2 "$tmp/ref")")"
done
echo "host load after: $(loadavg)   (target: at most 0.5x)"
