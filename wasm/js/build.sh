#!/bin/sh
# Builds webkv's browser runtime into OUT (default bin/webkv-js, ignored by
# git): webkv.wasm (GOOS=js), wasm_exec.js from the Go toolchain that built
# it (never vendored: it must match the compiler), webkv-simd.wasm (the SIMD
# kernels, generated from wasm/js/simd/kernels.wat and committed), webkv.js
# and webkv.d.ts. Prints the wasm sizes.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$root/bin/webkv-js}
mkdir -p "$out"
cd "$root"
GOOS=js GOARCH=wasm go build -trimpath -ldflags="-s -w" -o "$out/webkv.wasm" ./wasm/js
cp "$(go env GOROOT)/lib/wasm/wasm_exec.js" "$out/wasm_exec.js"
cp wasm/js/simd/kernels.wasm "$out/webkv-simd.wasm"
cp wasm/js/webkv.js wasm/js/webkv.d.ts "$out/"
size=$(wc -c < "$out/webkv.wasm")
gz=$(gzip -9c "$out/webkv.wasm" | wc -c)
echo "webkv.wasm: $size bytes ($gz gzipped), webkv-simd.wasm: $(wc -c < "$out/webkv-simd.wasm") bytes, in $out"
