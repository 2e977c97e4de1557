#!/usr/bin/env bash
# Runs every Go fuzz target in the module for a set time each:
#   scripts/fuzz.sh [TIME]      (default 60s; CI runs 5s)
# Findings land in the package's testdata/fuzz/ and then run as ordinary
# tests in `go test` from then on: fix the bug and keep the file.
set -euo pipefail
cd "$(dirname "$0")/.."
time=${1:-60s}
status=0
while read -r dir name; do
	echo "fuzz: $dir $name ($time)"
	if ! go test -run '^$' -fuzz "^${name}\$" -fuzztime "$time" -fuzzminimizetime 5s "$dir" >/tmp/fuzz.$$.log 2>&1; then
		cat /tmp/fuzz.$$.log
		status=1
	fi
done < <(grep -rl --include='*_test.go' '^func Fuzz' . | while read -r f; do
	grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | sed "s|^func ||; s|^|$(dirname "$f") |"
done | sort)
rm -f /tmp/fuzz.$$.log
exit $status
