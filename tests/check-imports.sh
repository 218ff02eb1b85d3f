#!/usr/bin/env bash
# check-imports.sh: kvcore (and its subpackages) must stay pure Go on every
# target webkv builds for, so it runs unchanged natively, in browsers and in
# wazero. For native, GOOS=js and GOOS=wasip1 it fails if the dependencies of
# ./kvcore/... include cgo ("C", or runtime/cgo), syscall/js, net, or any
# package of nhooyr.io/websocket or github.com/cogentcore/webgpu.
# syscall/js is judged on the imports of non-standard packages only: on js
# the standard library itself (syscall, os, time) is built on it.
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=${*:-./kvcore/...}
fail=0
for target in "" "GOOS=js GOARCH=wasm" "GOOS=wasip1 GOARCH=wasm"; do
	bad=$(env $target go list -deps -f '{{.ImportPath}} {{.Standard}} {{len .CgoFiles}} {{join .Imports ","}}' $pkgs | awk '
		{
			p = $1; std = $2; cgo = $3; n = split($4, imp, ",")
			if (p == "net" || p == "runtime/cgo" || p ~ /^nhooyr\.io\/websocket(\/|$)/ || p ~ /^github\.com\/cogentcore\/webgpu(\/|$)/) print p
			if (std == "false" && cgo > 0) print p " imports C"
			if (std == "false") for (i = 1; i <= n; i++) if (imp[i] == "syscall/js") print p " imports syscall/js"
		}')
	if [ -n "$bad" ]; then
		echo "check-imports: $pkgs (${target:-native}) depends on forbidden packages:"
		echo "$bad" | sed 's/^/  /'
		fail=1
	fi
done
[ "$fail" = 0 ] && echo "check-imports: $pkgs pure Go on native, js and wasip1"
exit "$fail"
