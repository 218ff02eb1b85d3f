// Package updater is the seam for custom update rules that run as
// sandboxed WebAssembly modules: MXNet's _set_updater and the pickled
// optimizers of set_optimizer, without running a peer's code in the
// server's process. It defines the module ABI, the Module a store sends to
// its servers, the Instance that runs one, and the Loader that makes
// instances (package sandbox is the wazero one; package wasm/updater
// is the Go SDK for writing modules). It has no WebAssembly runtime of its
// own, so kvcore and the parameter server (psm) import it on every target.
//
// # The module ABI, version 1
//
// A module is a WebAssembly binary, written in any language (Go with
// GOOS=wasip1 -buildmode=c-shared and package wasm/updater, Rust, C, Zig,
// hand-written WAT), that exports a memory named "memory" and these
// functions (i32 = 32-bit integer; pointers are offsets into the memory):
//
//	webkv_abi_version() -> i32        required; returns 1
//	webkv_alloc(size i32) -> i32      required; a 16-byte aligned block of size
//	                                  bytes that stays valid until webkv_free,
//	                                  or 0 if there is no memory
//	webkv_free(ptr i32)               optional; gives a block back
//	webkv_update(call i32) -> i32     required; one update (below)
//	webkv_states(call i32) -> i32     optional; how many state arrays the key
//	                                  needs, 0 to 8, or < 0 on error (fatal)
//	                                  (absent: 0)
//	webkv_init(call i32) -> i32       optional; fills a key's state arrays
//	webkv_configure(call, ptr, len i32) -> i32
//	                                  optional; receives Module.Config (len
//	                                  bytes at ptr) once, after _initialize
//	                                  and before any update; required if the
//	                                  config is not empty; any non-zero
//	                                  status refuses the module
//	_initialize()                     optional; called once first (WASI
//	                                  reactors, Go's c-shared runtime init)
//
// Every call but webkv_alloc and webkv_free gets the address of a call
// block the host wrote into a block it took with webkv_alloc
// (little-endian, 128 bytes; the offsets are the Off* constants):
//
//	offset  field      meaning
//	0       abi        u32, 1
//	4       size       u32, bytes of the block the host wrote (128)
//	8       key        u64, the int key, or the id of a string key (wire.StrKeyID)
//	16      flags      u32, bit 0: string key
//	20      n          u32, float32 elements in recv, stored and each state
//	24      name       u32 pointer, u32 length at 28: the key as optimizer
//	                   specs name it (the string, or the int key in decimal), UTF-8
//	32      recv       u32 pointer to float32[n]: the merged (summed) push
//	36      stored     u32 pointer to float32[n]: the stored value, updated in place
//	40      states     u32 pointer to u32[nstates]: pointers to float32[n] arrays
//	44      nstates    u32
//	48      t          u32, the key's update count, this update included (1 first)
//	52      offset     u32, first element of this part within the key (a big
//	                   key is split over servers and each part updated alone)
//	56      total      u32, elements of the whole key
//	60      workers    u32, how many workers' pushes recv stands for
//	64      msg        u32 pointer, u32 length at 68: set by the module to an
//	                   error message (UTF-8, at most 1 KiB is read) before it
//	                   returns a non-zero status
//	72-127  reserved   zero
//
// webkv_update adds recv into stored by whatever rule the module has
// (MXNet's updater(key, recv, stored)), and may change the states. A key's
// state arrays are created on its first update: the host asks
// webkv_states, zeroes that many arrays and calls webkv_init with stored
// and the states set (recv is 0), so a rule can start from the weights
// (an anchor for a proximal term). The host keeps states and weights
// between calls and saves them with the optimizer states and the server's
// checkpoints; a module must keep nothing else between calls that it needs
// to be correct, because its instance may be replaced (after a restart,
// after loading states) by a fresh one.
//
// The time budget is enforced at every loop back-edge of the module's
// compiled code, at a cost of about 50 ns each: loops over the elements
// should do many elements per iteration (package wasm/updater's kernels do
// 32).
//
// Status: 0 is success. 1 refuses this one update (a NaN gradient, say):
// it fails with the module's message and the module stays loaded. Any
// other status, a trap, an exit (proc_exit), running past the time budget
// or past the memory limit is fatal: the update fails with an error
// wrapping ErrFailed and the instance is unloaded; later updates fail until
// an updater or optimizer is installed again. Stored and the states change
// only when an update succeeds: the host copies them out of the module's
// memory after a zero status, never after a failure.
//
// # What a module may import
//
// Nothing beyond the ABI: no files, no network, no clock, no randomness
// from the host. A module may import functions of wasi_snapshot_preview1
// (Go's wasip1 runtime needs ten of them); the host grants them without
// capabilities: no arguments and no environment, a fake clock that starts
// at a fixed time and advances 1 ms per reading (poll_oneoff sleeps advance
// it and return at once), random_get filled from a fixed seed, fd_write to
// stdout and stderr kept in a small buffer that error messages quote
// (other descriptors are EBADF), proc_exit ends the call (fatal), and
// every other WASI function returns ENOSYS. Imports from any other module
// are refused at load. So an update depends only on its inputs.
//
// # Where modules run
//
// A dist store sends the module to its servers (Module.AppendBinary is
// the body of command CommandHead); each server job runs one instance in
// wazero, with a memory cap and a time budget per call. Local and device
// stores run it in-process through a Loader given in kvcore.Options
// (package sandbox's Host natively and under wasip1; in a browser the
// page could instantiate the same module with its own WebAssembly API, not
// done yet: a js store has no Loader and refuses modules). Device stores
// read the values back to the host for each update: a module runs on the
// CPU.
package updater
