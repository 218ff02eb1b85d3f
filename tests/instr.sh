#!/usr/bin/env bash
# instr.sh: instructions per key of a many-keys benchmark, counted by
# callgrind (valgrind), for machines whose timings move by 10-30% with
# other work and that have no hardware counters (RATIONALE: "Why is a list
# call's item one cache line, and a key of one array added without
# loops?"). Instructions do not move between runs of one binary.
#
#   tests/instr.sh PKG BENCH KEYS [FUNCS]
#
# builds PKG's test binary, runs BENCH under callgrind at 10 and at 40
# rounds (GOGC=off, one P, no async preemption, so the two runs differ
# only by the 30 rounds) and prints (total at 40 - total at 10) / 30 /
# KEYS; with FUNCS (a number), also the FUNCS functions with the most
# instructions of their own per key. Examples:
#
#   tests/instr.sh ./kvcore BenchmarkDistManyKeysInCache 8192 30
#   tests/instr.sh ./relay BenchmarkManyKeysInCache 8192
#   tests/instr.sh ./kvcore/psm BenchmarkListKeysInCache 4096
#
# Needs valgrind (apt-get install -y valgrind). About a minute per run.
set -euo pipefail
pkg=${1:?package}; bench=${2:?benchmark}; keys=${3:?keys}; funcs=${4:-0}
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$root"
go test -c -o "$tmp/bench.test" "$pkg"
dir=$(go list -f '{{.Dir}}' "$pkg")
run() {
	# Valgrind 3.19 does not know RDTSCP, which Go's runtime.cputicks runs
	# (on contended runtime locks, as sysmon's) where the CPU has it:
	# cpu.rdtscp=off has the runtime use RDTSC instead.
	if ! (cd "$dir" && GOGC=off GODEBUG=asyncpreemptoff=1,cpu.rdtscp=off GOMAXPROCS=1 \
		valgrind --tool=callgrind --callgrind-out-file="$tmp/cg-$1.out" \
		"$tmp/bench.test" -test.run '^$' -test.bench "^$bench\$" -test.benchtime "$1x" >"$tmp/out-$1.txt" 2>&1); then
		tail -n 20 "$tmp/out-$1.txt" >&2
		return 1
	fi
}
run 10
run 40
# self instructions per function: the annotation's function list (no source)
self() { callgrind_annotate --auto=no --threshold=100 "$tmp/cg-$1.out" | awk '
	/^ *[0-9,]+ +\([^)]*\) +/ && !/PROGRAM TOTALS/ {
		n = $1; gsub(",", "", n)
		$1 = ""; $2 = ""; sub(/^ +/, "")
		sub(/ \[.*\]$/, "")
		sub(/\047[0-9]+$/, "") # a recursion level (callgrind appends a quote and a number), which differs from run to run
		i = index($0, ":"); if (i) $0 = substr($0, i + 1)
		gsub("github.com/webkv/webkv/", "")
		c[$0] += n
	}
	END { for (f in c) print c[f] "\t" f }'; }
total() { callgrind_annotate --auto=no "$tmp/cg-$1.out" | awk '/PROGRAM TOTALS/ && !done { gsub(",", "", $1); print $1; done = 1 }'; }
a=$(total 10); b=$(total 40)
echo "$pkg $bench: $(( (b - a) / 30 / keys )) instructions a key"
if [ "$funcs" -gt 0 ]; then
	self 10 | sort -t$'\t' -k2 >"$tmp/a"
	self 40 | sort -t$'\t' -k2 >"$tmp/b"
	join -t$'\t' -1 2 -2 2 -a 2 -e 0 -o 0,1.1,2.1 "$tmp/a" "$tmp/b" |
		awk -F'\t' -v k="$keys" '{ printf "%8.1f  %s\n", ($3 - $2) / 30 / k, $1 }' |
		sort -rn | head -n "$funcs"
fi
