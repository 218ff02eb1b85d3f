//go:build js

package shaders

import (
	"fmt"
	"syscall/js"
	"unsafe"

	"github.com/cogentcore/webgpu/wgpu"
)

// On GOOS=js GetMappedRange returns a copy, so writes into a mapped buffer
// never reach the GPU. Uploads therefore Queue.WriteBuffer the bytes into an
// upload page (CopySrc|CopyDst) and record a copy from it in the batch's
// encoder, so they keep their place among recorded kernels without
// submitting the batch early. A page region is written once per batch: all
// WriteBuffer calls of a batch run before its submit, and those of the next
// batch run after it on the queue timeline, so pages are reused at once.

const (
	jsPageBytes   = 4 << 20
	jsMaxPageUse  = 64 // pages per batch before the batch is submitted
	jsMaxBigBytes = 256 << 20
)

type staging struct {
	dev     js.Value   // the GPUDevice, when built by NewJS: errors via error scopes
	open    bool       // the batch's scopes are pushed
	pending []js.Value // popErrorScope promises of submitted work

	pages    []*sized // upload pages, reused every batch
	cur      int      // page being filled
	used     uint64   // bytes of pages[cur] used in this batch
	big      []*sized // dedicated upload buffers of this and earlier batches
	bigBytes uint64
}

func (st *staging) upload(b *Backend, d *Buffer, off int, src []float32) error {
	raw := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(src))), len(src)*4)
	bytes := uint64(len(raw))
	if st.bigBytes > jsMaxBigBytes {
		b.setErr(b.wait()) // recycle dedicated buffers; keep any error
	}
	if _, err := b.encoder(); err != nil { // opens the batch (and its error scopes)
		return err
	}
	if bytes > jsPageBytes {
		buf, err := b.dev.CreateBuffer(&wgpu.BufferDescriptor{Label: "webkv upload", Size: bytes,
			Usage: wgpu.BufferUsageCopySrc | wgpu.BufferUsageCopyDst})
		if err != nil {
			return fmt.Errorf("shaders: upload buffer of %d bytes: %w", bytes, err)
		}
		st.big = append(st.big, &sized{buf, bytes})
		st.bigBytes += bytes
		if err := writeBuffer(b.q, buf, 0, raw); err != nil { // len(raw) > 0: WriteBuffer panics on empty slices
			return err
		}
		return b.copyCmd(buf, 0, d.buf, uint64(off)*4, bytes)
	}
	if len(st.pages) == 0 || st.used+bytes > jsPageBytes {
		if len(st.pages) > 0 {
			st.cur++
			st.used = 0
		}
		if st.cur == jsMaxPageUse {
			b.flush() // resets cur
		}
		if st.cur == len(st.pages) {
			buf, err := b.dev.CreateBuffer(&wgpu.BufferDescriptor{Label: "webkv upload page", Size: jsPageBytes,
				Usage: wgpu.BufferUsageCopySrc | wgpu.BufferUsageCopyDst})
			if err != nil {
				return fmt.Errorf("shaders: upload page: %w", err)
			}
			st.pages = append(st.pages, &sized{buf, jsPageBytes})
		}
		if _, err := b.encoder(); err != nil {
			return err
		}
	}
	page, at := st.pages[st.cur], st.used
	st.used += bytes
	if err := writeBuffer(b.q, page.buf, at, raw); err != nil {
		return err
	}
	return b.copyCmd(page.buf, at, d.buf, uint64(off)*4, bytes)
}

func (st *staging) beforeSubmit(b *Backend) {}

func (st *staging) afterSubmit(b *Backend) {
	st.closeBatch()
	st.cur, st.used = 0, 0
}

func (st *staging) afterWait(b *Backend) {
	st.drainScopes(b)
	for _, x := range st.big {
		x.buf.Destroy()
		x.buf.Release()
	}
	st.big, st.bigBytes = st.big[:0], 0
}

// close destroys the upload buffers (the queue is idle).
func (st *staging) close(b *Backend) {
	for _, x := range append(st.pages, st.big...) {
		x.buf.Destroy()
		x.buf.Release()
	}
	st.pages, st.big, st.bigBytes, st.cur, st.used = nil, nil, 0, 0, 0
}

// waitIdle blocks until submitted work is done (never call this from a
// js.FuncOf callback). It awaits onSubmittedWorkDone itself, as mapForRead
// awaits mapAsync.
func waitIdle(b *Backend) { await((*jsHandle)(unsafe.Pointer(b.q)).v.Call("onSubmittedWorkDone")) }

func endPass(p *wgpu.ComputePassEncoder) error {
	p.End()
	return nil
}

// checkWrapped cannot inspect a buffer on js (no GetSize/GetUsage in the
// binding): it trusts n.
func checkWrapped(buf *wgpu.Buffer, n int) (int, error) { return n, nil }
