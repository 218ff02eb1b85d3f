// Package kvcore is webkv's key-value store for parameter synchronization: the
// API and semantics of Apache MXNet's KVStore (create, init, push, pull,
// pushpull, broadcast, set_optimizer, barrier, rank, num_workers, optimizer
// states, gradient compression) in pure Go.
//
// kvcore builds for every target webkv runs on (native, GOOS=js, GOOS=wasip1)
// and imports no cgo, syscall/js, net, websocket or WebGPU package. Those live
// behind two seams:
//
//   - Backend: where arrays live and where reduction, optimizer steps and
//     quantization run. The CPU backend here is the reference every other
//     backend (the WebGPU one in package shaders) is checked against with the
//     conformance suite in kvcore/backendtest.
//   - Transport: how a dist_* store reaches its parameter server. The relay
//     package implements it over websockets; Pipe implements it in memory.
//
// # Semantics (MXNet's, see RATIONALE.md for where webkv differs)
//
// Push without an updater ASSIGNS the sum of the values pushed in that call;
// with an updater or optimizer, the store calls it once per key per push with
// the merged value. Values given in one call for one key (one per device, or
// duplicate keys in a list) are summed first.
//
// Push and Pull return once the operation is queued. Operations on one key run
// in the order they were issued; across keys, higher priority runs first.
// Reading an array (Array.Wait, CopyTo, Data) waits for the operations that
// write it. An error in a queued operation is kept on the arrays it writes and
// on the store, and returned by the next Wait or WaitAll: it is never lost.
package kvcore
