#!/bin/sh
# fed-table.sh: the federated-training measurements of README.md (issue
# 14): test accuracy vs bytes per worker of `webkv demo -cpu`, 4 workers,
# each worker computing 3000 batches of 64 in every row (rounds × local
# steps = 3000), so the rows differ only in how often they talk.
# Usage: tests/fed-table.sh [path to the webkv binary] (default: builds it).
set -eu
bin=${1:-}
if [ -z "$bin" ]; then
	bin=$(mktemp -d)/webkv
	go build -o "$bin" ./native/cmd/webkv
fi
run() { # label, flags...
	label=$1
	shift
	out=$("$bin" demo -cpu -listen 127.0.0.1:0 "$@" 2>&1) || { echo "| $label | failed: $(echo "$out" | tail -1) |"; return; }
	acc=$(echo "$out" | sed -n 's/^test accuracy reached: \([0-9.]*%\).*/\1/p')
	secs=$(echo "$out" | sed -n 's/^test accuracy reached: .* in \([0-9]*s\) .*/\1/p')
	bytes=$(echo "$out" | sed -n 's/^traffic per worker: \([0-9]*\) bytes.*/\1/p')
	printf '| %s | `%s` | %s | %s MB | %s |\n' "$label" "$*" "$acc" "$(awk "BEGIN{printf \"%.1f\", $bytes/1e6}")" "$secs"
}
echo "| run | flags (after \`webkv demo -cpu\`) | test accuracy | traffic per worker | time |"
echo "|---|---|---|---|---|"
for iid in true false; do
	for h in 1 10 30 100; do
		run "H=$h, iid=$iid" -workers 4 -iid=$iid -local-steps $h -steps $((3000 / h))
	done
done
for h in 1 10 30 100; do
	run "H=$h, iid, 2-bit" -workers 4 -local-steps $h -steps $((3000 / h)) -compress 2bit,0.01
done
run "H=30, 1 Byzantine (-10x), sum" -workers 4 -byzantine 1 -local-steps 30 -steps 100
run "H=30, 1 Byzantine (-10x), trimmed-mean" -workers 4 -byzantine 1 -aggregate trimmed-mean -local-steps 30 -steps 100
run "H=30, 1 Byzantine (NaN), sum" -workers 4 -byzantine 1 -byzantine-mode nan -local-steps 30 -steps 100
