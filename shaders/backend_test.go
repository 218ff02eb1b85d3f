//go:build cgo && !js

package shaders_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"sync"
	"testing"

	"github.com/cogentcore/webgpu/wgpu"
	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/kvcore/compute/backendtest"
	"github.com/webkv/webkv/native"
	"github.com/webkv/webkv/shaders"
)

// The tests run for real on whatever adapter native.Open finds: lavapipe on
// machines without a GPU. No adapter is a failure, not a skip, unless
// WEBKV_ALLOW_NO_GPU=1 says this machine knowingly lacks Vulkan.

var (
	devOnce sync.Once
	dev     *native.Device
	devErr  error
)

func TestMain(m *testing.M) {
	// wgpu-native's Vulkan loader wants a runtime dir; keep it private.
	if dir, err := os.MkdirTemp("", "webkv-xdg-"); err == nil {
		os.Setenv("XDG_RUNTIME_DIR", dir)
		code := m.Run()
		os.RemoveAll(dir)
		os.Exit(code)
	}
	os.Exit(m.Run())
}

func device(t testing.TB) *native.Device {
	devOnce.Do(func() { dev, devErr = native.Open(nil) })
	if devErr != nil {
		if os.Getenv("WEBKV_ALLOW_NO_GPU") == "1" {
			t.Skipf("no WebGPU adapter (WEBKV_ALLOW_NO_GPU=1): %v", devErr)
		}
		t.Fatalf("no WebGPU adapter (set WEBKV_ALLOW_NO_GPU=1 to skip on machines without Vulkan): %v", devErr)
	}
	return dev
}

func newBackend(t testing.TB, opts *shaders.Options) *shaders.Backend {
	d := device(t)
	o := shaders.Options{Name: d.Name()}
	if opts != nil {
		o.MaxBindingBytes = opts.MaxBindingBytes
		o.MaxWorkgroups = opts.MaxWorkgroups
		o.ScalarOnly = opts.ScalarOnly
		o.CopyPassBytes = opts.CopyPassBytes
	}
	b, err := shaders.New(d.Device, &o)
	if err != nil {
		t.Fatal(err)
	}
	// WebGPU buffers are not garbage collected: free them with the test.
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

func seeded(t *testing.T) *rand.Rand {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	return rand.New(rand.NewPCG(seed, 1))
}

func randData(r *rand.Rand, n int) []float32 {
	d := make([]float32, n)
	for i := range d {
		d[i] = float32(r.NormFloat64())
	}
	return d
}

func upload(t *testing.T, b compute.Backend, d []float32) compute.Buffer {
	t.Helper()
	buf, err := b.Alloc(len(d))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Write(buf, 0, d); err != nil {
		t.Fatal(err)
	}
	return buf
}

func download(t *testing.T, b compute.Backend, buf compute.Buffer) []float32 {
	t.Helper()
	d := make([]float32, buf.Len())
	if err := b.Read(buf, 0, d); err != nil {
		t.Fatal(err)
	}
	return d
}

func sameBits(t *testing.T, what string, got, want []float32) {
	t.Helper()
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("%s: word %d: got %v (%#x), want %v (%#x)", what, i, got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
		}
	}
}

func TestName(t *testing.T) {
	b := newBackend(t, nil)
	t.Logf("backend %s", b.Name())
	if b.Name() == "webgpu: unnamed adapter" {
		t.Fatal("backend has no adapter name")
	}
}

// TestSplitKeys runs reduce, quantize, a plain and a LAMB step on a key
// larger than a deliberately small binding limit, so every kernel runs in
// several pieces, with few workgroups so that every invocation loops, and
// compares with the CPU reference.
func TestSplitKeys(t *testing.T) {
	b := newBackend(t, &shaders.Options{MaxBindingBytes: 64 << 10, MaxWorkgroups: 3})
	r := seeded(t)
	cpu := compute.NewCPU(nil)
	if b.ChunkWords() != 16384 {
		t.Fatalf("chunk of %d words, want 16384", b.ChunkWords())
	}
	n := 3*b.ChunkWords() + 1001 // not a multiple of 4, 16 or 32
	ins := make([][]float32, 9)
	var gb, cb []compute.Buffer
	for i := range ins {
		ins[i] = randData(r, n)
		gb = append(gb, upload(t, b, ins[i]))
		cb = append(cb, upload(t, cpu, ins[i]))
	}
	gout, cout := upload(t, b, make([]float32, n)), upload(t, cpu, make([]float32, n))
	if err := b.Reduce(gout, gb, 0.25); err != nil {
		t.Fatal(err)
	}
	if err := cpu.Reduce(cout, cb, 0.25); err != nil {
		t.Fatal(err)
	}
	// Same order of float32 additions: bit-exact on IEEE adders.
	sameBits(t, "split reduce", download(t, b, gout), download(t, cpu, cout))

	for _, c := range []compute.Compression{{Kind: compute.Compress2Bit, Threshold: 0.5}, {Kind: compute.Compress1Bit, Threshold: 0.1}} {
		p := c.Kind.PackedLen(n)
		gr, cr := upload(t, b, make([]float32, n)), upload(t, cpu, make([]float32, n))
		gq, cq := upload(t, b, make([]float32, p)), upload(t, cpu, make([]float32, p))
		gd, cd := upload(t, b, make([]float32, n)), upload(t, cpu, make([]float32, n))
		for round := 0; round < 2; round++ {
			if err := b.Quantize(c, gb[round], gr, gq); err != nil {
				t.Fatal(err)
			}
			if err := cpu.Quantize(c, cb[round], cr, cq); err != nil {
				t.Fatal(err)
			}
			if err := b.Dequantize(c, gq, gd); err != nil {
				t.Fatal(err)
			}
			if err := cpu.Dequantize(c, cq, cd); err != nil {
				t.Fatal(err)
			}
			sameBits(t, c.String()+" packed", download(t, b, gq), download(t, cpu, cq))
			sameBits(t, c.String()+" residual", download(t, b, gr), download(t, cpu, cr))
			sameBits(t, c.String()+" dequantized", download(t, b, gd), download(t, cpu, cd))
		}
	}

	for _, kind := range []compute.OptKind{compute.OptAdam, compute.OptLAMB} {
		p := &compute.StepParams{LR: 0.01, WD: 0.001, RescaleGrad: 1, ClipGradient: -1, Beta1: 0.9, Beta2: 0.999,
			Epsilon: 1e-6, Coef1: 0.01, T: 1, LowerBound: -1, UpperBound: -1}
		if kind == compute.OptLAMB {
			p.Flags, p.Coef1, p.Coef2 = compute.FlagBiasCorrection, 0.1, 0.001
		}
		gw, cw := upload(t, b, ins[0]), upload(t, cpu, ins[0])
		gs := []compute.Buffer{upload(t, b, make([]float32, n)), upload(t, b, make([]float32, n))}
		cs := []compute.Buffer{upload(t, cpu, make([]float32, n)), upload(t, cpu, make([]float32, n))}
		for step := 0; step < 2; step++ {
			if err := b.Step(kind, p, gw, gb[1+step], gs); err != nil {
				t.Fatal(err)
			}
			if err := cpu.Step(kind, p, cw, cb[1+step], cs); err != nil {
				t.Fatal(err)
			}
		}
		got, want := download(t, b, gw), download(t, cpu, cw)
		for i := range want {
			if d := math.Abs(float64(got[i] - want[i])); d > 1e-6+1e-5*math.Abs(float64(want[i])) {
				t.Fatalf("split %v step: weight %d: got %v, want %v", kind, i, got[i], want[i])
			}
		}
	}
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
}

// TestConformance runs kvcore's backend conformance suite on the device
// with the default settings; its large case (16M+5 values, 4.2M vec4s)
// needs a 2D grid of 65537 workgroups.
func TestConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) compute.Backend { return newBackend(t, nil) })
}

// TestConformanceSplit runs the suite with a 256 KiB binding limit, so
// that 65537-value keys are processed in pieces.
func TestConformanceSplit(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) compute.Backend {
		return newBackend(t, &shaders.Options{MaxBindingBytes: 256 << 10})
	}, backendtest.Short())
}

// TestConformanceCappedScalar runs the suite on the scalar kernel
// variants (those of wrapped buffers of odd size) with at most 5
// workgroups per dispatch, so every grid-stride loop runs many times.
func TestConformanceCappedScalar(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) compute.Backend {
		return newBackend(t, &shaders.Options{MaxWorkgroups: 5, ScalarOnly: true})
	}, backendtest.Short())
}

// TestWrapBuffer hands the backend an application's own buffers (of an odd
// size, so the scalar kernels run) and gets them back without a copy.
func TestWrapBuffer(t *testing.T) {
	b := newBackend(t, nil)
	r := seeded(t)
	dev := b.Device()
	const n = 1023
	mk := func(d []float32) *wgpu.Buffer {
		buf, err := dev.CreateBuffer(&wgpu.BufferDescriptor{Size: n * 4,
			Usage: wgpu.BufferUsageStorage | wgpu.BufferUsageCopySrc | wgpu.BufferUsageCopyDst})
		if err != nil {
			t.Fatal(err)
		}
		if err := dev.GetQueue().WriteBuffer(buf, 0, wgpu.ToBytes(d)); err != nil {
			t.Fatal(err)
		}
		return buf
	}
	a, c := randData(r, n), randData(r, n)
	appA, appC, appOut := mk(a), mk(c), mk(make([]float32, n))
	var ws []*shaders.Buffer
	for _, x := range []*wgpu.Buffer{appA, appC, appOut} {
		w, err := b.WrapBuffer(x, n)
		if err != nil {
			t.Fatal(err)
		}
		if w.WGPU() != x {
			t.Fatal("WGPU() does not return the wrapped buffer")
		}
		ws = append(ws, w)
	}
	if err := b.Reduce(ws[2], []compute.Buffer{ws[0], ws[1]}, 0.5); err != nil {
		t.Fatal(err)
	}
	cpu := compute.NewCPU(nil)
	ca, cc, cout := upload(t, cpu, a), upload(t, cpu, c), upload(t, cpu, make([]float32, n))
	if err := cpu.Reduce(cout, []compute.Buffer{ca, cc}, 0.5); err != nil {
		t.Fatal(err)
	}
	want := download(t, cpu, cout)
	sameBits(t, "reduce into a wrapped buffer", download(t, b, ws[2]), want)

	// Free forgets a wrapped buffer but leaves it to the application.
	b.Free(ws[2])
	if err := b.Read(ws[2], 0, make([]float32, 1)); err == nil {
		t.Fatal("Read of a freed buffer succeeded")
	}
	again, err := b.WrapBuffer(appOut, n)
	if err != nil {
		t.Fatal(err)
	}
	sameBits(t, "wrapped buffer after Free", download(t, b, again), want)

	bad, err := dev.CreateBuffer(&wgpu.BufferDescriptor{Size: 64, Usage: wgpu.BufferUsageStorage | wgpu.BufferUsageCopyDst})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Release()
	if _, err := b.WrapBuffer(bad, 16); err == nil {
		t.Fatal("WrapBuffer accepted a buffer without CopySrc usage")
	}
	if _, err := b.WrapBuffer(appA, n+1); err == nil {
		t.Fatal("WrapBuffer accepted a buffer smaller than the words asked for")
	}
	if _, err := b.WrapBuffer(nil, 1); err == nil {
		t.Fatal("WrapBuffer accepted nil")
	}
	if _, err := b.Alloc(1 << 40); err == nil {
		t.Fatal("Alloc of 4 TiB succeeded")
	}
}

// TestLongBatch records one long batch with no Sync: uploads that fill
// several staging pages, each consumed by a reduction before the next
// upload overwrites the same array, then more dispatches than the uniform
// arena holds. Results must equal the same sequence on the CPU, bit for
// bit: any upload or parameter that jumped its place would show.
func TestLongBatch(t *testing.T) {
	b := newBackend(t, nil)
	r := seeded(t)
	cpu := compute.NewCPU(nil)
	const n = 100003 // 400 KB per upload: 30 uploads span 3 pages of 4 MiB
	gx, gacc := upload(t, b, make([]float32, n)), upload(t, b, make([]float32, n))
	cx, cacc := upload(t, cpu, make([]float32, n)), upload(t, cpu, make([]float32, n))
	for i := 0; i < 30; i++ {
		d := randData(r, n)
		for _, be := range []struct {
			b      compute.Backend
			x, acc compute.Buffer
		}{{b, gx, gacc}, {cpu, cx, cacc}} {
			if err := be.b.Write(be.x, 0, d); err != nil {
				t.Fatal(err)
			}
			if err := be.b.Reduce(be.acc, []compute.Buffer{be.acc, be.x}, 1); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	// 1500 dispatches with distinct parameters (the arena holds 1024).
	gs, cs := upload(t, b, make([]float32, 7)), upload(t, cpu, make([]float32, 7))
	for i := 0; i < 1500; i++ {
		v := float32(i)
		for _, be := range []struct {
			b compute.Backend
			s compute.Buffer
		}{{b, gs}, {cpu, cs}} {
			if i%2 == 0 {
				if err := be.b.Fill(be.s, v); err != nil {
					t.Fatal(err)
				}
			} else if err := be.b.Reduce(be.s, []compute.Buffer{be.s}, v); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := b.Flush(); err != nil { // submitted early: the rest must still follow it
		t.Fatal(err)
	}
	sameBits(t, "accumulated uploads", download(t, b, gacc), download(t, cpu, cacc))
	sameBits(t, "1500 dispatches", download(t, b, gs), download(t, cpu, cs))
}

// TestCopyPass: a copy made as a compute pass (Options.CopyPassBytes) is
// bit-exact (NaN payloads, infinities, signed zero, subnormals) for sizes
// around the vec4 width, in the scalar and vec4 variants and over several
// bindings, for Copy and for a Reduce of one input with scale 1, and keeps
// its place among the batch's other work (a fill before it, a sum after
// it), as the same sequence on the CPU.
func TestCopyPass(t *testing.T) {
	r := seeded(t)
	special := []float32{float32(math.NaN()), math.Float32frombits(0x7fc00123), math.Float32frombits(0xffa00001),
		float32(math.Inf(1)), float32(math.Inf(-1)), math.Float32frombits(0x80000000), math.Float32frombits(1),
		math.Float32frombits(0x807fffff)}
	for _, o := range []shaders.Options{
		{CopyPassBytes: 4},
		{CopyPassBytes: 4, ScalarOnly: true},
		{CopyPassBytes: 4, MaxBindingBytes: 8 << 10}, // 2,048 words a binding
		{CopyPassBytes: 4 << 10},                     // only the larger copies
	} {
		b := newBackend(t, &o)
		cpu := compute.NewCPU(nil)
		for _, n := range []int{1, 3, 4, 5, 1023, 1024, 5000} {
			d, acc := randData(r, n), randData(r, n)
			copy(d, special)
			// A fill before the copy, a sum that reads its output after it.
			run := func(be compute.Backend) (dst, one, sum []float32) {
				src, dstB, oneB, accB := upload(t, be, d), upload(t, be, make([]float32, n)), upload(t, be, make([]float32, n)), upload(t, be, acc)
				for _, err := range []error{
					be.Fill(dstB, 7),
					be.Copy(dstB, src),
					be.Reduce(oneB, []compute.Buffer{src}, 1),
					be.Reduce(accB, []compute.Buffer{accB, dstB}, 1),
				} {
					if err != nil {
						t.Fatal(err)
					}
				}
				return download(t, be, dstB), download(t, be, oneB), download(t, be, accB)
			}
			gDst, gOne, gSum := run(b)
			_, _, cSum := run(cpu)
			what := fmt.Sprintf("%+v, %d words", o, n)
			sameBits(t, what+": copy", gDst, d)
			sameBits(t, what+": one-input reduce", gOne, d)
			for i := range cSum { // a NaN's payload after an add is the device's choice
				if g, c := gSum[i], cSum[i]; math.Float32bits(g) != math.Float32bits(c) && !(g != g && c != c) {
					t.Fatalf("%s: sum after the copy, word %d: got %v, want %v", what, i, g, c)
				}
			}
		}
	}
}

// TestClose: Close waits for queued work, frees everything, and later
// calls fail cleanly instead of touching destroyed buffers.
func TestClose(t *testing.T) {
	b := newBackend(t, nil)
	x := upload(t, b, []float32{1, 2, 3})
	if err := b.Fill(x, 5); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := b.Alloc(3); err == nil {
		t.Fatal("Alloc after Close succeeded")
	}
	if err := b.Read(x, 0, make([]float32, 3)); err == nil {
		t.Fatal("Read after Close succeeded")
	}
	if err := b.Reduce(x, []compute.Buffer{x}, 2); err == nil {
		t.Fatal("Reduce after Close succeeded")
	}
	if err := b.Sync(); err == nil {
		t.Fatal("Sync after Close succeeded")
	}
	b.Free(x) // no panic
}
