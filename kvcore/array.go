package kvcore

import (
	"context"
	"fmt"
	"sync"
)

// DevType is the kind of device an array lives on.
type DevType uint8

// Device types of a Ctx.
const (
	CPUDev DevType = iota
	GPUDev
)

// Ctx is an array's context, MXNet's mx.cpu(i) / mx.gpu(i).
type Ctx struct {
	Dev DevType
	ID  int
}

// OnCPU is MXNet's mx.cpu(i).
func OnCPU(i int) Ctx { return Ctx{CPUDev, i} }

// OnGPU is MXNet's mx.gpu(i): arrays there live on the backend attached with
// AttachGPU(i, …).
func OnGPU(i int) Ctx { return Ctx{GPUDev, i} }

func (c Ctx) String() string {
	if c.Dev == GPUDev {
		return fmt.Sprintf("gpu(%d)", c.ID)
	}
	return fmt.Sprintf("cpu(%d)", c.ID)
}

var (
	gpusMu sync.RWMutex
	gpus   = map[int]Backend{}
)

// AttachGPU makes be the backend of context gpu(id). A WebGPU app attaches
// its device's backend (see package shaders) before it creates gpu arrays or
// a "device" store. Attaching nil detaches.
func AttachGPU(id int, be Backend) {
	gpusMu.Lock()
	defer gpusMu.Unlock()
	if be == nil {
		delete(gpus, id)
		return
	}
	gpus[id] = be
}

// BackendOf returns the backend of ctx.
func BackendOf(ctx Ctx) (Backend, error) {
	if ctx.Dev == CPUDev {
		return theCPU, nil
	}
	gpusMu.RLock()
	be, ok := gpus[ctx.ID]
	gpusMu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("kvcore: no backend attached to %v (open a WebGPU device and call AttachGPU)", ctx)
	}
	return be, nil
}

// Array is an n-d float32 array on a context, MXNet's NDArray reduced to what
// a KVStore needs. Stores read and write arrays asynchronously: Wait, CopyTo
// and Data wait for the queued operations that write the array.
type Array struct {
	shape []int
	n     int
	ctx   Ctx
	be    Backend
	buf   Buffer
	v     *evar // nil for the views an updater receives
	owned bool
}

func checkShape(shape []int) (int, error) {
	if len(shape) == 0 {
		return 0, fmt.Errorf("kvcore: empty shape")
	}
	n := 1
	for _, d := range shape {
		if d <= 0 {
			return 0, fmt.Errorf("kvcore: bad shape %v: dimensions must be positive", shape)
		}
		if n > (1<<40)/d {
			return 0, fmt.Errorf("kvcore: shape %v is too large", shape)
		}
		n *= d
	}
	return n, nil
}

// NewArray returns a zeroed array of the given shape on ctx.
func NewArray(ctx Ctx, shape ...int) (*Array, error) {
	n, err := checkShape(shape)
	if err != nil {
		return nil, err
	}
	be, err := BackendOf(ctx)
	if err != nil {
		return nil, err
	}
	buf, err := be.Alloc(n)
	if err != nil {
		return nil, fmt.Errorf("kvcore: new array %v on %v: %w", shape, ctx, err)
	}
	return &Array{shape: append([]int(nil), shape...), n: n, ctx: ctx, be: be, buf: buf, v: newVar(), owned: true}, nil
}

// FromSlice returns an array on ctx holding a copy of data. Without a shape
// it is 1-d.
func FromSlice(ctx Ctx, data []float32, shape ...int) (*Array, error) {
	if len(shape) == 0 {
		shape = []int{len(data)}
	}
	a, err := NewArray(ctx, shape...)
	if err != nil {
		return nil, err
	}
	if a.n != len(data) {
		a.Release()
		return nil, fmt.Errorf("kvcore: %d values do not fill shape %v (%d)", len(data), shape, a.n)
	}
	if err := a.be.Write(a.buf, 0, data); err != nil {
		a.Release()
		return nil, fmt.Errorf("kvcore: from slice on %v: %w", ctx, err)
	}
	return a, nil
}

// WrapBuffer makes an array of buf, a buffer of ctx's backend that the caller
// owns (a WebGPU app's own GPU buffer, say): no copy is made, and Release
// does not free buf.
func WrapBuffer(ctx Ctx, buf Buffer, shape ...int) (*Array, error) {
	n, err := checkShape(shape)
	if err != nil {
		return nil, err
	}
	be, err := BackendOf(ctx)
	if err != nil {
		return nil, err
	}
	if buf == nil || buf.Len() < n {
		return nil, fmt.Errorf("kvcore: wrap buffer: shape %v needs %d words", shape, n)
	}
	return &Array{shape: append([]int(nil), shape...), n: n, ctx: ctx, be: be, buf: buf, v: newVar()}, nil
}

// Shape returns the array's shape (a copy).
func (a *Array) Shape() []int { return append([]int(nil), a.shape...) }

// Size is the number of elements.
func (a *Array) Size() int { return a.n }

// Context is where the array lives.
func (a *Array) Context() Ctx { return a.ctx }

// Backend is the backend holding the array's buffer.
func (a *Array) Backend() Backend { return a.be }

// Buffer is the array's backend buffer (for zero-copy use by the app; wait
// before touching it).
func (a *Array) Buffer() Buffer { return a.buf }

// Wait waits until the queued operations that write a are done and returns
// the error of the last one, if it failed.
func (a *Array) Wait(ctx context.Context) error { return waitVar(ctx, a.v) }

// CopyTo waits for a and copies its values into dst (len(dst) == Size()).
func (a *Array) CopyTo(dst []float32) error {
	if len(dst) != a.n {
		return fmt.Errorf("kvcore: copy %d values into a slice of %d", a.n, len(dst))
	}
	if err := a.Wait(context.Background()); err != nil {
		return err
	}
	return a.be.Read(a.buf, 0, dst)
}

// CopyFrom waits for the queued operations on a and sets its values from
// src (len(src) == Size()).
func (a *Array) CopyFrom(src []float32) error {
	if len(src) != a.n {
		return fmt.Errorf("kvcore: copy %d values into an array of %d", len(src), a.n)
	}
	_ = a.Wait(context.Background()) // a failed earlier write is overwritten now
	if err := a.be.Write(a.buf, 0, src); err != nil {
		return err
	}
	a.clearErr()
	return nil
}

// Fill waits for a and sets every element to x.
func (a *Array) Fill(x float32) error {
	_ = a.Wait(context.Background())
	if err := a.be.Fill(a.buf, x); err != nil {
		return err
	}
	a.clearErr()
	return nil
}

// clearErr forgets the error of an earlier failed write: the caller just
// overwrote the whole array.
func (a *Array) clearErr() {
	if a.v != nil {
		theEngine.mu.Lock()
		a.v.err = nil
		theEngine.mu.Unlock()
	}
}

// ToSlice waits for a and returns a copy of its values.
func (a *Array) ToSlice() ([]float32, error) {
	out := make([]float32, a.n)
	return out, a.CopyTo(out)
}

// Data waits for a and returns its values without a copy; only CPU arrays
// have them in Go memory. Do not use the slice while operations on a are
// queued.
func (a *Array) Data() ([]float32, error) {
	cb, ok := a.buf.(*CPUBuffer)
	if !ok {
		return nil, fmt.Errorf("kvcore: array on %v has no host data: use CopyTo", a.ctx)
	}
	if err := a.Wait(context.Background()); err != nil {
		return nil, err
	}
	return cb.data[:a.n], nil
}

// Release waits for a and frees its buffer (unless wrapped). The array
// must not be used afterwards.
func (a *Array) Release() {
	_ = a.Wait(context.Background())
	if a.owned && a.buf != nil {
		a.be.Free(a.buf)
	}
	a.buf = nil
}

func (a *Array) sameShape(shape []int) bool {
	if len(a.shape) != len(shape) {
		return false
	}
	for i := range shape {
		if a.shape[i] != shape[i] {
			return false
		}
	}
	return true
}
