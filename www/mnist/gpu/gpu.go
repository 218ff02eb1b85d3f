//go:build js || cgo

package gpu

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"sync"

	"github.com/cogentcore/webgpu/wgpu"
	"github.com/webkv/webkv/www/mnist"
)

// Engine runs the model's forward and backward passes as WGSL compute
// kernels on a WebGPU device: natively through wgpu-native (cgo) and under
// GOOS=js through the browser's navigator.gpu, with the same code.
//
// Everything the cogentcore/webgpu js side needs is respected: every
// pipeline has an explicit bind-group and pipeline layout (js sends no
// "auto" layout), workgroups have 64 invocations (valid in compatibility
// mode), no ClearBuffer, and mapped ranges are copied before Unmap.
//
// Buffers are sized once for MaxBatch samples and bind groups built once, so
// a step only uploads the batch and 9 small uniforms, records 9 dispatches
// in one compute pass, and reads the gradients back with one map. An Engine
// is not safe for concurrent use; engines that share Options.Lock may be
// used from different goroutines.
type Engine struct {
	dev      *wgpu.Device
	q        *wgpu.Queue
	shape    mnist.Shape
	maxBatch int
	lock     sync.Locker

	mm, relu, xent, col kernel

	// parameters, gradients and activations (row-major)
	w1, b1, w2, b2     *wgpu.Buffer
	gw1, gb1, gw2, gb2 *wgpu.Buffer
	x, y               *wgpu.Buffer // inputs (maxBatch×In f32), labels (u32)
	a1, z2, dz2        *wgpu.Buffer
	da1, dz1, stats    *wgpu.Buffer
	dummy              *wgpu.Buffer // bound where a kernel ignores a binding
	staging            *wgpu.Buffer // MapRead: gradients then stats
	bufs               []*wgpu.Buffer

	steps []step // the 9 dispatches of a training step, in order
}

var _ mnist.Engine = (*Engine)(nil)

// Options tune New. The zero value (or nil) builds an engine for batches of
// up to DefaultMaxBatch samples that locks nothing.
type Options struct {
	// MaxBatch is the largest batch Grad takes (Evaluate splits larger
	// sets); buffers are sized for it once. 0 means DefaultMaxBatch.
	MaxBatch int
	// Lock, when set, is held for every SetParams, Grad and Evaluate.
	// Several engines on one device share one: the device runs one step
	// at a time anyway, and on a CPU adapter engines on separate devices
	// each start a thread pool and fight over the same cores (2 workers
	// with a device each ran 6x slower per round than one worker).
	Lock sync.Locker
}

// DefaultMaxBatch is Options.MaxBatch's default.
const DefaultMaxBatch = 256

// Kernel flags of matmul.wgsl.
const (
	mmBias = 1
	mmReLU = 2
)

func kernelSource(name string) (string, error) {
	b, err := fs.ReadFile(mnist.KernelSources(), name+".wgsl")
	if err != nil {
		return "", fmt.Errorf("gpu: kernel %s: %w", name, err)
	}
	return string(b), nil
}

// kernel is a compute pipeline with its explicit layout.
type kernel struct {
	bgl  *wgpu.BindGroupLayout
	pl   *wgpu.PipelineLayout
	pipe *wgpu.ComputePipeline
	mod  *wgpu.ShaderModule
}

// step is one dispatch: its pipeline, bind group and uniform buffer.
type step struct {
	k   *kernel
	bg  *wgpu.BindGroup
	uni *wgpu.Buffer
}

// binding kinds, in a kernel's binding order.
const (
	bRead    = wgpu.BufferBindingTypeReadOnlyStorage
	bWrite   = wgpu.BufferBindingTypeStorage
	bUniform = wgpu.BufferBindingTypeUniform
)

func newKernel(dev *wgpu.Device, name string, kinds ...wgpu.BufferBindingType) (kernel, error) {
	var k kernel
	src, err := kernelSource(name)
	if err != nil {
		return k, err
	}
	k.mod, err = dev.CreateShaderModule(&wgpu.ShaderModuleDescriptor{
		Label:          name,
		WGSLDescriptor: &wgpu.ShaderModuleWGSLDescriptor{Code: src},
	})
	if err != nil {
		return k, fmt.Errorf("gpu: compile kernel %s: %w", name, err)
	}
	ents := make([]wgpu.BindGroupLayoutEntry, len(kinds))
	for i, t := range kinds {
		ents[i] = wgpu.BindGroupLayoutEntry{Binding: uint32(i), Visibility: wgpu.ShaderStageCompute,
			Buffer: wgpu.BufferBindingLayout{Type: t}}
	}
	if k.bgl, err = dev.CreateBindGroupLayout(&wgpu.BindGroupLayoutDescriptor{Label: name, Entries: ents}); err != nil {
		return k, fmt.Errorf("gpu: bind group layout of %s: %w", name, err)
	}
	if k.pl, err = dev.CreatePipelineLayout(&wgpu.PipelineLayoutDescriptor{Label: name, BindGroupLayouts: []*wgpu.BindGroupLayout{k.bgl}}); err != nil {
		return k, fmt.Errorf("gpu: pipeline layout of %s: %w", name, err)
	}
	k.pipe, err = dev.CreateComputePipeline(&wgpu.ComputePipelineDescriptor{
		Layout:  k.pl, // explicit: js has no "auto" layout (no Label either)
		Compute: wgpu.ProgrammableStageDescriptor{Module: k.mod, EntryPoint: "main"},
	})
	if err != nil || k.pipe == nil {
		if err == nil {
			err = errors.New("no pipeline returned")
		}
		return k, fmt.Errorf("gpu: pipeline %s: %w", name, err)
	}
	return k, nil
}

func (k *kernel) release() {
	if k.pipe != nil {
		k.pipe.Release()
	}
	if k.pl != nil {
		k.pl.Release()
	}
	if k.bgl != nil {
		k.bgl.Release()
	}
	if k.mod != nil {
		k.mod.Release()
	}
}

// uniformSize is the size of every kernel's parameter block (matmul's is
// the largest: 8 words).
const uniformSize = 32

// New compiles the kernels on dev and allocates buffers for a model of
// shape s (mnist.MLP for the demo). The caller keeps owning dev and
// releases it after the engine's Close; on native, package native opens
// it (native.Open).
func New(dev *wgpu.Device, s mnist.Shape, opts *Options) (*Engine, error) {
	if opts == nil {
		opts = &Options{}
	}
	if dev == nil {
		return nil, errors.New("gpu: new engine: nil device")
	}
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("gpu: new engine: %w", err)
	}
	maxBatch := opts.MaxBatch
	if maxBatch == 0 {
		maxBatch = DefaultMaxBatch
	}
	if maxBatch < 0 || maxBatch > 1<<16 {
		return nil, fmt.Errorf("gpu: new engine: max batch %d, want 1..65536", maxBatch)
	}
	g := &Engine{dev: dev, q: dev.GetQueue(), shape: s, maxBatch: maxBatch, lock: opts.Lock}
	if g.lock == nil {
		g.lock = noLock{}
	}
	if err := g.init(); err != nil {
		_ = g.Close() // frees what init made; the init error is the one to report
		return nil, err
	}
	return g, nil
}

type noLock struct{}

func (noLock) Lock()   {}
func (noLock) Unlock() {}

func (g *Engine) buffer(n int, usage wgpu.BufferUsage, label string) (*wgpu.Buffer, error) {
	size := uint64(max(n, 1)) * 4
	b, err := g.dev.CreateBuffer(&wgpu.BufferDescriptor{Label: label, Size: size, Usage: usage})
	if err != nil || b == nil {
		if err == nil {
			err = errors.New("no buffer returned")
		}
		return nil, fmt.Errorf("gpu: allocate %s (%d bytes): %w", label, size, err)
	}
	g.bufs = append(g.bufs, b)
	return b, nil
}

func (g *Engine) init() error {
	var err error
	if g.mm, err = newKernel(g.dev, "matmul", bRead, bRead, bRead, bWrite, bUniform); err != nil {
		return err
	}
	if g.relu, err = newKernel(g.dev, "relu", bRead, bRead, bWrite, bUniform); err != nil {
		return err
	}
	if g.xent, err = newKernel(g.dev, "xent", bRead, bRead, bWrite, bWrite, bUniform); err != nil {
		return err
	}
	if g.col, err = newKernel(g.dev, "colsum", bRead, bWrite, bUniform); err != nil {
		return err
	}
	s, B := g.shape, g.maxBatch
	st := wgpu.BufferUsageStorage | wgpu.BufferUsageCopyDst | wgpu.BufferUsageCopySrc
	for _, a := range []struct {
		p     **wgpu.Buffer
		n     int
		label string
	}{
		{&g.w1, s.In * s.Hidden, "w1"}, {&g.b1, s.Hidden, "b1"}, {&g.w2, s.Hidden * s.Out, "w2"}, {&g.b2, s.Out, "b2"},
		{&g.gw1, s.In * s.Hidden, "grad w1"}, {&g.gb1, s.Hidden, "grad b1"}, {&g.gw2, s.Hidden * s.Out, "grad w2"}, {&g.gb2, s.Out, "grad b2"},
		{&g.x, B * s.In, "x"}, {&g.y, B, "y"}, {&g.a1, B * s.Hidden, "a1"}, {&g.z2, B * s.Out, "z2"},
		{&g.dz2, B * s.Out, "dz2"}, {&g.da1, B * s.Hidden, "da1"}, {&g.dz1, B * s.Hidden, "dz1"},
		{&g.stats, 2 * B, "stats"}, {&g.dummy, 4, "dummy"},
	} {
		if *a.p, err = g.buffer(a.n, st, a.label); err != nil {
			return err
		}
	}
	if g.staging, err = g.buffer(s.NumParams()+2*B, wgpu.BufferUsageMapRead|wgpu.BufferUsageCopyDst, "staging"); err != nil {
		return err
	}
	// The step's dispatches; their uniforms are written per call (batch
	// size varies), their bind groups never change.
	plan := []struct {
		k    *kernel
		bufs []*wgpu.Buffer // storage bindings in order; the uniform is appended
	}{
		{&g.mm, []*wgpu.Buffer{g.x, g.w1, g.b1, g.a1}},       // 0: a1 = relu(x·W1 + b1)
		{&g.mm, []*wgpu.Buffer{g.a1, g.w2, g.b2, g.z2}},      // 1: z2 = a1·W2 + b2
		{&g.xent, []*wgpu.Buffer{g.z2, g.y, g.dz2, g.stats}}, // 2: dz2, loss, hits
		{&g.col, []*wgpu.Buffer{g.dz2, g.gb2}},               // 3: gb2 = Σ dz2
		{&g.mm, []*wgpu.Buffer{g.dz2, g.w2, g.dummy, g.da1}}, // 4: da1 = dz2·W2ᵀ
		{&g.relu, []*wgpu.Buffer{g.a1, g.da1, g.dz1}},        // 5: dz1 = da1 ⊙ [a1 > 0]
		{&g.col, []*wgpu.Buffer{g.dz1, g.gb1}},               // 6: gb1 = Σ dz1
		{&g.mm, []*wgpu.Buffer{g.a1, g.dz2, g.dummy, g.gw2}}, // 7: gW2 = a1ᵀ·dz2
		{&g.mm, []*wgpu.Buffer{g.x, g.dz1, g.dummy, g.gw1}},  // 8: gW1 = xᵀ·dz1
	}
	for i, p := range plan {
		uni, err := g.buffer(uniformSize/4, wgpu.BufferUsageUniform|wgpu.BufferUsageCopyDst, fmt.Sprintf("uniform %d", i))
		if err != nil {
			return err
		}
		bg, err := g.bindGroup(p.k, append(p.bufs, uni))
		if err != nil {
			return err
		}
		g.steps = append(g.steps, step{k: p.k, bg: bg, uni: uni})
	}
	return nil
}

func (g *Engine) bindGroup(k *kernel, bufs []*wgpu.Buffer) (*wgpu.BindGroup, error) {
	ents := make([]wgpu.BindGroupEntry, len(bufs))
	for i, b := range bufs {
		ents[i] = wgpu.BindGroupEntry{Binding: uint32(i), Buffer: b, Size: wgpu.WholeSize}
	}
	bg, err := g.dev.CreateBindGroup(&wgpu.BindGroupDescriptor{Layout: k.bgl, Entries: ents})
	if err != nil || bg == nil {
		if err == nil {
			err = errors.New("no bind group returned")
		}
		return nil, fmt.Errorf("gpu: bind group: %w", err)
	}
	return bg, nil
}

// Close frees the engine's buffers and pipelines (not the device). It
// always returns nil: wgpu's Release and Destroy report nothing.
func (g *Engine) Close() error {
	for _, s := range g.steps {
		s.bg.Release()
	}
	g.steps = nil
	for _, b := range g.bufs {
		b.Destroy()
		b.Release()
	}
	g.bufs = nil
	for _, k := range []*kernel{&g.mm, &g.relu, &g.xent, &g.col} {
		k.release()
	}
	return nil
}

// Shape is the model shape the engine was built for.
func (g *Engine) Shape() mnist.Shape { return g.shape }

// MaxBatch is the largest batch Grad and Evaluate take in one dispatch.
func (g *Engine) MaxBatch() int { return g.maxBatch }

func u32s(vals ...uint32) []byte {
	b := make([]byte, uniformSize)
	for i, v := range vals {
		binary.LittleEndian.PutUint32(b[4*i:], v)
	}
	return b
}

func f32bits(f float32) uint32 { return math.Float32bits(f) }

func (g *Engine) write(b *wgpu.Buffer, data []byte) error {
	if len(data) == 0 {
		return nil // js WriteBuffer panics on an empty slice
	}
	if err := g.q.WriteBuffer(b, 0, data); err != nil {
		return fmt.Errorf("gpu: upload: %w", err)
	}
	return nil
}

// SetParams uploads p's weights to the device.
func (g *Engine) SetParams(p *mnist.Params) error {
	if err := p.Validate(); err != nil {
		return fmt.Errorf("gpu: set params: %w", err)
	}
	if p.Shape != g.shape {
		return fmt.Errorf("gpu: set params: %w: shape %+v, engine built for %+v", mnist.ErrBadParams, p.Shape, g.shape)
	}
	g.lock.Lock()
	defer g.lock.Unlock()
	for i, b := range []*wgpu.Buffer{g.w1, g.b1, g.w2, g.b2} {
		if err := g.write(b, wgpu.ToBytes(p.Tensors()[i])); err != nil {
			return err
		}
	}
	return nil
}

// mmUniform is matmul.wgsl's parameter block.
func mmUniform(m, n, k, flags, saR, saC, sbR, sbC int) []byte {
	return u32s(uint32(m), uint32(n), uint32(k), uint32(flags), uint32(saR), uint32(saC), uint32(sbR), uint32(sbC))
}

// grid returns the workgroup counts covering n items in groups of 64, in
// 2D when one dimension would exceed WebGPU's 65535 limit.
func grid(n int) (uint32, uint32) {
	wg := (n + 63) / 64
	if wg <= 65535 {
		return uint32(max(wg, 1)), 1
	}
	return 65535, uint32((wg + 65534) / 65535)
}

// dispatch records step i with the given workgroup counts.
func (g *Engine) dispatch(pass *wgpu.ComputePassEncoder, i int, x, y uint32) {
	s := g.steps[i]
	pass.SetPipeline(s.k.pipe)
	pass.SetBindGroup(0, s.bg, nil)
	pass.DispatchWorkgroups(x, y, 1)
}

func ceil8(n int) uint32 { return uint32((n + 7) / 8) }

// run uploads a batch, records the first nSteps dispatches in one pass,
// copies the gradients (if withGrads) and stats to the staging buffer,
// submits once and reads back.
func (g *Engine) run(x []float32, y []uint8, nSteps int, grads *mnist.Params) (loss float64, correct int, err error) {
	s := g.shape
	b, err := s.CheckBatch(x, y)
	if err != nil {
		return 0, 0, fmt.Errorf("gpu: %w", err)
	}
	if b > g.maxBatch {
		return 0, 0, fmt.Errorf("gpu: %w: batch of %d exceeds the engine's max batch %d", mnist.ErrBadBatch, b, g.maxBatch)
	}
	if err := g.write(g.x, wgpu.ToBytes(x)); err != nil {
		return 0, 0, err
	}
	ys := make([]uint32, b)
	for i, l := range y {
		ys[i] = uint32(l)
	}
	if err := g.write(g.y, wgpu.ToBytes(ys)); err != nil {
		return 0, 0, err
	}
	unis := [][]byte{
		mmUniform(b, s.Hidden, s.In, mmBias|mmReLU, s.In, 1, s.Hidden, 1),
		mmUniform(b, s.Out, s.Hidden, mmBias, s.Hidden, 1, s.Out, 1),
		u32s(uint32(b), uint32(s.Out), f32bits(1/float32(b))),
		u32s(uint32(b), uint32(s.Out), f32bits(1)),
		mmUniform(b, s.Hidden, s.Out, 0, s.Out, 1, 1, s.Out),
		u32s(uint32(b*s.Hidden), 1),
		u32s(uint32(b), uint32(s.Hidden), f32bits(1)),
		mmUniform(s.Hidden, s.Out, b, 0, 1, s.Hidden, s.Out, 1),
		mmUniform(s.In, s.Hidden, b, 0, 1, s.In, s.Hidden, 1),
	}
	for i := range nSteps {
		if err := g.write(g.steps[i].uni, unis[i]); err != nil {
			return 0, 0, err
		}
	}
	enc, err := g.dev.CreateCommandEncoder(nil)
	if err != nil {
		return 0, 0, fmt.Errorf("gpu: command encoder: %w", err)
	}
	defer enc.Release()
	pass := enc.BeginComputePass(nil)
	rx, ry := grid(b)
	dims := [][2]uint32{
		{ceil8(s.Hidden), ceil8(b)}, {ceil8(s.Out), ceil8(b)}, {rx, ry}, {uint32(s.Out), 1},
		{ceil8(s.Hidden), ceil8(b)}, {0, 0}, {uint32(s.Hidden), 1},
		{ceil8(s.Out), ceil8(s.Hidden)}, {ceil8(s.Hidden), ceil8(s.In)},
	}
	dims[5][0], dims[5][1] = grid(b * s.Hidden)
	for i := range nSteps {
		g.dispatch(pass, i, dims[i][0], dims[i][1])
	}
	pass.End()
	pass.Release() // before Finish: wgpu-native#412
	var off uint64
	if grads != nil {
		for i, src := range []*wgpu.Buffer{g.gw1, g.gb1, g.gw2, g.gb2} {
			n := uint64(len(grads.Tensors()[i])) * 4
			if err := enc.CopyBufferToBuffer(src, 0, g.staging, off, n); err != nil {
				return 0, 0, fmt.Errorf("gpu: copy gradient: %w", err)
			}
			off += n
		}
	}
	statsOff := off
	if err := enc.CopyBufferToBuffer(g.stats, 0, g.staging, off, uint64(8*b)); err != nil {
		return 0, 0, fmt.Errorf("gpu: copy stats: %w", err)
	}
	off += uint64(8 * b)
	cb, err := enc.Finish(nil)
	if err != nil {
		return 0, 0, fmt.Errorf("gpu: finish commands: %w", err)
	}
	g.q.Submit(cb)
	cb.Release()
	data, err := g.readStaging(off)
	if err != nil {
		return 0, 0, err
	}
	if grads != nil {
		var o uint64
		for _, t := range grads.Tensors() {
			n := uint64(len(t)) * 4
			copy(t, wgpu.FromBytes[float32](data[o:o+n]))
			o += n
		}
	}
	st := wgpu.FromBytes[float32](data[statsOff:off])
	for r := range b {
		loss += float64(st[2*r])
		if st[2*r+1] > 0.5 {
			correct++
		}
	}
	return loss / float64(b), correct, nil
}

// readStaging maps the first n bytes of the staging buffer and returns a
// copy (natively GetMappedRange is a view that dies at Unmap).
func (g *Engine) readStaging(n uint64) ([]byte, error) {
	status := wgpu.BufferMapAsyncStatus(math.MaxUint32)
	if err := g.staging.MapAsync(wgpu.MapModeRead, 0, n, func(s wgpu.BufferMapAsyncStatus) { status = s }); err != nil {
		return nil, fmt.Errorf("gpu: map staging buffer: %w", err)
	}
	g.dev.Poll(true, nil) // native: runs the callback; js: MapAsync already waited
	if status != wgpu.BufferMapAsyncStatusSuccess {
		return nil, fmt.Errorf("gpu: map staging buffer: status %v", status)
	}
	out := append([]byte(nil), g.staging.GetMappedRange(0, uint(n))...)
	g.staging.Unmap()
	return out, nil
}

// Grad is the WebGPU version of mnist.Grad: it computes the gradient of
// the mean loss of the batch with respect to the parameters last given to
// SetParams into grads, and returns the mean loss and the number of correct
// predictions.
func (g *Engine) Grad(x []float32, y []uint8, grads *mnist.Params) (loss float64, correct int, err error) {
	if err := grads.Validate(); err != nil {
		return 0, 0, fmt.Errorf("gpu: grad: gradient: %w", err)
	}
	if grads.Shape != g.shape {
		return 0, 0, fmt.Errorf("gpu: grad: %w: gradient shape %+v, engine built for %+v", mnist.ErrBadParams, grads.Shape, g.shape)
	}
	g.lock.Lock()
	defer g.lock.Unlock()
	return g.run(x, y, len(g.steps), grads)
}

// Evaluate returns the mean loss and accuracy of the current parameters on
// (x, y), in batches of MaxBatch.
func (g *Engine) Evaluate(x []float32, y []uint8) (loss, acc float64, err error) {
	n, err := g.shape.CheckBatch(x, y)
	if err != nil {
		return 0, 0, fmt.Errorf("gpu: evaluate: %w", err)
	}
	g.lock.Lock()
	defer g.lock.Unlock()
	total := 0
	for lo := 0; lo < n; lo += g.maxBatch {
		hi := min(lo+g.maxBatch, n)
		l, c, err := g.run(x[lo*g.shape.In:hi*g.shape.In], y[lo:hi], 3, nil)
		if err != nil {
			return 0, 0, err
		}
		loss += l * float64(hi-lo)
		total += c
	}
	return loss / float64(n), float64(total) / float64(n), nil
}
