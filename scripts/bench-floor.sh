#!/usr/bin/env bash
# bench-floor.sh: where a Debian boot's time goes, seen from inside QEMU,
# for kvmboot and for plain `qemu-system-i386 -kernel` (bench-linux.sh's
# two command lines, unchanged). A TCG plugin (floor/floor-plugin.c) marks
# the guest's first instruction, the first run of Linux's startup_32 (the
# first block at a 16 MiB multiple: where both loaders put it) and QEMU's
# exit at the init's debug-exit write. Linux from startup_32 to that exit
# is the same work whoever loaded it: no loader can make the boot shorter
# than that, and divided by the plain QEMU boot it is the lowest ratio any
# loader can reach on this machine.
#
# Both sides run the same QEMU through a wrapper that adds -plugin (kvmboot
# runs the qemu-system-i386 it finds in PATH); N runs of each (default 5),
# alternating, medians.
#
#   scripts/bench-floor.sh [N]        (needs `make kernel`, gcc)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh

N=${1:-5}
bench_kernel bench-floor
bench_setup bench-floor qemu-system-x86:qemu-system-i386 jq:jq gcc:gcc
go run ./e2e/cmd/mkinitramfs "$tmp/initramfs.cpio.gz"
gcc -O2 -Wall -Wextra -Werror -std=gnu11 -shared -fPIC -I machine/qemu/plugin/csrc \
	-o "$tmp/floor.so" scripts/floor/floor-plugin.c
mkdir "$tmp/bin"
printf '#!/bin/sh\nexec %s "$@" -plugin %s,out=%s\n' "$(command -v qemu-system-i386)" "$tmp/floor.so" "$tmp/marks" >"$tmp/bin/qemu-system-i386"
chmod +x "$tmp/bin/qemu-system-i386"
cmdline="console=ttyS0 quiet cryptomgr.notests noisapnp panic=-1 gi.memtest=0"

ours=(env PATH="$tmp/bin:$PATH" "$bin" run --mem 128M --timeout 120s --console /dev/null --initrd "$tmp/initramfs.cpio.gz" --cmdline "$cmdline" "$kernel")
ref=(env PATH="$tmp/bin:$PATH" "${plainqemu[@]}" -kernel "$kernel" -initrd "$tmp/initramfs.cpio.gz" -append "$cmdline")

# marks OUT: "wall first loader linux" of the last run: the process's
# wall time, QEMU's start-up to the guest's first instruction, from there
# to startup_32, and startup_32 to the exit (ms).
marks() {
	local wall
	wall=$(tail -1 "$tmp/run" | cut -d' ' -f1)
	sed 's/[a-z_]*=//g' "$tmp/marks" | awk -v w="$wall" '{printf "%s %.1f %.1f %.1f\n", w, $1, $2 - $1, $3 - $2}' >>"$1"
	grep -Eq 'kernel=[0-9].* kernel_at=0x[0-9a-f]*000000$' "$tmp/marks" ||
		{ echo "bench-floor: Linux never ran at a 16 MiB multiple: $(cat "$tmp/marks")" >&2; exit 1; }
}

echo "host load before: $(loadavg)"
timed 0 /dev/null "${ours[@]}" # warm-up
timed 1 /dev/null "${ref[@]}"
: >"$tmp/ours" && : >"$tmp/ref"
for _ in $(seq "$N"); do
	: >"$tmp/run" && rm -f "$tmp/marks"
	timed 0 "$tmp/run" "${ours[@]}"
	marks "$tmp/ours"
	: >"$tmp/run" && rm -f "$tmp/marks"
	timed 1 "$tmp/run" "${ref[@]}"
	marks "$tmp/ref"
done
printf '%-14s %12s %14s %16s %16s\n' "medians (ms)" "process" "QEMU to first" "first to Linux" "Linux to exit"
for side in ours ref; do
	name=kvmboot
	[ "$side" = ref ] && name="qemu -kernel"
	printf '%-14s %12s %14s %16s %16s\n' "$name" "$(median 1 "$tmp/$side")" "$(median 2 "$tmp/$side")" "$(median 3 "$tmp/$side")" "$(median 4 "$tmp/$side")"
done
rw=$(median 1 "$tmp/ref")
echo "kvmboot / qemu -kernel: $(ratio "$(median 1 "$tmp/ours")" "$rw")"
echo "floor (Linux from startup_32 to exit / qemu -kernel): $(ratio "$(median 4 "$tmp/ref")" "$rw") with plain QEMU's Linux, $(ratio "$(median 4 "$tmp/ours")" "$rw") with kvmboot's"
echo "host load after: $(loadavg)"
