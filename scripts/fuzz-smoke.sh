#!/usr/bin/env bash
# make fuzz-smoke: run every fuzz target for a few thousand inputs (FUZZTIME,
# 2000x by default: a count, not a duration), so a target that no longer builds or runs, or a crash the fuzzer
# finds at once, fails `make test`. Targets are found with grep: a new
# `func FuzzX` in any package is run without a list to keep up to date.
# A failing input is written to the package's testdata/fuzz/FuzzX/: fix the
# bug and commit the input as a regression seed.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-2000x}

targets=$(grep -rHo --include='*_test.go' --exclude-dir=testdata '^func Fuzz[A-Za-z0-9_]*' . | sort)
[ -n "$targets" ] || { echo "fuzz-smoke: no fuzz targets found" >&2; exit 1; }
while IFS=: read -r file decl; do
	name=${decl#func }
	pkg=./$(dirname "${file#./}")
	echo "fuzz-smoke: $pkg $name"
	# A count rather than a duration: when a duration runs out while a worker
	# is still handling a new input, the fuzzer reports the deadline as a
	# failure ("context deadline exceeded", seen in CI even with one
	# minimisation run per input). A crash is still reported and saved.
	"$GO" test -run='^$' -fuzz="^${name}\$" -fuzztime="$FUZZTIME" -fuzzminimizetime=1x "$pkg"
done <<<"$targets"
