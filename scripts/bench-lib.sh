# bench-lib.sh: what the bench scripts share (sourced, not run). The
# yardstick is QEMU as a user types it (issue 20): plain qemu-system-i386
# -kernel, both sides ending at the guest's debug-exit write, runs
# alternated, medians; CPU time (the process and what it waited for: QEMU)
# beside the wall time, since other load on the host inflates the wall
# time of both sides but not their CPU time.

# plainqemu is the reference command line, before -kernel and its
# arguments: QEMU from PATH (on Debian the wrapper script, as typed), its
# default PC, 128 MiB, debug-exit at 0xf4, the console thrown away.
plainqemu=(qemu-system-i386 -nodefaults -machine pc,accel=tcg -m 128
	-device isa-debug-exit,iobase=0xf4,iosize=0x4 -serial null -vnc none)

# bench_setup NAME PACKAGE:TOOL...: what every bench script needs first.
# Each TOOL must be on PATH (else the apt package that has it is named);
# $tmp is a private folder, removed on exit; $bin is $KVMBOOT or a
# kvmboot built into $tmp; with NAME's kernel check (bench_kernel), the
# Debian kernel's path is $kernel.
bench_setup() {
	local name=$1 pt
	shift
	for pt in "$@"; do
		command -v "${pt#*:}" >/dev/null || { echo "$name: ${pt#*:} not found (apt-get install ${pt%%:*})" >&2; exit 1; }
	done
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	bin=${KVMBOOT:-}
	if [ -z "$bin" ]; then
		bin=$tmp/kvmboot
		CGO_ENABLED=0 go build -o "$bin" ./cmd/kvmboot
	fi
}

# bench_kernel NAME: $kernel is Debian's i386 kernel (make kernel fetches it).
bench_kernel() {
	kernel=${KVMBOOT_KERNEL_DIR:-.cache/kernels}/vmlinuz
	[ -f "$kernel" ] || { echo "$1: $kernel missing: run make kernel" >&2; exit 1; }
}

# timed WANT OUT CMD...: runs CMD, which must exit with status WANT, and
# appends "wall_ms cpu_ms" to OUT. The CPU time is the growth of bash's
# children's user and system time (`times`): CMD and what it waited for.
timed() {
	local want=$1 out=$2 s e status c0 c1
	shift 2
	times >"$tmp/times0"
	s=$EPOCHREALTIME
	set +e
	"$@" >"$tmp/stdout" 2>"$tmp/stderr"
	status=$?
	set -e
	e=$EPOCHREALTIME
	times >"$tmp/times1"
	c0=$(children_cpu_ms <"$tmp/times0") c1=$(children_cpu_ms <"$tmp/times1")
	if [ "$status" != "$want" ]; then
		echo "$(basename "$0"): status $status, want $want: $*" >&2
		tail -3 "$tmp/stderr" >&2
		exit 1
	fi
	awk -v s="$s" -v e="$e" -v c0="$c0" -v c1="$c1" 'BEGIN {printf "%.1f %.1f\n", (e - s) * 1000, c1 - c0}' >>"$out"
}

# children_cpu_ms reads the output of bash's `times` (run in this shell,
# not in a subshell, which has children of its own) and prints the user
# plus system milliseconds of every child the shell has waited for: its
# second line, 0m1.234s 0m0.567s.
children_cpu_ms() {
	awk 'NR == 2 {
		n = split($0, f, " "); ms = 0
		for (i = 1; i <= n; i++) { split(f[i], p, "m"); ms += (p[1] * 60 + p[2]) * 1000 }
		printf "%.1f", ms }'
}

# median COLUMN FILE
median() {
	cut -d' ' -f"$1" "$2" | sort -n | awk '{a[NR] = $1} END {print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2)}'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2fx", a / b}'; }

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# report NAME OURS REF: one line with both medians and their ratios.
report() {
	local ow oc rw rc
	ow=$(median 1 "$2") oc=$(median 2 "$2") rw=$(median 1 "$3") rc=$(median 2 "$3")
	printf '%-34s kvmboot %7.1f ms (CPU %7.1f)   qemu -kernel %7.1f ms (CPU %7.1f)   ratio %s (CPU %s)\n' \
		"$1" "$ow" "$oc" "$rw" "$rc" "$(ratio "$ow" "$rw")" "$(ratio "$oc" "$rc")"
}
