#!/usr/bin/env bash
# bench-qemu.sh: time from process start to the test kernel's exit under
# `kvmboot run --vmm=qemu --accel=tcg` (our firmware and plan under QEMU)
# beside `kvmboot run --vmm=qemu-kernel --accel=tcg` (SeaBIOS and QEMU's own
# Multiboot loader), medians of N runs each (default 7), alternating so that
# both see the same machine load. Prints both medians and their ratio.
#
# Usage: scripts/bench-qemu.sh [RUNS] [KERNEL]
#   KERNEL defaults to the built-in test kernel.
# Environment: KVMBOOT (a built kvmboot binary; built into a temp dir when
#   unset), HYPERFINE=1 to run hyperfine instead (when installed).
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${1:-7}
kernel=${2:-}
command -v qemu-system-i386 >/dev/null || { echo "bench-qemu: qemu-system-i386 not found (apt-get install qemu-system-x86)" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bin=${KVMBOOT:-}
if [ -z "$bin" ]; then
	bin=$tmp/kvmboot
	go build -o "$bin" ./cmd/kvmboot
fi

ours=("$bin" run --vmm=qemu --accel=tcg --console "$tmp/ours.log")
ref=("$bin" run --vmm=qemu-kernel --accel=tcg --console "$tmp/ref.log")
if [ -n "$kernel" ]; then
	ours+=("$kernel")
	ref+=("$kernel")
fi

if [ "${HYPERFINE:-}" = 1 ] && command -v hyperfine >/dev/null; then
	hyperfine --warmup 1 --runs "$runs" -N "${ours[*]}" "${ref[*]}"
	exit 0
fi

# One run of a command: milliseconds from start to exit, checking status 0.
time_ms() {
	local s e
	s=$(date +%s%N)
	"$@" 2>"$tmp/err" || { echo "bench-qemu: $* failed: $(cat "$tmp/err")" >&2; exit 1; }
	e=$(date +%s%N)
	echo $(((e - s) / 1000))
}

median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

"${ours[@]}" 2>/dev/null && "${ref[@]}" 2>/dev/null # warm up (page cache, probe cache)
: >"$tmp/ours" && : >"$tmp/ref"
for _ in $(seq "$runs"); do
	time_ms "${ours[@]}" >>"$tmp/ours"
	time_ms "${ref[@]}" >>"$tmp/ref"
done
o=$(median <"$tmp/ours")
r=$(median <"$tmp/ref")
printf 'qemu (our firmware, TCG)      median %6.1f ms  runs: %s\n' "$(echo "$o/1000" | bc -l)" "$(tr '\n' ' ' <"$tmp/ours")"
printf 'qemu-kernel (SeaBIOS, TCG)    median %6.1f ms  runs: %s\n' "$(echo "$r/1000" | bc -l)" "$(tr '\n' ' ' <"$tmp/ref")"
printf 'ratio %.2fx (target <= 0.5x)\n' "$(echo "$o/$r" | bc -l)"
