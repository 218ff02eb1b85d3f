package backendtest_test

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/kvcore/compute/backendtest"
	"github.com/webkv/webkv/kvcore/optimizer"
)

// TestCPU runs the suite on the CPU backend. Compared with itself it checks
// little arithmetic, but every error path, pooling, offsets, concurrency and
// the large case are real checks of the reference.
func TestCPU(t *testing.T) {
	t.Parallel()
	backendtest.Run(t, func(t *testing.T) compute.Backend { return compute.NewCPU(nil) })
}

// TestCPUStepFloat64 re-derives two optimizers in float64 straight from
// MXNet 1.x's operator formulas (src/operator/optimizer_op-inl.h
// SGDMomKernel and AdamUpdateKernel, hyper-parameters rounded to float32
// as the operators' parameters are, with the bias-corrected learning rate
// that python/mxnet/optimizer/optimizer.py Adam.update passes) and checks
// the CPU backend's float32 kernels over 10 steps, so the reference the
// suite trusts is itself checked. Length 131073 = 2^17+1 takes the parallel path with an odd tail.
func TestCPUStepFloat64(t *testing.T) {
	t.Parallel()
	const n, steps = 131073, 10
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 5))
	rnd := func() []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = rng.Float32()*2 - 1
		}
		return v
	}
	clip := func(x, c float64) float64 {
		if c < 0 {
			return x
		}
		return math.Max(-c, math.Min(c, x))
	}
	// The operators take their hyper-parameters as float32 (dmlc float
	// fields), so the model rounds them to float32 once and then computes
	// in float64.
	f32 := func(x float64) float64 { return float64(float32(x)) }
	type model func(t int, w, g float64, st []float64) float64
	const lr, wd, rescale, clipG = 0.05, 0.001, 0.5, 0.3
	for _, tc := range []struct {
		spec string
		f    model
	}{
		{`{"name":"sgd","learning_rate":0.05,"momentum":0.9,"wd":0.001,"rescale_grad":0.5,"clip_gradient":0.3}`,
			func(_ int, w, g float64, st []float64) float64 {
				st[0] = f32(0.9)*st[0] - f32(lr)*f32(wd)*w - f32(lr)*clip(f32(rescale)*g, f32(clipG))
				return w + st[0]
			}},
		{`{"name":"adam","learning_rate":0.05,"wd":0.001,"rescale_grad":0.5,"clip_gradient":0.3}`,
			func(t int, w, g float64, st []float64) float64 {
				// Python computes the corrected rate in double and passes
				// it as the operator's float lr.
				lrt := f32(lr * math.Sqrt(1-math.Pow(0.999, float64(t))) / (1 - math.Pow(0.9, float64(t))))
				b1, b2, eps := f32(0.9), f32(0.999), f32(1e-8)
				g = clip(f32(rescale)*g+f32(wd)*w, f32(clipG))
				st[0] = b1*st[0] + (1-b1)*g
				st[1] = b2*st[1] + (1-b2)*g*g
				return w - lrt*st[0]/(math.Sqrt(st[1])+eps)
			}},
	} {
		o, err := optimizer.Parse([]byte(tc.spec))
		if err != nil {
			t.Fatalf("%s: %v", tc.spec, err)
		}
		cpu := compute.NewCPU(nil)
		w0 := rnd()
		var p compute.StepParams
		o.Params("1", 1, 1, &p)
		ns := o.Kind().NumStates(&p)
		wb, _ := cpu.Alloc(n)
		gb, _ := cpu.Alloc(n)
		sb := make([]compute.Buffer, ns)
		for i := range sb {
			sb[i], _ = cpu.Alloc(n)
		}
		cpu.Write(wb, 0, w0)
		mw := make([]float64, n)
		ms := make([][]float64, n)
		for i := range mw {
			mw[i] = float64(w0[i])
			ms[i] = make([]float64, ns)
		}
		for step := 1; step <= steps; step++ {
			g := rnd()
			cpu.Write(gb, 0, g)
			o.Params("1", step, step, &p)
			if err := cpu.Step(o.Kind(), &p, wb, gb, sb); err != nil {
				t.Fatalf("%s step %d: %v", tc.spec, step, err)
			}
			for i := range mw {
				mw[i] = tc.f(step, mw[i], float64(g[i]), ms[i])
			}
		}
		got := make([]float32, n)
		cpu.Read(wb, 0, got)
		bad := 0
		for i := range got {
			if d := math.Abs(float64(got[i]) - mw[i]); !(d <= 1e-6+1e-5*math.Abs(mw[i])) {
				if bad < 3 {
					t.Errorf("%s: weight %d = %v after %d steps, float64 model %v", tc.spec, i, got[i], steps, mw[i])
				}
				bad++
			}
		}
		if bad > 0 {
			t.Errorf("%s: %d of %d weights off", tc.spec, bad, n)
		}
		for _, b := range append([]compute.Buffer{wb, gb}, sb...) {
			cpu.Free(b)
		}
	}
}

// TestCPUReduceHost checks the CPU reference's Reduce bit for bit against a
// plain left-to-right float32 loop, for 1 to 16 inputs, lengths across the
// parallel threshold, scale 1 and not, and the output aliasing input 0 (the
// suite compares the CPU backend with itself, so this is its own check).
func TestCPUReduceHost(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 6))
	cpu := compute.NewCPU(nil)
	for _, n := range []int{1, 5, 2047, 2049, 65536, 65537, 131073} {
		for k := 1; k <= 16; k++ {
			for _, alias := range []bool{false, true} {
				scale := float32(1)
				if k%2 == 1 {
					scale = 0.37
				}
				ins := make([][]float32, k)
				bufs := make([]compute.Buffer, k)
				for j := range ins {
					ins[j] = make([]float32, n)
					for i := range ins[j] {
						ins[j][i] = rng.Float32()*2 - 1
					}
					bufs[j], _ = cpu.Alloc(n)
					cpu.Write(bufs[j], 0, ins[j])
				}
				dst := bufs[0]
				if !alias {
					dst, _ = cpu.Alloc(n)
				}
				if err := cpu.Reduce(dst, bufs, scale); err != nil {
					t.Fatal(err)
				}
				got := make([]float32, n)
				cpu.Read(dst, 0, got)
				for i := range got {
					sum := ins[0][i]
					for j := 1; j < k; j++ {
						sum += ins[j][i]
					}
					if want := sum * scale; math.Float32bits(got[i]) != math.Float32bits(want) {
						t.Fatalf("n=%d k=%d alias=%v: value %d = %v, want %v", n, k, alias, i, got[i], want)
					}
				}
				for _, b := range bufs {
					cpu.Free(b)
				}
				if !alias {
					cpu.Free(dst)
				}
			}
		}
	}
}
