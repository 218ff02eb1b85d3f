#!/bin/sh
# Builds webkv's browser runtime into OUT (default bin/webkv-js, ignored by
# git): webkv.wasm (GOOS=js), wasm_exec.js from the Go toolchain that built
# it (never vendored: it must match the compiler), webkv-go.js (the same
# loader wrapped as an ES module that keeps its globals to itself, see
# webkv.js), webkv-simd.wasm (the SIMD kernels, generated from
# wasm/js/simd/kernels.wat and committed), webkv.js and webkv.d.ts; then
# NAME.gz and NAME.br twins of the larger files, which `webkv relay -static`
# and the demo serve with Content-Encoding (package www/serve). Prints the
# sizes, and fails when webkv.wasm gzipped is over its budget of 1.5 MiB
# (RATIONALE.md, "Why is the browser runtime small?"). WEBKV_PRECOMPRESS=0
# skips the twins (the budget is still checked).
#
# Inlining is off everywhere, the runtime and the CPU kernels included: it
# saves about 140 KB of the gzipped size. The loops that matter in a
# browser are the WebGPU kernels or the SIMD module; the Go kernels are the
# fallback for browsers without wasm SIMD.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$root/bin/webkv-js}
budget=1572864
mkdir -p "$out"
cd "$root"
GOOS=js GOARCH=wasm go build -trimpath -ldflags="-s -w" \
	-gcflags=all=-l \
	-o "$out/webkv.wasm" ./wasm/js
exec_js="$(go env GOROOT)/lib/wasm/wasm_exec.js"
cp "$exec_js" "$out/wasm_exec.js"
{
	echo "// wasm_exec.js of the Go toolchain that built webkv.wasm, wrapped by"
	echo "// wasm/js/build.sh: its globalThis is the scope webkv.js passes in, and"
	echo "// its bare fs is that scope's, so it sets no global of the page's."
	echo "export function goClass(globalThis) {"
	echo "let fs;"
	cat "$exec_js"
	echo "fs = globalThis.fs;"
	echo "return globalThis.Go;"
	echo "}"
} > "$out/webkv-go.js"
cp wasm/js/simd/kernels.wasm "$out/webkv-simd.wasm"
cp wasm/js/webkv.js wasm/js/webkv.d.ts "$out/"
size=$(wc -c < "$out/webkv.wasm")
if [ "${WEBKV_PRECOMPRESS:-1}" = 0 ]; then
	# Tests that serve the files themselves skip the twins (brotli at
	# quality 11 takes half a minute of CPU); the budget is still checked.
	gz=$(gzip -9 -n -c "$out/webkv.wasm" | wc -c)
	br="-"
else
	go run ./www/serve/precompress "$out" webkv.wasm webkv.js webkv-go.js >/dev/null
	if command -v gzip >/dev/null 2>&1; then
		# zlib's level 9 is about 1% smaller than compress/flate's best.
		for f in webkv.wasm webkv.js webkv-go.js; do
			gzip -9 -n -c "$out/$f" > "$out/$f.gz.tmp"
			if [ "$(wc -c < "$out/$f.gz.tmp")" -lt "$(wc -c < "$out/$f.gz")" ]; then
				touch -r "$out/$f.gz" "$out/$f.gz.tmp"
				mv "$out/$f.gz.tmp" "$out/$f.gz"
			else
				rm "$out/$f.gz.tmp"
			fi
		done
	fi
	gz=$(wc -c < "$out/webkv.wasm.gz")
	br=$(wc -c < "$out/webkv.wasm.br")
fi
echo "webkv.wasm: $size bytes ($gz gzipped, $br brotli; budget $budget gzipped), webkv-simd.wasm: $(wc -c < "$out/webkv-simd.wasm") bytes, in $out"
if [ "$gz" -gt "$budget" ]; then
	echo "webkv.wasm is over its budget of $budget bytes gzipped (RATIONALE.md, \"Why is the browser runtime small?\")" >&2
	exit 1
fi
