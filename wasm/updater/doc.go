// Package updater is the Go SDK for writing webkv custom updaters: update
// rules that a store runs as sandboxed WebAssembly, on its relay servers
// (dist stores) or in-process (local and device stores), MXNet's
// _set_updater and custom optimizers without shipping code that runs
// unsandboxed. The ABI is in package kvcore/updater; this package
// implements its exports, so a rule is a Go type:
//
//	package main
//
//	import "github.com/webkv/webkv/wasm/updater"
//
//	type double struct{}
//
//	// Update is MXNet's docstring example: stored += 2 * recv.
//	func (double) Update(c *updater.Call) error {
//		for i, g := range c.Recv {
//			c.Stored[i] += 2 * g
//		}
//		return nil
//	}
//
//	func init() { updater.Register(double{}) }
//
//	func main() {}
//
// built as a WASI reactor:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o double.wasm .
//
// and installed with kvcore.Store.SetUpdaterModule. Register must run in
// an init function: a c-shared module runs package initialization (in
// _initialize), not main. A rule that keeps per-key state arrays (momentum,
// an anchor) implements Stateful; one that takes parameters implements
// Configurable and reads kvcore/updater.Module.Config (Params parses the
// "name=value,..." form the examples use). Examples: examples/mxtest
// (MXNet's Test optimizer) and examples/fedprox (a proximal term and
// server momentum).
//
// What a rule may not do: keep anything between calls that it needs to be
// correct other than the state arrays (the instance may be replaced by a
// fresh one after a restart or a states load), read files, the network or
// the real time (the host grants none of them: see kvcore/updater). A
// panic in a rule is recovered and reported as a fatal error (the module is
// unloaded); return an error instead to refuse one update and stay loaded.
//
// The package keeps its imports small (no fmt, no encoding/json): every
// import adds to the module's size and to the time the host takes to
// compile it.
package updater
