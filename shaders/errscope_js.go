//go:build js

package shaders

import (
	"errors"
	"fmt"
	"syscall/js"

	"github.com/cogentcore/webgpu/wgpu"
)

// On GOOS=js cogentcore/webgpu v0.23.0 returns no errors at all: an invalid
// shader or binding only shows in the console and later dispatches give
// wrong data. A Backend made by NewJS keeps the raw GPUDevice and wraps
// each batch, each upload and each pipeline creation in WebGPU error scopes
// (validation and out-of-memory); the scopes of a batch are awaited after
// the queue drains, so their errors come back from the next Read or Sync,
// as the Backend contract asks. Never call Read or Sync from inside a
// js.FuncOf callback: awaiting a Promise there deadlocks the event loop.

// NewJS builds a Backend on a GPUDevice that the page requested itself
// through syscall/js (adapter.requestDevice({requiredLimits: …}); the
// binding's RequestDevice drops RequiredLimits on js).
func NewJS(device js.Value, opts *Options) (*Backend, error) {
	if device.IsUndefined() || device.IsNull() {
		return nil, errors.New("shaders: NewJS: no GPUDevice")
	}
	d := wgpu.NewDevice(device)
	b, err := New(&d, opts)
	if err != nil {
		return nil, err
	}
	b.st.dev = device
	return b, nil
}

func (st *staging) scoped() bool { return !st.dev.IsUndefined() && st.dev.Truthy() }

func (st *staging) push() {
	st.dev.Call("pushErrorScope", "out-of-memory")
	st.dev.Call("pushErrorScope", "validation")
}

// pop closes the scopes opened by push and returns their promises.
func (st *staging) pop() []js.Value {
	v := st.dev.Call("popErrorScope")
	m := st.dev.Call("popErrorScope")
	return []js.Value{v, m}
}

// batchStart opens the scopes of a new command encoder's batch.
func (st *staging) batchStart(b *Backend) {
	if st.scoped() && !st.open {
		st.push()
		st.open = true
	}
}

// closeBatch pops the batch's scopes; their promises are awaited in afterWait.
func (st *staging) closeBatch() {
	if st.open {
		st.pending = append(st.pending, st.pop()...)
		st.open = false
	}
}

// checked runs f inside its own scopes and waits for their verdict (used
// for pipeline creation, which happens once per kernel variant).
func (st *staging) checked(b *Backend, what string, f func() error) error {
	if !st.scoped() {
		return f()
	}
	st.push()
	err := f()
	for _, p := range st.pop() {
		if e := scopeError(p, what); e != nil && err == nil {
			err = e
		}
	}
	return err
}

func (st *staging) drainScopes(b *Backend) {
	for _, p := range st.pending {
		b.setErr(scopeError(p, "queued work"))
	}
	st.pending = st.pending[:0]
}

// scopeError awaits a popErrorScope promise: null means no error.
func scopeError(promise js.Value, what string) error {
	v, ok := await(promise)
	if !ok {
		return fmt.Errorf("shaders: %s: popErrorScope failed: %s", what, jsString(v))
	}
	if v.IsNull() || v.IsUndefined() {
		return nil
	}
	return fmt.Errorf("shaders: %s: WebGPU error: %s", what, jsString(v.Get("message")))
}

func jsString(v js.Value) string {
	if v.Type() == js.TypeString {
		return v.String()
	}
	if v.IsUndefined() || v.IsNull() {
		return "(no message)"
	}
	return v.Call("toString").String()
}

// await blocks the calling goroutine until promise settles. Unlike
// jsx.Await it logs nothing (a log write inside the callback can deadlock
// under Node).
func await(promise js.Value) (js.Value, bool) {
	if promise.Type() != js.TypeObject || promise.Get("then").Type() != js.TypeFunction {
		return promise, true
	}
	var result js.Value
	var ok bool
	done := make(chan struct{})
	onResolve := js.FuncOf(func(this js.Value, args []js.Value) any {
		if len(args) > 0 {
			result = args[0]
		}
		ok = true
		close(done)
		return nil
	})
	defer onResolve.Release()
	onReject := js.FuncOf(func(this js.Value, args []js.Value) any {
		if len(args) > 0 {
			result = args[0]
		}
		close(done)
		return nil
	})
	defer onReject.Release()
	promise.Call("then", onResolve, onReject)
	<-done
	return result, ok
}
