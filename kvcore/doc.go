// Package kvcore is webkv's key-value store for parameter synchronization:
// the API and semantics of Apache MXNet's KVStore (create, init, push, pull,
// pushpull, broadcast, set_optimizer, barrier, rank, num_workers, optimizer
// states, gradient compression) in pure Go.
//
//	s, err := kvcore.Create(ctx, "local", nil)
//	w, err := kvcore.FromSlice(kvcore.CPU(0), weights, 784, 128)
//	err = s.Init(ctx, kvcore.StrKey("w1"), w)
//	err = s.SetOptimizer(ctx, optimizer.Adam(0.001))
//	err = s.Push(kvcore.StrKey("w1"), grad0, grad1) // one value per device, summed
//	err = s.Pull(kvcore.StrKey("w1"), w)            // w.Wait, CopyTo, Data wait for it
//
// kvcore builds for every target webkv runs on (native, GOOS=js, GOOS=wasip1)
// and imports no cgo, syscall/js, net, websocket or WebGPU package. Those live
// behind two seams:
//
//   - compute.Backend (package kvcore/compute): where arrays live and where
//     reduction, optimizer steps and quantization run. The CPU backend there
//     is the reference every other backend (the WebGPU one in package
//     shaders) is checked against with the conformance suite in
//     kvcore/compute/backendtest. A "device" store reduces on
//     Options.Backend; arrays on a GPU device carry their backend
//     (GPU(i, backend)).
//   - Transport: how a dist_* store reaches its parameter servers. The relay
//     package implements it over websockets; Pipe implements it in memory.
//
// Optimizers are declarative specs (package kvcore/optimizer), so a dist
// store can send them to its servers.
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
//
// PushPullList on a local or device store pushes every key of the list
// before it pulls any (MXNet's KVStoreLocal order), so one array may be a
// value and an output of several keys. A dist store pushes and pulls key by
// key, in list order, as MXNet's dist store does: there an array shared by
// several keys is read by a later key's push after an earlier key's pull
// wrote it.
//
// Row-sparse values (RowSparse: some rows of a key, MXNet's row_sparse)
// are pushed with PushRowSparse and pulled with RowSparsePull; their rows
// are summed row by row, lazy optimizers (sgd, adam, adagrad, ftrl) update
// only the rows pushed, and a dist store sends only the rows.
//
// # Errors
//
// Every error says "kvcore: <operation> [key <k>]: " and wraps one of the
// Err variables (test with errors.Is) or the error of the layer below.
//
// # Lifetime
//
// A store owns the goroutines that run its queued operations (started with
// the first one) and, in dist mode, those of its connections; Close stops
// them all. Arrays belong to no store: one array may be pushed to several
// stores, and its operations still run in issue order.
package kvcore
