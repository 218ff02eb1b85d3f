#!/usr/bin/env bash
# staticcheck.sh: staticcheck (the version pinned by go.mod's tool directive)
# on the whole tree, natively and for GOOS=js and GOOS=wasip1, with one
# exception: SA1019 findings about nhooyr.io/websocket, which is deprecated
# in favour of its fork github.com/coder/websocket but is the websocket
# library webkv is specified with (RATIONALE.md, "Why nhooyr.io/websocket
# despite its deprecation notice?"). Any other deprecation, and every other
# check, fails `make check`.
set -euo pipefail
cd "$(dirname "$0")/.."

# go tool would build staticcheck for GOOS=js when asked to analyse js; build
# it once for this machine and run the binary for every target.
sc=$(go tool -n staticcheck)
fail=0
for target in "" "GOOS=js GOARCH=wasm" "GOOS=wasip1 GOARCH=wasm"; do
	set +e
	out=$(env $target "$sc" "$@" ./... 2>&1)
	rc=$?
	set -e
	left=$(printf '%s\n' "$out" | grep -v -E 'nhooyr\.io/websocket[^ ]* is deprecated: .*\(SA1019\)$' | sed '/^$/d' || true)
	if [ -n "$left" ]; then
		echo "staticcheck (${target:-native}):"
		echo "$left" | sed 's/^/  /'
		fail=1
	elif [ "$rc" != 0 ] && [ "$rc" != 1 ]; then
		echo "staticcheck (${target:-native}) failed with exit status $rc"
		fail=1
	fi
done
[ "$fail" = 0 ] && echo "staticcheck: clean on native, js and wasip1 (SA1019 on nhooyr.io/websocket silenced)"
exit "$fail"
