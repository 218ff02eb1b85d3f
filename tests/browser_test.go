//go:build !js && !wasip1

package tests

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/webkv/webkv/kvcore"
	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/kvcore/optimizer"
	"github.com/webkv/webkv/kvcore/transport"
	"github.com/webkv/webkv/relay"
)

// The browser tests build webkv's GOOS=js runtime (wasm/js), serve it with
// the pages in tests/browser on 127.0.0.1, and drive Debian's headless
// Chromium with WebGPU on SwiftShader through chromedp. A page posts its
// result as JSON in window.__webkvResult; the test polls for it (never
// --dump-dom, which returns before asynchronous work ends).
//
// Environment:
//   - WEBKV_ALLOW_NO_GPU=1: a browser without a WebGPU adapter is accepted
//     (device stores then run on the CPU fallback); otherwise it fails.
//   - WEBKV_ALLOW_NO_BROWSER=1: skip when chromium is not installed
//     (otherwise that fails too).
//   - WEBKV_CHROMIUM: the browser binary (default /usr/bin/chromium).
//   - WEBKV_SEED: the seed of the random inputs (default: time).

// brChromiumPath returns the browser to drive, or skips/fails.
func brChromiumPath(tb testing.TB) string {
	p := os.Getenv("WEBKV_CHROMIUM")
	if p == "" {
		p = "/usr/bin/chromium"
	}
	if _, err := os.Stat(p); err != nil {
		if lp, lerr := exec.LookPath("chromium"); lerr == nil {
			return lp
		}
		if os.Getenv("WEBKV_ALLOW_NO_BROWSER") == "1" {
			tb.Skipf("chromium not installed (%v) and WEBKV_ALLOW_NO_BROWSER=1", err)
		}
		tb.Fatalf("chromium not installed (%v): install Debian's chromium (make test does), or set WEBKV_ALLOW_NO_BROWSER=1", err)
	}
	return p
}

func brAllowNoGPU() bool { return os.Getenv("WEBKV_ALLOW_NO_GPU") == "1" }

// brSeed returns the seed of this run's random inputs, logged so a failure
// can be replayed with WEBKV_SEED.
func brSeed(tb testing.TB) uint32 {
	seed := uint32(time.Now().UnixNano())
	if s := os.Getenv("WEBKV_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			tb.Fatalf("WEBKV_SEED=%q: %v", s, err)
		}
		seed = uint32(v)
	}
	tb.Logf("seed %d (replay with WEBKV_SEED=%d)", seed, seed)
	return seed
}

// brMulberry is mulberry32, the generator of tests/browser/common.js.
func brMulberry(a uint32) func() uint32 {
	return func() uint32 {
		a += 0x6D2B79F5
		t := a
		t = (t ^ t>>15) * (1 | t)
		t = (t + (t^t>>7)*(61|t)) ^ t
		return t ^ t>>14
	}
}

// brRand is common.js's rand(seed, n): n float32 values in [-1, 1).
func brRand(seed uint32, n int) []float32 {
	next := brMulberry(seed)
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(float64(next()>>8)/16777216*2 - 1)
	}
	return out
}

// brRepoRoot is the module root (tests/..).
func brRepoRoot(tb testing.TB) string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		tb.Fatal("cannot locate the test source")
	}
	return filepath.Dir(filepath.Dir(file))
}

// brBuild builds wasm/js with wasm/js/build.sh (webkv.wasm, wasm_exec.js from
// this Go toolchain, webkv.js) into a temporary directory of tb's. Each test
// builds its own (the Go build cache makes the rebuild a link step), so no
// output outlives its test.
func brBuild(tb testing.TB) string {
	root := brRepoRoot(tb)
	dir := tb.TempDir()
	cmd := exec.Command("sh", filepath.Join(root, "wasm/js/build.sh"), dir)
	cmd.Dir = root
	// The tests serve the files themselves: no precompressed twins.
	cmd.Env = append(os.Environ(), "WEBKV_PRECOMPRESS=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		tb.Fatalf("building wasm/js: %v\n%s", err, out)
	}
	tb.Logf("%s", bytes.TrimSpace(out))
	return dir
}

// brServer serves the built runtime at /webkv/, the test pages at /, the
// tfjs bundles at /tfjs/ and any extra handlers, on 127.0.0.1 (a secure
// context, so navigator.gpu exists).
func brServer(tb testing.TB, extra map[string]http.Handler) *httptest.Server {
	root := brRepoRoot(tb)
	dist := brBuild(tb)
	mux := http.NewServeMux()
	mux.Handle("/webkv/", http.StripPrefix("/webkv/", http.FileServer(http.Dir(dist))))
	mux.Handle("/tfjs/", http.StripPrefix("/tfjs/", http.FileServer(http.Dir(filepath.Join(root, "tests/tfjs/node_modules/@tensorflow")))))
	mux.Handle("/", http.FileServer(http.Dir(filepath.Join(root, "tests/browser"))))
	mux.Handle("/favicon.ico", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	for p, h := range extra {
		mux.Handle(p, h)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, ".wasm") {
			w.Header().Set("Content-Type", "application/wasm")
		}
		w.Header().Set("Cache-Control", "no-store")
		mux.ServeHTTP(w, r)
	}))
	tb.Cleanup(srv.Close)
	return srv
}

// brBrowser starts headless Chromium with WebGPU on SwiftShader and a fresh
// profile; the page's console goes to the test log.
func brBrowser(tb testing.TB) context.Context {
	path := brChromiumPath(tb)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.UserDataDir(tb.TempDir()),
		chromedp.Flag("headless", "new"),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("enable-unsafe-webgpu", true),
		chromedp.Flag("use-webgpu-adapter", "swiftshader"),
		chromedp.Flag("enable-features", "Vulkan"),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("mute-audio", true),
		// Several tabs run workers at once: none may be throttled as hidden.
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	tb.Cleanup(func() { cancel(); acancel() })
	if err := chromedp.Do(ctx); err != nil { // start the browser
		tb.Fatalf("starting %s: %v", path, err)
	}
	msgs := chromedp.Console(ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			tb.Logf("page %s: %s", m.Type, m.Text)
		}
	}()
	return ctx
}

// brRunPage opens url and waits (at most timeout) for the JSON the page
// posts in window.__webkvResult, decoded into out.
func brRunPage(tb testing.TB, ctx context.Context, url string, timeout time.Duration, out any) {
	tb.Helper()
	if err := brRunPageErr(ctx, url, timeout, out); err != nil {
		tb.Fatal(err)
	}
}

// brRunPageErr is brRunPage for goroutines other than the test's.
func brRunPageErr(ctx context.Context, url string, timeout time.Duration, out any) error {
	if err := brNavigate(ctx, url); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res, err := chromedp.Run(wctx, chromedp.Poll[string]("window.__webkvResult",
		chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(timeout)))
	if err != nil {
		return fmt.Errorf("waiting for %s to post its result: %v", url, err)
	}
	var fatal struct {
		Fatal string `json:"fatal"`
	}
	if json.Unmarshal([]byte(res), &fatal) == nil && fatal.Fatal != "" {
		return fmt.Errorf("page %s failed: %s", url, fatal.Fatal)
	}
	if err := json.Unmarshal([]byte(res), out); err != nil {
		return fmt.Errorf("decoding the result of %s: %v\n%s", url, err, res)
	}
	return nil
}

// --- the API script ---

// brVal is a step's value: one Float32Array per seed (a GPUBuffer where gpu
// says so), passed as a list when there are several or list is set; bad is
// passed as is (a wrong type).
type brVal struct {
	Seeds []uint32 `json:"seeds,omitempty"`
	N     int      `json:"n,omitempty"`
	GPU   []bool   `json:"gpu,omitempty"`
	List  bool     `json:"list,omitempty"`
	// Destroyed passes a GPUBuffer destroyed before the call.
	Destroyed bool `json:"destroyed,omitempty"`
	Bad       any  `json:"bad,omitempty"`
}

// brStep is one API call. JSOnly marks an argument error that only the
// JavaScript layer can make (a wrong type, a too small GPUBuffer): it must
// fail with code JSOnly; every other step is also run natively on kvcore
// and must give the same outcome.
type brStep struct {
	Op       string         `json:"op"`
	Type     string         `json:"type,omitempty"`
	Opts     map[string]any `json:"opts,omitempty"`
	Key      any            `json:"key,omitempty"`
	Val      *brVal         `json:"val,omitempty"`
	Shape    []int          `json:"shape,omitempty"`
	Out      string         `json:"out,omitempty"`
	N        int            `json:"n,omitempty"`
	Spec     any            `json:"spec,omitempty"`
	Dump     bool           `json:"dump,omitempty"`
	Garbage  bool           `json:"garbage,omitempty"`
	NeedsGPU bool           `json:"needsGPU,omitempty"`
	// key-list calls
	Keys   []any    `json:"keys,omitempty"`
	Vals   []*brVal `json:"vals,omitempty"`
	Ns     []int    `json:"ns,omitempty"`
	OutF32 bool     `json:"outF32,omitempty"`
	Prio   int      `json:"prio,omitempty"`
	JSOnly string   `json:"-"`
	// WantCode is the error code the step must fail with (also checked
	// natively through errors.Is); "" means it must succeed.
	WantCode string `json:"-"`
}

// brRec is the outcome of one step.
type brRec struct {
	Skipped bool      `json:"skipped,omitempty"`
	OK      bool      `json:"ok"`
	Message string    `json:"message,omitempty"`
	Code    string    `json:"code,omitempty"`
	IsError bool      `json:"isError,omitempty"`
	Values  []float64 `json:"values,omitempty"`
	Info    *brInfo   `json:"info,omitempty"`
	Bytes   int       `json:"bytes,omitempty"`
	Hex     string    `json:"hex,omitempty"`
}

type brInfo struct {
	Type       string  `json:"type"`
	Rank       int     `json:"rank"`
	NumWorkers int     `json:"numWorkers"`
	Backend    string  `json:"backend,omitempty"`
	Fallback   *string `json:"fallback,omitempty"`
}

type brResult struct {
	GPU struct {
		Available bool   `json:"available"`
		Adapter   string `json:"adapter"`
		Backend   string `json:"backend"`
		Reason    string `json:"reason"`
	} `json:"gpu"`
	Steps  []brRec     `json:"steps"`
	Events [][2]string `json:"events"`
}

// brStoreScript exercises every call of a store of type typ. Seeds are
// offset by base; gpu adds GPUBuffer inputs and outputs (device types).
func brStoreScript(typ string, opts map[string]any, base uint32, gpu, canCompress bool) []brStep {
	s := func(i uint32) uint32 { return base*1000 + i }
	v := func(n int, seeds ...uint32) *brVal {
		for i := range seeds {
			seeds[i] = s(seeds[i])
		}
		return &brVal{Seeds: seeds, N: n}
	}
	vg := func(n int, onGPU []bool, seeds ...uint32) *brVal {
		x := v(n, seeds...)
		if gpu {
			x.GPU = onGPU
		}
		return x
	}
	out := func(o string) string {
		if o == "gpu" && !gpu {
			return "f32"
		}
		return o
	}
	steps := []brStep{
		{Op: "create", Type: typ, Opts: opts},
		{Op: "info"},
		{Op: "init", Key: 3, Val: v(20, 1), Shape: []int{4, 5}},
		{Op: "init", Key: 3, Val: v(20, 2), Shape: []int{4, 5}, WantCode: "DUPLICATE_INIT"},
		{Op: "init", Key: "w", Val: v(4, 2), WantCode: "MIXED_KEYS"},
		{Op: "init", Key: 5, Val: v(6, 2), Shape: []int{2, 4}, JSOnly: "SHAPE_MISMATCH"},
		{Op: "init", Key: 7, Val: vg(8, []bool{true}, 3), Shape: []int{8}},
		{Op: "pull", Key: 3, Out: "new", N: 20},
		{Op: "pull", Key: 7, Out: "f32", N: 8},
		{Op: "burst", Key: 11, Val: v(6, 17, 18), Shape: []int{2, 3}},
		// MXNet's key lists, with a key given twice (its values are summed)
		{Op: "pushList", Keys: []any{3, 7, 3}, Vals: []*brVal{v(20, 19), vg(8, []bool{true}, 20), v(20, 21)}, Prio: 2},
		{Op: "pullList", Keys: []any{7, 3}, Ns: []int{8, 20}, OutF32: true},
		{Op: "pullList", Keys: []any{3, 99}, Ns: []int{20, 1}, WantCode: "UNKNOWN_KEY"},
		{Op: "pushList", Keys: []any{3, 7}, Vals: []*brVal{v(20, 22)}, JSOnly: "BAD_ARGUMENT"},
		// two values in one call are summed, and the sum is assigned
		{Op: "push", Key: 3, Val: vg(20, []bool{false, true}, 4, 5)},
		{Op: "pull", Key: 3, Out: out("gpu"), N: 20},
		{Op: "push", Key: 99, Val: v(20, 6), WantCode: "UNKNOWN_KEY"},
		{Op: "push", Key: 3, Val: v(7, 6), WantCode: "SHAPE_MISMATCH"},
		{Op: "push", Key: 3, Val: &brVal{Bad: "hello"}, JSOnly: "BAD_ARGUMENT"},
		{Op: "push", Key: 2.5, Val: v(20, 6), JSOnly: "BAD_ARGUMENT"},
		{Op: "pull", Key: 3, Out: "f32bad", N: 20, JSOnly: "SHAPE_MISMATCH"},
		{Op: "pull", Key: 42, Out: "new", N: 1, WantCode: "UNKNOWN_KEY"},
		{Op: "setOptimizer", Spec: map[string]any{"name": "adam", "learnin_rate": 0.1}, WantCode: "BAD_OPTIMIZER"},
		{Op: "setOptimizer", Spec: map[string]any{"name": "nosuch"}, WantCode: "BAD_OPTIMIZER"},
		{Op: "setOptimizer", Spec: map[string]any{"name": "adam", "learning_rate": 0.01, "wd": 0.001, "rescale_grad": 0.5}},
		{Op: "push", Key: 3, Val: v(20, 7)},
		{Op: "push", Key: 3, Val: vg(20, []bool{true, false}, 8, 9)},
		{Op: "pushPull", Key: 3, Val: v(20, 10), Out: "new", N: 20},
		{Op: "pushPull", Key: 7, Val: vg(8, []bool{true}, 11), Out: out("gpu"), N: 8},
		{Op: "pushPullList", Keys: []any{7, 3}, Vals: []*brVal{v(8, 23), v(20, 24)}, Prio: -1},
		{Op: "save", Dump: true},
		{Op: "load"},
		{Op: "load", Garbage: true, WantCode: "BAD_STATES"},
		{Op: "pull", Key: 3, Out: "new", N: 20},
		{Op: "setOptimizer", Spec: map[string]any{"name": "sgd", "learning_rate": 0.1, "momentum": 0.9}},
		{Op: "push", Key: 3, Val: v(20, 12)},
		{Op: "push", Key: 3, Val: v(20, 13)},
		{Op: "pull", Key: 3, Out: "f32", N: 20},
	}
	if gpu {
		steps = append(steps,
			brStep{Op: "pull", Key: 3, Out: "gpusmall", N: 20, JSOnly: "BAD_ARGUMENT", NeedsGPU: true},
			brStep{Op: "pull", Key: 3, Out: "gpunostorage", N: 20, JSOnly: "BAD_ARGUMENT", NeedsGPU: true},
			// WebGPU's own validation errors must reach the caller too.
			brStep{Op: "push", Key: 3, Val: &brVal{Seeds: []uint32{s(16)}, N: 20, Destroyed: true}, JSOnly: "WEBGPU", NeedsGPU: true},
			brStep{Op: "pull", Key: 3, Out: "new", N: 20},
		)
	}
	if canCompress {
		steps = append(steps,
			brStep{Op: "setGradientCompression", Spec: map[string]any{"type": "3bit"}, WantCode: "BAD_COMPRESSION"},
			brStep{Op: "setGradientCompression", Spec: map[string]any{"type": "2bit", "threshold": 0.25}},
			brStep{Op: "push", Key: 7, Val: v(8, 14)},
			brStep{Op: "pull", Key: 7, Out: "new", N: 8},
		)
	} else {
		steps = append(steps, brStep{Op: "setGradientCompression", Spec: map[string]any{"type": "2bit", "threshold": 0.5}, WantCode: "UNSUPPORTED"})
	}
	steps = append(steps,
		brStep{Op: "barrier"},
		brStep{Op: "waitAll"},
		brStep{Op: "info"},
		brStep{Op: "close"},
		brStep{Op: "push", Key: 3, Val: v(20, 15), JSOnly: "CLOSED"},
	)
	return steps
}

// brNative runs steps on kvcore directly, as wasm/js does (device types on
// the CPU backend: the reference the WebGPU results are held to).
type brNative struct {
	s      *kvcore.Store
	shapes map[kvcore.Key][]int
	saved  []byte
	dial   func(opts map[string]any) (transport.Transport, error)
}

func brKey(k any) kvcore.Key {
	switch k := k.(type) {
	case string:
		return kvcore.StrKey(k)
	case int:
		return kvcore.IntKey(k)
	}
	panic(fmt.Sprintf("key %v", k))
}

func (nv *brNative) arrays(k kvcore.Key, v *brVal) []*kvcore.Array {
	var as []*kvcore.Array
	for _, seed := range v.Seeds {
		data := brRand(seed, v.N)
		shape := nv.shapes[k]
		n := 1
		for _, d := range shape {
			n *= d
		}
		if shape == nil || n != len(data) {
			shape = []int{len(data)}
		}
		a, err := kvcore.FromSlice(kvcore.CPU(0), data, shape...)
		if err != nil {
			panic(err)
		}
		as = append(as, a)
	}
	return as
}

func (nv *brNative) out(k kvcore.Key) *kvcore.Array {
	shape := nv.shapes[k]
	if shape == nil {
		shape = []int{1}
	}
	a, err := kvcore.NewArray(kvcore.CPU(0), shape...)
	if err != nil {
		panic(err)
	}
	return a
}

func (nv *brNative) step(st brStep) (rec brRec) {
	ctx := context.Background()
	fail := func(err error) brRec {
		return brRec{OK: false, Message: err.Error(), Code: brCodeOf(err), IsError: true}
	}
	switch st.Op {
	case "create":
		var opts kvcore.Options // device types on the CPU
		if strings.HasPrefix(st.Type, "dist") && nv.dial != nil {
			t, err := nv.dial(st.Opts)
			if err != nil {
				return fail(err)
			}
			opts.Transport = t
		}
		s, err := kvcore.Create(ctx, st.Type, &opts)
		if err != nil {
			return fail(err)
		}
		nv.s, nv.shapes = s, map[kvcore.Key][]int{}
		return brRec{OK: true, Info: &brInfo{Type: s.Type(), Rank: s.Rank(), NumWorkers: s.NumWorkers()}}
	case "burst":
		k := brKey(st.Key)
		a, _ := kvcore.FromSlice(kvcore.CPU(0), brRand(st.Val.Seeds[0], st.Val.N), st.Shape...)
		if err := nv.s.Init(ctx, k, a); err != nil {
			return fail(err)
		}
		nv.shapes[k] = st.Shape
		if err := nv.s.Push(k, nv.arrays(k, &brVal{Seeds: st.Val.Seeds[1:], N: st.Val.N})...); err != nil {
			return fail(err)
		}
		o := nv.out(k)
		if err := nv.s.Pull(k, o); err != nil {
			return fail(err)
		}
		data, err := o.ToSlice(ctx)
		if err != nil {
			return fail(err)
		}
		rec := brRec{OK: true}
		for _, x := range data {
			rec.Values = append(rec.Values, float64(x))
		}
		return rec
	case "pushList", "pullList", "pushPullList":
		var keys []kvcore.Key
		var vals, outs [][]*kvcore.Array
		for j, k := range st.Keys {
			key := brKey(k)
			keys = append(keys, key)
			if st.Vals != nil {
				vals = append(vals, nv.arrays(key, st.Vals[j]))
			}
			if st.Op != "pushList" {
				outs = append(outs, []*kvcore.Array{nv.out(key)})
			}
		}
		var err error
		switch st.Op {
		case "pushList":
			err = nv.s.PushList(keys, vals, st.Prio)
			if err == nil {
				err = nv.s.WaitAll(ctx)
			}
		case "pullList":
			err = nv.s.PullList(keys, outs, st.Prio)
		default:
			err = nv.s.PushPullList(keys, vals, outs, st.Prio)
		}
		if err != nil {
			return fail(err)
		}
		rec := brRec{OK: true}
		for _, o := range outs {
			data, err := o[0].ToSlice(ctx)
			if err != nil {
				return fail(err)
			}
			for _, x := range data {
				rec.Values = append(rec.Values, float64(x))
			}
		}
		return rec
	case "info":
		return brRec{OK: true, Info: &brInfo{Type: nv.s.Type(), Rank: nv.s.Rank(), NumWorkers: nv.s.NumWorkers()}}
	case "init":
		k := brKey(st.Key)
		data := brRand(st.Val.Seeds[0], st.Val.N)
		shape := st.Shape
		if shape == nil {
			shape = []int{len(data)}
		}
		a, err := kvcore.FromSlice(kvcore.CPU(0), data, shape...)
		if err != nil {
			return fail(err)
		}
		if err := nv.s.Init(ctx, k, a); err != nil {
			return fail(err)
		}
		nv.shapes[k] = shape
		return brRec{OK: true}
	case "push":
		k := brKey(st.Key)
		if err := nv.s.Push(k, nv.arrays(k, st.Val)...); err != nil {
			return fail(err)
		}
		if err := nv.s.WaitAll(ctx); err != nil {
			return fail(err)
		}
		return brRec{OK: true}
	case "pull", "pushPull":
		k := brKey(st.Key)
		o := nv.out(k)
		var err error
		if st.Op == "pull" {
			err = nv.s.Pull(k, o)
		} else {
			err = nv.s.PushPullTo(k, nv.arrays(k, st.Val), o)
		}
		if err != nil {
			return fail(err)
		}
		data, err := o.ToSlice(ctx)
		if err != nil {
			return fail(err)
		}
		rec := brRec{OK: true}
		for _, x := range data {
			rec.Values = append(rec.Values, float64(x))
		}
		return rec
	case "setOptimizer":
		js, _ := json.Marshal(st.Spec)
		opt, err := optimizer.Parse(js)
		if err != nil {
			return fail(fmt.Errorf("kvcore: set optimizer: %w", err))
		}
		if err := nv.s.SetOptimizer(ctx, opt); err != nil {
			return fail(err)
		}
		return brRec{OK: true}
	case "setGradientCompression":
		m := st.Spec.(map[string]any)
		c := compute.Compression{Threshold: 0.5}
		if th, ok := m["threshold"].(float64); ok {
			c.Threshold = float32(th)
		}
		switch m["type"] {
		case "2bit":
			c.Kind = compute.Compress2Bit
		case "1bit":
			c.Kind = compute.Compress1Bit
		default:
			return fail(fmt.Errorf("webkv: setGradientCompression: type %q: %w (want '2bit' or '1bit')", m["type"], kvcore.ErrBadCompression))
		}
		if err := nv.s.SetGradientCompression(ctx, c); err != nil {
			return fail(err)
		}
		return brRec{OK: true}
	case "barrier":
		if err := nv.s.Barrier(ctx); err != nil {
			return fail(err)
		}
		return brRec{OK: true}
	case "waitAll":
		if err := nv.s.WaitAll(ctx); err != nil {
			return fail(err)
		}
		return brRec{OK: true}
	case "save":
		var b bytes.Buffer
		if err := nv.s.SaveOptimizerStates(ctx, &b, st.Dump); err != nil {
			return fail(err)
		}
		nv.saved = b.Bytes()
		return brRec{OK: true, Bytes: b.Len(), Hex: hex.EncodeToString(b.Bytes())}
	case "load":
		in := nv.saved
		if st.Garbage {
			in = []byte{1, 2, 3, 4, 5}
		}
		if err := nv.s.LoadOptimizerStates(ctx, bytes.NewReader(in)); err != nil {
			return fail(err)
		}
		return brRec{OK: true}
	case "close":
		if err := nv.s.Close(); err != nil {
			return fail(err)
		}
		return brRec{OK: true}
	}
	panic("unknown step " + st.Op)
}

// run runs the steps natively and returns those to compare with their
// outcomes: all of them, or up to a create that failed natively (the page's
// later steps of that store then fail for want of a store).
func (nv *brNative) run(t *testing.T, label string, steps []brStep) ([]brStep, []brRec) {
	var want []brRec
	for i, st := range steps {
		if st.JSOnly != "" {
			want = append(want, brRec{})
			continue
		}
		w := nv.step(st)
		if st.WantCode != "" && (w.OK || w.Code != st.WantCode) {
			t.Errorf("%s step %d %s: native ok=%v code=%s (%s), the script expects code %s", label, i, st.Op, w.OK, w.Code, w.Message, st.WantCode)
		}
		want = append(want, w)
		if st.Op == "create" && !w.OK && st.WantCode == "" {
			if w.Code == "NO_TRANSPORT" {
				t.Logf("%s: kvcore has no dist mode yet natively either (%s); only the create is compared", label, w.Message)
			}
			return steps[:i+1], want
		}
	}
	return steps, want
}

// brCodeOf is the code wasm/js gives err (its codes table).
func brCodeOf(err error) string {
	for _, c := range []struct {
		err  error
		code string
	}{
		{kvcore.ErrUnknownKey, "UNKNOWN_KEY"}, {kvcore.ErrDuplicateInit, "DUPLICATE_INIT"},
		{kvcore.ErrShapeMismatch, "SHAPE_MISMATCH"}, {kvcore.ErrMixedKeys, "MIXED_KEYS"},
		{kvcore.ErrNilArray, "NO_VALUE"}, {kvcore.ErrUnknownType, "UNKNOWN_TYPE"},
		{kvcore.ErrUnsupported, "UNSUPPORTED"}, {kvcore.ErrClosed, "CLOSED"},
		{kvcore.ErrNoTransport, "NO_TRANSPORT"}, {kvcore.ErrBadCompression, "BAD_COMPRESSION"},
		{kvcore.ErrBadStates, "BAD_STATES"}, {kvcore.ErrBadOptimizer, "BAD_OPTIMIZER"},
	} {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return "ERROR"
}

// brCompare checks the browser's outcome of each step against the native
// one. exact demands bit-equal values (same CPU code on both sides);
// otherwise float32-fit tolerances apply (WebGPU vs the CPU reference).
func brCompare(t *testing.T, label string, steps []brStep, got []brRec, want []brRec, exact bool, wantGPU bool) {
	t.Helper()
	if len(got) != len(steps) {
		t.Fatalf("%s: page ran %d of %d steps", label, len(got), len(steps))
	}
	for i, st := range steps {
		g, w := got[i], want[i]
		name := fmt.Sprintf("%s step %d %s(%v)", label, i, st.Op, st.Key)
		if st.Op == "create" {
			name = fmt.Sprintf("%s step %d create(%q)", label, i, st.Type)
		}
		if g.Skipped {
			if !st.NeedsGPU {
				t.Errorf("%s: skipped by the page", name)
			}
			continue
		}
		if st.JSOnly != "" {
			if g.OK || g.Code != st.JSOnly || !g.IsError {
				t.Errorf("%s: want a rejection with code %s, got ok=%v code=%q message=%q", name, st.JSOnly, g.OK, g.Code, g.Message)
			}
			continue
		}
		if st.WantCode != "" && (g.OK || g.Code != st.WantCode) {
			t.Errorf("%s: want a rejection with code %s, got ok=%v code=%q message=%q", name, st.WantCode, g.OK, g.Code, g.Message)
		}
		if g.OK != w.OK {
			t.Errorf("%s: browser ok=%v (%s %s), native ok=%v (%s)", name, g.OK, g.Code, g.Message, w.OK, w.Message)
			continue
		}
		if !g.OK {
			if !g.IsError || g.Message != w.Message || g.Code != w.Code {
				t.Errorf("%s: browser rejected with %s %q (an Error: %v), native failed with %s %q", name, g.Code, g.Message, g.IsError, w.Code, w.Message)
			}
			continue
		}
		if w.Info != nil {
			if g.Info == nil || g.Info.Type != w.Info.Type || g.Info.Rank != w.Info.Rank || g.Info.NumWorkers != w.Info.NumWorkers {
				t.Errorf("%s: info %+v, native %+v", name, g.Info, w.Info)
			}
			if st.Op == "create" && strings.Contains(st.Type, "device") {
				if wantGPU && !strings.HasPrefix(g.Info.Backend, "webgpu") {
					t.Errorf("%s: backend %q, want webgpu", name, g.Info.Backend)
				}
				if !wantGPU && (g.Info.Fallback == nil || *g.Info.Fallback == "") {
					t.Errorf("%s: runs on %q without WebGPU but gives no fallback reason", name, g.Info.Backend)
				}
			}
		}
		if len(g.Values) != len(w.Values) {
			t.Errorf("%s: %d values, native %d", name, len(g.Values), len(w.Values))
			continue
		}
		bad := 0
		for j := range w.Values {
			a, b := g.Values[j], w.Values[j]
			ok := a == b
			if !exact {
				ok = math.Abs(a-b) <= 1e-5+1e-5*math.Abs(b)
			}
			if !ok {
				if bad < 3 {
					t.Errorf("%s: value %d = %v, native %v", name, j, a, b)
				}
				bad++
			}
		}
		if st.Op == "save" {
			if exact && g.Hex != w.Hex {
				t.Errorf("%s: saved states differ from native:\n%s\n%s", name, g.Hex, w.Hex)
			}
			if g.Bytes != w.Bytes {
				t.Errorf("%s: saved %d bytes, native %d", name, g.Bytes, w.Bytes)
			}
		}
	}
}

// TestBrowserAPI runs every call of webkv's JS API in headless Chromium on
// local and device stores (and dist ones against an in-process relay), error
// cases included, and compares each outcome with the same call on kvcore.
func TestBrowserAPI(t *testing.T) {
	integration(t)
	seed := brSeed(t)

	// The relay that the dist steps use, mounted on the page's own origin.
	rs, err := relay.NewServer(relay.Config{Tokens: map[string]string{"browser": "tok-b", "browser2": "tok-b2", "native": "tok-n", "native2": "tok-n2"}})
	if err != nil {
		t.Fatal(err)
	}
	var script struct {
		Steps []brStep `json:"steps"`
	}
	srv := brServer(t, map[string]http.Handler{
		"/ws": rs,
		"/script.json": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(script)
		}),
	})
	wsURL := "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"

	type section struct {
		label string
		steps []brStep
		exact bool
		dist  bool
	}
	sections := []section{
		{label: "local", steps: brStoreScript("local", nil, seed, false, false), exact: true},
		{label: "device", steps: brStoreScript("device", nil, seed+1, true, true)},
		{label: "dist_sync", steps: brStoreScript("dist_sync", map[string]any{"url": wsURL, "job": "browser", "token": "tok-b"}, seed+2, false, true), exact: true, dist: true},
		{label: "dist_device_sync", steps: brStoreScript("dist_device_sync", map[string]any{"url": wsURL, "job": "browser2", "token": "tok-b2"}, seed+3, true, true), dist: true},
	}
	misc := []brStep{
		{Op: "create", Type: "bogus", WantCode: "UNKNOWN_TYPE"},
		{Op: "create", Type: "dist_sync", JSOnly: "BAD_ARGUMENT"},
		{Op: "create", Type: "dist_sync", Opts: map[string]any{"url": wsURL, "job": "browser", "token": "wrong", "timeoutMs": 3000}, JSOnly: "AUTH"},
	}
	sections = append(sections, section{label: "create errors", steps: misc, exact: true})
	// The Go runtime in the page must have survived all of the above (a
	// deadlock there kills it, and every later call would fail).
	alive := []brStep{{Op: "create", Type: "local"}, {Op: "info"}, {Op: "close"}}
	sections = append(sections, section{label: "runtime alive", steps: alive, exact: true})
	for _, s := range sections {
		script.Steps = append(script.Steps, s.steps...)
	}

	ctx := brBrowser(t)
	var res brResult
	brRunPage(t, ctx, srv.URL+"/api.html", 3*time.Minute, &res)
	t.Logf("browser WebGPU: available=%v adapter=%q backend=%q reason=%q", res.GPU.Available, res.GPU.Adapter, res.GPU.Backend, res.GPU.Reason)
	if !res.GPU.Available && !brAllowNoGPU() {
		t.Fatalf("the browser has no WebGPU adapter (%s); set WEBKV_ALLOW_NO_GPU=1 to accept the CPU fallback", res.GPU.Reason)
	}

	off := 0
	for _, s := range sections {
		got := res.Steps[off : off+len(s.steps)]
		off += len(s.steps)
		nv := &brNative{dial: func(opts map[string]any) (transport.Transport, error) {
			// The native twin of the page's job, in a job of its own.
			job := strings.Replace(opts["job"].(string), "browser", "native", 1)
			tok := strings.Replace(opts["token"].(string), "tok-b", "tok-n", 1)
			dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return relay.Dial(dctx, wsURL, relay.DialOptions{Job: job, Token: tok})
		}}
		steps, want := nv.run(t, s.label, s.steps)
		brCompare(t, s.label, steps, got[:len(steps)], want, s.exact, res.GPU.Available)
	}
	t.Logf("events seen by the page: %v", res.Events)
}

// TestBrowserNoWebGPU loads webkv in a page whose navigator.gpu is hidden:
// a "device" store must fall back to the CPU backend, say why, and compute
// correctly; with allowCPUFallback: false, create must reject. The CPU path
// must run on the WebAssembly SIMD kernels (backend "cpu+wasm-simd"), and
// with them left out (load({simd: false})) or missing on the server on Go's
// loops ("cpu"); all must
// give the native CPU reference's bits for a sum, Adam (single and fused
// pushes) and 2bit compression on seeded values.
func TestBrowserNoWebGPU(t *testing.T) {
	integration(t)
	srv := brServer(t, nil)
	ctx := brBrowser(t)
	seed := brSeed(t) % 100000
	const n = 10003
	want := brNoGPUReference(t, seed, n)
	for _, c := range []struct{ query, backend string }{
		{"", "cpu+wasm-simd"},
		{"&simd=0", "cpu"},
		{"&simdurl=/webkv/missing-simd.wasm", "cpu"}, // a deployment without the kernels still runs
	} {
		var res struct {
			SimdSupported bool           `json:"simdSupported"`
			GPU           map[string]any `json:"gpu"`
			Backend       string         `json:"backend"`
			Fallback      string         `json:"fallback"`
			Pulled        []float64      `json:"pulled"`
			Sum           string         `json:"sum"`
			Adam          string         `json:"adam"`
			Compressed    string         `json:"compressed"`
			Strict        string         `json:"strict"`
		}
		brRunPage(t, ctx, fmt.Sprintf("%s/nogpu.html?n=%d&seed=%d%s", srv.URL, n, seed, c.query), time.Minute, &res)
		t.Logf("%s: backend %q, fallback %q, strict %q, WebAssembly SIMD %v", c.backend, res.Backend, res.Fallback, res.Strict, res.SimdSupported)
		if res.GPU["available"] != false {
			t.Errorf("webkv.gpu() = %v, want available false", res.GPU)
		}
		if !res.SimdSupported {
			t.Errorf("Chromium reports no WebAssembly SIMD")
		}
		if res.Backend != c.backend || !strings.Contains(res.Fallback, "navigator.gpu") {
			t.Errorf("device store without WebGPU: backend %q, fallback %q; want %s and a reason naming navigator.gpu", res.Backend, res.Fallback, c.backend)
		}
		if got, w := fmt.Sprint(res.Pulled), "[1.5 1.5 1.5 1.5]"; got != w {
			t.Errorf("pulled %v, want %v", got, w)
		}
		for _, v := range []struct{ name, got string }{{"sum", res.Sum}, {"adam", res.Adam}, {"compressed", res.Compressed}} {
			if v.got != want[v.name] {
				t.Errorf("%s on %s: the page's %d values differ from the native reference's", v.name, c.backend, n)
			}
		}
		if !strings.HasPrefix(res.Strict, "NO_WEBGPU: ") || !strings.Contains(res.Strict, "allowCPUFallback is false") {
			t.Errorf("create('device', {allowCPUFallback: false}) without WebGPU: %q, want a rejection", res.Strict)
		}
	}
}

// brNoGPUReference runs nogpu.js's sum, Adam and compressed keys natively
// on the CPU and returns each result's bytes in hex.
func brNoGPUReference(t *testing.T, seed uint32, n int) map[string]string {
	bg := context.Background()
	arr := func(seed uint32) *kvcore.Array {
		a, err := kvcore.FromSlice(kvcore.CPU(0), brRand(seed, n))
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	pull := func(s *kvcore.Store, k string) string {
		out, _ := kvcore.NewArray(kvcore.CPU(0), n)
		if err := s.Pull(kvcore.StrKey(k), out); err != nil {
			t.Fatal(err)
		}
		v, err := out.ToSlice(bg)
		if err != nil {
			t.Fatal(err)
		}
		return hex.EncodeToString(unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), 4*n))
	}
	create := func() *kvcore.Store {
		s, err := kvcore.Create(bg, "device", nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]string{}
	s := create()
	zero, _ := kvcore.NewArray(kvcore.CPU(0), n)
	must(s.Init(bg, kvcore.StrKey("sum"), zero))
	must(s.Push(kvcore.StrKey("sum"), arr(seed), arr(seed+1), arr(seed+2)))
	want["sum"] = pull(s, "sum")
	a := create()
	must(a.Init(bg, kvcore.StrKey("p"), arr(seed+3)))
	opt, err := optimizer.Parse([]byte(`{"name": "adam", "learning_rate": 0.01, "wd": 0.001, "clip_gradient": 0.5}`))
	must(err)
	must(a.SetOptimizer(bg, opt))
	must(a.Push(kvcore.StrKey("p"), arr(seed+4)))
	must(a.Push(kvcore.StrKey("p"), arr(seed+5), arr(seed+6)))
	want["adam"] = pull(a, "p")
	c := create()
	must(c.SetGradientCompression(bg, compute.Compression{Kind: compute.Compress2Bit, Threshold: 0.5}))
	zero, _ = kvcore.NewArray(kvcore.CPU(0), n)
	must(c.Init(bg, kvcore.StrKey("c"), zero))
	for round := range uint32(2) {
		must(c.Push(kvcore.StrKey("c"), arr(seed+7+2*round), arr(seed+8+2*round)))
	}
	want["compressed"] = pull(c, "c")
	return want
}

// TestBrowserDistWithNative runs one dist_sync (and one dist_device_sync)
// job whose two workers are a browser page and a native Go store, through an
// in-process relay: each round both push seeded values and pull; both must
// see the exact sum of the two pushes, and the page must see the native
// worker leave (a "membership" event, numWorkers back to 1).
func TestBrowserDistWithNative(t *testing.T) {
	integration(t)
	seed := brSeed(t) % 100000
	rs, err := relay.NewServer(relay.Config{Tokens: map[string]string{"mix": "tok", "mixdev": "tok"}})
	if err != nil {
		t.Fatal(err)
	}
	srv := brServer(t, map[string]http.Handler{"/ws": rs})
	wsURL := "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"
	ctx := brBrowser(t)
	const rounds, n = 3, 1000
	for _, c := range []struct{ typ, job string }{{"dist_sync", "mix"}, {"dist_device_sync", "mixdev"}} {
		t.Run(c.typ, func(t *testing.T) {
			nseed := seed + 50000
			native := make(chan error, 1)
			var nativeSums [][]float32
			go func() {
				native <- func() error {
					bctx := context.Background()
					dctx, cancel := context.WithTimeout(bctx, 10*time.Second)
					defer cancel()
					tr, err := relay.Dial(dctx, wsURL, relay.DialOptions{Job: c.job, Token: "tok", Workers: 2})
					if err != nil {
						return err
					}
					s, err := kvcore.Create(bctx, c.typ, &kvcore.Options{Transport: tr})
					if err != nil {
						return err
					}
					defer s.Close()
					z, _ := kvcore.NewArray(kvcore.CPU(0), n)
					if err := s.Init(bctx, kvcore.StrKey("w"), z); err != nil {
						return err
					}
					if err := s.Barrier(bctx); err != nil {
						return err
					}
					for r := range rounds {
						a, _ := kvcore.FromSlice(kvcore.CPU(0), brRand(nseed*100+uint32(r), n))
						if err := s.Push(kvcore.StrKey("w"), a); err != nil {
							return err
						}
						o, _ := kvcore.NewArray(kvcore.CPU(0), n)
						if err := s.Pull(kvcore.StrKey("w"), o); err != nil {
							return err
						}
						got, err := o.ToSlice(ctx)
						if err != nil {
							return err
						}
						nativeSums = append(nativeSums, got)
					}
					return s.Barrier(bctx)
				}()
			}()
			var res struct {
				Rank, NumWorkers, After int
				Backend                 string
				Sums                    [][]float64
				Membership              [][2]int
			}
			url := fmt.Sprintf("%s/mix.html?type=%s&url=%s&job=%s&token=tok&seed=%d&rounds=%d&n=%d", srv.URL, c.typ, wsURL, c.job, seed, rounds, n)
			brRunPage(t, ctx, url, 2*time.Minute, &res)
			if err := <-native; err != nil {
				t.Fatalf("native worker: %v", err)
			}
			t.Logf("page: rank %d of %d on %s; membership events %v; workers after the native one left: %d", res.Rank, res.NumWorkers, res.Backend, res.Membership, res.After)
			if res.NumWorkers != 2 && !slicesContainWorkers(res.Membership, 2) {
				t.Errorf("the page never saw 2 workers (numWorkers %d, events %v)", res.NumWorkers, res.Membership)
			}
			if res.After != 1 || len(res.Membership) == 0 {
				t.Errorf("after the native worker left: numWorkers %d, membership events %v; want 1 and an event", res.After, res.Membership)
			}
			if len(res.Sums) != rounds || len(nativeSums) != rounds {
				t.Fatalf("rounds: page %d, native %d, want %d", len(res.Sums), len(nativeSums), rounds)
			}
			for r := range rounds {
				a, b := brRand(seed*100+uint32(r), n), brRand(nseed*100+uint32(r), n)
				for i := range n {
					want := a[i] + b[i] // two terms: the same in either order
					if float32(res.Sums[r][i]) != want || nativeSums[r][i] != want {
						t.Fatalf("round %d value %d: page %v, native %v, want %v", r, i, res.Sums[r][i], nativeSums[r][i], want)
					}
				}
			}
		})
	}
}

func slicesContainWorkers(ev [][2]int, n int) bool {
	for _, e := range ev {
		if e[1] == n {
			return true
		}
	}
	return false
}

// TestBrowserDistChurn opens and closes dist stores in a loop, with pushes
// in flight and refused tokens in between, and checks that the page's Go
// runtime survives (a deadlock in a websocket close path once killed it).
func TestBrowserDistChurn(t *testing.T) {
	integration(t)
	rs, err := relay.NewServer(relay.Config{Tokens: map[string]string{"churn": "tok"}})
	if err != nil {
		t.Fatal(err)
	}
	srv := brServer(t, map[string]http.Handler{"/ws": rs})
	wsURL := "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"
	ctx := brBrowser(t)
	const loops = 16
	var res struct {
		Closed, Refused int
		Errors          []string
		Alive           []float64
	}
	brRunPage(t, ctx, fmt.Sprintf("%s/churn.html?url=%s&loops=%d", srv.URL, wsURL, loops), 3*time.Minute, &res)
	t.Logf("%+v", res)
	if res.Closed != loops || len(res.Errors) > 0 {
		t.Errorf("closed %d of %d stores; errors %q", res.Closed, loops, res.Errors)
	}
	if res.Refused != loops/4 {
		t.Errorf("%d of %d wrong-token creates were refused", res.Refused, loops/4)
	}
	if fmt.Sprint(res.Alive) != "[1 2]" {
		t.Errorf("runtime after the churn: pulled %v, want [1 2]", res.Alive)
	}
}

// integration marks t as a test of the integration tier: browsers,
// processes, faults. `go test -short` (make test-unit) leaves it out;
// make test and make test-integration run it.
func integration(tb testing.TB) {
	tb.Helper()
	if testing.Short() {
		tb.Skip("integration test (browser, processes or faults): left out under -short")
	}
}

// waitFor checks cond every interval (at once first) until it reports done,
// fails tb with its last error after timeout, and returns at once when cond
// returns a fatal error. It waits on an observed state (a page variable, a
// relay's /status), never on the passing of time alone.
func waitFor(tb testing.TB, timeout, interval time.Duration, what string, cond func() (done bool, err error)) {
	tb.Helper()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	var last error
	for {
		done, err := cond()
		var fatal fatalError
		if errors.As(err, &fatal) {
			tb.Fatalf("%s: %v", what, fatal.error)
		}
		if done {
			return
		}
		last = err
		select {
		case <-tick.C:
		case <-deadline.C:
			tb.Fatalf("%s: not within %v (last error: %v)", what, timeout, last)
		}
	}
}

// fatalError makes waitFor stop at once.
type fatalError struct{ error }

// navigateTimeout bounds one page load, from the navigation's start to the
// document's readyState "complete".
const navigateTimeout = 2 * time.Minute

// navigatePoll is how often brNavigate asks a loading page for its state.
const navigatePoll = 50 * time.Millisecond

// brNavigate runs the actions (a viewport, say) and then loads url in the
// tab ctx, within navigateTimeout. The tab's target is created first
// without the time limit, since chromedp ties a new target's life to the
// context of its first Run.
//
// It marks the document the tab shows (a blank one, or the last page:
// tabs are reused), starts the navigation (Page.navigate, which may
// return before the new document replaced the old) and then asks the tab
// for its document's state until an unmarked document is complete: a
// state the page reports whenever asked. chromedp's Navigate waits
// instead for the load event's message, which a busy machine once saw
// lost for the second of two tabs loading at once (the page had loaded
// and trained) and the test hung until the timeout.
func brNavigate(ctx context.Context, url string, actions ...chromedp.Action[chromedp.Void]) error {
	if err := chromedp.Do(ctx); err != nil {
		return fmt.Errorf("opening a tab for %s: %v", url, err)
	}
	nctx, cancel := context.WithTimeout(ctx, navigateTimeout)
	defer cancel()
	start := chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		res, err := cdp.Call(ctx, t, page.Navigate, page.NavigateParams{URL: url})
		if err == nil && res.ErrorText != "" {
			err = errors.New(res.ErrorText)
		}
		return err
	})
	if _, err := chromedp.Run(nctx, chromedp.Evaluate[bool](`document.__brOld = true`)); err != nil {
		return fmt.Errorf("navigating to %s: marking the old document: %v", url, err)
	}
	if err := chromedp.Do(nctx, append(actions, start)...); err != nil {
		return fmt.Errorf("navigating to %s: %v", url, err)
	}
	tick := time.NewTicker(navigatePoll)
	defer tick.Stop()
	last := "no answer yet"
	for {
		// A marked document is the old one (the new one is not in yet).
		// An evaluation can fail while the document changes; the next
		// one is asked again.
		state, err := chromedp.Run(nctx, chromedp.Evaluate[string](`document.__brOld === true ? "the old one" : document.readyState`))
		switch {
		case err != nil:
			last = err.Error()
		case state == "complete":
			return nil
		default:
			last = "document " + state
		}
		select {
		case <-tick.C:
		case <-nctx.Done():
			return fmt.Errorf("navigating to %s: the page did not load within %v (last: %s)", url, navigateTimeout, last)
		}
	}
}
