//go:build !js && !wasip1

package tests

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/webkv/webkv/relay"
)

// brBenchResult is what tests/browser/bench.js posts.
type brBenchResult struct {
	GPU struct {
		Adapter string `json:"adapter"`
		Backend string `json:"backend"`
		Store   string `json:"store"`
	} `json:"gpu"`
	Error string `json:"error"`
	N     int    `json:"n"`
	K     int    `json:"k"`
	Iters int    `json:"iters"`
	Webkv struct {
		ReduceMs           float64 `json:"reduceMs"`
		AdamMs             float64 `json:"adamMs"`
		PushFloat32ArrayMs float64 `json:"pushFloat32ArrayMs"`
		PullFloat32ArrayMs float64 `json:"pullFloat32ArrayMs"`
		CallOverheadMs     float64 `json:"callOverheadMs"`
		ReduceAdamMs       float64 `json:"reduceAdamMs"`
	} `json:"webkv"`
	HandFused struct {
		ReduceMs float64 `json:"reduceMs"`
		AdamMs   float64 `json:"adamMs"`
	} `json:"handFused"`
	Tfjs struct {
		Version string  `json:"version"`
		AddNMs  float64 `json:"addNMs"`
		AdamMs  float64 `json:"adamMs"`
		// AddNAdamMs is tf.addN of the K arrays then one Adam step with
		// the sum, against webkv's push of the K arrays to a key with Adam.
		AddNAdamMs float64 `json:"addNAdamMs"`
	} `json:"tfjs"`
	Check map[string]float64 `json:"check"`
}

// BenchmarkBrowserWebGPU runs, in one headless Chromium page on one WebGPU
// adapter (SwiftShader here), webkv's reduce of 4 × 4M float32 (a push of
// four GPUBuffers to a "device" store) and one Adam step over 4M parameters
// (a push with the adam optimizer set) against @tensorflow/tfjs-backend-webgpu
// 4.22.0's tf.addN and tf.train.adam on the same data, each timed to GPU
// completion (median of the page's iterations, run in turn so that each sees
// the same load: this machine is shared). It reports both times and the
// ratios tfjs/webkv (the goals: ≥2 for the reduce, ≥5 for Adam), the push of
// the four arrays to a key with Adam (sum, then one step) against tf.addN
// then the Adam step, the cost of a 16 MB Float32Array push (upload) and pull
// (readback), and the same reduce and Adam as one hand-written vec4 WGSL dispatch each, the floor
// for the adapter, to tell kernel time from webkv's per-call overhead.
//
//	go test ./tests -run '^$' -bench BrowserWebGPU -benchtime 1x
//
// It installs tests/tfjs's packages (npm ci) when they are missing.
func BenchmarkBrowserWebGPU(b *testing.B) {
	brNpmCI(b, filepath.Join(brRepoRoot(b), "tests/tfjs"), "node_modules/@tensorflow/tfjs-backend-webgpu/dist/tf-backend-webgpu.min.js")
	const n, k = 4 << 20, 4
	seed := brSeed(b)
	srv := brServer(b, nil)
	ctx := brBrowser(b)
	var res brBenchResult
	for range b.N {
		url := fmt.Sprintf("%s/bench.html?n=%d&k=%d&iters=15&warmup=2&seed=%d", srv.URL, n, k, seed%100000)
		brRunPage(b, ctx, url, 8*time.Minute, &res)
	}
	if res.Error != "" {
		if brAllowNoGPU() {
			b.Skipf("no WebGPU in the browser: %s", res.Error)
		}
		b.Fatalf("bench page: %s (set WEBKV_ALLOW_NO_GPU=1 to skip)", res.Error)
	}
	for name, e := range res.Check {
		b.Logf("check %s = %.3g", name, e)
		if e > 1e-5 {
			b.Errorf("%s = %g: results differ from the reference", name, e)
		}
	}
	w, t := res.Webkv, res.Tfjs
	b.Logf("adapter %q, webkv backend %q, tfjs-core %s", res.GPU.Adapter, res.GPU.Store, t.Version)
	b.Logf("reduce %d×%d f32: webkv %.1f ms, tfjs addN %.1f ms (%.2f×)", k, n, w.ReduceMs, t.AddNMs, t.AddNMs/w.ReduceMs)
	b.Logf("adam %d params: webkv %.1f ms, tfjs %.1f ms (%.2f×)", n, w.AdamMs, t.AdamMs, t.AdamMs/w.AdamMs)
	b.Logf("push of %d arrays to an Adam key: webkv %.1f ms, tfjs addN+adam %.1f ms (%.2f×)", k, w.ReduceAdamMs, t.AddNAdamMs, t.AddNAdamMs/w.ReduceAdamMs)
	b.Logf("hand-fused WGSL in the page: reduce %.1f ms, adam %.1f ms; one webkv call on 4 floats %.1f ms",
		res.HandFused.ReduceMs, res.HandFused.AdamMs, w.CallOverheadMs)
	b.Logf("Float32Array push %.1f ms, pull %.1f ms (%d MB)", w.PushFloat32ArrayMs, w.PullFloat32ArrayMs, n*4>>20)
	mb := float64(n*4) / 1e6
	b.ReportMetric(w.ReduceMs, "webkv-reduce-ms")
	b.ReportMetric(t.AddNMs, "tfjs-addN-ms")
	b.ReportMetric(t.AddNMs/w.ReduceMs, "reduce-x-tfjs")
	b.ReportMetric(w.AdamMs, "webkv-adam-ms")
	b.ReportMetric(t.AdamMs, "tfjs-adam-ms")
	b.ReportMetric(t.AdamMs/w.AdamMs, "adam-x-tfjs")
	b.ReportMetric(float64(k+1)*mb/w.ReduceMs, "webkv-reduce-GB/s")
	b.ReportMetric(7*mb/w.AdamMs, "webkv-adam-GB/s")
	b.ReportMetric(w.ReduceAdamMs, "webkv-reduceadam-ms")
	b.ReportMetric(t.AddNAdamMs, "tfjs-addNadam-ms")
	b.ReportMetric(t.AddNAdamMs/w.ReduceAdamMs, "reduceadam-x-tfjs")
	b.ReportMetric(res.HandFused.ReduceMs, "handfused-reduce-ms")
	b.ReportMetric(res.HandFused.AdamMs, "handfused-adam-ms")
	// How far webkv's kernels are from one hand-written dispatch (1 = as fast).
	b.ReportMetric(w.ReduceMs/res.HandFused.ReduceMs, "reduce-webkv/handfused")
	b.ReportMetric(w.AdamMs/res.HandFused.AdamMs, "adam-webkv/handfused")
	b.ReportMetric(w.CallOverheadMs, "webkv-call-ms")
	b.ReportMetric(w.PushFloat32ArrayMs, "push16MB-ms")
	b.ReportMetric(w.PullFloat32ArrayMs, "pull16MB-ms")
}

// BenchmarkBrowserDistRounds measures dist_sync rounds per second with 1, 2
// and 4 browser tabs as the workers of one job on an in-process relay: each
// round every tab pushPulls the four keys of the demo's 784-128-10 MLP
// (101,770 float32; Float32Array gradients in, weights out, so a round
// includes the upload and readback through JavaScript memory). The tabs
// share one headless Chromium on this shared 2-core machine, so the figures
// compare worker counts with each other, not with real deployments.
//
//	go test ./tests -run '^$' -bench BrowserDistRounds -benchtime 1x
func BenchmarkBrowserDistRounds(b *testing.B) {
	for _, peers := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("peers=%d", peers), func(b *testing.B) {
			rs, err := relay.NewServer(relay.Config{Tokens: map[string]string{"rounds": "tok"}})
			if err != nil {
				b.Fatal(err)
			}
			srv := brServer(b, map[string]http.Handler{"/ws": rs})
			wsURL := "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"
			ctx := brBrowser(b)
			const rounds = 20
			type tabRes struct {
				Ms         float64 `json:"ms"`
				Rank       int     `json:"rank"`
				NumWorkers int     `json:"numWorkers"`
				W0         float64 `json:"w0"`
			}
			var worst float64
			for range b.N {
				res := make([]tabRes, peers)
				errs := make([]error, peers)
				var wg sync.WaitGroup
				for i := range peers {
					tctx, cancel := chromedp.NewContext(ctx) // a new tab
					defer cancel()
					wg.Add(1)
					go func() {
						defer wg.Done()
						url := fmt.Sprintf("%s/rounds.html?type=dist_sync&url=%s&job=rounds&workers=%d&rounds=%d", srv.URL, wsURL, peers, rounds)
						errs[i] = brRunPageErr(tctx, url, 5*time.Minute, &res[i])
					}()
				}
				wg.Wait()
				for i, err := range errs {
					if err != nil {
						b.Fatalf("tab %d: %v", i, err)
					}
				}
				worst = 0
				for i, r := range res {
					worst = max(worst, r.Ms)
					if r.W0 != res[0].W0 {
						b.Errorf("tab %d ends with bias[0] = %v, tab 0 with %v: the workers diverged", i, r.W0, res[0].W0)
					}
				}
				b.Logf("%d tabs: %+v", peers, res)
			}
			b.ReportMetric(rounds/(worst/1000), "rounds/s")
			b.ReportMetric(worst/rounds, "ms/round")
		})
	}
}
