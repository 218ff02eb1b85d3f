//go:build js || cgo

package shaders

import (
	"fmt"
	"math"

	"github.com/webkv/webkv/kvcore/compute"
)

// Row-sparse gather and scatter (compute.RowMover) with rows.wgsl: the
// row ids go up as a u32 buffer, the compact and the dense buffer are
// bound in windows of at most one binding each (a dense window takes the
// rows' words inside it: the window is the reference's clipping, shifted).

var _ compute.RowMover = (*Backend)(nil)

func rowsKernel(scatter, add bool) *kernel {
	return cached(kernelID{7, false, b2i(scatter), b2i(add), 0, 0}, func() *kernel {
		bind := []access{accRead, accRead, accWrite}
		return &kernel{file: "rows.wgsl", bind: bind, data: map[string]any{"Scatter": scatter, "Add": add}}
	})
}

// GatherRows implements compute.RowMover.
func (b *Backend) GatherRows(dst, src compute.Buffer, rows []uint32, width, shift int) error {
	return b.moveRows(dst, src, rows, width, shift, false, false)
}

// ScatterRows implements compute.RowMover.
func (b *Backend) ScatterRows(dst, src compute.Buffer, rows []uint32, width, shift int, add bool) error {
	return b.moveRows(src, dst, rows, width, shift, true, add)
}

func (b *Backend) moveRows(compactB, denseB compute.Buffer, rows []uint32, width, shift int, scatter, add bool) error {
	c, err := b.buffer(compactB, "rows: compact buffer")
	if err != nil {
		return err
	}
	d, err := b.buffer(denseB, "rows: dense buffer")
	if err != nil {
		return err
	}
	if err := compute.CheckRows(rows, width, c.n, scatter); err != nil {
		return err
	}
	if c.buf == d.buf {
		return fmt.Errorf("shaders: rows: the compact and the dense buffer must be distinct")
	}
	if shift < 0 || uint64(len(rows))*uint64(width)+uint64(shift) > math.MaxUint32 || uint64(d.n)+uint64(shift) > math.MaxUint32 {
		return fmt.Errorf("shaders: rows: %d rows of %d words at shift %d exceed 2^32 words", len(rows), width, shift)
	}
	if len(rows) > b.chunkWords {
		return fmt.Errorf("shaders: rows: %d row ids do not fit one binding of %d words", len(rows), b.chunkWords)
	}
	m := len(rows) * width
	b.mu.Lock()
	defer b.mu.Unlock()
	if !scatter && m > 0 {
		// Words of rows outside the dense buffer read 0.
		if err := b.elementwise(fillKernel, []*Buffer{c}, &params{Scale: 0}); err != nil {
			return err
		}
	}
	if m == 0 {
		return nil
	}
	ids, err := b.alloc(len(rows))
	if err != nil {
		return err
	}
	// Pooled again at once: later uses are recorded after these dispatches.
	defer b.free(ids)
	bits := make([]float32, len(rows))
	for i, r := range rows {
		bits[i] = math.Float32frombits(r)
	}
	if err := b.st.upload(b, ids, 0, bits); err != nil {
		return err
	}
	k := rowsKernel(scatter, add)
	for dlo := 0; dlo < d.n; dlo += b.chunkWords {
		dcnt := min(b.chunkWords, d.n-dlo)
		for clo := 0; clo < m; clo += b.chunkWords {
			ccnt := min(b.chunkWords, m-clo)
			binds := append(b.scratch[:0], binding{ids, 0, len(rows)}, binding{c, clo, ccnt}, binding{d, dlo, dcnt})
			if !scatter {
				binds[1], binds[2] = binding{d, dlo, dcnt}, binding{c, clo, ccnt}
			}
			p := &params{Aux: uint32(width), Aux2: uint32(shift + dlo), Aux3: uint32(dcnt), F2: math.Float32frombits(uint32(clo))}
			if err := b.dispatch(k, binds, p, ccnt); err != nil {
				return err
			}
		}
	}
	return nil
}
