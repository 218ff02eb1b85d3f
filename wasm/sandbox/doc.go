// Package sandbox runs webkv's custom updater modules (the ABI of package
// kvcore/updater) in wazero with hard limits. A Host is an updater.Loader:
// the relay gives one to every job's parameter server, and a local or
// device store takes one in kvcore.Options.Updaters, so the same module
// runs everywhere.
//
//	h, err := sandbox.New(&sandbox.Options{CallBudget: 2 * time.Second})
//	defer h.Close()
//	s, err := kvcore.Create(ctx, "local", &kvcore.Options{Updaters: h})
//	err = s.SetUpdaterModule(ctx, &updater.Module{Code: wasm, Config: []byte("rescale_grad=2")})
//
// # Limits
//
// Memory: every instance's linear memory is capped at Options.MemoryPages
// (64 KiB pages; default 4096 = 256 MiB); a module that declares more fails
// to load, a memory.grow past it returns -1 (Go's runtime then dies with
// "out of memory", a fatal error). The arena for a key (call block, recv,
// stored and its state arrays) must fit, which bounds the key size a module
// can update: a key needs 4*n*(2+states) bytes plus the module's own heap.
//
// Time: every call into a module (initialization, configure, each update)
// runs under a context with Options.CallBudget (default 5 s) and wazero's
// WithCloseOnContextDone, which checks the deadline at function entries and
// loop back-edges of the compiled code: a loop ends within the budget, the
// instance is closed, and the error says which call ran out of time.
//
// Capabilities: none. Imports from modules other than
// wasi_snapshot_preview1 are refused at load; the WASI functions are
// granted without capabilities (kvcore/updater's package doc lists them):
// no files, sockets, arguments, environment, real clock or host entropy.
// The fake clock and random bytes are deterministic, so an update depends
// only on its inputs.
//
// Failure: a trap, an exit, a fatal status or a budget overrun unloads the
// instance (the error wraps updater.ErrFailed, with the module's hash, the
// call, the key, and the tail of what it wrote to stderr); later calls fail
// with the same error. Other instances, of the same module or not, run on.
//
// Policy: Options.Refuse refuses every module, Options.Allow only admits
// listed hashes, Options.MaxModuleBytes bounds the code (updater.ErrRefused
// and updater.ErrBadModule).
//
// # Compilation
//
// Compiling a module is the slow part (about a second for a 2 MB Go module,
// far more under the race detector), instantiating it is fast. A Host
// compiles each module once (by hash, its wazero runtime kept while
// instances use it, plus the MaxCompiled most recently used idle ones) and
// shares wazero's compilation cache between them; with Options.CacheDir
// compiled code also survives restarts. Compile lets a caller compile
// ahead, off a latency-sensitive goroutine (the relay does it in the
// connection reader before the job sees the module).
package sandbox
