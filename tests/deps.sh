#!/usr/bin/env bash
# deps.sh installs what webkv's build, tests and demo need on Debian 12, and
# only what is missing: Mesa's lavapipe Vulkan driver (native WebGPU on the
# CPU), Chromium (browser WebGPU on SwiftShader), Node.js (the GOOS=js test
# runner), npm (TestBrowserReadme installs tests/tsc with it) and the Go
# modules pinned in go.mod. Safe to run again: a second run
# installs nothing and says so. Needs root (or sudo) only when a Debian package
# is missing. Network: Debian apt and the Go module proxy.
set -euo pipefail
cd "$(dirname "$0")/.."

did=()
missing=()

have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

for p in mesa-vulkan-drivers libvulkan1 chromium; do
	have_pkg "$p" || missing+=("$p")
done
# This machine may already have a newer node (e.g. v20 from NodeSource):
# keep it; Go's go_js_wasm_exec needs any node >= 18.
if ! command -v node >/dev/null 2>&1; then
	missing+=(nodejs)
fi
# npm installs tests/tsc (TypeScript and @webgpu/types for TestBrowserReadme).
if ! command -v npm >/dev/null 2>&1; then
	missing+=(npm)
fi

if ((${#missing[@]})); then
	sudo=""
	if [ "$(id -u)" -ne 0 ]; then
		command -v sudo >/dev/null 2>&1 || { echo "deps: need root to install: ${missing[*]}" >&2; exit 1; }
		sudo=sudo
	fi
	echo "deps: installing ${missing[*]}"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
	did+=("apt-get install ${missing[*]}")
fi

if ! command -v go >/dev/null 2>&1; then
	echo "deps: no go on PATH: install Go $(sed -n 's/^go //p' go.mod) from https://go.dev/dl/" >&2
	exit 1
fi
# go mod download is quick when the module cache already holds everything.
go mod download
did+=("go mod download")

node_v=$(node --version)
node_major=${node_v#v}
node_major=${node_major%%.*}
if [ "$node_major" -lt 18 ]; then
	echo "deps: node $node_v is too old for Go's wasm runner (need >= 18)" >&2
	exit 1
fi
if ((${#missing[@]} == 0)); then
	did=("nothing to install" "${did[@]}")
fi
echo "deps: $(IFS=';'; echo "${did[*]}" | sed 's/;/; /g'). Have: $(go version | cut -d' ' -f3), node ${node_v}, mesa-vulkan-drivers, libvulkan1, $(command -v chromium)"
