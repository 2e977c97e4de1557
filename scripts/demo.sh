#!/usr/bin/env bash
# `make demo`: boot the built-in test kernel with 16M-32M declared bad, on
# whatever backend this host can run. On a host where nothing can boot it
# (no usable /dev/kvm and no QEMU), it installs QEMU first: through apt when
# it runs as root, else it prints the one command to run and stops.
#
# Usage: scripts/demo.sh [extra kvmboot run flags]
set -euo pipefail
cd "$(dirname "$0")/.."
prog=demo
go=${GO:-go}

bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
CGO_ENABLED=0 "$go" build -o "$bin/kvmboot" ./cmd/kvmboot

# What auto picks here: the probe's JSON has auto_error when nothing can
# boot. The probe is cached per host boot and per QEMU binary, so it runs
# again after QEMU is installed.
nothing_boots() {
	"$bin/kvmboot" probe --json | grep -q '"auto_error"'
}

if nothing_boots; then
	"$bin/kvmboot" probe | sed -n '/^auto/p' >&2
	if ! command -v apt-get >/dev/null; then
		echo "$prog: install QEMU (qemu-system-i386) with your package manager, then run make demo again" >&2
		exit 1
	fi
	if [ "$(id -u)" != 0 ]; then
		echo "$prog: no backend can run here; install QEMU and run make demo again:" >&2
		echo "    sudo apt-get install --no-install-recommends qemu-system-x86" >&2
		exit 1
	fi
	echo "$prog: installing qemu-system-x86 with apt-get" >&2
	export DEBIAN_FRONTEND=noninteractive
	# apt-get update only when the lists know no candidate (a fresh image
	# often ships without lists).
	if ! apt-get install -y -qq --no-install-recommends qemu-system-x86 >/dev/null; then
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends qemu-system-x86 >/dev/null
	fi
	if nothing_boots; then
		"$bin/kvmboot" probe >&2
		echo "$prog: QEMU is installed, yet no backend can boot here (see the probe above)" >&2
		exit 1
	fi
fi

exec "$bin/kvmboot" run --show-plan --bad-ram 16M-32M "$@"
