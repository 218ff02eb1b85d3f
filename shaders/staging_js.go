//go:build js

package shaders

import (
	"syscall/js"
	"unsafe"

	"github.com/cogentcore/webgpu/wgpu"
)

// On GOOS=js GetMappedRange returns a copy, so writes into a mapped buffer
// never reach the GPU: uploads use Queue.WriteBuffer, after submitting the
// recorded batch so that the write keeps its place among recorded kernels.

type staging struct {
	dev     js.Value   // the GPUDevice, when built by NewJS: errors via error scopes
	open    bool       // the batch's scopes are pushed
	pending []js.Value // popErrorScope promises of submitted work
}

func (st *staging) upload(b *Backend, d *Buffer, off int, src []float32) error {
	b.flush()
	raw := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(src))), len(src)*4)
	if st.scoped() {
		st.push()
		defer func() { st.pending = append(st.pending, st.pop()...) }()
	}
	return b.q.WriteBuffer(d.buf, uint64(off)*4, raw) // len(src) > 0: WriteBuffer panics on empty slices
}

func (st *staging) beforeSubmit(b *Backend) {}
func (st *staging) afterSubmit(b *Backend)  { st.closeBatch() }
func (st *staging) afterWait(b *Backend)    { st.drainScopes(b) }

// waitIdle blocks until submitted work is done (onSubmittedWorkDone is
// awaited by the binding; never call this from a js.FuncOf callback).
func waitIdle(b *Backend) { b.q.OnSubmittedWorkDone(func(wgpu.QueueWorkDoneStatus) {}) }

func endPass(p *wgpu.ComputePassEncoder) error {
	p.End()
	return nil
}

// checkWrapped cannot inspect a buffer on js (no GetSize/GetUsage in the
// binding): it trusts n.
func checkWrapped(buf *wgpu.Buffer, n int) (int, error) { return n, nil }
