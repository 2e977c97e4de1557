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
#   unset), MACHINE (our side's --machine: pc, the default, or minimal),
#   HYPERFINE=1 to run hyperfine instead (when installed).
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
	CGO_ENABLED=0 go build -o "$bin" ./cmd/kvmboot
fi

ours=("$bin" run --vmm=qemu --accel=tcg --machine="${MACHINE:-pc}" --console "$tmp/ours.log")
ref=("$bin" run --vmm=qemu-kernel --accel=tcg --console "$tmp/ref.log")
if [ -n "$kernel" ]; then
	ours+=("$kernel")
	ref+=("$kernel")
fi

if [ "${HYPERFINE:-}" = 1 ] && command -v hyperfine >/dev/null; then
	hyperfine --warmup 1 --runs "$runs" -N --export-json "$tmp/h.json" "${ours[*]}" "${ref[*]}"
	# hyperfine prints means; the medians are in its JSON (seconds).
	grep '"median"' "$tmp/h.json" | tr -dc '0-9.\n' | awk '
		{ m[NR] = $1 * 1000 }
		END { printf "medians: --vmm=qemu %.1f ms, --vmm=qemu-kernel %.1f ms, ratio %.2fx (target: at most 0.5x)\n", m[1], m[2], m[1] / m[2] }'
	exit 0
fi

# Microseconds since the epoch: bash 5's EPOCHREALTIME costs no fork (a
# `date` process would add its own start-up to every sample).
now_us() {
	if [ -n "${EPOCHREALTIME:-}" ]; then
		echo "${EPOCHREALTIME/./}"
	else
		echo $(($(date +%s%N) / 1000))
	fi
}

# One run of a command: microseconds from start to exit, checking status 0.
time_us() {
	local s e
	s=$(now_us)
	"$@" 2>"$tmp/err" || { echo "bench-qemu: $* failed: $(cat "$tmp/err")" >&2; exit 1; }
	e=$(now_us)
	echo $((e - s))
}

median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

"${ours[@]}" 2>/dev/null && "${ref[@]}" 2>/dev/null # warm up (page cache, probe cache)
: >"$tmp/ours" && : >"$tmp/ref"
for _ in $(seq "$runs"); do
	time_us "${ours[@]}" >>"$tmp/ours"
	time_us "${ref[@]}" >>"$tmp/ref"
done
o=$(median <"$tmp/ours")
r=$(median <"$tmp/ref")
ms() { awk '{printf "%.1f ", $1 / 1000}' | sed 's/ $//'; }
echo "--vmm=qemu --accel=tcg         median $(echo "$o" | ms) ms  runs (ms): $(ms <"$tmp/ours")"
echo "--vmm=qemu-kernel --accel=tcg  median $(echo "$r" | ms) ms  runs (ms): $(ms <"$tmp/ref")"
awk -v o="$o" -v r="$r" 'BEGIN { printf "ratio %.2fx (target: at most 0.5x)\n", o / r }'
