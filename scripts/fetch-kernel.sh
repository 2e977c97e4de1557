#!/usr/bin/env bash
# Fetches Debian's current i386 kernel (linux-image-*-686-unsigned:i386) with
# apt and keeps it outside git, in $KVMBOOT_KERNEL_DIR (default
# <repo>/.cache/kernels/):
#   vmlinuz   the bzImage
#   config    its kernel config
#   modules/  with --modules: the named modules and every module they
#             depend on (modinfo -F depends), and modules/order, one file
#             name a line, in an order insmod can load them
#   VERSION   one line: "<package> <debian version>", e.g.
#             "linux-image-6.1.0-50-686-unsigned 6.1.176-1"
# VERSION is written last, so a cache without it is incomplete.
# --arch amd64 fetches the amd64 kernel (linux-image-*-amd64-unsigned) instead:
# the nested KVM lab's outer kernel (scripts/fetch-lab.sh).
#
# The version is resolved from linux-image-686:i386's dependency (or
# linux-image-amd64's). The script
# is a no-op (no network, no apt-get update) when the cache holds the version
# apt resolves from its current lists, and also when the cache is complete
# and apt resolves nothing offline. apt-get update runs only when apt knows
# no candidate (or a download fails on stale lists), or with --update.
#
# Usage: scripts/fetch-kernel.sh [--update] [--arch i386|amd64] [--modules NAME,...]
set -euo pipefail

prog=fetch-kernel
die() { echo "$prog: $*" >&2; exit 1; }
log() { echo "$prog: $*" >&2; }

usage="usage: $0 [--update] [--arch i386|amd64] [--modules NAME,...]"
force_update=0
arch=i386
modules=""
while [ $# -gt 0 ]; do
	case "$1" in
	--update) force_update=1 ;;
	--arch) [ $# -ge 2 ] || die "$usage"; arch=$2; shift ;;
	--modules) [ $# -ge 2 ] || die "$usage"; modules=$2; shift ;;
	-h | --help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) die "unknown argument '$1' ($usage)" ;;
	esac
	shift
done
case "$arch" in
i386) flavour=686 ;;
amd64) flavour=amd64 ;;
*) die "--arch $arch: want i386 or amd64" ;;
esac

root=$(cd "$(dirname "$0")/.." && pwd)
dir=${KVMBOOT_KERNEL_DIR:-$root/.cache/kernels}
meta=linux-image-$flavour:$arch

mkdir -p "$dir" || die "cannot create cache folder $dir"
# One fetch at a time per cache folder.
exec 9>"$dir/.lock"
flock 9 || die "cannot lock $dir/.lock"

cached=""
if [ -s "$dir/VERSION" ] && [ -s "$dir/vmlinuz" ] && [ -s "$dir/config" ] &&
	{ [ -z "$modules" ] || [ "$(cat "$dir/modules/wanted" 2>/dev/null)" = "$modules" ]; }; then
	cached=$(head -n1 "$dir/VERSION")
fi

have_arch() {
	[ "$(dpkg --print-architecture 2>/dev/null)" = "$arch" ] ||
		dpkg --print-foreign-architectures 2>/dev/null | grep -qx "$arch"
}

# resolve: prints "<package> <version>" for the current -unsigned image
# from apt's lists (linux-image-686's "Depends: linux-image-X-686 (= V)"),
# or nothing when apt cannot tell. One apt-cache call: each parses every list
# (about 1 s here, apt keeps no binary cache).
resolve() {
	apt-cache show --no-all-versions "$meta" 2>/dev/null | awk -v flavour="$flavour" -v arch="$arch" '
		/^Depends:/ {
			sub(/^Depends:[ \t]*/, "")
			n = split($0, deps, /,[ \t]*/)
			for (i = 1; i <= n; i++) {
				split(deps[i], w, /[ \t()=]+/)
				if (w[1] ~ ("^linux-image-.*-" flavour "(-unsigned)?(:" arch ")?$") && w[2] != "") {
					pkg = w[1]; sub(":" arch "$", "", pkg); sub(/-unsigned$/, "", pkg)
					print pkg "-unsigned", w[2]
					exit
				}
			}
		}' || true
}

# lists_stamp: what apt resolved from: the $arch package lists' names, sizes
# and times. While it is unchanged, resolve would print the same answer.
lists_stamp() {
	local lists
	eval "$(apt-config shell lists Dir::State::lists/d 2>/dev/null)"
	lists=${lists:-/var/lib/apt/lists/}
	stat -c '%n %s %Y' "$lists"*_binary-"$arch"_Packages* 2>/dev/null || true
}

# up_to_date: the cache holds what apt resolves; note the lists it came from.
up_to_date() {
	lists_stamp >"$dir/.lists"
	echo "$prog: up to date: $cached ($dir)"
	exit 0
}

# first_error FILE: apt's first "E:" line in FILE, or its first line.
first_error() { grep -m1 '^E:' "$1" || head -n1 "$1"; }

apt_update() {
	need_root "apt-get update"
	log "apt-get update"
	updated=1
	# A mirror mid-sync fails some index files (exit 100) while the ones we
	# need are fine: let the resolution below decide.
	if ! apt-get update -qq >/dev/null 2>"$tmp/update.err"; then
		update_err=" ($(first_error "$tmp/update.err"))"
		log "apt-get update reported errors, continuing$update_err"
	fi
}

# target: what to download, from want (resolved again after an apt-get
# update); ends the script when the cache holds it already.
target() {
	[ "$updated" = 0 ] || want=$(resolve)
	[ -n "$want" ] || die "apt knows no candidate for $meta (or no linux-image-*-$flavour dependency) after apt-get update$update_err"
	[ "$want" != "$cached" ] || up_to_date
	pkg=${want% *}
	ver=${want#* }
	log "downloading $pkg:$arch $ver"
}

want=""
if [ -n "$cached" ] && [ "$force_update" = 0 ] && [ -s "$dir/.lists" ] &&
	[ "$(lists_stamp)" = "$(cat "$dir/.lists")" ]; then
	echo "$prog: up to date: $cached ($dir; apt lists unchanged)"
	exit 0
fi
if have_arch; then
	want=$(resolve)
fi

if [ -n "$cached" ]; then
	if [ -z "$want" ] && [ "$force_update" = 0 ]; then
		echo "$prog: cache has $cached ($dir); apt resolves no version offline, keeping it"
		exit 0
	fi
	if [ "$want" = "$cached" ] && [ "$force_update" = 0 ]; then
		up_to_date
	fi
fi

for tool in apt-get apt-cache dpkg dpkg-deb; do
	command -v "$tool" >/dev/null || die "$tool not found (this script needs Debian's apt)"
done
[ -z "$modules" ] || command -v modinfo >/dev/null || die "modinfo not found (apt-get install kmod)"
need_root() {
	[ "$(id -u)" = 0 ] || die "needs root for $1 (cache at $dir has: ${cached:-nothing})"
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp" # apt-get download drops to user _apt when it can write here

updated=0
update_err=""
if ! have_arch; then
	need_root "dpkg --add-architecture $arch"
	log "dpkg --add-architecture $arch"
	dpkg --add-architecture "$arch" || die "dpkg --add-architecture $arch failed"
	apt_update
elif [ "$force_update" = 1 ] || [ -z "$want" ]; then
	apt_update
fi
target

download() { (cd "$tmp" && apt-get download -qq "$pkg:$arch=$ver" >/dev/null 2>"$tmp/download.err"); }
if ! download; then
	[ "$updated" = 0 ] || die "apt-get download $pkg:$arch=$ver failed: $(first_error "$tmp/download.err")"
	# Stale lists can name a version the mirror no longer has.
	apt_update
	target
	download || die "apt-get download $pkg:$arch=$ver failed: $(first_error "$tmp/download.err")"
fi

deb=$(ls "$tmp"/*.deb 2>/dev/null | head -n1)
[ -n "$deb" ] || die "apt-get download left no .deb in $tmp"
dpkg-deb -x "$deb" "$tmp/x" || die "dpkg-deb -x $(basename "$deb") failed"
vmlinuz=$(ls "$tmp"/x/boot/vmlinuz-* 2>/dev/null | head -n1)
config=$(ls "$tmp"/x/boot/config-* 2>/dev/null | head -n1)
[ -n "$vmlinuz" ] || die "$(basename "$deb") has no boot/vmlinuz-*"
[ -n "$config" ] || die "$(basename "$deb") has no boot/config-*"

# modules NAME...: copies each module and, first, what it depends on into
# $tmp/modules, appending each file name to $tmp/modules/order once.
mkdir -p "$tmp/modules"
: >"$tmp/modules/order"
module() {
	local name=$1 ko dep
	ko=$(find "$tmp"/x/lib/modules \( -name "$name.ko" -o -name "$(echo "$name" | tr _ -).ko" \) -print -quit)
	[ -n "$ko" ] || die "$(basename "$deb") has no module $name"
	! grep -qx "$(basename "$ko")" "$tmp/modules/order" || return 0
	for dep in $(modinfo -F depends "$ko" | tr , ' '); do
		module "$dep"
	done
	cp "$ko" "$tmp/modules/"
	basename "$ko" >>"$tmp/modules/order"
}
for m in $(echo "$modules" | tr , ' '); do
	module "$m"
done

# Replace atomically enough: VERSION goes first and comes back last, so an
# interrupted run leaves an incomplete cache that the next run refetches.
cp "$vmlinuz" "$dir/vmlinuz.tmp"
cp "$config" "$dir/config.tmp"
echo "$want" >"$dir/VERSION.tmp"
rm -f "$dir/VERSION" "$dir/.lists"
rm -rf "$dir/modules"
if [ -n "$modules" ]; then
	mv "$tmp/modules" "$dir/modules"
	echo "$modules" >"$dir/modules/wanted"
fi
mv -f "$dir/vmlinuz.tmp" "$dir/vmlinuz"
mv -f "$dir/config.tmp" "$dir/config"
mv -f "$dir/VERSION.tmp" "$dir/VERSION"
lists_stamp >"$dir/.lists"
echo "$prog: fetched $want: $dir/vmlinuz ($(stat -c %s "$dir/vmlinuz") bytes, $(basename "$vmlinuz")), $dir/config"
