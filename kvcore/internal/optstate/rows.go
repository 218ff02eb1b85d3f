package optstate

import (
	"fmt"

	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/kvcore/optimizer"
)

// Rows is the scratch of row-sparse updates of one key (kept by its owner
// between updates, freed with Free).
type Rows struct {
	w, g, d compute.Buffer   // compact weights, compact gradient, dense gradient
	st      []compute.Buffer // compact states
}

// Exact returns b, or a new buffer of exactly n words (n >= 1) in its
// place when b has another length (step kernels run over whole buffers).
func Exact(be compute.Backend, b compute.Buffer, n int) (compute.Buffer, error) {
	if b != nil && b.Len() == n {
		return b, nil
	}
	if b != nil {
		be.Free(b)
	}
	return be.Alloc(n)
}

// Free returns the scratch buffers to be.
func (rs *Rows) Free(be compute.Backend) {
	for _, b := range append([]compute.Buffer{rs.w, rs.g, rs.d}, rs.st...) {
		if b != nil {
			be.Free(b)
		}
	}
	*rs = Rows{}
}

// StepRows applies update number sl.T (the caller counts it first, as
// for Prepare) with a row-sparse gradient:
// grad holds len(rows) rows of width words back to back, rows[i] being
// the row number of its i-th row (strictly increasing) in weight, whose
// first word is word shift of the whole key (see compute.RowMover). When
// spec.Lazy() only those rows change; otherwise the gradient is
// densified (zero elsewhere) and the dense update runs. grad has exactly
// len(rows)*width words (it may be nil when rows is empty). n is weight's
// length; key and numUpdate are as in Prepare.
func (sl *Slot) StepRows(be compute.Backend, rs *Rows, spec *optimizer.Spec, key string, n, numUpdate int, weight, grad compute.Buffer, rows []uint32, width, shift int) error {
	kind, err := sl.Prepare(be, spec, key, n, numUpdate)
	if err != nil {
		return err
	}
	if !spec.Lazy() {
		if rs.d, err = Exact(be, rs.d, n); err != nil {
			return err
		}
		if err := be.Fill(rs.d, 0); err != nil {
			return err
		}
		if len(rows) > 0 {
			if err := compute.ScatterRows(be, rs.d, grad, rows, width, shift, false); err != nil {
				return err
			}
		}
		return be.Step(kind, &sl.Params, weight, rs.d, sl.States)
	}
	if len(rows) == 0 {
		return nil
	}
	m := len(rows) * width
	if rs.w, err = Exact(be, rs.w, m); err != nil {
		return err
	}
	for len(rs.st) < len(sl.States) {
		rs.st = append(rs.st, nil)
	}
	st := rs.st[:len(sl.States)]
	for i := range st {
		if st[i], err = Exact(be, st[i], m); err != nil {
			return err
		}
	}
	if grad.Len() != m {
		return fmt.Errorf("optstate: a row-sparse gradient of %d words for %d rows of %d", grad.Len(), len(rows), width)
	}
	if err := compute.GatherRows(be, rs.w, weight, rows, width, shift); err != nil {
		return err
	}
	for i, s := range sl.States {
		if err := compute.GatherRows(be, st[i], s, rows, width, shift); err != nil {
			return err
		}
	}
	if err := be.Step(kind, &sl.Params, rs.w, grad, st); err != nil {
		return err
	}
	if err := compute.ScatterRows(be, weight, rs.w, rows, width, shift, false); err != nil {
		return err
	}
	for i, s := range sl.States {
		if err := compute.ScatterRows(be, s, st[i], rows, width, shift, false); err != nil {
			return err
		}
	}
	return nil
}
