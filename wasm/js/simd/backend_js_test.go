//go:build js

package simd

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"syscall/js"
	"testing"

	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/kvcore/compute/backendtest"
)

// These tests run in a browser (TestInBrowser, in browser_test.go, builds
// this package's GOOS=js tests and runs them in headless Chromium, the
// kernels loaded by webkv.js's loadSIMD over the test binary's memory).

// newTestBackend returns a CPU backend accelerated by the kernels from
// minLen elements on (0: the default).
func newTestBackend(t *testing.T, minLen int) *compute.CPU {
	t.Helper()
	a, err := Load(&Options{MinLen: minLen})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return compute.NewCPU(&compute.CPUOptions{Accel: a})
}

// TestConformanceJS runs the Backend conformance suite on the accelerated
// CPU backend with every length through the kernels, and with the default
// crossover.
func TestConformanceJS(t *testing.T) {
	t.Run("kernels", func(t *testing.T) {
		backendtest.Run(t, func(t *testing.T) compute.Backend { return newTestBackend(t, 1) }, backendtest.Short())
	})
	// The large case (16M values and more) runs once, on the default.
	t.Run("default", func(t *testing.T) {
		backendtest.Run(t, func(t *testing.T) compute.Backend { return newTestBackend(t, 0) })
	})
}

// TestLoadJS checks the names and what Load says without kernels.
func TestLoadJS(t *testing.T) {
	a, err := Load(nil)
	if err != nil {
		t.Fatal(err)
	}
	if a.MinLen() != DefaultMinLen {
		t.Errorf("MinLen %d", a.MinLen())
	}
	if name := compute.NewCPU(&compute.CPUOptions{Accel: a}).Name(); name != "cpu+wasm-simd" {
		t.Errorf("the accelerated CPU's name is %q", name)
	}
	saved := js.Global().Get("__webkvSIMD")
	defer js.Global().Set("__webkvSIMD", saved)
	js.Global().Set("__webkvSIMD", js.ValueOf(map[string]any{"error": "this browser has no WebAssembly SIMD"}))
	if _, err := Load(nil); !errors.Is(err, ErrUnavailable) || err.Error() != "simd: no WebAssembly SIMD kernels: this browser has no WebAssembly SIMD" {
		t.Errorf("Load with {error}: %v", err)
	}
	js.Global().Set("__webkvSIMD", js.Undefined())
	if _, err := Load(nil); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Load without kernels: %v", err)
	}
	js.Global().Set("__webkvSIMD", js.ValueOf(map[string]any{"fill": "not a function"}))
	if _, err := Load(nil); err == nil {
		t.Error("Load of an object without the kernels' functions succeeded")
	}
}

// twin holds the same inputs on the SIMD backend and the CPU reference.
type twin struct {
	t    *testing.T
	s, c compute.Backend
}

func (tw twin) upload(data []float32) (compute.Buffer, compute.Buffer) {
	bs, err := tw.s.Alloc(len(data))
	if err != nil {
		tw.t.Fatal(err)
	}
	bc, err := tw.c.Alloc(len(data))
	if err != nil {
		tw.t.Fatal(err)
	}
	if err := tw.s.Write(bs, 0, data); err != nil {
		tw.t.Fatal(err)
	}
	if err := tw.c.Write(bc, 0, data); err != nil {
		tw.t.Fatal(err)
	}
	return bs, bc
}

// same fails unless the two buffers hold the same values (the same bits,
// NaN payloads aside).
func (tw twin) same(what string, bs, bc compute.Buffer) {
	tw.t.Helper()
	tw.cmp(what, bs, bc, sameBits)
}

// sameWords fails unless the two buffers hold the same bits, NaN patterns
// included (packed words).
func (tw twin) sameWords(what string, bs, bc compute.Buffer) {
	tw.t.Helper()
	tw.cmp(what, bs, bc, func(a, b float32) bool { return math.Float32bits(a) == math.Float32bits(b) })
}

func (tw twin) cmp(what string, bs, bc compute.Buffer, eq func(a, b float32) bool) {
	tw.t.Helper()
	got, want := make([]float32, bs.Len()), make([]float32, bc.Len())
	if err := tw.s.Read(bs, 0, got); err != nil {
		tw.t.Fatal(err)
	}
	if err := tw.c.Read(bc, 0, want); err != nil {
		tw.t.Fatal(err)
	}
	for i := range want {
		if !eq(got[i], want[i]) {
			tw.t.Fatalf("%s: value %d is %v (%#08x), the CPU reference's %v (%#08x)", what, i, got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
		}
	}
}

var jsLens = []int{1, 3, 4, 5, 1023, 1024, 1027, 4099, 9001, 65537}

// TestEqualsCPUJS runs every operation on the SIMD backend and on the CPU
// reference with the same seeded random inputs and requires the same bits:
// reduce with 1 to 16 inputs, every optimizer kernel with and without weight
// decay, clipping and rescale, fused reduce+step, quantize and dequantize,
// fill; lengths below and above the crossover, with and without tails.
func TestEqualsCPUJS(t *testing.T) {
	seed := testSeed(t)
	r := rand.New(rand.NewPCG(seed, 11))
	for _, minLen := range []int{1, 0} {
		tw := twin{t: t, s: newTestBackend(t, minLen), c: compute.NewCPU(nil)}
		for _, n := range jsLens {
			// Fill.
			d := make([]float32, n)
			bs, bc := tw.upload(d)
			v := r.Float32()
			tw.s.Fill(bs, v)
			tw.c.Fill(bc, v)
			tw.same(fmt.Sprintf("fill n=%d", n), bs, bc)
			// Reduce.
			for _, nin := range []int{1, 2, 3, 4, 5, 7, 16} {
				var ss, cs []compute.Buffer
				for range nin {
					x := make([]float32, n)
					values(r, x, 1, r.IntN(4) == 0)
					a, b := tw.upload(x)
					ss, cs = append(ss, a), append(cs, b)
				}
				scale := []float32{1, 0.25, r.Float32()}[r.IntN(3)]
				ds, dc := tw.upload(make([]float32, n))
				if err := tw.s.Reduce(ds, ss, scale); err != nil {
					t.Fatal(err)
				}
				tw.c.Reduce(dc, cs, scale)
				tw.same(fmt.Sprintf("reduce n=%d inputs=%d scale=%v", n, nin, scale), ds, dc)
				// Into input 0.
				tw.s.Reduce(ss[0], ss, scale)
				tw.c.Reduce(cs[0], cs, scale)
				tw.same(fmt.Sprintf("reduce into input 0, n=%d inputs=%d", n, nin), ss[0], cs[0])
			}
		}
		// Optimizers, plain and fused, two steps in a row.
		for _, c := range stepCases(r) {
			for _, n := range []int{5, 1023, 4099, 9001} {
				w := make([]float32, n)
				values(r, w, 1, false)
				ws, wc := tw.upload(w)
				st := make([][]float32, c.states)
				for i := range st {
					st[i] = make([]float32, n)
				}
				stateInit(r, c, st)
				var ss, sc []compute.Buffer
				for _, s := range st {
					a, b := tw.upload(s)
					ss, sc = append(ss, a), append(sc, b)
				}
				for stepNo := range 2 {
					nin := 1 + r.IntN(4)
					var gs, gc []compute.Buffer
					for range nin {
						g := make([]float32, n)
						values(r, g, 0.5, r.IntN(3) == 0)
						a, b := tw.upload(g)
						gs, gc = append(gs, a), append(gc, b)
					}
					p := c.p
					what := fmt.Sprintf("%s n=%d step %d", c.name, n, stepNo)
					if nin == 1 {
						if err := tw.s.Step(c.kind, &p, ws, gs[0], ss); err != nil {
							t.Fatalf("%s: %v", what, err)
						}
						if err := tw.c.Step(c.kind, &p, wc, gc[0], sc); err != nil {
							t.Fatalf("%s: reference: %v", what, err)
						}
					} else {
						what += fmt.Sprintf(" fused with %d inputs", nin)
						if err := tw.s.(compute.ReduceStepper).ReduceStep(c.kind, &p, ws, gs, 0.5, ss); err != nil {
							t.Fatalf("%s: %v", what, err)
						}
						m, _ := tw.c.Alloc(n)
						tw.c.Reduce(m, gc, 0.5)
						if err := tw.c.Step(c.kind, &p, wc, m, sc); err != nil {
							t.Fatalf("%s: reference: %v", what, err)
						}
					}
					tw.same(what+": weight", ws, wc)
					for i := range ss {
						tw.same(fmt.Sprintf("%s: state %d", what, i), ss[i], sc[i])
					}
				}
			}
		}
		// Quantizers, residual carried over three rounds.
		for _, cm := range []compute.Compression{{Kind: compute.Compress2Bit, Threshold: 0.5}, {Kind: compute.Compress1Bit, Threshold: r.Float32() - 0.5}} {
			for _, n := range jsLens {
				rs, rc := tw.upload(make([]float32, n))
				os, oc := tw.upload(make([]float32, cm.Kind.PackedLen(n)))
				ds, dc := tw.upload(make([]float32, n))
				for round := range 3 {
					g := make([]float32, n)
					values(r, g, 1, round == 2)
					gs, gc := tw.upload(g)
					if err := tw.s.Quantize(cm, gs, rs, os); err != nil {
						t.Fatal(err)
					}
					tw.c.Quantize(cm, gc, rc, oc)
					what := fmt.Sprintf("%v n=%d round %d", cm, n, round)
					tw.sameWords(what+": words", os, oc)
					tw.same(what+": residual", rs, rc)
					if err := tw.s.Dequantize(cm, os, ds); err != nil {
						t.Fatal(err)
					}
					tw.c.Dequantize(cm, oc, dc)
					tw.same(what+": dequantized", ds, dc)
				}
			}
		}
	}
}
