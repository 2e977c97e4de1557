#!/usr/bin/env bash
# Builds kvmboot's QEMU TCG plugin (machine/qemu/plugin) into the shared
# object that Go embeds. The .so is committed so `go build` needs no C
# compiler; CI rebuilds it and fails if it differs from the committed copy.
set -euo pipefail
cd "$(dirname "$0")/../machine/qemu/plugin"
command -v gcc >/dev/null || { echo "build-plugin: gcc not found (apt-get install gcc)" >&2; exit 1; }
# Stripped and without a build id, so that the same source and compiler
# give the same bytes.
gcc -O2 -Wall -Wextra -Werror -std=gnu11 -shared -fPIC -fvisibility=hidden \
	-Wl,--build-id=none -s -o kvmboot-tcg.so csrc/kvmboot-tcg.c
echo "machine/qemu/plugin/kvmboot-tcg.so: $(stat -c %s kvmboot-tcg.so) bytes"
