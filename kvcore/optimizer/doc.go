// Package optimizer holds webkv's declarative optimizer specs: MXNet 1.x's
// optimizers (sgd, nag, adam, adamw, adagrad, rmsprop, adadelta, signum,
// ftrl, lamb) and learning-rate schedules as JSON data with MXNet's
// parameter names and defaults. A store (kvcore.Store.SetOptimizer) runs a
// spec itself; a dist store sends it to its parameter servers (package
// psm), which run the same spec, so a spec is never code.
//
//	spec, err := optimizer.Parse([]byte(`{"name":"adam","learning_rate":0.001}`))
//	spec := optimizer.SGD(0.1, 0.9)
//
// Spec.Params turns a spec into the per-step parameters of the compute
// kernels (package compute).
package optimizer
