#!/usr/bin/env bash
# check-imports.sh: the layering of webkv, checked on the dependencies
# (go list -deps, tests excluded) of every layer, natively and for GOOS=js
# and GOOS=wasip1 where the layer builds there. Run from `make check`.
#
#   kvcore/...            the store and its seams: pure Go on every target (no cgo,
#                         syscall/js, net, websocket or WebGPU) and nothing of the layers above
#   kvcore/compute/...    the compute seam: not the store (kvcore itself), the transport,
#                         the parameter server, the wire codec or relay
#   kvcore/optimizer      the optimizer specs: not the store, psm, wire or relay
#   kvcore/wire, kvcore/psm   the wire codec and the parameter server: not the store
#   shaders/...           the WebGPU backend: the compute seam, not the store; no relay,
#                         native, wasm, www
#   native (library)      device bring-up: no relay, wasm, www
#   relay (library)       server + client: no shaders, native, wasm, www, WebGPU
#   relay/cmd/..., relay/relaycmd   the relay server command: all of the above, and no
#                         cgo package (net's resolver is the standard library's; the binary
#                         must also build with CGO_ENABLED=0, checked below)
#   www, www/mnist        the demo's page, model and data, served by a pure-Go relay:
#                         no cgo, WebGPU, shaders, native, wasm
#   www/... (all)         the demo: no wasm; nothing below imports it (see the rules above)
#   wasm/...              runtimes: no native, www, tests
#   wasm/sandbox          the wazero host of updater modules, used by relay and stores: the
#                         updater seam, not the store, psm, relay, the runtimes or the layers
#                         above; the one package of wasm/ that relay may import
#   nothing but tests imports tests/...
#
# A rule whose packages do not exist (yet) is skipped with a note.
# syscall/js is judged on the imports of non-standard packages only: on js
# the standard library itself (syscall, os, time) is built on it.
set -euo pipefail
cd "$(dirname "$0")/.."

mod=$(go list -m)
fail=0
checked=0

# forbid TARGETS PKGS PURE FORBIDDEN...
#   TARGETS: space-separated subset of "native js wasip1"
#   PKGS:    package patterns (space-separated)
#   PURE:    pure = no cgo, syscall/js, net, websocket, WebGPU;
#            nocgo = no non-standard cgo package and no WebGPU; - = neither
#   FORBIDDEN: import path prefixes (module-relative when they start with ./);
#              one ending in $ forbids that package only, not its subpackages
forbid() {
	local targets=$1 pkgs=$2 pure=$3
	shift 3
	local bad=() p
	for p in "$@"; do
		case $p in
		./*) bad+=("$mod/${p#./}") ;;
		*) bad+=("$p") ;;
		esac
	done
	local target env listed
	for target in $targets; do
		case $target in
		native) env=() ;;
		js) env=(GOOS=js GOARCH=wasm) ;;
		wasip1) env=(GOOS=wasip1 GOARCH=wasm) ;;
		esac
		# Patterns that match no package on this target (build tags) or
		# do not exist yet are skipped.
		listed=$(env "${env[@]}" go list -e -f '{{if and (not .Error) .GoFiles}}{{.ImportPath}}{{end}}' $pkgs 2>/dev/null | sed '/^$/d' || true)
		if [ -z "$listed" ]; then
			echo "check-imports: note: $pkgs: no packages on $target, rule skipped"
			continue
		fi
		checked=$((checked + 1))
		local out
		out=$(env "${env[@]}" go list -deps -f '{{.ImportPath}} {{.Standard}} {{len .CgoFiles}} {{join .Imports ","}}' $listed | awk -v pure="$pure" -v bad="${bad[*]}" '
			BEGIN { nb = split(bad, b, " ") }
			{
				p = $1; std = $2; cgo = $3; n = split($4, imp, ",")
				for (i = 1; i <= nb; i++) {
					if (b[i] ~ /\$$/) { if (p == substr(b[i], 1, length(b[i]) - 1)) print p " (the package itself)" }
					else if (p == b[i] || index(p, b[i] "/") == 1) print p
				}
				if (pure == "pure" || pure == "nocgo") {
					if (p ~ /^github\.com\/cogentcore\/webgpu(\/|$)/ && p !~ /\/lib(\/|$)/) print p " (WebGPU)"
					if (std == "false" && cgo > 0) print p " (imports C)"
				}
				if (pure == "pure") {
					if (p == "net" || p == "runtime/cgo" || p ~ /^nhooyr\.io\/websocket(\/|$)/) print p
					if (std == "false") for (i = 1; i <= n; i++) if (imp[i] == "syscall/js") print p " (imports syscall/js)"
				}
			}' | sort -u)
		if [ -n "$out" ]; then
			echo "check-imports: $pkgs ($target) depends on forbidden packages:"
			echo "$out" | sed 's/^/  /'
			fail=1
		fi
	done
}

all="native js wasip1"
forbid "$all" "./kvcore/..." pure ./shaders ./native ./relay ./wasm ./www ./tests
forbid "$all" "./kvcore/compute/..." pure './kvcore$' ./kvcore/transport ./kvcore/psm ./kvcore/wire ./relay
forbid "$all" "./kvcore/optimizer" pure './kvcore$' ./kvcore/transport ./kvcore/psm ./kvcore/wire ./relay
forbid "$all" "./kvcore/wire ./kvcore/psm" pure './kvcore$' ./relay
forbid "$all" "./shaders/..." - './kvcore$' ./native ./relay ./wasm ./www ./tests
forbid "$all" "./native" - ./relay ./wasm ./www ./tests
forbid "$all" "./relay ./relay/relaytest" - ./shaders ./native ./wasm/js ./wasm/wasip1 ./wasm/updater ./www ./tests github.com/cogentcore/webgpu
forbid "native" "./relay/cmd/... ./relay/relaycmd" nocgo ./shaders ./native ./wasm/js ./wasm/wasip1 ./wasm/updater ./tests
forbid "$all" "./www ./www/mnist" nocgo ./shaders ./native ./wasm ./tests
forbid "$all" "./www/..." - ./wasm/js ./wasm/wasip1 ./wasm/updater ./tests
forbid "$all" "./wasm/..." - ./native ./www ./tests
forbid "$all" "./wasm/sandbox" - './kvcore$' ./kvcore/psm ./relay ./shaders ./native ./wasm/js ./wasm/wasip1 ./wasm/updater ./www ./tests

# The relay server binary builds without cgo, for a static container image.
for cmd in $(go list ./relay/cmd/...); do
	if ! out=$(CGO_ENABLED=0 go build -o /dev/null "$cmd" 2>&1); then
		echo "check-imports: CGO_ENABLED=0 go build $cmd failed:"
		echo "$out" | sed 's/^/  /'
		fail=1
	fi
done

[ "$fail" = 0 ] && echo "check-imports: $checked layer rules hold (native, js, wasip1); relay/cmd builds with CGO_ENABLED=0"
exit "$fail"
