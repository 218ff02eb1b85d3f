//go:build cgo && !js

package gpu

import (
	"errors"
	"fmt"
	"math"
	"math/rand"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/cogentcore/webgpu/wgpu"
	"github.com/webkv/webkv/native"
	"github.com/webkv/webkv/www/mnist"
)

func testSeed(t testing.TB) *rand.Rand {
	seed := time.Now().UnixNano()
	if s := os.Getenv("WEBKV_SEED"); s != "" {
		fmt.Sscan(s, &seed)
	}
	t.Logf("seed %d (rerun with WEBKV_SEED=%d)", seed, seed)
	return rand.New(rand.NewSource(seed))
}

// openTestDevice opens the host's WebGPU adapter (lavapipe here) through
// package native, the one device bring-up. A missing adapter fails the
// test unless WEBKV_ALLOW_NO_GPU=1 says the machine knowingly lacks Vulkan.
func openTestDevice(t testing.TB) *native.Device {
	t.Helper()
	if os.Getenv("XDG_RUNTIME_DIR") == "" {
		// Mesa's Vulkan loader warns and may misbehave without it.
		t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	}
	d, err := native.Open(nil)
	if err != nil {
		if errors.Is(err, native.ErrNoAdapter) && os.Getenv("WEBKV_ALLOW_NO_GPU") == "1" {
			t.Skipf("no WebGPU adapter and WEBKV_ALLOW_NO_GPU=1: %v", err)
		}
		t.Fatalf("no WebGPU adapter (set WEBKV_ALLOW_NO_GPU=1 to skip on machines without Vulkan): %v", err)
	}
	t.Cleanup(d.Release)
	t.Logf("adapter: %s", d.Name())
	return d
}

func randVec(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

// runKernel dispatches one kernel of g on fresh buffers holding ins (storage
// bindings in order, then a uniform), and returns the contents of the
// buffers at outIdx after the dispatch.
func runKernel(t *testing.T, g *Engine, k *kernel, uni []byte, wx, wy uint32, ins [][]byte, outIdx ...int) [][]float32 {
	t.Helper()
	var bufs []*wgpu.Buffer
	defer func() {
		for _, b := range bufs {
			b.Destroy()
			b.Release()
		}
	}()
	mk := func(data []byte, usage wgpu.BufferUsage) *wgpu.Buffer {
		size := max(len(data), 4)
		b, err := g.dev.CreateBuffer(&wgpu.BufferDescriptor{Size: uint64(size), Usage: usage})
		if err != nil {
			t.Fatal(err)
		}
		bufs = append(bufs, b)
		if len(data) > 0 {
			if err := g.q.WriteBuffer(b, 0, data); err != nil {
				t.Fatal(err)
			}
		}
		return b
	}
	var binds []*wgpu.Buffer
	for _, in := range ins {
		binds = append(binds, mk(in, wgpu.BufferUsageStorage|wgpu.BufferUsageCopyDst|wgpu.BufferUsageCopySrc))
	}
	binds = append(binds, mk(uni, wgpu.BufferUsageUniform|wgpu.BufferUsageCopyDst))
	bg, err := g.bindGroup(k, binds)
	if err != nil {
		t.Fatal(err)
	}
	defer bg.Release()
	enc, err := g.dev.CreateCommandEncoder(nil)
	if err != nil {
		t.Fatal(err)
	}
	pass := enc.BeginComputePass(nil)
	pass.SetPipeline(k.pipe)
	pass.SetBindGroup(0, bg, nil)
	pass.DispatchWorkgroups(wx, wy, 1)
	pass.End()
	pass.Release()
	var outs [][]float32
	var stg []*wgpu.Buffer
	for _, i := range outIdx {
		s := mk(make([]byte, len(ins[i])), wgpu.BufferUsageMapRead|wgpu.BufferUsageCopyDst)
		if err := enc.CopyBufferToBuffer(binds[i], 0, s, 0, uint64(len(ins[i]))); err != nil {
			t.Fatal(err)
		}
		stg = append(stg, s)
	}
	cb, err := enc.Finish(nil)
	if err != nil {
		t.Fatal(err)
	}
	g.q.Submit(cb)
	for j, s := range stg {
		n := uint64(len(ins[outIdx[j]]))
		var st wgpu.BufferMapAsyncStatus = 99
		if err := s.MapAsync(wgpu.MapModeRead, 0, n, func(x wgpu.BufferMapAsyncStatus) { st = x }); err != nil {
			t.Fatal(err)
		}
		g.dev.Poll(true, nil)
		if st != wgpu.BufferMapAsyncStatusSuccess {
			t.Fatalf("map status %v", st)
		}
		outs = append(outs, append([]float32(nil), wgpu.FromBytes[float32](s.GetMappedRange(0, uint(n)))...))
		s.Unmap()
	}
	return outs
}

// closeTo reports whether got is within float32-fit tolerance of want:
// |got-want| <= atol + rtol*|want|.
func checkClose(t *testing.T, what string, got []float32, want []float64, rtol, atol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	bad := 0
	for i := range got {
		d := math.Abs(float64(got[i]) - want[i])
		if math.IsNaN(float64(got[i])) || d > atol+rtol*math.Abs(want[i]) {
			if bad < 5 {
				t.Errorf("%s[%d] = %g, want %g (diff %g)", what, i, got[i], want[i], d)
			}
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d values out of tolerance", what, bad, len(got))
	}
}

func newTestGPU(t *testing.T, s mnist.Shape, maxBatch int) *Engine {
	d := openTestDevice(t)
	g, err := New(d.Device, s, &Options{MaxBatch: maxBatch})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}

func TestMatMulKernel(t *testing.T) {
	g := newTestGPU(t, mnist.Shape{In: 3, Hidden: 3, Out: 2}, 1)
	r := testSeed(t)
	for _, c := range []struct {
		m, n, k int
		transA  bool
		transB  bool
		flags   int
	}{
		{1, 1, 1, false, false, 0}, {3, 5, 7, false, false, mmBias}, {17, 9, 33, true, false, mmBias | mmReLU},
		{8, 8, 8, false, true, mmReLU}, {64, 128, 784, false, false, mmBias | mmReLU}, {784, 128, 64, true, false, 0},
		{64, 128, 10, false, true, 0}, {9, 130, 5, true, true, mmBias},
	} {
		a := randVec(r, c.m*c.k)
		b := randVec(r, c.k*c.n)
		bias := randVec(r, c.n)
		saR, saC := c.k, 1 // A stored m×k
		if c.transA {
			saR, saC = 1, c.m // A stored k×m, used transposed
		}
		sbR, sbC := c.n, 1
		if c.transB {
			sbR, sbC = 1, c.k
		}
		want := make([]float64, c.m*c.n)
		for i := range c.m {
			for j := range c.n {
				var acc float64
				for l := range c.k {
					acc += float64(a[i*saR+l*saC]) * float64(b[l*sbR+j*sbC])
				}
				if c.flags&mmBias != 0 {
					acc += float64(bias[j])
				}
				if c.flags&mmReLU != 0 {
					acc = math.Max(acc, 0)
				}
				want[i*c.n+j] = acc
			}
		}
		out := runKernel(t, g, &g.mm, mmUniform(c.m, c.n, c.k, c.flags, saR, saC, sbR, sbC), ceil8(c.n), ceil8(c.m),
			[][]byte{wgpu.ToBytes(a), wgpu.ToBytes(b), wgpu.ToBytes(bias), make([]byte, 4*c.m*c.n)}, 3)
		// Sums of k products of N(0,1): error grows like sqrt(k)·eps.
		checkClose(t, fmt.Sprintf("matmul %+v", c), out[0], want, 1e-4, 1e-5*math.Sqrt(float64(c.k))*4)
	}
}

func TestReLUKernel(t *testing.T) {
	g := newTestGPU(t, mnist.Shape{In: 3, Hidden: 3, Out: 2}, 1)
	r := testSeed(t)
	for _, n := range []int{1, 63, 64, 65, 1000} {
		for mode := range 2 {
			x := randVec(r, n)
			gr := randVec(r, n)
			want := make([]float64, n)
			for i := range x {
				switch {
				case mode == 0:
					want[i] = math.Max(float64(x[i]), 0)
				case x[i] > 0:
					want[i] = float64(gr[i])
				}
			}
			wx, wy := grid(n)
			out := runKernel(t, g, &g.relu, u32s(uint32(n), uint32(mode)), wx, wy,
				[][]byte{wgpu.ToBytes(x), wgpu.ToBytes(gr), make([]byte, 4*n)}, 2)
			checkClose(t, fmt.Sprintf("relu n=%d mode=%d", n, mode), out[0], want, 0, 0)
		}
	}
}

func TestXentKernel(t *testing.T) {
	g := newTestGPU(t, mnist.Shape{In: 3, Hidden: 3, Out: 2}, 1)
	r := testSeed(t)
	for _, c := range []struct{ rows, n int }{{1, 2}, {3, 10}, {70, 10}, {130, 7}} {
		z := randVec(r, c.rows*c.n)
		for i := range z {
			z[i] *= 4 // spread the logits so the softmax is not flat
		}
		y := make([]uint32, c.rows)
		yb := make([]uint8, c.rows)
		for i := range y {
			y[i] = uint32(r.Intn(c.n))
			yb[i] = uint8(y[i])
		}
		scale := 1 / float32(c.rows)
		wantDz := make([]float64, c.rows*c.n)
		wantSt := make([]float64, 2*c.rows)
		dz := make([]float32, c.n)
		for row := range c.rows {
			l, ok := mnist.SoftmaxXent(z[row*c.n:(row+1)*c.n], int(y[row]), c.rows, dz)
			for j, v := range dz {
				wantDz[row*c.n+j] = float64(v)
			}
			wantSt[2*row] = l
			if ok {
				wantSt[2*row+1] = 1
			}
		}
		wx, wy := grid(c.rows)
		out := runKernel(t, g, &g.xent, u32s(uint32(c.rows), uint32(c.n), f32bits(scale)), wx, wy,
			[][]byte{wgpu.ToBytes(z), wgpu.ToBytes(y), make([]byte, 4*c.rows*c.n), make([]byte, 8*c.rows)}, 2, 3)
		checkClose(t, fmt.Sprintf("xent dz %+v", c), out[0], wantDz, 1e-4, 1e-6)
		checkClose(t, fmt.Sprintf("xent stats %+v", c), out[1], wantSt, 1e-4, 1e-5)
	}
}

func TestColSumKernel(t *testing.T) {
	g := newTestGPU(t, mnist.Shape{In: 3, Hidden: 3, Out: 2}, 1)
	r := testSeed(t)
	for _, c := range []struct{ rows, n int }{{1, 1}, {63, 10}, {64, 128}, {65, 3}, {200, 128}} {
		x := randVec(r, c.rows*c.n)
		scale := float32(0.5)
		want := make([]float64, c.n)
		for i := range c.rows {
			for j := range c.n {
				want[j] += float64(x[i*c.n+j])
			}
		}
		for j := range want {
			want[j] *= float64(scale)
		}
		out := runKernel(t, g, &g.col, u32s(uint32(c.rows), uint32(c.n), f32bits(scale)), uint32(c.n), 1,
			[][]byte{wgpu.ToBytes(x), make([]byte, 4*c.n)}, 1)
		checkClose(t, fmt.Sprintf("colsum %+v", c), out[0], want, 1e-5, 1e-5*math.Sqrt(float64(c.rows)))
	}
}

// randBatch returns inputs shaped like MNIST's (about 80% zeros, the rest
// in (0,1]) and random labels.
func randBatch(r *rand.Rand, s mnist.Shape, b int) ([]float32, []uint8) {
	x := make([]float32, b*s.In)
	for i := range x {
		if r.Float64() < 0.2 {
			x[i] = r.Float32()
		}
	}
	y := make([]uint8, b)
	for i := range y {
		y[i] = uint8(r.Intn(s.Out))
	}
	return x, y
}

func TestGPUGradMatchesCPU(t *testing.T) {
	r := testSeed(t)
	for _, c := range []struct {
		s        mnist.Shape
		maxBatch int
		batch    int
	}{{mnist.Shape{In: 13, Hidden: 7, Out: 5}, 4, 3}, {mnist.Shape{In: 13, Hidden: 7, Out: 5}, 4, 1}, {mnist.MLP, 64, 64}, {mnist.MLP, 100, 37}} {
		g := newTestGPU(t, c.s, c.maxBatch)
		p, err := mnist.InitParams(c.s, r.Int63())
		if err != nil {
			t.Fatal(err)
		}
		for i := range p.B1 {
			p.B1[i] = 0.1 * float32(r.NormFloat64())
		}
		for i := range p.B2 {
			p.B2[i] = 0.1 * float32(r.NormFloat64())
		}
		if err := g.SetParams(p); err != nil {
			t.Fatal(err)
		}
		// Two steps with different batch sizes reuse the same buffers.
		for _, b := range []int{c.batch, max(c.batch-1, 1)} {
			x, y := randBatch(r, c.s, b)
			want, _ := mnist.NewParams(c.s)
			wl, wc, err := mnist.Grad(p, x, y, want, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := mnist.NewParams(c.s)
			gl, gc, err := g.Grad(x, y, got)
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(gl-wl) > 1e-4*math.Max(1, wl) || gc != wc {
				t.Errorf("%+v batch %d: loss %g correct %d, CPU %g %d", c.s, b, gl, gc, wl, wc)
			}
			for k, name := range mnist.TensorNames {
				w := make([]float64, len(want.Tensors()[k]))
				scale := 0.0
				for i, v := range want.Tensors()[k] {
					w[i] = float64(v)
					scale = math.Max(scale, math.Abs(float64(v)))
				}
				checkClose(t, fmt.Sprintf("%+v batch %d grad %s", c.s, b, name), got.Tensors()[k], w, 1e-3, 1e-4*scale+1e-7)
			}
		}
	}
}

func TestGPUEvaluateMatchesCPU(t *testing.T) {
	r := testSeed(t)
	g := newTestGPU(t, mnist.MLP, 64)
	p, _ := mnist.InitParams(mnist.MLP, r.Int63())
	if err := g.SetParams(p); err != nil {
		t.Fatal(err)
	}
	x, y := randBatch(r, mnist.MLP, 150) // 3 dispatches, the last one partial
	wl, wa, err := mnist.Evaluate(p, x, y)
	if err != nil {
		t.Fatal(err)
	}
	gl, ga, err := g.Evaluate(x, y)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(gl-wl) > 1e-4*math.Max(1, wl) || ga != wa {
		t.Errorf("GPU loss %g acc %g, CPU %g %g", gl, ga, wl, wa)
	}
}

func TestGPUBadInput(t *testing.T) {
	g := newTestGPU(t, mnist.Shape{In: 4, Hidden: 3, Out: 2}, 2)
	grads, _ := mnist.NewParams(mnist.Shape{In: 4, Hidden: 3, Out: 2})
	if _, _, err := g.Grad(make([]float32, 12), make([]uint8, 3), grads); err == nil {
		t.Error("batch of 3 on a GPU with max batch 2: no error")
	}
	if _, _, err := g.Grad(make([]float32, 7), make([]uint8, 2), grads); err == nil {
		t.Error("7 inputs for 2 samples of 4: no error")
	}
	if _, _, err := g.Grad(make([]float32, 4), []uint8{2}, grads); err == nil {
		t.Error("label 2 with 2 classes: no error")
	}
	other, _ := mnist.NewParams(mnist.Shape{In: 5, Hidden: 3, Out: 2})
	if err := g.SetParams(other); err == nil {
		t.Error("params of another shape: no error")
	}
	if _, err := New(g.dev, mnist.Shape{In: 4, Hidden: 3, Out: 2}, &Options{MaxBatch: -1}); err == nil {
		t.Error("max batch -1: no error")
	}
	if _, err := New(nil, mnist.Shape{In: 4, Hidden: 3, Out: 2}, nil); err == nil {
		t.Error("nil device: no error")
	}
}

// TestSharedLockConcurrent runs 3 engines sharing one device and one lock
// (what the demo does with its native workers) from 3 goroutines, each on
// its own weights and batch, and checks every result against the CPU
// reference (the lock must keep their buffers apart).
func TestSharedLockConcurrent(t *testing.T) {
	d := openTestDevice(t)
	var mu sync.Mutex
	es := make([]*Engine, 3)
	for i := range es {
		e, err := New(d.Device, mnist.MLP, &Options{MaxBatch: 64, Lock: &mu})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close() })
		es[i] = e
	}
	r := testSeed(t)
	type job struct {
		p    *mnist.Params
		x    []float32
		y    []uint8
		want *mnist.Params
		wl   float64
	}
	jobs := make([]job, len(es))
	for i := range jobs {
		p, _ := mnist.InitParams(mnist.MLP, r.Int63())
		x, y := randBatch(r, mnist.MLP, 64)
		want, _ := mnist.NewParams(mnist.MLP)
		wl, _, err := mnist.Grad(p, x, y, want, nil)
		if err != nil {
			t.Fatal(err)
		}
		jobs[i] = job{p, x, y, want, wl}
	}
	errs := make(chan error, len(es))
	for i, e := range es {
		go func() {
			j := jobs[i]
			for range 3 {
				if err := e.SetParams(j.p); err != nil {
					errs <- err
					return
				}
				got, _ := mnist.NewParams(mnist.MLP)
				gl, _, err := e.Grad(j.x, j.y, got)
				if err != nil {
					errs <- err
					return
				}
				if math.Abs(gl-j.wl) > 1e-4*math.Max(1, j.wl) {
					errs <- fmt.Errorf("engine %d: loss %g, CPU %g", i, gl, j.wl)
					return
				}
				for k := range mnist.TensorNames {
					for n, v := range j.want.Tensors()[k] {
						if d := math.Abs(float64(got.Tensors()[k][n] - v)); d > 1e-4+1e-3*math.Abs(float64(v)) {
							errs <- fmt.Errorf("engine %d: grad %s[%d] = %g, CPU %g", i, mnist.TensorNames[k], n, got.Tensors()[k][n], v)
							return
						}
					}
				}
			}
			errs <- nil
		}()
	}
	for range es {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
