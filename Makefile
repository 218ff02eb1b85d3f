# webkv. A new user runs `make demo` and `make test`; both install what they
# need first (tests/deps.sh). `make check` is the build/lint gate, `make bench`
# prints the benchmarks and their ratios against the baselines.
#
# Two test tiers: the unit tier is `go test -short ./...` (make test-unit,
# under a minute); the integration tier is what -short leaves out (headless
# Chromium, several processes, killed relays): the tests in tests/, and a
# package's own TestInBrowser (its js tests run in Chromium) (make
# test-integration). `make test` runs both, with -race, and the kvcore tests
# in wazero and node.
#
# Adding a test step: write its target with `TEST_STEPS += name` above it,
# as test-native below. `make test` runs deps, then every step in the order
# they are added, and fails at the end if any failed. A step exists for
# tests that need another GOOS or runner; Go tests under ./... already run
# in test-native, so do not run them again from a step.
#
# Every target takes the whole tree (./...): a package that must not build
# for js or wasip1 says so with build tags, not by being left off a list.

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

TEST_STEPS :=

.PHONY: all deps test test-unit test-integration test-native test-wasip1 test-js check check-build check-vet check-fmt check-tidy check-imports check-staticcheck check-nofma bench demo demo-local wazero clean

all: check test

deps:
	tests/deps.sh

test: deps
	$(MAKE) --no-print-directory -k $(TEST_STEPS)

# The unit tier: every package, -short (no browser, no processes), no -race.
test-unit:
	mkdir -p -m 700 $(XDG_RUNTIME_DIR)
	$(GO) test -short -timeout 5m ./...

# The integration tier: headless Chromium, the webkv binaries as processes,
# killed workers and relays. The tests that -short leaves out live in tests/,
# or are a package's TestInBrowser.
test-integration: deps
	mkdir -p -m 700 $(XDG_RUNTIME_DIR)
	$(GO) test -race -timeout $(TIMEOUT) ./tests/...
	$(GO) test -race -timeout $(TIMEOUT) -run '^TestInBrowser$$' ./...

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

check: check-build check-vet check-fmt check-tidy check-imports check-staticcheck check-nofma

check-build:
	$(GO) build ./...
	CGO_ENABLED=0 $(GO) build ./...
	GOOS=js GOARCH=wasm $(GO) build ./...
	GOOS=wasip1 GOARCH=wasm $(GO) build ./...
	GOOS=wasip1 GOARCH=wasm $(GO) build -buildmode=c-shared -o bin/webkv.wasm ./wasm/wasip1
	CGO_ENABLED=0 $(GO) build -o bin/webkv-relay ./relay/cmd/webkv-relay

# vet compiles the tests too, so test files are checked for every target.
check-vet:
	$(GO) vet ./...
	GOOS=js GOARCH=wasm $(GO) vet ./...
	GOOS=wasip1 GOARCH=wasm $(GO) vet ./...

check-fmt:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt -l: not formatted:"; echo "$$out"; exit 1; fi

check-tidy:
	$(GO) mod tidy -diff

# The layering (see the script's header): kvcore pure Go, compute below the
# store, relay without shaders/native, the relay server command without cgo.
check-imports:
	tests/check-imports.sh

# staticcheck at the version go.mod pins (go tool), on native, js and wasip1.
check-staticcheck:
	tests/staticcheck.sh

# The CPU reference kernels round after every product (MXNet's order, and
# the bits the AVX2 and wasm loops reproduce): no build may fuse a multiply
# and an add there. arm64 and GOAMD64=v3 are where Go fuses.
check-nofma:
	@out=$$( (GOARCH=arm64 $(GO) build -gcflags=-S ./kvcore/internal/kernels; GOAMD64=v3 $(GO) build -gcflags=-S ./kvcore/internal/kernels) 2>&1 | grep -E '\s(V?F(N)?M(ADD|SUB)[0-9]*[SD]{1,2})\s' || true); \
	if [ -n "$$out" ]; then echo "fused multiply-add in kvcore/internal/kernels (write float32(x*y)):"; echo "$$out"; exit 1; fi

# Benchmarks of every package, then each custom metric (the ratios against
# the baselines, reported with b.ReportMetric) on its own line.
BENCH ?= .
BENCHTIME ?= 1s
bench:
	mkdir -p bin
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -benchtime $(BENCHTIME) -timeout 10m ./... | tee bin/bench.txt
	@echo "--- ratios and other reported metrics ---"
	@awk '/^pkg: / { pkg = $$2; sub(".*/", "", pkg) } /^Benchmark/ { for (i = 3; i < NF; i += 2) { u = $$(i+1); if ($$i ~ /^[-+]?[0-9.]+([eE][-+]?[0-9]+)?$$/ && u != "ns/op" && u != "B/op" && u != "allocs/op" && u != "MB/s") printf "%-50s %12s %s\n", pkg "." $$1, $$i, u } }' bin/bench.txt

# The federated demo (www/demo): the relay with the page mounted and native
# workers on embedded defaults; open the printed URLs to watch (?watch) or to
# join with tabs. Flags go in DEMO_FLAGS (make demo DEMO_FLAGS=-cpu).
# `make demo-local` is the single-process data-parallel example
# (www/localdemo).
DEMO_FLAGS ?=
demo: deps
	sh wasm/js/build.sh
	$(GO) run ./native/cmd/webkv demo -js bin/webkv-js $(DEMO_FLAGS)

demo-local: deps
	$(GO) run ./www/localdemo

clean:
	rm -rf bin
