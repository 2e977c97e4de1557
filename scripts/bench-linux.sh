#!/usr/bin/env bash
# Boots Debian's i386 kernel with our guest init N times with kvmboot (--vmm
# auto: QEMU with TCG on hosts whose KVM cannot run paged i386 guests) and N
# times with QEMU's own -kernel path (SeaBIOS, Linux's in-guest
# decompressor), alternating, and times process start to the init's first
# line ("gi: hello"). Prints the medians, their ratio, kvmboot's loader share
# (decompress + relocate + place, from the result JSON) and peak RSS.
#
#   scripts/bench-linux.sh [N]        (default 5; needs `make kernel`)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-5}
kernel=${KVMBOOT_KERNEL_DIR:-.cache/kernels}/vmlinuz
[ -f "$kernel" ] || { echo "bench-linux: $kernel missing: run make kernel" >&2; exit 1; }
for tool in qemu-system-i386 jq; do
	command -v "$tool" >/dev/null || { echo "bench-linux: $tool not found (apt-get install qemu-system-x86 jq)" >&2; exit 1; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
CGO_ENABLED=0 go build -o "$tmp/kvmboot" ./cmd/kvmboot
go run ./e2e/cmd/mkinitramfs "$tmp/initramfs.cpio.gz"
cmdline="console=ttyS0 quiet cryptomgr.notests noisapnp panic=-1"

# One warm-up of each (page cache, decompression cache), then N alternating.
run() { # vmm -> prints "seconds load_ms peak_rss_kb"
	local start end
	start=$(date +%s%N)
	"$tmp/kvmboot" run --vmm="$1" --json --expect 'gi: hello' --timeout 120s \
		--initrd "$tmp/initramfs.cpio.gz" --cmdline "$cmdline" --console "$tmp/console" "$kernel" >"$tmp/result.json"
	end=$(date +%s%N)
	echo "$(( (end - start) / 1000000 )) $(jq -r '.timings_ms.load' "$tmp/result.json") $(jq -r '.peak_rss_kb' "$tmp/result.json") $(jq -r '.vmm + "/" + (.accel // "")' "$tmp/result.json")"
}
run auto >/dev/null
run qemu-kernel >/dev/null
: >"$tmp/kvmboot.txt"
: >"$tmp/qemu.txt"
for _ in $(seq "$N"); do
	run auto >>"$tmp/kvmboot.txt"
	run qemu-kernel >>"$tmp/qemu.txt"
done
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
k=$(cut -d' ' -f1 "$tmp/kvmboot.txt" | median)
q=$(cut -d' ' -f1 "$tmp/qemu.txt" | median)
load=$(cut -d' ' -f2 "$tmp/kvmboot.txt" | median)
rss=$(cut -d' ' -f3 "$tmp/kvmboot.txt" | sort -n | tail -1)
backend=$(cut -d' ' -f4 "$tmp/kvmboot.txt" | head -1)
printf '%-34s %10s\n' "process start to 'gi: hello'" "median ms"
printf '%-34s %10s   (%s)\n' "kvmboot --vmm=auto ($backend)" "$k" "$(cut -d' ' -f1 "$tmp/kvmboot.txt" | tr '\n' ' ')"
printf '%-34s %10s   (%s)\n' "qemu -kernel (SeaBIOS)" "$q" "$(cut -d' ' -f1 "$tmp/qemu.txt" | tr '\n' ' ')"
printf '%-34s %10s\n' "ratio kvmboot / qemu -kernel" "$(awk -v a="$k" -v b="$q" 'BEGIN {printf "%.2fx", a/b}')"
printf '%-34s %10s\n' "kvmboot loader share (ms, cached)" "$load"
printf '%-34s %10s\n' "kvmboot peak RSS (KiB)" "$rss"
