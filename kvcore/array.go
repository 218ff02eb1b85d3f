package kvcore

import (
	"context"
	"fmt"
	"slices"

	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/kvcore/internal/engine"
)

// Device is where an array lives: MXNet's context, mx.cpu(i) or mx.gpu(i).
// A GPU device carries the backend its arrays live on (no registry: the
// backend travels with the value). Devices are comparable.
type Device struct {
	gpu bool
	id  int
	be  compute.Backend // gpu only
}

// CPU is MXNet's mx.cpu(i): host memory. Arrays on every CPU device are
// plain Go memory; the index only names the device (as MXNet's several CPU
// contexts do, to model several workers in one process).
func CPU(i int) Device { return Device{id: i} }

// GPU is MXNet's mx.gpu(i) on backend be, e.g. the WebGPU backend of
// package shaders for a device opened by package native or in the browser.
func GPU(i int, be compute.Backend) Device { return Device{gpu: true, id: i, be: be} }

// IsGPU reports whether d is a GPU device.
func (d Device) IsGPU() bool { return d.gpu }

// ID is the device index i of CPU(i) or GPU(i, …).
func (d Device) ID() int { return d.id }

// String formats d as MXNet does: cpu(0), gpu(1).
func (d Device) String() string {
	if d.gpu {
		return fmt.Sprintf("gpu(%d)", d.id)
	}
	return fmt.Sprintf("cpu(%d)", d.id)
}

// host is the backend of arrays on CPU devices. The zero CPU keeps no
// freed buffers (they go to the garbage collector) and no goroutines; what
// it keeps is the scratch of its parallel calls (a few structs, as a
// sync.Pool would). A store's own operations run on its own CPU.
var host = &compute.CPU{}

// backend returns the backend arrays on d live on.
func (d Device) backend() (compute.Backend, error) {
	if !d.gpu {
		return host, nil
	}
	if d.be == nil {
		return nil, fmt.Errorf("kvcore: %v has no backend: make the device with GPU(i, backend)", d)
	}
	return d.be, nil
}

// Array is an n-d float32 array on a device, MXNet's NDArray reduced to
// what a KVStore needs. Stores read and write arrays asynchronously: Wait,
// CopyTo and Data wait for the queued operations that write the array. An
// array may be used by several stores; its operations still run in the
// order they were issued.
type Array struct {
	// What a list call reads of each array is in its first 64 bytes: an
	// Array is 120 bytes, in the 128-byte size class, whose objects start
	// on a cache line, so checking an array and taking its values costs
	// one cache miss, with no buffer to fetch (TestArrayLayout; RATIONALE:
	// "Why are an array's list-call fields in its first cache line?").
	buf   compute.Buffer
	host  *float32 // buf's first word when buf is a CPUBuffer of a CPU backend; nil otherwise
	n     int
	v     *engine.Var // nil for the views an updater receives
	shape []int
	be    compute.Backend
	dev   Device
	owned bool
}

// maxElements bounds an array's size (2^40 values: 4 TiB).
const maxElements = 1 << 40

// checkShape returns the number of elements of shape; () is a 0-d array of
// one element.
func checkShape(shape []int) (int, error) {
	n := 1
	for _, d := range shape {
		if d <= 0 {
			return 0, fmt.Errorf("kvcore: bad shape %v: dimensions must be positive", shape)
		}
		if n > maxElements/d {
			return 0, fmt.Errorf("kvcore: shape %v is too large", shape)
		}
		n *= d
	}
	return n, nil
}

// NewArray returns a zeroed array of the given shape on dev; no shape
// makes a 0-d array (one value, shape ()).
func NewArray(dev Device, shape ...int) (*Array, error) {
	n, err := checkShape(shape)
	if err != nil {
		return nil, err
	}
	be, err := dev.backend()
	if err != nil {
		return nil, err
	}
	buf, err := be.Alloc(n)
	if err != nil {
		return nil, fmt.Errorf("kvcore: new array %v on %v: %w", shape, dev, err)
	}
	return newArray(shape, n, dev, be, buf, true), nil
}

// newArray returns an array of buf with a variable of its own.
func newArray(shape []int, n int, dev Device, be compute.Backend, buf compute.Buffer, owned bool) *Array {
	a := &Array{buf: buf, n: n, v: new(engine.Var), shape: slices.Clone(shape), be: be, dev: dev, owned: owned}
	if cb, ok := buf.(*compute.CPUBuffer); ok && cb.Len() > 0 && isCPU(be) {
		a.host = &cb.Float32s()[0]
	}
	return a
}

// FromSlice returns an array on dev holding a copy of data. Without a
// shape it is 1-d; an empty shape (FromSlice(dev, x, []int{}...)) makes a
// 0-d array of one value.
func FromSlice(dev Device, data []float32, shape ...int) (*Array, error) {
	if shape == nil {
		shape = []int{len(data)}
	}
	a, err := NewArray(dev, shape...)
	if err != nil {
		return nil, err
	}
	if a.n != len(data) {
		a.free()
		return nil, fmt.Errorf("kvcore: %d values do not fill shape %v (%d): %w", len(data), shape, a.n, ErrShapeMismatch)
	}
	if err := a.be.Write(a.buf, 0, data); err != nil {
		a.free()
		return nil, fmt.Errorf("kvcore: from slice on %v: %w", dev, err)
	}
	return a, nil
}

// WrapBuffer makes an array of buf, a buffer of dev's backend that the
// caller owns (a WebGPU app's own GPU buffer, say): no copy is made, and
// Release does not free buf.
func WrapBuffer(dev Device, buf compute.Buffer, shape ...int) (*Array, error) {
	n, err := checkShape(shape)
	if err != nil {
		return nil, err
	}
	be, err := dev.backend()
	if err != nil {
		return nil, err
	}
	if buf == nil || buf.Len() < n {
		return nil, fmt.Errorf("kvcore: wrap buffer: shape %v needs %d words: %w", shape, n, ErrShapeMismatch)
	}
	return newArray(shape, n, dev, be, buf, false), nil
}

// Shape returns the array's shape (a copy; empty for a 0-d array).
func (a *Array) Shape() []int { return slices.Clone(a.shape) }

// Size is the number of elements.
func (a *Array) Size() int { return a.n }

// Device is where the array lives.
func (a *Array) Device() Device { return a.dev }

// Backend is the backend holding the array's buffer.
func (a *Array) Backend() compute.Backend { return a.be }

// Buffer is the array's backend buffer (for zero-copy use by the app; wait
// before touching it).
func (a *Array) Buffer() compute.Buffer { return a.buf }

// Wait waits until the queued operations that write a are done (or ctx
// ends) and returns the error of the last one, if it failed.
func (a *Array) Wait(ctx context.Context) error { return a.v.Wait(ctx) }

// CopyTo waits for a and copies its values into dst (len(dst) == Size()).
func (a *Array) CopyTo(ctx context.Context, dst []float32) error {
	if len(dst) != a.n {
		return fmt.Errorf("kvcore: copy %d values into a slice of %d: %w", a.n, len(dst), ErrShapeMismatch)
	}
	if a.buf == nil {
		return fmt.Errorf("kvcore: copy: %w", ErrNilArray)
	}
	if err := a.Wait(ctx); err != nil {
		return err
	}
	return a.be.Read(a.buf, 0, dst)
}

// CopyFrom waits for the queued operations on a and sets its values from
// src (len(src) == Size()). An earlier failed write to a is overwritten, so
// its error is not returned.
func (a *Array) CopyFrom(ctx context.Context, src []float32) error {
	if len(src) != a.n {
		return fmt.Errorf("kvcore: copy %d values into an array of %d: %w", len(src), a.n, ErrShapeMismatch)
	}
	if a.buf == nil {
		return fmt.Errorf("kvcore: copy: %w", ErrNilArray)
	}
	if err := a.v.Drain(ctx); err != nil {
		return err
	}
	if err := a.be.Write(a.buf, 0, src); err != nil {
		return err
	}
	a.v.ClearErr()
	return nil
}

// Fill waits for the queued operations on a and sets every element to x
// (an earlier failed write is overwritten, as in CopyFrom).
func (a *Array) Fill(ctx context.Context, x float32) error {
	if a.buf == nil {
		return fmt.Errorf("kvcore: fill: %w", ErrNilArray)
	}
	if err := a.v.Drain(ctx); err != nil {
		return err
	}
	if err := a.be.Fill(a.buf, x); err != nil {
		return err
	}
	a.v.ClearErr()
	return nil
}

// ToSlice waits for a and returns a copy of its values.
func (a *Array) ToSlice(ctx context.Context) ([]float32, error) {
	out := make([]float32, a.n)
	if err := a.CopyTo(ctx, out); err != nil {
		return nil, err
	}
	return out, nil
}

// Data waits for a and returns its values without a copy; only arrays on
// CPU devices have them in Go memory. Do not use the slice while
// operations on a are queued.
func (a *Array) Data(ctx context.Context) ([]float32, error) {
	cb, ok := a.buf.(*compute.CPUBuffer)
	if !ok {
		return nil, fmt.Errorf("kvcore: array on %v has no host data (use CopyTo): %w", a.dev, ErrUnsupported)
	}
	if err := a.Wait(ctx); err != nil {
		return nil, err
	}
	return cb.Float32s()[:a.n], nil
}

// Release waits for the queued operations on a and frees its buffer
// (unless wrapped); the array must not be used afterwards. It returns only
// ctx's error (the buffer is then still held: call again): the values are
// discarded, so the error of a failed write to a does not matter here.
func (a *Array) Release(ctx context.Context) error {
	if err := a.v.Drain(ctx); err != nil {
		return err
	}
	a.free()
	return nil
}

func (a *Array) free() {
	if a.owned && a.buf != nil {
		a.be.Free(a.buf)
	}
	a.buf, a.host = nil, nil
}

func (a *Array) sameShape(shape []int) bool { return slices.Equal(a.shape, shape) }
