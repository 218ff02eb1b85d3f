#!/usr/bin/env bash
# abcmp.sh: time two builds of a package's benchmark against each other,
# alternating them (the machine's speed drifts by 10-30% over minutes, so
# runs of one build after the other would compare the drift), then
# benchstat (golang.org/x/perf/cmd/benchstat) on the runs.
#
#   tests/abcmp.sh R A.test B.test [BENCH] [BENCHTIME] [DIR]
#
# runs R pairs of A.test and B.test (test binaries: go test -c -o A.test
# ./relay at each commit) with -test.bench BENCH (default relay's
# '^BenchmarkManyKeys$') and -test.benchtime BENCHTIME (default 20x) in
# DIR (default relay, where the binaries' tests live), each run under
# flock $ABCMP_LOCK when that is set (a lock that other heavy work
# takes). RATIONALE's issue-12 entries cite this as "cmp.sh R A B" (the
# many-keys round) and "ccmp.sh R A B" (BENCH '^BenchmarkManyKeysInCache$',
# BENCHTIME 400x). Needs benchstat on PATH or in $(go env GOPATH)/bin
# (go install golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da).
set -euo pipefail
r=${1:?pairs}; a=${2:?A.test}; b=${3:?B.test}
bench=${4:-'^BenchmarkManyKeys$'}; bt=${5:-20x}
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${6:-$root/relay}
a=$(realpath "$a"); b=$(realpath "$b")
out=$(mktemp -d)
run() {
	if [ -n "${ABCMP_LOCK:-}" ]; then
		(cd "$dir" && flock "$ABCMP_LOCK" "$1" -test.run '^$' -test.bench "$bench" -test.benchtime "$bt")
	else
		(cd "$dir" && "$1" -test.run '^$' -test.bench "$bench" -test.benchtime "$bt")
	fi
}
for _ in $(seq "$r"); do
	run "$a" | grep '^Bench' >>"$out/A.txt"
	run "$b" | grep '^Bench' >>"$out/B.txt"
done
benchstat=$(command -v benchstat || echo "$(go env GOPATH)/bin/benchstat")
(cd "$out" && "$benchstat" A=A.txt B=B.txt)
echo "runs: $out"
