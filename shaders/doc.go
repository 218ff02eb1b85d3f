// Package shaders is webkv's WebGPU compute backend: WGSL kernels for every
// operation of kvcore.Backend (N-input reduction, copy, fill, one fused
// kernel per optimizer, 2bit/1bit quantization with residual) and the Go
// code that builds their pipelines and records them on a *wgpu.Device from
// github.com/cogentcore/webgpu.
//
// The same dispatch code builds natively (cgo, wgpu-native) and for GOOS=js
// (the browser's WebGPU): it uses only the part of the binding's API that
// exists on both, with explicit bind-group and pipeline layouts. Without
// cgo, and on wasip1, the package holds only its kernels' sources; use
// kvcore.CPU() there.
//
// How work runs. Pipelines and layouts are built once per kernel variant;
// bind groups are cached per buffer set; the hyper-parameters of every
// dispatch go into one uniform arena bound at a dynamic offset; all the work
// between two reads is recorded into one command encoder and submitted once,
// on Read or Sync (or when the arena is full). Buffers are padded to whole
// vec4s so kernels use vec4 loads; buffers wrapped from an application run the
// scalar variants. Keys larger than the device's storage-binding limit are
// bound and dispatched in binding-sized pieces.
package shaders
