#!/usr/bin/env bash
# bench-linux.sh: Debian's i386 kernel with our Go init, process start to
# the init's debug-exit write (gi.memtest=0: the init reports and exits
# at once), through `kvmboot run --mem 128M` (--vmm auto: QEMU with TCG on
# hosts whose KVM cannot run paged i386 guests) against plain
# `qemu-system-i386 -kernel -initrd -append` as a user types it
# (bench-lib.sh), with the same kernel, initramfs and command line, N runs
# of each (default 7), alternating, medians of wall and CPU time. Then
# kvmboot's own share from its result JSON (medians): reading and planning
# with the decompression cache warm, the first instruction, and the same
# cold (--no-cache, 3 runs).
#
#   scripts/bench-linux.sh [N]        (needs `make kernel`)
# Environment: KVMBOOT (a built kvmboot; built into a temp dir when unset).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh

N=${1:-7}
bench_kernel bench-linux
bench_setup bench-linux qemu-system-x86:qemu-system-i386 jq:jq
go run ./e2e/cmd/mkinitramfs "$tmp/initramfs.cpio.gz"
cmdline="console=ttyS0 quiet cryptomgr.notests noisapnp panic=-1 gi.memtest=0"

ours=("$bin" run --mem 128M --json --timeout 120s --console /dev/null --initrd "$tmp/initramfs.cpio.gz" --cmdline "$cmdline" "$kernel")
ref=("${plainqemu[@]}" -kernel "$kernel" -initrd "$tmp/initramfs.cpio.gz" -append "$cmdline")
# kvmboot's stdout is its result JSON: keep each run's timings.
share() { jq -r '.timings_ms | "\(.load) \(.first_instruction) \(.decompress) \(.guest) \(.qemu_cpu)"' "$tmp/stdout" >>"$1"; }

echo "host load before: $(loadavg)"
timed 0 /dev/null "${ours[@]}" # warm-up: page cache, decompression cache, host probe
backend=$(jq -r '.vmm + "/" + (.accel // "")' "$tmp/stdout")
timed 1 /dev/null "${ref[@]}"
: >"$tmp/ours" && : >"$tmp/ref" && : >"$tmp/share" && : >"$tmp/cold"
for _ in $(seq "$N"); do
	timed 0 "$tmp/ours" "${ours[@]}"
	share "$tmp/share"
	timed 1 "$tmp/ref" "${ref[@]}"
done
for _ in 1 2 3; do
	timed 0 /dev/null "${ours[@]:0:2}" --no-cache "${ours[@]:2}"
	share "$tmp/cold"
done
report "Debian to init, $backend" "$tmp/ours" "$tmp/ref"
echo "  kvmboot ms: $(cut -d' ' -f1 "$tmp/ours" | tr '\n' ' ')"
echo "  qemu    ms: $(cut -d' ' -f1 "$tmp/ref" | tr '\n' ' ')"
printf 'kvmboot, cache warm: load %s ms, first instruction %s ms, guest %s ms, QEMU CPU %s ms\n' \
	"$(median 1 "$tmp/share")" "$(median 2 "$tmp/share")" "$(median 4 "$tmp/share")" "$(median 5 "$tmp/share")"
printf 'kvmboot, cold (--no-cache): decompression %s ms, load %s ms, first instruction %s ms\n' \
	"$(median 3 "$tmp/cold")" "$(median 1 "$tmp/cold")" "$(median 2 "$tmp/cold")"
echo "host load after: $(loadavg)   (issue 20's target: at most 0.30x; scripts/bench-floor.sh measures the floor)"
