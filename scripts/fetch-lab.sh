#!/usr/bin/env bash
# Fetches what the nested KVM lab (e2e/lab, `make test-kvm`) boots, from
# Debian's packages only, into $KVMBOOT_LAB_DIR (default <repo>/.cache/lab/):
#   kernel/           Debian's amd64 kernel, with kvm-amd.ko and the modules
#                     it needs (scripts/fetch-kernel.sh --arch amd64)
#   busybox           busybox-static's /bin/busybox, the lab's shell and tools
#   busybox.VERSION   the package version it came from
# and Debian's i386 kernel for the tests inside (scripts/fetch-kernel.sh).
# Nothing is fetched when the cache holds what apt resolves (or apt resolves
# nothing offline and the cache is complete).
set -euo pipefail

prog=fetch-lab
die() { echo "$prog: $*" >&2; exit 1; }

root=$(cd "$(dirname "$0")/.." && pwd)
dir=${KVMBOOT_LAB_DIR:-$root/.cache/lab}
mkdir -p "$dir" || die "cannot create cache folder $dir"

KVMBOOT_KERNEL_DIR=$dir/kernel "$root/scripts/fetch-kernel.sh" --arch amd64 --modules kvm-amd
"$root/scripts/fetch-kernel.sh"

exec 9>"$dir/.lock"
flock 9 || die "cannot lock $dir/.lock"
want=$(apt-cache policy busybox-static 2>/dev/null | awk '/Candidate:/ && $2 != "(none)" { print $2 }')
have=$(cat "$dir/busybox.VERSION" 2>/dev/null || true)
if [ -s "$dir/busybox" ] && [ -n "$have" ] && { [ -z "$want" ] || [ "$want" = "$have" ]; }; then
	echo "$prog: up to date: busybox-static $have ($dir/busybox)"
	exit 0
fi
[ -n "$want" ] || die "apt knows no candidate for busybox-static (apt-get update?)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp" # apt-get download drops to user _apt when it can write here
(cd "$tmp" && apt-get download -qq "busybox-static=$want" >/dev/null 2>"$tmp/err") ||
	die "apt-get download busybox-static=$want failed: $(head -n1 "$tmp/err")"
dpkg-deb -x "$tmp"/busybox-static_*.deb "$tmp/x" || die "dpkg-deb -x busybox-static failed"
[ -x "$tmp/x/bin/busybox" ] || die "busybox-static has no bin/busybox"
cp "$tmp/x/bin/busybox" "$dir/busybox.tmp"
mv -f "$dir/busybox.tmp" "$dir/busybox"
echo "$want" >"$dir/busybox.VERSION"
echo "$prog: fetched busybox-static $want: $dir/busybox"
