//go:build cgo && !js

package shaders

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/cogentcore/webgpu/wgpu"
)

// Uploads natively go through reused MapWrite staging buffers: memcpy into
// a mapped buffer, then a copy command recorded in the step's encoder, so
// the upload keeps its place among the recorded kernels. A 64 MB
// Queue.WriteBuffer took ~300 ms on lavapipe, the mapped path ~8.5 ms.
// Small uploads share a mapped 4 MiB page; large ones get a buffer of their
// size class. After the queue drains, used buffers are mapped again and
// pooled.

const (
	pagebytes         = 4 << 20
	maxUploadPiece    = 64 << 20
	maxStagingPooled  = 256 << 20
	maxStagingInFlite = 256 << 20
)

type mapped struct {
	sized
	data []byte // mapped range while mapped, else nil
}

type staging struct {
	page      *mapped
	pageUsed  uint64
	used      []*mapped // in the batch being recorded
	inflight  []*mapped // submitted, not yet known complete
	inBytes   uint64
	free      map[uint64][]*mapped // mapped and ready
	freeBytes uint64
}

func (st *staging) get(b *Backend, size uint64) (*mapped, error) {
	class := b.sizeClass(size)
	if l := st.free[class]; len(l) > 0 {
		m := l[len(l)-1]
		st.free[class] = l[:len(l)-1]
		st.freeBytes -= class
		return m, nil
	}
	buf, err := b.dev.CreateBuffer(&wgpu.BufferDescriptor{
		Label: "webkv upload", Size: class, MappedAtCreation: true,
		Usage: wgpu.BufferUsageMapWrite | wgpu.BufferUsageCopySrc,
	})
	if err != nil {
		return nil, fmt.Errorf("shaders: upload buffer of %d bytes: %w", class, err)
	}
	return &mapped{sized: sized{buf, class}, data: buf.GetMappedRange(0, uint(class))}, nil
}

func (st *staging) upload(b *Backend, d *Buffer, off int, src []float32) error {
	for len(src) > 0 {
		n := min(len(src), maxUploadPiece/4)
		if err := st.uploadPiece(b, d, off, src[:n]); err != nil {
			return err
		}
		src, off = src[n:], off+n
	}
	return nil
}

func (st *staging) uploadPiece(b *Backend, d *Buffer, off int, src []float32) error {
	if st.inBytes > maxStagingInFlite {
		// Many uploads without a Sync: drain the queue to recycle buffers,
		// keeping any error for the next Read or Sync.
		b.setErr(b.wait())
	}
	bytes := uint64(len(src)) * 4
	raw := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(src))), bytes)
	if bytes <= pagebytes {
		if st.page == nil || st.pageUsed+bytes > pagebytes {
			st.retirePage()
			m, err := st.get(b, pagebytes)
			if err != nil {
				return err
			}
			st.page, st.pageUsed = m, 0
		}
		at := st.pageUsed
		copy(st.page.data[at:at+bytes], raw)
		st.pageUsed += bytes
		return b.copyCmd(st.page.buf, at, d.buf, uint64(off)*4, bytes)
	}
	m, err := st.get(b, bytes)
	if err != nil {
		return err
	}
	copy(m.data[:bytes], raw)
	m.data = nil
	if err := m.buf.Unmap(); err != nil {
		m.buf.Destroy()
		m.buf.Release()
		return fmt.Errorf("shaders: unmapping an upload buffer: %w", err)
	}
	st.used = append(st.used, m)
	return b.copyCmd(m.buf, 0, d.buf, uint64(off)*4, bytes)
}

// retirePage unmaps the current page and keeps it with the batch.
func (st *staging) retirePage() {
	if st.page == nil {
		return
	}
	st.page.data = nil
	st.page.buf.Unmap()
	st.used = append(st.used, st.page)
	st.page = nil
}

// beforeSubmit: a mapped buffer may not be used by a submitted copy.
func (st *staging) beforeSubmit(b *Backend) { st.retirePage() }

func (st *staging) afterSubmit(b *Backend) {
	for _, m := range st.used {
		st.inBytes += m.size
	}
	st.inflight = append(st.inflight, st.used...)
	st.used = st.used[:0]
}

// afterWait maps the buffers of completed uploads again for reuse.
func (st *staging) afterWait(b *Backend) {
	if st.free == nil {
		st.free = map[uint64][]*mapped{}
	}
	for _, m := range st.inflight {
		if st.freeBytes+m.size > maxStagingPooled {
			m.buf.Destroy()
			m.buf.Release()
			continue
		}
		if err := remap(b, m); err != nil {
			m.buf.Destroy()
			m.buf.Release()
			continue
		}
		st.free[m.size] = append(st.free[m.size], m)
		st.freeBytes += m.size
	}
	st.inflight = st.inflight[:0]
	st.inBytes = 0
}

func remap(b *Backend, m *mapped) error {
	done := false
	status := wgpu.BufferMapAsyncStatusUnknown
	if err := m.buf.MapAsync(wgpu.MapModeWrite, 0, m.size, func(s wgpu.BufferMapAsyncStatus) {
		status, done = s, true
	}); err != nil {
		return err
	}
	for i := 0; !done && i < 1000; i++ {
		b.dev.Poll(true, nil)
	}
	if !done || status != wgpu.BufferMapAsyncStatusSuccess {
		return errors.New("shaders: remapping an upload buffer failed")
	}
	m.data = m.buf.GetMappedRange(0, uint(m.size))
	return nil
}

// close destroys every staging buffer (the queue is idle).
func (st *staging) close(b *Backend) {
	st.retirePage()
	for _, m := range append(st.used, st.inflight...) {
		m.buf.Destroy()
		m.buf.Release()
	}
	for _, l := range st.free {
		for _, m := range l {
			m.buf.Destroy()
			m.buf.Release()
		}
	}
	*st = staging{}
}

// waitIdle blocks until all submitted work is done.
func waitIdle(b *Backend) { b.dev.Poll(true, nil) }

func endPass(p *wgpu.ComputePassEncoder) error { return p.End() }

// checkWrapped validates an application buffer for WrapBuffer and returns
// its capacity in words.
func checkWrapped(buf *wgpu.Buffer, n int) (int, error) {
	if u := buf.GetUsage(); u&storageUsage != storageUsage {
		return 0, fmt.Errorf("shaders: WrapBuffer: buffer usage %v lacks Storage|CopySrc|CopyDst", u)
	}
	size := buf.GetSize()
	if size < uint64(n)*4 {
		return 0, fmt.Errorf("shaders: WrapBuffer: buffer of %d bytes is too small for %d words", size, n)
	}
	return int(size / 4), nil
}

// batchStart and checked are where GOOS=js opens WebGPU error scopes;
// natively every call returns its own error.
func (st *staging) batchStart(b *Backend) {}

func (st *staging) checked(b *Backend, what string, f func() error) error { return f() }
