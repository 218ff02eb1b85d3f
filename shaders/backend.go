//go:build js || cgo

package shaders

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/cogentcore/webgpu/wgpu"
	"github.com/webkv/webkv/kvcore/compute"
)

const (
	wgSize     = 64    // invocations per workgroup: valid in compatibility mode (≤128)
	maxGroupsX = 65535 // WebGPU's guaranteed maxComputeWorkgroupsPerDimension

	paramsSize    = 128 // bytes of the Params uniform block
	uniformStride = 256 // minUniformBufferOffsetAlignment guaranteed by WebGPU
	uniformSlots  = 1024

	// chunkAlign (words) keeps binding offsets of split keys aligned for
	// every view: 256-byte storage offsets, whole vec4s, and whole packed
	// words of 1bit codes (2048 values -> 64 words = 256 bytes).
	chunkAlign = 2048

	maxPooledBytes = 512 << 20 // idle device buffers kept for reuse, at most

	// maxBindGroups bounds the bind-group cache: an app that reduces fresh
	// arrays every step would otherwise grow it without end. When full it
	// is emptied (recorded commands keep their own references).
	maxBindGroups = 8192
)

// params is the uniform block of every kernel (common.wgsl's Params).
type params struct {
	N, Aux, Aux2, Aux3       uint32
	Scale, Threshold, F2, F3 float32
	SP                       compute.StepParams
}

// The WGSL struct is 32 words; a mismatch here would silently scramble
// every hyper-parameter, so it is a compile error.
var _ [paramsSize - unsafe.Sizeof(params{})]byte
var _ [unsafe.Sizeof(params{}) - paramsSize]byte

// Options tune New.
type Options struct {
	// Name describes the adapter, for Backend.Name (e.g. the value of
	// native.Device.Name()).
	Name string
	// MaxBindingBytes caps the size of one storage binding; larger keys are
	// processed in pieces. 0 means the device's
	// maxStorageBufferBindingSize. Tests set it low to exercise splitting.
	MaxBindingBytes uint64
	// MaxWorkgroups caps the workgroups of one dispatch; each invocation
	// then loops over the array in steps of the grid. 0 means no cap: one
	// invocation per element (per vec4), with grids past 65535 workgroups
	// folded into two dimensions. On lavapipe the uncapped grid was 5-50x
	// faster than caps of 256-4096 workgroups (8.6 GB/s for a 4x16M
	// reduce); on GPUs a cap near a few waves per SM may help.
	MaxWorkgroups int
	// ScalarOnly runs the f32 kernel variants even where every buffer is
	// padded for vec4 (they otherwise run only on wrapped buffers of odd
	// size). Tests use it to check the scalar variants.
	ScalarOnly bool
	// CopyPassBytes makes a copy between two buffers of at least this many
	// bytes (Copy, and a Reduce of one input with scale 1) a compute pass
	// that reads and writes each word, instead of CopyBufferToBuffer; 0
	// never does. NVIDIA's Vulkan driver moves 64 MiB about twice as fast
	// that way (RATIONALE: "Why may a copy between GPU buffers be a compute
	// pass?"); lavapipe's CopyBufferToBuffer is a memcpy, four times its
	// pass. native.Device.ShaderOptions sets it for the adapter.
	CopyPassBytes uint64
}

// Buffer is a compute.Buffer in GPU memory.
type Buffer struct {
	be       *Backend
	buf      *wgpu.Buffer
	n        int // words
	capWords int // words the GPU buffer holds (≥ n)
	id       uint64
	wrapped  bool
	freed    bool
}

// Len returns the number of 32-bit words.
func (b *Buffer) Len() int { return b.n }

// WGPU returns the underlying GPU buffer (no copy). Work queued on it is
// only guaranteed complete after Backend.Sync or a Read.
func (b *Buffer) WGPU() *wgpu.Buffer { return b.buf }

// padded reports whether the buffer holds whole vec4s past n, so the vec4
// kernel variants may touch words [n, roundUp4(n)).
func (b *Buffer) padded() bool { return b.capWords >= roundUp4(b.n) }

func roundUp4(n int) int { return (n + 3) &^ 3 }

type layout struct {
	id  int32
	bgl *wgpu.BindGroupLayout
	pl  *wgpu.PipelineLayout
}

type pipeline struct {
	lay *layout
	cp  *wgpu.ComputePipeline
}

// binding is one storage binding: words [off, off+size) of buf.
type binding struct {
	buf       *Buffer
	off, size int
}

type bindKey struct {
	id        uint64
	off, size uint32
}

// bgKey identifies a cached bind group: the layout and every binding's
// buffer and range.
type bgKey struct {
	layout int32
	n      int32
	b      [9]bindKey
}

type pooled struct {
	buf *wgpu.Buffer
	id  uint64
}

// Backend is the WebGPU compute.Backend. It is safe for concurrent use: one
// mutex serializes recording, submission and readback.
type Backend struct {
	mu   sync.Mutex
	dev  *wgpu.Device
	q    *wgpu.Queue
	name string

	maxBuffer  uint64
	chunkWords int // words per binding piece of a split key
	maxInputs  int // reduce inputs per pass
	maxGroups  int // workgroups per dispatch
	scalar     bool
	copyPass   uint64 // Options.CopyPassBytes

	layouts   map[string]*layout
	pipelines map[pipeKey]*pipeline
	bgs       map[bgKey]*wgpu.BindGroup
	bgByBuf   map[uint64][]bgKey
	nextID    uint64

	pool        map[int][]pooled // idle buffers by capWords
	pooledBytes uint64
	live        map[uint64]*wgpu.Buffer // every buffer this backend created (Close destroys them)
	closed      atomic.Bool
	doomed      []pooled // to destroy after the next submit

	// the batch being recorded
	enc     *wgpu.CommandEncoder
	pass    *wgpu.ComputePassEncoder
	uni     []byte
	nUni    int
	uniBuf  *wgpu.Buffer
	dirty   bool // work submitted since the last wait
	err     error
	scratch []binding

	readPool map[uint64][]*sized
	st       staging // platform upload state (staging_native.go / staging_js.go)
}

var _ compute.Backend = (*Backend)(nil)

// New builds a Backend on dev. Pipelines are compiled on first use of each
// kernel variant and kept.
func New(dev *wgpu.Device, opts *Options) (*Backend, error) {
	if dev == nil {
		return nil, errors.New("shaders: New: nil device")
	}
	if opts == nil {
		opts = &Options{}
	}
	lim := dev.GetLimits().Limits
	maxBinding := lim.MaxStorageBufferBindingSize
	if maxBinding == 0 || maxBinding > 1<<31 {
		maxBinding = 1 << 31 // u32 indexing in the kernels
	}
	if opts.MaxBindingBytes > 0 && opts.MaxBindingBytes < maxBinding {
		maxBinding = opts.MaxBindingBytes
	}
	chunk := int(maxBinding/4) &^ (chunkAlign - 1)
	if chunk < chunkAlign {
		return nil, fmt.Errorf("shaders: storage binding limit of %d bytes is below the minimum of %d", maxBinding, chunkAlign*4)
	}
	maxBuf := lim.MaxBufferSize
	if maxBuf == 0 {
		maxBuf = 256 << 20
	}
	inputs := 7
	if s := int(lim.MaxStorageBuffersPerShaderStage); s > 0 && s-1 < inputs {
		inputs = s - 1
	}
	if inputs < 4 {
		return nil, fmt.Errorf("shaders: device allows only %d storage buffers per stage; the optimizer kernels need 5",
			lim.MaxStorageBuffersPerShaderStage)
	}
	name := opts.Name
	if name == "" {
		name = "unnamed adapter"
	}
	b := &Backend{
		dev: dev, q: dev.GetQueue(), name: "webgpu: " + name,
		maxBuffer: maxBuf, chunkWords: chunk, maxInputs: inputs, maxGroups: 1 << 30,
		layouts: map[string]*layout{}, pipelines: map[pipeKey]*pipeline{},
		bgs: map[bgKey]*wgpu.BindGroup{}, bgByBuf: map[uint64][]bgKey{},
		pool: map[int][]pooled{}, readPool: map[uint64][]*sized{}, live: map[uint64]*wgpu.Buffer{},
		uni: make([]byte, uniformSlots*uniformStride),
	}
	if opts.MaxWorkgroups > 0 {
		b.maxGroups = opts.MaxWorkgroups
	}
	b.scalar = opts.ScalarOnly
	b.copyPass = opts.CopyPassBytes
	ub, err := dev.CreateBuffer(&wgpu.BufferDescriptor{
		Label: "webkv uniforms", Size: uniformSlots * uniformStride,
		Usage: wgpu.BufferUsageUniform | wgpu.BufferUsageCopyDst,
	})
	if err != nil {
		return nil, fmt.Errorf("shaders: creating the uniform buffer: %w", err)
	}
	b.uniBuf = ub
	return b, nil
}

// Name says what runs the work, e.g. "webgpu: llvmpipe (LLVM 15.0.6, 256 bits) (vulkan, CPU)".
func (b *Backend) Name() string { return b.name }

// ChunkWords is the number of words bound per dispatch; keys larger than
// this are processed in pieces.
func (b *Backend) ChunkWords() int { return b.chunkWords }

// Device returns the device the backend records on.
func (b *Backend) Device() *wgpu.Device { return b.dev }

func (b *Backend) setErr(err error) {
	if err != nil && b.err == nil {
		b.err = err
	}
}

func (b *Backend) takeErr() error {
	err := b.err
	b.err = nil
	return err
}

// buffer checks that x is a live buffer of this backend.
func (b *Backend) buffer(x compute.Buffer, what string) (*Buffer, error) {
	if b.closed.Load() {
		return nil, errClosed
	}
	bb, ok := x.(*Buffer)
	if !ok || bb == nil {
		return nil, fmt.Errorf("shaders: %s: buffer %T does not belong to a webgpu backend", what, x)
	}
	if bb.be != b {
		return nil, fmt.Errorf("shaders: %s: buffer belongs to another webgpu backend", what)
	}
	if bb.freed {
		return nil, fmt.Errorf("shaders: %s: buffer was freed", what)
	}
	return bb, nil
}

// --- allocation ---

const storageUsage = wgpu.BufferUsageStorage | wgpu.BufferUsageCopySrc | wgpu.BufferUsageCopyDst

// Alloc returns a zeroed buffer of n words, padded to whole vec4s.
func (b *Backend) Alloc(n int) (compute.Buffer, error) {
	if n < 1 {
		return nil, fmt.Errorf("shaders: alloc of %d words", n)
	}
	capWords := roundUp4(n)
	if bytes := uint64(capWords) * 4; bytes > b.maxBuffer {
		return nil, fmt.Errorf("shaders: alloc of %d words (%d MiB) exceeds the device's maxBufferSize of %d MiB",
			n, bytes>>20, b.maxBuffer>>20)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed.Load() {
		return nil, errClosed
	}
	return b.alloc(n)
}

func (b *Backend) alloc(n int) (*Buffer, error) {
	capWords := roundUp4(n)
	if l := b.pool[capWords]; len(l) > 0 {
		p := l[len(l)-1]
		b.pool[capWords] = l[:len(l)-1]
		b.pooledBytes -= uint64(capWords) * 4
		nb := &Buffer{be: b, buf: p.buf, n: n, capWords: capWords, id: p.id}
		// Zero it in queue order: earlier recorded work that used the
		// buffer still sees the old contents.
		if err := b.fill(nb, 0); err != nil {
			return nil, err
		}
		return nb, nil
	}
	wb, err := b.dev.CreateBuffer(&wgpu.BufferDescriptor{Size: uint64(capWords) * 4, Usage: storageUsage})
	if err != nil {
		return nil, fmt.Errorf("shaders: creating a buffer of %d words: %w", n, err)
	}
	b.nextID++
	b.live[b.nextID] = wb
	return &Buffer{be: b, buf: wb, n: n, capWords: capWords, id: b.nextID}, nil // WebGPU zeroes new buffers
}

// Free returns x to the backend's pool (or destroys it once the pool is
// full). A wrapped application buffer is only forgotten, never destroyed.
func (b *Backend) Free(x compute.Buffer) {
	bb, ok := x.(*Buffer)
	if !ok || bb == nil || bb.be != b {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.free(bb)
}

func (b *Backend) free(bb *Buffer) {
	if bb.freed {
		return
	}
	bb.freed = true
	if bb.wrapped {
		b.dropBindGroups(bb.id)
		return
	}
	bytes := uint64(bb.capWords) * 4
	if b.pooledBytes+bytes <= maxPooledBytes {
		b.pool[bb.capWords] = append(b.pool[bb.capWords], pooled{bb.buf, bb.id})
		b.pooledBytes += bytes
		return
	}
	// Recorded commands may still use it: destroy after they are submitted.
	b.doomed = append(b.doomed, pooled{bb.buf, bb.id})
}

// WrapBuffer makes an application's buffer usable as a compute.Buffer of n
// words without a copy. buf needs Storage, CopySrc and CopyDst usage and at
// least 4n bytes; the app keeps ownership (Free forgets it, never destroys
// it) and must not write it while queued webkv work uses it. Buffers whose
// size is not a whole number of vec4s run the scalar kernel variants.
func (b *Backend) WrapBuffer(buf *wgpu.Buffer, n int) (*Buffer, error) {
	if buf == nil {
		return nil, errors.New("shaders: WrapBuffer: nil buffer")
	}
	if n < 1 {
		return nil, fmt.Errorf("shaders: WrapBuffer: %d words", n)
	}
	capWords, err := checkWrapped(buf, n)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed.Load() {
		return nil, errClosed
	}
	b.nextID++
	return &Buffer{be: b, buf: buf, n: n, capWords: capWords, id: b.nextID, wrapped: true}, nil
}

// --- pipelines and bind groups ---

func (b *Backend) layoutFor(bind []access) (*layout, error) {
	sig := string(accessBytes(bind))
	if l := b.layouts[sig]; l != nil {
		return l, nil
	}
	entries := []wgpu.BindGroupLayoutEntry{{
		Binding: 0, Visibility: wgpu.ShaderStageCompute,
		Buffer: wgpu.BufferBindingLayout{Type: wgpu.BufferBindingTypeUniform, HasDynamicOffset: true, MinBindingSize: paramsSize},
	}}
	for i, a := range bind {
		t := wgpu.BufferBindingTypeReadOnlyStorage
		if a == accWrite {
			t = wgpu.BufferBindingTypeStorage
		}
		entries = append(entries, wgpu.BindGroupLayoutEntry{
			Binding: uint32(i + 1), Visibility: wgpu.ShaderStageCompute,
			Buffer: wgpu.BufferBindingLayout{Type: t},
		})
	}
	bgl, err := b.dev.CreateBindGroupLayout(&wgpu.BindGroupLayoutDescriptor{Label: "webkv " + sig, Entries: entries})
	if err != nil {
		return nil, fmt.Errorf("shaders: bind group layout %q: %w", sig, err)
	}
	pl, err := b.dev.CreatePipelineLayout(&wgpu.PipelineLayoutDescriptor{Label: "webkv " + sig, BindGroupLayouts: []*wgpu.BindGroupLayout{bgl}})
	if err != nil {
		return nil, fmt.Errorf("shaders: pipeline layout %q: %w", sig, err)
	}
	l := &layout{id: int32(len(b.layouts) + 1), bgl: bgl, pl: pl}
	b.layouts[sig] = l
	return l, nil
}

// pipeKey names a compiled pipeline: the kernel and whether it is the
// grid-stride variant.
type pipeKey struct {
	kernel string
	loop   bool
}

func (b *Backend) pipeline(k *kernel, loop bool) (*pipeline, error) {
	key := k.key()
	if p := b.pipelines[pipeKey{key, loop}]; p != nil {
		return p, nil
	}
	src, err := k.source(loop)
	if err != nil {
		return nil, err
	}
	lay, err := b.layoutFor(k.bind)
	if err != nil {
		return nil, err
	}
	var cp *wgpu.ComputePipeline
	err = b.st.checked(b, "building "+k.file, func() error {
		sm, err := b.dev.CreateShaderModule(&wgpu.ShaderModuleDescriptor{
			Label: k.file, WGSLDescriptor: &wgpu.ShaderModuleWGSLDescriptor{Code: src},
		})
		if err != nil {
			return fmt.Errorf("shaders: compiling %s (%s): %w", k.file, key, err)
		}
		defer sm.Release()
		cp, err = b.dev.CreateComputePipeline(&wgpu.ComputePipelineDescriptor{
			Layout:  lay.pl, // explicit: a nil layout panics on GOOS=js
			Compute: wgpu.ProgrammableStageDescriptor{Module: sm, EntryPoint: "main"},
		})
		if err != nil {
			return fmt.Errorf("shaders: pipeline %s (%s): %w", k.file, key, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	p := &pipeline{lay: lay, cp: cp}
	b.pipelines[pipeKey{key, loop}] = p
	return p, nil
}

func (b *Backend) bindGroup(p *pipeline, binds []binding) (*wgpu.BindGroup, error) {
	if len(binds) > 9 {
		return nil, fmt.Errorf("shaders: %d bindings", len(binds))
	}
	key := bgKey{layout: p.lay.id, n: int32(len(binds))}
	for i, x := range binds {
		key.b[i] = bindKey{x.buf.id, uint32(x.off), uint32(x.size)}
	}
	if bg := b.bgs[key]; bg != nil {
		return bg, nil
	}
	if len(b.bgs) >= maxBindGroups {
		for _, bg := range b.bgs {
			bg.Release()
		}
		clear(b.bgs)
		clear(b.bgByBuf)
	}
	entries := make([]wgpu.BindGroupEntry, 0, len(binds)+1)
	entries = append(entries, wgpu.BindGroupEntry{Binding: 0, Buffer: b.uniBuf, Offset: 0, Size: paramsSize})
	for i, x := range binds {
		entries = append(entries, wgpu.BindGroupEntry{
			Binding: uint32(i + 1), Buffer: x.buf.buf, Offset: uint64(x.off) * 4, Size: uint64(x.size) * 4,
		})
	}
	bg, err := b.dev.CreateBindGroup(&wgpu.BindGroupDescriptor{Layout: p.lay.bgl, Entries: entries})
	if err != nil {
		return nil, fmt.Errorf("shaders: bind group: %w", err)
	}
	b.bgs[key] = bg
	seen := map[uint64]bool{}
	for _, x := range binds {
		if !seen[x.buf.id] {
			seen[x.buf.id] = true
			b.bgByBuf[x.buf.id] = append(b.bgByBuf[x.buf.id], key)
		}
	}
	return bg, nil
}

func (b *Backend) dropBindGroups(id uint64) {
	for _, k := range b.bgByBuf[id] {
		if bg := b.bgs[k]; bg != nil {
			bg.Release()
			delete(b.bgs, k)
		}
	}
	delete(b.bgByBuf, id)
}

// --- recording and submission ---

func (b *Backend) encoder() (*wgpu.CommandEncoder, error) {
	if b.enc == nil {
		b.st.batchStart(b)
		enc, err := b.dev.CreateCommandEncoder(&wgpu.CommandEncoderDescriptor{Label: "webkv step"})
		if err != nil {
			return nil, fmt.Errorf("shaders: command encoder: %w", err)
		}
		b.enc = enc
	}
	return b.enc, nil
}

func (b *Backend) computePass() (*wgpu.ComputePassEncoder, error) {
	if b.pass == nil {
		enc, err := b.encoder()
		if err != nil {
			return nil, err
		}
		b.pass = enc.BeginComputePass(&wgpu.ComputePassDescriptor{})
	}
	return b.pass, nil
}

func (b *Backend) endPass() {
	if b.pass != nil {
		b.setErr(endPass(b.pass))
		b.pass.Release() // before Finish: wgpu-native#412
		b.pass = nil
	}
}

// copyCmd records a buffer-to-buffer copy (outside any compute pass).
func (b *Backend) copyCmd(src *wgpu.Buffer, srcOff uint64, dst *wgpu.Buffer, dstOff, size uint64) error {
	b.endPass()
	enc, err := b.encoder()
	if err != nil {
		return err
	}
	if err := enc.CopyBufferToBuffer(src, srcOff, dst, dstOff, size); err != nil {
		return fmt.Errorf("shaders: copy of %d bytes: %w", size, err)
	}
	return nil
}

// grid returns the workgroups for count invocations: at most
// b.maxGroups (the kernels loop over the rest), folded into a 2D grid past
// 65535.
func (b *Backend) grid(count int) (x, y uint32) {
	groups := min(groupsFor(count), b.maxGroups)
	if groups <= maxGroupsX {
		return uint32(groups), 1
	}
	rows := (groups + maxGroupsX - 1) / maxGroupsX
	return uint32((groups + rows - 1) / rows), uint32(rows)
}

func groupsFor(count int) int { return (count + wgSize - 1) / wgSize }

// dispatch records kernel k over count invocations (P.n = count): the
// one-element-per-invocation variant when the grid covers count, the
// grid-stride one when Options.MaxWorkgroups caps it.
func (b *Backend) dispatch(k *kernel, binds []binding, p *params, count int) error {
	if count <= 0 {
		return nil
	}
	pl, err := b.pipeline(k, groupsFor(count) > b.maxGroups)
	if err != nil {
		return err
	}
	bg, err := b.bindGroup(pl, binds)
	if err != nil {
		return err
	}
	if b.nUni == uniformSlots {
		if err := b.flush(); err != nil {
			return err
		}
	}
	p.N = uint32(count)
	slot := b.nUni
	copy(b.uni[slot*uniformStride:], unsafe.Slice((*byte)(unsafe.Pointer(p)), paramsSize))
	b.nUni++
	pass, err := b.computePass()
	if err != nil {
		return err
	}
	pass.SetPipeline(pl.cp)
	pass.SetBindGroup(0, bg, []uint32{uint32(slot * uniformStride)})
	x, y := b.grid(count)
	pass.DispatchWorkgroups(x, y, 1)
	return nil
}

// flush submits the recorded batch without waiting for it.
func (b *Backend) flush() error {
	if b.enc == nil {
		return nil
	}
	b.endPass()
	b.st.beforeSubmit(b)
	if b.nUni > 0 {
		if err := writeBuffer(b.q, b.uniBuf, 0, b.uni[:b.nUni*uniformStride]); err != nil {
			b.setErr(fmt.Errorf("shaders: uniform upload: %w", err))
		}
	}
	cb, err := b.enc.Finish(&wgpu.CommandBufferDescriptor{Label: "webkv step"})
	b.enc.Release()
	b.enc = nil
	b.nUni = 0
	if err != nil {
		b.setErr(fmt.Errorf("shaders: recording a step: %w", err))
	} else {
		b.q.Submit(cb)
		cb.Release()
	}
	b.dirty = true
	for _, d := range b.doomed {
		b.dropBindGroups(d.id)
		delete(b.live, d.id)
		d.buf.Destroy()
		d.buf.Release()
	}
	b.doomed = b.doomed[:0]
	b.st.afterSubmit(b)
	return nil
}

// wait submits the batch, waits until the queue is idle and returns the
// first error of queued work.
func (b *Backend) wait() error {
	b.flush()
	if b.dirty {
		waitIdle(b)
		b.dirty = false
		b.st.afterWait(b)
	}
	return b.takeErr()
}

// Flush submits the work recorded so far without waiting for it, so the
// GPU can start while the caller prepares the next step. Errors of that
// work come back from the next Read or Sync.
func (b *Backend) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed.Load() {
		return errClosed
	}
	return b.flush()
}

// Sync submits queued work and waits until it is done.
func (b *Backend) Sync() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed.Load() {
		return errClosed
	}
	return b.wait()
}

// ErrClosed is returned by every call on a closed backend.
var ErrClosed = errors.New("backend is closed")

var errClosed = fmt.Errorf("shaders: %w", ErrClosed)

// Close waits for queued work, then destroys every GPU buffer the backend
// created (its buffers, pools and staging; not wrapped application
// buffers) and releases its bind groups. The device stays open. Later calls
// return an error. WebGPU buffers are not garbage collected, so a program
// that makes backends repeatedly (tests, benchmarks) must close them.
func (b *Backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed.Swap(true) {
		return nil
	}
	err := b.wait()
	for id, buf := range b.live {
		b.dropBindGroups(id)
		buf.Destroy()
		buf.Release()
	}
	clear(b.live)
	clear(b.pool)
	for _, l := range b.readPool {
		for _, rs := range l {
			rs.buf.Destroy()
			rs.buf.Release()
		}
	}
	clear(b.readPool)
	b.st.close(b)
	for _, bg := range b.bgs {
		bg.Release()
	}
	clear(b.bgs)
	clear(b.bgByBuf)
	b.uniBuf.Destroy()
	b.uniBuf.Release()
	return err
}

// --- element-wise plumbing ---

// pieces calls f for each binding-sized piece [lo, lo+cnt) of n words.
func (b *Backend) pieces(n int, f func(lo, cnt int) error) error {
	for lo := 0; lo < n; lo += b.chunkWords {
		if err := f(lo, min(b.chunkWords, n-lo)); err != nil {
			return err
		}
	}
	return nil
}

// elemBinds fills b.scratch with the piece [lo, lo+cnt) of each buffer,
// covering whole vec4s when vec4 is set.
func (b *Backend) elemBinds(bufs []*Buffer, lo, cnt int, vec4 bool) []binding {
	size := cnt
	if vec4 {
		size = roundUp4(cnt)
	}
	s := b.scratch[:0]
	for _, x := range bufs {
		s = append(s, binding{x, lo, size})
	}
	b.scratch = s
	return s
}

// vec4 reports whether a dispatch over bufs may use the vec4 variant.
func (b *Backend) vec4(bufs ...*Buffer) bool {
	if b.scalar {
		return false
	}
	for _, x := range bufs {
		if !x.padded() {
			return false
		}
	}
	return true
}

// elementwise records kernel mk(vec4) over every piece of bufs.
func (b *Backend) elementwise(mk func(vec4 bool) *kernel, bufs []*Buffer, p *params) error {
	vec4 := b.vec4(bufs...)
	k := mk(vec4)
	return b.pieces(bufs[0].n, func(lo, cnt int) error {
		count := cnt
		if vec4 {
			count = (cnt + 3) / 4
		}
		return b.dispatch(k, b.elemBinds(bufs, lo, cnt, vec4), p, count)
	})
}

// --- compute.Backend operations ---

// Write copies src into dst starting at word off.
func (b *Backend) Write(dst compute.Buffer, off int, src []float32) error {
	d, err := b.buffer(dst, "write")
	if err != nil {
		return err
	}
	if off < 0 || off+len(src) > d.n {
		return fmt.Errorf("shaders: write of %d words at %d into a buffer of %d", len(src), off, d.n)
	}
	if len(src) == 0 {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.st.upload(b, d, off, src)
}

// Read copies len(dst) words of src from word off into dst, after all
// queued work; it returns the first error of queued work, if any.
func (b *Backend) Read(src compute.Buffer, off int, dst []float32) error {
	s, err := b.buffer(src, "read")
	if err != nil {
		return err
	}
	if off < 0 || off+len(dst) > s.n {
		return fmt.Errorf("shaders: read of %d words at %d from a buffer of %d", len(dst), off, s.n)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(dst) == 0 {
		return b.wait()
	}
	size := uint64(len(dst)) * 4
	rs, err := b.readStaging(size)
	if err != nil {
		return err
	}
	if err := b.copyCmd(s.buf, uint64(off)*4, rs.buf, 0, size); err != nil {
		b.putReadStaging(rs)
		return err
	}
	if err := b.wait(); err != nil {
		b.putReadStaging(rs)
		return err
	}
	if err := mapRead(b, rs, size, dst); err != nil {
		// A buffer whose mapping failed is in an unknown state: drop it.
		rs.buf.Destroy()
		rs.buf.Release()
		return err
	}
	b.putReadStaging(rs)
	return nil
}

// sized is a staging buffer and its size (Buffer.GetSize does not exist on
// GOOS=js).
type sized struct {
	buf  *wgpu.Buffer
	size uint64
}

// sizeClass rounds size up to a power of two from 64 KiB, so that staging
// buffers are reused across calls of different sizes.
func (b *Backend) sizeClass(size uint64) uint64 {
	class := uint64(64 << 10)
	for class < size {
		class <<= 1
	}
	if class > b.maxBuffer {
		class = (size + 3) &^ 3
	}
	return class
}

// readStaging returns a MapRead buffer of at least size bytes.
func (b *Backend) readStaging(size uint64) (*sized, error) {
	class := b.sizeClass(size)
	if l := b.readPool[class]; len(l) > 0 {
		rs := l[len(l)-1]
		b.readPool[class] = l[:len(l)-1]
		return rs, nil
	}
	rs, err := b.dev.CreateBuffer(&wgpu.BufferDescriptor{
		Label: "webkv readback", Size: class, Usage: wgpu.BufferUsageMapRead | wgpu.BufferUsageCopyDst,
	})
	if err != nil {
		return nil, fmt.Errorf("shaders: readback buffer of %d bytes: %w", class, err)
	}
	return &sized{rs, class}, nil
}

// putReadStaging keeps up to two idle readback buffers per size class.
func (b *Backend) putReadStaging(rs *sized) {
	if len(b.readPool[rs.size]) >= 2 {
		rs.buf.Destroy()
		rs.buf.Release()
		return
	}
	b.readPool[rs.size] = append(b.readPool[rs.size], rs)
}

// mapRead maps rs (whose copy has completed) and copies its first
// len(dst) words into dst (see mapForRead; on js GetMappedRange returns a
// copy).
func mapRead(b *Backend, rs *sized, size uint64, dst []float32) error {
	if err := mapForRead(b, rs.buf, size); err != nil {
		return err
	}
	data := rs.buf.GetMappedRange(0, uint(size))
	if uint64(len(data)) < size {
		rs.buf.Unmap()
		return fmt.Errorf("shaders: readback mapped %d bytes of %d", len(data), size)
	}
	copy(dst, unsafe.Slice((*float32)(unsafe.Pointer(unsafe.SliceData(data))), len(dst)))
	if err := rs.buf.Unmap(); err != nil {
		return fmt.Errorf("shaders: unmapping the readback buffer: %w", err)
	}
	return nil
}

// Copy copies src into dst; both have the same length.
func (b *Backend) Copy(dst, src compute.Buffer) error {
	d, err := b.buffer(dst, "copy")
	if err != nil {
		return err
	}
	s, err := b.buffer(src, "copy")
	if err != nil {
		return err
	}
	if d.n != s.n {
		return fmt.Errorf("shaders: copy of %d words into %d", s.n, d.n)
	}
	if d == s || d.buf == s.buf {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.copyBuffer(d, s)
}

// copyBuffer copies s into d (same size, other buffers): a compute pass from
// Options.CopyPassBytes up, else CopyBufferToBuffer. The caller holds b.mu.
func (b *Backend) copyBuffer(d, s *Buffer) error {
	if size := uint64(d.n) * 4; b.copyPass == 0 || size < b.copyPass {
		return b.copyCmd(s.buf, 0, d.buf, 0, size)
	}
	return b.reducePass(d, []*Buffer{s}, false, 1)
}

// Fill sets every word of dst to v.
func (b *Backend) Fill(dst compute.Buffer, v float32) error {
	d, err := b.buffer(dst, "fill")
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.fill(d, v)
}

func (b *Backend) fill(d *Buffer, v float32) error {
	return b.elementwise(fillKernel, []*Buffer{d}, &params{Scale: v})
}

// Reduce sets dst = scale * (((srcs[0] + srcs[1]) + srcs[2]) + …), in the
// CPU reference's order, in passes of up to 7 inputs (see reduce.wgsl). dst
// may be srcs[0].
func (b *Backend) Reduce(dst compute.Buffer, srcs []compute.Buffer, scale float32) error {
	if len(srcs) == 0 {
		return errors.New("shaders: reduce of no inputs")
	}
	d, err := b.buffer(dst, "reduce output")
	if err != nil {
		return err
	}
	ins := make([]*Buffer, len(srcs))
	for i, x := range srcs {
		s, err := b.buffer(x, fmt.Sprintf("reduce input %d", i))
		if err != nil {
			return err
		}
		if s.n != d.n {
			return fmt.Errorf("shaders: reduce input %d has %d words, output %d", i, s.n, d.n)
		}
		if i > 0 && s.buf == d.buf {
			return fmt.Errorf("shaders: reduce output may alias only input 0, not input %d", i)
		}
		ins[i] = s
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	acc := ins[0].buf == d.buf
	rest := ins
	if acc {
		rest = ins[1:]
		if len(rest) == 0 {
			if scale == 1 {
				return nil
			}
			return b.reducePass(d, nil, true, scale)
		}
	} else if len(rest) == 1 && scale == 1 {
		return b.copyBuffer(d, rest[0])
	}
	for len(rest) > 0 {
		k := min(len(rest), b.maxInputs)
		sc := float32(1)
		if k == len(rest) {
			sc = scale
		}
		if err := b.reducePass(d, rest[:k], acc, sc); err != nil {
			return err
		}
		rest = rest[k:]
		acc = true
	}
	return nil
}

func (b *Backend) reducePass(d *Buffer, srcs []*Buffer, acc bool, scale float32) error {
	bufs := append(append(make([]*Buffer, 0, len(srcs)+1), srcs...), d)
	return b.elementwise(func(vec4 bool) *kernel { return reduceKernel(len(srcs), acc, vec4, scale != 1) }, bufs, &params{Scale: scale})
}

// Quantize adds grad into residual and packs the quantized residual into
// out, bit-exact with the CPU backend (compute.CPU).
func (b *Backend) Quantize(c compute.Compression, grad, residual, out compute.Buffer) error {
	per, err := perWord(c, "quantize")
	if err != nil {
		return err
	}
	g, err := b.buffer(grad, "quantize grad")
	if err != nil {
		return err
	}
	r, err := b.buffer(residual, "quantize residual")
	if err != nil {
		return err
	}
	o, err := b.buffer(out, "quantize out")
	if err != nil {
		return err
	}
	if r.n != g.n || o.n != c.Kind.PackedLen(g.n) {
		return fmt.Errorf("shaders: quantize %v of %d values: residual %d, out %d words (want %d)",
			c.Kind, g.n, r.n, o.n, c.Kind.PackedLen(g.n))
	}
	if r.buf == g.buf || o.buf == g.buf || o.buf == r.buf {
		return errors.New("shaders: quantize: grad, residual and out must be distinct buffers")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	k := quantizeKernel(per)
	return b.pieces(g.n, func(lo, cnt int) error {
		words := (cnt + per - 1) / per
		binds := append(b.scratch[:0], binding{g, lo, cnt}, binding{r, lo, cnt}, binding{o, lo / per, words})
		return b.dispatch(k, binds, &params{Aux: uint32(cnt), Threshold: c.Threshold}, words)
	})
}

// Dequantize unpacks in into out (out.Len() values).
func (b *Backend) Dequantize(c compute.Compression, in, out compute.Buffer) error {
	per, err := perWord(c, "dequantize")
	if err != nil {
		return err
	}
	i, err := b.buffer(in, "dequantize input")
	if err != nil {
		return err
	}
	o, err := b.buffer(out, "dequantize output")
	if err != nil {
		return err
	}
	if i.n != c.Kind.PackedLen(o.n) {
		return fmt.Errorf("shaders: dequantize %v into %d values: input has %d words (want %d)",
			c.Kind, o.n, i.n, c.Kind.PackedLen(o.n))
	}
	if i.buf == o.buf {
		return errors.New("shaders: dequantize: input and output must be distinct buffers")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	k := dequantizeKernel(per)
	return b.pieces(o.n, func(lo, cnt int) error {
		binds := append(b.scratch[:0], binding{i, lo / per, (cnt + per - 1) / per}, binding{o, lo, cnt})
		return b.dispatch(k, binds, &params{Threshold: c.Threshold}, cnt)
	})
}

func perWord(c compute.Compression, what string) (int, error) {
	switch c.Kind {
	case compute.Compress2Bit:
		return 16, nil
	case compute.Compress1Bit:
		return 32, nil
	}
	return 0, fmt.Errorf("shaders: %s: unknown compression %v", what, c.Kind)
}
