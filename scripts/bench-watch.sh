#!/usr/bin/env bash
# bench-watch.sh: what watching bad RAM costs under QEMU with TCG. Boots
# Debian's i386 kernel with our guest init through `kvmboot run --vmm=qemu
# --accel=tcg`, N times unwatched (no bad RAM: kvmboot's plugin is not
# loaded) and N times with 64M-80M declared bad (the plugin watches it),
# alternating so that both see the same machine load, and times process
# start to the init's first line ("gi: hello"), with the CPU time QEMU used
# until then (timings_ms.qemu_cpu, which other load on the host does not
# inflate). Prints the medians and their ratios (target: at most 1.3x),
# then one boot with the issue's faulty-RAM witness (--mem 64M --faulty-ram
# 40M+64K:stuck0, memtest=2).
#
#   scripts/bench-watch.sh [N]        (default 7; needs `make kernel`)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
N=${1:-7}
bench_kernel bench-watch
bench_setup bench-watch qemu-system-x86:qemu-system-i386 jq:jq
go run ./e2e/cmd/mkinitramfs "$tmp/initramfs.cpio.gz"
cmdline="console=ttyS0 quiet cryptomgr.notests noisapnp panic=-1"

# One boot to init: prints milliseconds from process start to the match,
# and QEMU's CPU milliseconds.
boot() {
	local start end
	start=$(date +%s%N)
	"$bin" run --vmm=qemu --accel=tcg --json --expect 'gi: hello' --timeout 120s \
		--initrd "$tmp/initramfs.cpio.gz" --console "$tmp/console" "$@" "$kernel" >"$tmp/result.json" 2>"$tmp/err" ||
		{ echo "bench-watch: kvmboot $* failed: $(tail -3 "$tmp/err")" >&2; exit 1; }
	end=$(date +%s%N)
	echo "$(((end - start) / 1000000)) $(jq -r '.timings_ms.qemu_cpu | floor' "$tmp/result.json")"
}
boot --cmdline "$cmdline" >/dev/null # warm-up: page cache, decompression cache
: >"$tmp/unwatched.txt"
: >"$tmp/watched.txt"
for _ in $(seq "$N"); do
	boot --cmdline "$cmdline" >>"$tmp/unwatched.txt"
	boot --cmdline "$cmdline" --bad-ram 64M-80M >>"$tmp/watched.txt"
done
uw=$(median 1 "$tmp/unwatched.txt")
ww=$(median 1 "$tmp/watched.txt")
uc=$(median 2 "$tmp/unwatched.txt")
wc=$(median 2 "$tmp/watched.txt")
printf '%-40s %12s %12s\n' "Debian to 'gi: hello', --vmm=qemu" "median ms" "QEMU CPU ms"
printf '%-40s %12s %12s   (%s)\n' "unwatched (plugin not loaded)" "$uw" "$uc" "$(cut -d' ' -f1 "$tmp/unwatched.txt" | tr '\n' ' ')"
printf '%-40s %12s %12s   (%s)\n' "--bad-ram 64M-80M (plugin watching)" "$ww" "$wc" "$(cut -d' ' -f1 "$tmp/watched.txt" | tr '\n' ' ')"
printf '%-40s %12s %12s\n' "ratio watched / unwatched" "$(ratio "$ww" "$uw")" "$(ratio "$wc" "$uc")"
read -r wit witcpu < <(boot --mem 64M --faulty-ram 40M+64K:stuck0 --cmdline "console=ttyS0 memtest=2 cryptomgr.notests noisapnp panic=-1")
grep -q 'bad mem addr 0x02800000 - 0x02810000 reserved' "$tmp/console" ||
	{ echo "bench-watch: the witness's memtest line is missing" >&2; exit 1; }
printf '%-40s %12s %12s\n' "witness: 64M, 40M+64K stuck0, memtest=2" "$wit" "$witcpu"
