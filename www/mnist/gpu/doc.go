// Package gpu is the WebGPU engine of the demo's MNIST model (package
// mnist): the forward and backward passes as the WGSL kernels of
// mnist.KernelSources, dispatched on a *wgpu.Device of
// github.com/cogentcore/webgpu, natively (cgo, wgpu-native; open the device
// with package native) and under GOOS=js (the page's GPUDevice). Its results
// are checked against mnist's CPU reference.
//
// Built without cgo on native targets, and on wasip1, the package is empty:
// use mnist.NewCPU there.
package gpu
