# webkv. A new user runs `make demo` and `make test`; both install what they
# need first (tests/deps.sh). `make check` is the build/lint gate, `make bench`
# prints the benchmarks and their ratios against the baselines.
#
# Adding a test step: write its target with `TEST_STEPS += name` above it,
# as test-native below. `make test` runs deps, then every step in the order
# they are added, and fails at the end if any failed. A step exists for
# tests that need another GOOS or runner; Go tests under ./... already run
# in test-native, so do not run them again from a step.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
GO ?= go
GOROOT := $(shell $(GO) env GOROOT)
WASMEXEC := $(GOROOT)/lib/wasm

# Native WebGPU on lavapipe wants a runtime dir; CI containers have none.
export XDG_RUNTIME_DIR ?= /tmp/webkv-xdg-$(shell id -u)

TIMEOUT ?= 15m
# Packages whose tests also run as wasm (-short there: one thread, no -race).
WASIP1_TEST_PKGS ?= ./kvcore/...
JS_TEST_PKGS ?= ./kvcore/...
# Packages that must build (and pass vet) for each target in make check:
# everything natively; for js and wasip1 the packages meant to run there
# (native-only commands and test drivers such as the relay server or the
# chromedp tests are not). Add a package that gains a wasm target here.
NATIVE_PKGS ?= ./...
JS_PKGS ?= ./kvcore/... ./shaders/... ./wasm/js/... ./relay ./tests/browsercpu
WASIP1_PKGS ?= ./kvcore/... ./wasm/wasip1 ./tests/wazeroreduce ./wasm/updater/...

TEST_STEPS :=

.PHONY: all deps test test-native test-wasip1 test-js check check-build check-vet check-fmt check-tidy check-imports bench demo demo-local wazero clean

all: check test

deps:
	tests/deps.sh

test: deps
	$(MAKE) --no-print-directory -k $(TEST_STEPS)

# Every Go test natively, with the race detector.
TEST_STEPS += test-native
test-native:
	mkdir -p -m 700 $(XDG_RUNTIME_DIR)
	$(GO) test -race -timeout $(TIMEOUT) ./...

# The same kvcore tests compiled for GOOS=wasip1 and run in wazero, through
# Go's own runner script with a wazero CLI built from the version in go.mod.
TEST_STEPS += test-wasip1
test-wasip1: wazero
	GOOS=wasip1 GOARCH=wasm GOWASIRUNTIME=wazero PATH="$(CURDIR)/bin:$$PATH" \
		$(GO) test -short -timeout $(TIMEOUT) -exec $(WASMEXEC)/go_wasip1_wasm_exec $(WASIP1_TEST_PKGS)

# The same kvcore tests compiled for GOOS=js and run in node.
TEST_STEPS += test-js
test-js:
	GOOS=js GOARCH=wasm $(GO) test -short -timeout $(TIMEOUT) -exec $(WASMEXEC)/go_js_wasm_exec $(JS_TEST_PKGS)

wazero:
	$(GO) build -o bin/wazero github.com/tetratelabs/wazero/cmd/wazero

check: check-build check-vet check-fmt check-tidy check-imports

check-build:
	$(GO) build $(NATIVE_PKGS)
	CGO_ENABLED=0 $(GO) build $(NATIVE_PKGS)
	GOOS=js GOARCH=wasm $(GO) build $(JS_PKGS)
	GOOS=wasip1 GOARCH=wasm $(GO) build $(WASIP1_PKGS)
	GOOS=wasip1 GOARCH=wasm $(GO) build -buildmode=c-shared -o bin/webkv.wasm ./wasm/wasip1

check-vet:
	$(GO) vet $(NATIVE_PKGS)
	GOOS=js GOARCH=wasm $(GO) vet $(JS_PKGS)
	GOOS=wasip1 GOARCH=wasm $(GO) vet $(WASIP1_PKGS)

check-fmt:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt -l: not formatted:"; echo "$$out"; exit 1; fi

check-tidy:
	$(GO) mod tidy -diff

check-imports:
	tests/check-imports.sh ./kvcore/...

# Benchmarks of every package, then each custom metric (the ratios against
# the baselines, reported with b.ReportMetric) on its own line.
BENCH ?= .
BENCHTIME ?= 1s
bench:
	mkdir -p bin
	[ -d tests/tfjs/node_modules/@tensorflow ] || npm ci --prefix tests/tfjs --no-audit --no-fund
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -benchtime $(BENCHTIME) -timeout 10m ./... | tee bin/bench.txt
	@echo "--- ratios and other reported metrics ---"
	@awk '/^pkg: / { pkg = $$2; sub(".*/", "", pkg) } /^Benchmark/ { for (i = 3; i < NF; i += 2) { u = $$(i+1); if ($$i ~ /^[-+]?[0-9.]+([eE][-+]?[0-9]+)?$$/ && u != "ns/op" && u != "B/op" && u != "allocs/op" && u != "MB/s") printf "%-50s %12s %s\n", pkg "." $$1, $$i, u } }' bin/bench.txt

# The federated demo: the relay with the page mounted and native workers on
# embedded defaults; open the printed URL to watch and to join with tabs.
# `make demo-local` is the single-process data-parallel example.
demo: deps
	sh wasm/js/build.sh
	$(GO) run ./relay/cmd/webkv demo -js bin/webkv-js

demo-local: deps
	$(GO) run ./tests/localdemo

clean:
	rm -rf bin
