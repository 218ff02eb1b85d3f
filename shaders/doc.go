// Package shaders is webkv's WebGPU compute backend: WGSL kernels for every
// operation of compute.Backend (N-input reduction, copy, fill, one fused
// kernel per optimizer, 2bit/1bit quantization with residual) and the Go
// code that builds their pipelines and records them on a *wgpu.Device from
// github.com/cogentcore/webgpu.
//
// The same dispatch code builds natively (cgo, wgpu-native) and for GOOS=js
// (the browser's WebGPU): it uses only the part of the binding's API that
// exists on both, with explicit bind-group and pipeline layouts. Without
// cgo, and on wasip1, the package holds only its kernels' sources; use
// compute.NewCPU(nil) there.
//
// How work runs. Pipelines and layouts are built once per kernel variant;
// bind groups are cached per buffer set; the hyper-parameters of every
// dispatch go into one uniform arena bound at a dynamic offset; all the work
// between two reads is recorded into one command encoder and submitted once,
// on Read or Sync (or when the arena is full). Buffers are padded to whole
// vec4s so kernels use vec4 loads; buffers wrapped from an application run the
// scalar variants. Keys larger than the device's storage-binding limit are
// bound and dispatched in binding-sized pieces.
//
// Beyond compute.Backend: ReduceStep fuses a reduction into the optimizer
// kernel; WrapBuffer and Buffer.WGPU hand an application's own *wgpu.Buffer
// in and out without a copy; on GOOS=js, NewJS takes the page's GPUDevice
// and turns WebGPU validation errors (which the binding never returns on js)
// into errors of the next Read or Sync, through error scopes.
//
// Numerics: Reduce adds in the CPU reference's order, so it is bit-exact
// with it on IEEE adders; quantization is bit-exact on every adapter (its
// comparisons work on the bits, see quantize.wgsl); optimizer kernels follow
// the reference loops operation by operation and differ only by fused
// multiply-adds and WGSL's sqrt/division precision.
package shaders
