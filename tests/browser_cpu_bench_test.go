//go:build !js && !wasip1

package tests

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// brCPUResult is what tests/browser/cpubench.js posts.
type brCPUResult struct {
	Simd   string `json:"simd"`
	MinLen int    `json:"minLen"`
	N      int    `json:"n"`
	K      int    `json:"k"`
	Webkv  map[string]struct {
		ReduceMs     float64 `json:"reduceMs"`
		AdamMs       float64 `json:"adamMs"`
		ReduceAdamMs float64 `json:"reduceAdamMs"`
		KReduceMs    float64 `json:"kreduceMs"`
		KAdamMs      float64 `json:"kadamMs"`
		KQuant2Ms    float64 `json:"kquant2Ms"`
		TinyMs       float64 `json:"tinyMs"`
	} `json:"webkv"`
	Tfjs struct {
		Version    string  `json:"version"`
		Backend    string  `json:"backend"`
		Simd       bool    `json:"simd"`
		Threads    bool    `json:"threads"`
		AddNMs     float64 `json:"addNMs"`
		AdamMs     float64 `json:"adamMs"`
		AddNAdamMs float64 `json:"addNAdamMs"`
	} `json:"tfjs"`
	Check map[string]float64 `json:"check"`
	Sweep []struct {
		N            int     `json:"n"`
		SimdReduceNs float64 `json:"simdReduceNs"`
		GoReduceNs   float64 `json:"goReduceNs"`
		SimdAdamNs   float64 `json:"simdAdamNs"`
		GoAdamNs     float64 `json:"goAdamNs"`
	} `json:"sweep"`
}

// brCPUPushResult is what tests/browser/cpupush.js posts.
type brCPUPushResult struct {
	Backend string `json:"backend"`
	Webkv   struct {
		PushReduceMs float64 `json:"pushReduceMs"`
		PushAdamMs   float64 `json:"pushAdamMs"`
	} `json:"webkv"`
	Tfjs struct {
		Backend      string  `json:"backend"`
		Simd         bool    `json:"simd"`
		UploadAddNMs float64 `json:"uploadAddNMs"`
		UploadAdamMs float64 `json:"uploadAdamMs"`
	} `json:"tfjs"`
	Check map[string]float64 `json:"check"`
}

// TestBrowserCPUBenchPages runs BenchmarkBrowserCPU's two pages at a small
// size, one timed iteration each, with the benchmark's checks: the
// benchmark's harness (the pages, tests/browsercpu, tfjs-backend-wasm
// through webkv.js) is tested on every run of the tests, not only when
// someone benchmarks (a change of the runtime's JavaScript API once broke
// the benchmark unseen: the pages' program lacked a function webkv.js
// calls when it loads).
func TestBrowserCPUBenchPages(t *testing.T) {
	integration(t)
	seed := brSeed(t)
	ctx, base := brCPUBench(t)
	res, push := brCPUPages(t, ctx, base, 1<<14, 3, 1, 0, seed, false, 2*time.Minute)
	brCPUChecks(t, res, push)
	if res.N != 1<<14 || res.K != 3 {
		t.Errorf("the page ran n=%d k=%d, want %d and 3", res.N, res.K, 1<<14)
	}
	if !strings.HasPrefix(res.Simd, "cpu+wasm-simd") {
		t.Errorf("webkv's backend on the page is %q, want the SIMD kernels (cpu+wasm-simd)", res.Simd)
	}
	if len(res.Check) == 0 || len(push.Check) == 0 {
		t.Errorf("the pages checked nothing: %v, %v", res.Check, push.Check)
	}
}

// brCPUBench starts what the CPU benchmark's pages need (tfjs-backend-wasm
// installed in tests/tfjs, tests/browsercpu built, a server of the pages
// and a browser tab) and returns the tab and the server's URL.
func brCPUBench(tb testing.TB) (context.Context, string) {
	root := brRepoRoot(tb)
	brNpmCI(tb, filepath.Join(root, "tests/tfjs"), "node_modules/@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm")
	bench := brBuildCPUBench(tb)
	srv := brServer(tb, map[string]http.Handler{
		"/browsercpu.wasm": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, bench) }),
	})
	return brBrowser(tb), srv.URL
}

// brCPUPages runs the benchmark's two pages (cpubench.html, then
// cpupush.html) in tab ctx of the server at base.
func brCPUPages(tb testing.TB, ctx context.Context, base string, n, k, iters, warmup int, seed uint32, sweep bool, timeout time.Duration) (brCPUResult, brCPUPushResult) {
	tb.Helper()
	var res brCPUResult
	var push brCPUPushResult
	sw := 0
	if sweep {
		sw = 1
	}
	brRunPage(tb, ctx, fmt.Sprintf("%s/cpubench.html?n=%d&k=%d&iters=%d&warmup=%d&seed=%d&sweep=%d", base, n, k, iters, warmup, seed%100000, sw), timeout, &res)
	brRunPage(tb, ctx, fmt.Sprintf("%s/cpupush.html?n=%d&k=%d&iters=%d&warmup=%d&seed=%d", base, n, k, iters, warmup, seed%100000), timeout, &push)
	return res, push
}

// brCPUChecks fails tb unless the pages' baseline is tfjs-backend-wasm with
// SIMD and webkv's results are the reference's (reduces are exact: the
// same float32 sums in the same order, and the SIMD kernels have the Go
// loops' bits; tfjs may sum otherwise).
func brCPUChecks(tb testing.TB, res brCPUResult, push brCPUPushResult) {
	tb.Helper()
	if !res.Tfjs.Simd || res.Tfjs.Backend != "wasm" {
		tb.Errorf("tfjs runs on %q with SIMD %v: the baseline must be tfjs-backend-wasm with SIMD", res.Tfjs.Backend, res.Tfjs.Simd)
	}
	for name, e := range push.Check {
		if e != 0 {
			tb.Errorf("runtime page: %s = %g", name, e)
		}
	}
	for name, e := range res.Check {
		if name != "tfjsAddNMaxRelErr" && e != 0 {
			tb.Errorf("%s = %g: webkv's results are not the reference's", name, e)
		}
	}
}

// brNpmCI installs the npm packages of dir (npm ci) unless the file want,
// relative to dir, is there already.
func brNpmCI(tb testing.TB, dir, want string) {
	tb.Helper()
	if _, err := os.Stat(filepath.Join(dir, want)); err == nil {
		return
	}
	npm := exec.Command("npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts")
	npm.Dir = dir
	if out, err := npm.CombinedOutput(); err != nil {
		tb.Fatalf("npm ci in %s: %v\n%s", dir, err, out)
	}
}

// brBuildCPUBench builds tests/browsercpu (the webkv side of the CPU
// benchmark page) for GOOS=js into a temporary directory.
func brBuildCPUBench(tb testing.TB) string {
	root := brRepoRoot(tb)
	out := filepath.Join(tb.TempDir(), "browsercpu.wasm")
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, "./tests/browsercpu")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS=js", "GOARCH=wasm", "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("building tests/browsercpu: %v\n%s", err, b)
	}
	return out
}

// BenchmarkBrowserCPU runs, in one headless Chromium page without WebGPU
// (navigator.gpu hidden), webkv's CPU path against
// @tensorflow/tfjs-backend-wasm 4.22.0 with SIMD (single-threaded: the page
// is not cross-origin isolated, as most pages are not): a reduce of 4 × 4M
// float32 (a push of four arrays to a key; tf.addN) and one Adam step over 4M
// parameters (a push to a key with adam set; tf.train.adam's
// applyGradients), medians of interleaved iterations. webkv's arrays already
// live in the Go program's memory as tfjs's tensors live in its own (see
// tests/browsercpu). It reports reduce-x-tfjswasm and adam-x-tfjswasm (tfjs
// time over webkv's: the goal is >= 0.67, within 1.5× of tfjs), the same on
// webkv's Go loops (the fallback without WebAssembly SIMD) and the
// SIMD-over-Go speedups, the backend-level times without the store
// (kreduce, kadam) and a 2-bit quantization's, and, with -benchtime 1x, the crossover sweep of small
// sizes that simd.DefaultMinLen is chosen from. A second page measures the
// whole path from JavaScript arrays through webkv's runtime (a 'local'
// store: push of 4 Float32Arrays, push of a Float32Array gradient with
// Adam, copies into Go memory included) against tfjs uploading the same
// arrays (tf.tensor1d) before addN and the Adam step: push-*-x-tfjswasm.
//
//	go test ./tests -run '^$' -bench BrowserCPU -benchtime 1x
//
// It installs tests/tfjs's packages (npm ci) when they are missing.
func BenchmarkBrowserCPU(b *testing.B) {
	const n, k = 4 << 20, 4
	seed := brSeed(b)
	ctx, base := brCPUBench(b)
	var res brCPUResult
	var push brCPUPushResult
	for i := range b.N {
		res, push = brCPUPages(b, ctx, base, n, k, 9, 3, seed, i == 0, 8*time.Minute)
	}
	b.Logf("webkv CPU backend %q (SIMD from %d elements); tfjs-core %s on %s, SIMD %v, threads %v", res.Simd, res.MinLen, res.Tfjs.Version, res.Tfjs.Backend, res.Tfjs.Simd, res.Tfjs.Threads)
	for name, e := range res.Check {
		b.Logf("check %s = %.3g", name, e)
	}
	brCPUChecks(b, res, push)
	simd, ok := res.Webkv["simd"]
	if !ok || simd.ReduceMs == 0 {
		b.Fatalf("no SIMD kernels in Chromium: %s", res.Simd)
	}
	gow, t := res.Webkv["go"], res.Tfjs
	b.Logf("reduce %d×%d f32: webkv SIMD %.2f ms (backend alone %.2f), Go loops %.2f ms, tfjs-wasm addN %.2f ms", k, n, simd.ReduceMs, simd.KReduceMs, gow.ReduceMs, t.AddNMs)
	b.Logf("adam %d params: webkv SIMD %.2f ms (backend alone %.2f), Go loops %.2f ms, tfjs-wasm %.2f ms", n, simd.AdamMs, simd.KAdamMs, gow.AdamMs, t.AdamMs)
	b.Logf("push of %d arrays to an Adam key: webkv SIMD %.2f ms (fused reduce+step), Go loops %.2f ms, tfjs-wasm addN+adam %.2f ms", k, simd.ReduceAdamMs, gow.ReduceAdamMs, t.AddNAdamMs)
	b.Logf("from JavaScript arrays, webkv runtime on %q: push of %d arrays %.2f ms, tfjs upload+addN %.2f ms; push with adam %.2f ms, tfjs upload+adam %.2f ms",
		push.Backend, k, push.Webkv.PushReduceMs, push.Tfjs.UploadAddNMs, push.Webkv.PushAdamMs, push.Tfjs.UploadAdamMs)
	b.Logf("2-bit quantization of %d values (backend): SIMD %.2f ms, Go loops %.2f ms", n, simd.KQuant2Ms, gow.KQuant2Ms)
	b.Logf("fixed cost of a push (4 arrays of 4 values): %.3f ms", simd.TinyMs)
	for _, s := range res.Sweep {
		b.Logf("n=%6d: reduce 4 SIMD %8.0f ns, Go %8.0f ns (%.2f×); adam SIMD %8.0f ns, Go %8.0f ns (%.2f×)",
			s.N, s.SimdReduceNs, s.GoReduceNs, s.GoReduceNs/s.SimdReduceNs, s.SimdAdamNs, s.GoAdamNs, s.GoAdamNs/s.SimdAdamNs)
	}
	mb := float64(n*4) / 1e6
	b.ReportMetric(simd.ReduceMs, "webkv-reduce-ms")
	b.ReportMetric(t.AddNMs, "tfjswasm-addN-ms")
	b.ReportMetric(t.AddNMs/simd.ReduceMs, "reduce-x-tfjswasm")
	b.ReportMetric(simd.AdamMs, "webkv-adam-ms")
	b.ReportMetric(t.AdamMs, "tfjswasm-adam-ms")
	b.ReportMetric(t.AdamMs/simd.AdamMs, "adam-x-tfjswasm")
	b.ReportMetric(t.AddNAdamMs/simd.ReduceAdamMs, "reduceadam-x-tfjswasm")
	b.ReportMetric(float64(k+1)*mb/simd.ReduceMs, "webkv-reduce-GB/s")
	b.ReportMetric(7*mb/simd.AdamMs, "webkv-adam-GB/s")
	b.ReportMetric(simd.TinyMs, "webkv-call-ms")
	b.ReportMetric(push.Tfjs.UploadAddNMs/push.Webkv.PushReduceMs, "push-reduce-x-tfjswasm")
	b.ReportMetric(push.Tfjs.UploadAdamMs/push.Webkv.PushAdamMs, "push-adam-x-tfjswasm")
	b.ReportMetric(gow.ReduceMs, "goloops-reduce-ms")
	b.ReportMetric(gow.AdamMs, "goloops-adam-ms")
	b.ReportMetric(t.AddNMs/gow.ReduceMs, "goloops-reduce-x-tfjswasm")
	b.ReportMetric(t.AdamMs/gow.AdamMs, "goloops-adam-x-tfjswasm")
	b.ReportMetric(gow.ReduceMs/simd.ReduceMs, "reduce-simd-x-go")
	b.ReportMetric(gow.AdamMs/simd.AdamMs, "adam-simd-x-go")
	b.ReportMetric(gow.KQuant2Ms/simd.KQuant2Ms, "quantize2bit-simd-x-go")
}
