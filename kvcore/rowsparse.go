package kvcore

import (
	"errors"
	"fmt"
	"slices"

	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/kvcore/internal/engine"
	"github.com/webkv/webkv/kvcore/internal/optstate"
)

// RowSparse is a row-sparse value of a key, MXNet's row_sparse NDArray:
// the rows Rows of the key's value, Data holding them back to back (shape
// (len(Rows), s1, s2, …) for a key of shape (s0, s1, s2, …); a 1-d key's
// rows are single values). Every row not in Rows is zero. Rows of a pushed
// value are strictly increasing row numbers in [0, s0), as MXNet keeps a
// row_sparse array's indices; a value without rows has a nil Data.
//
// A row-sparse push (Store.PushRowSparse) and pull (Store.RowSparsePull)
// move only the rows: over the wire of a dist store too, which is what makes
// big embedding tables trainable over a home link.
type RowSparse struct {
	Rows []int64
	Data *Array
}

// ErrBadRowIDs is wrapped by the errors of row-sparse calls whose row ids
// are out of range or, for a pushed value, not strictly increasing.
var ErrBadRowIDs = errors.New("bad row ids")

// rowScratch is one key's row-sparse scratch, used under its variable.
type rowScratch struct {
	merge compute.Buffer // compact sum of the values
	dense compute.Buffer // densified sum, for updaters
	stage []compute.Buffer
	out   compute.Buffer // compact rows of a pull
	opt   optstate.Rows
	host  []float32
}

func (r *rowScratch) free(be compute.Backend) {
	for _, b := range append([]compute.Buffer{r.merge, r.dense, r.out}, r.stage...) {
		if b != nil {
			be.Free(b)
		}
	}
	r.opt.Free(be)
}

// rowWidth is the number of values in one row of a key of shape shape,
// and its number of rows.
func rowWidth(shape []int) (width, rows int) {
	if len(shape) == 0 {
		return 0, 0
	}
	width = 1
	for _, d := range shape[1:] {
		width *= d
	}
	return width, shape[0]
}

// PushRowSparse queues a push of row-sparse values (one per device) to key,
// as Push does for dense ones: the values are summed row by row (a row
// several values hold is added up, MXNet's sparse aggregation); without an
// updater or optimizer the sum replaces the stored value (the rows it does
// not hold become zero, as MXNet assigns a row_sparse push); with an
// optimizer only the rows the sum holds are updated when the optimizer
// updates lazily (optimizer.Spec.Lazy: sgd and adam with MXNet's
// lazy_update, true by default, adagrad, ftrl), and the densified sum goes
// through the others and through an Updater or updater module. In a dist store only the rows travel: the servers sum the
// workers' rows (a worker's value without rows still counts for its
// dist_sync round). Row-sparse values are never compressed: with a
// gradient compression set the push fails with ErrUnsupported (MXNet's
// rule). It returns once queued.
func (s *Store) PushRowSparse(key Key, values ...RowSparse) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return fmt.Errorf("kvcore: push key %v: %w", key, ErrClosed)
	}
	e, err := s.lookup("push", key)
	if err != nil {
		return err
	}
	if len(values) == 0 {
		return fmt.Errorf("kvcore: push key %v: no value given: %w", key, ErrNilArray)
	}
	width, nrows := rowWidth(e.shape)
	if width == 0 {
		return fmt.Errorf("kvcore: push key %v: a 0-d key has no rows: %w", key, ErrShapeMismatch)
	}
	if s.comp.Kind != compute.CompressNone {
		return fmt.Errorf("kvcore: push key %v: row-sparse values are not compressed (gradient compression is set): %w", key, ErrUnsupported)
	}
	o := &rsOp{s: s, e: e, width: width, push: true}
	for i, v := range values {
		rows, err := checkPushRows(v.Rows, nrows)
		if err != nil {
			return fmt.Errorf("kvcore: push key %v: value %d: %w", key, i, err)
		}
		if len(rows) == 0 {
			if v.Data != nil {
				return fmt.Errorf("kvcore: push key %v: value %d has data but no rows: %w", key, i, ErrShapeMismatch)
			}
		} else {
			if v.Data == nil || v.Data.buf == nil {
				return fmt.Errorf("kvcore: push key %v: value %d: %w", key, i, ErrNilArray)
			}
			if want := append([]int{len(rows)}, e.shape[1:]...); !v.Data.sameShape(want) {
				return fmt.Errorf("kvcore: push key %v: value %d has %d rows and data of shape %v, want %v: %w", key, i, len(rows), v.Data.shape, want, ErrShapeMismatch)
			}
			o.eng.Use(v.Data.v, false)
		}
		o.rows = append(o.rows, rows)
		o.data = append(o.data, v.Data)
	}
	s.queueRows(o)
	return nil
}

// RowSparsePull queues a pull of rows rowIDs of key into out, MXNet's
// row_sparse_pull: rowIDs may repeat and come in any order (they are
// sorted and made unique, as MXNet's servers do), and out.Rows is set to
// the result at once. out.Data is either of the key's shape (the requested
// rows are written, every other row is set to zero) or holds just the
// rows: shape (len(out.Rows), s1, …); with no rows requested it may be nil.
// In a dist store only the requested rows travel.
func (s *Store) RowSparsePull(key Key, out *RowSparse, rowIDs []int64) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return fmt.Errorf("kvcore: pull key %v: %w", key, ErrClosed)
	}
	e, err := s.lookup("pull", key)
	if err != nil {
		return err
	}
	if out == nil {
		return fmt.Errorf("kvcore: pull key %v: no output given: %w", key, ErrNilArray)
	}
	width, nrows := rowWidth(e.shape)
	if width == 0 {
		return fmt.Errorf("kvcore: pull key %v: a 0-d key has no rows: %w", key, ErrShapeMismatch)
	}
	rows, err := normalizeRows(rowIDs, nrows)
	if err != nil {
		return fmt.Errorf("kvcore: pull key %v: %w", key, err)
	}
	o := &rsOp{s: s, e: e, width: width, out: out.Data, pullRows: rows}
	switch {
	case out.Data != nil && out.Data.buf != nil && out.Data.sameShape(e.shape):
		o.dense = true
	case out.Data == nil && len(rows) == 0:
	case out.Data == nil || out.Data.buf == nil:
		return fmt.Errorf("kvcore: pull key %v: %w", key, ErrNilArray)
	case !out.Data.sameShape(append([]int{len(rows)}, e.shape[1:]...)):
		return fmt.Errorf("kvcore: pull key %v: output of shape %v for %d rows of a key of shape %v (want the key's shape or %v): %w",
			key, out.Data.shape, len(rows), e.shape, append([]int{len(rows)}, e.shape[1:]...), ErrShapeMismatch)
	}
	out.Rows = out.Rows[:0]
	for _, r := range rows {
		out.Rows = append(out.Rows, int64(r))
	}
	if out.Data != nil {
		o.eng.Use(out.Data.v, true)
	}
	s.queueRows(o)
	return nil
}

// checkPushRows checks a pushed value's rows: in [0, nrows), strictly
// increasing.
func checkPushRows(ids []int64, nrows int) ([]uint32, error) {
	rows := make([]uint32, len(ids))
	for i, r := range ids {
		if r < 0 || r >= int64(nrows) {
			return nil, fmt.Errorf("row id %d outside [0, %d): %w", r, nrows, ErrBadRowIDs)
		}
		if i > 0 && r <= ids[i-1] {
			return nil, fmt.Errorf("row id %d follows %d (a row-sparse value's rows are strictly increasing): %w", r, ids[i-1], ErrBadRowIDs)
		}
		rows[i] = uint32(r)
	}
	return rows, nil
}

// normalizeRows checks pull row ids against [0, nrows) and returns them
// sorted, without repeats (MXNet's Unique on the server).
func normalizeRows(ids []int64, nrows int) ([]uint32, error) {
	rows := make([]int, len(ids))
	for i, r := range ids {
		if r < 0 || r >= int64(nrows) {
			return nil, fmt.Errorf("row id %d outside [0, %d): %w", r, nrows, ErrBadRowIDs)
		}
		rows[i] = int(r)
	}
	return uniqueRows(rows), nil
}

// uniqueRows returns rows (row numbers) sorted, without repeats. It sorts
// ints, not uint32s: each element type slices.Sort is used with links its
// own sort code into the browser runtime (~4 KB gzipped; see addrPool),
// and the int one is linked anyway.
func uniqueRows(rows []int) []uint32 {
	slices.Sort(rows)
	u := make([]uint32, 0, len(rows))
	for i, r := range rows {
		if i == 0 || r != rows[i-1] {
			u = append(u, uint32(r))
		}
	}
	return u
}

// unionRows merges strictly increasing row lists into one.
func unionRows(lists [][]uint32) []uint32 {
	if len(lists) == 1 {
		return lists[0]
	}
	var rows []int
	for _, l := range lists {
		for _, r := range l {
			rows = append(rows, int(r))
		}
	}
	return uniqueRows(rows)
}

// positions returns where each of rows (a subset of u, both increasing)
// sits in u.
func positions(rows, u []uint32) []uint32 {
	pos := make([]uint32, len(rows))
	j := 0
	for i, r := range rows {
		for u[j] != r {
			j++
		}
		pos[i] = uint32(j)
	}
	return pos
}

// rsOp is one queued row-sparse push or pull.
type rsOp struct {
	eng   engine.Op
	s     *Store
	e     *entry
	width int
	push  bool
	// push
	rows [][]uint32
	data []*Array
	// pull
	pullRows []uint32
	out      *Array
	dense    bool
	host     []float32 // dist: the pulled rows
}

func (s *Store) queueRows(o *rsOp) {
	o.eng.Task = o
	o.eng.Use(o.e.v, true)
	s.run.Push(&o.eng)
}

// Done implements engine.Task.
func (o *rsOp) Done() {}

// Run implements engine.Task.
func (o *rsOp) Run() (bool, error) {
	s, e := o.s, o.e
	if e.rows == nil {
		e.rows = new(rowScratch)
	}
	if o.push {
		u, mg, err := s.mergeRows(e, o)
		if err == nil && s.kind == kindDist {
			return o.distPush(u, mg)
		}
		if err == nil {
			err = s.applyRows(e, u, mg, o.width)
		}
		if err != nil {
			err = fmt.Errorf("kvcore: push key %v: %w", e.key, err)
		}
		return false, s.flush(err, false)
	}
	if s.kind == kindDist {
		return o.distPull()
	}
	err := s.pullRows(e, o)
	if err != nil {
		err = fmt.Errorf("kvcore: pull key %v: %w", e.key, err)
	}
	return false, s.flush(err, o.out != nil && o.out.be == s.be)
}

// mergeRows sums the values of a push into a compact buffer on the
// store's backend: the union u of their rows, its rows back to back (nil
// when no value has rows).
func (s *Store) mergeRows(e *entry, o *rsOp) (u []uint32, mg compute.Buffer, err error) {
	u = unionRows(o.rows)
	if len(u) == 0 {
		return nil, nil, nil
	}
	sc, w := e.rows, o.width
	var ins []compute.Buffer
	for i, a := range o.data {
		if a == nil {
			ins = append(ins, nil)
			continue
		}
		b := a.buf
		if !compatible(a.be, s.be) {
			for len(sc.stage) <= i {
				sc.stage = append(sc.stage, nil)
			}
			if sc.stage[i], err = optstate.Exact(s.be, sc.stage[i], a.n); err != nil {
				return nil, nil, err
			}
			if cap(sc.host) < a.n {
				sc.host = make([]float32, a.n)
			}
			if err = a.be.Read(a.buf, 0, sc.host[:a.n]); err != nil {
				return nil, nil, err
			}
			if err = s.be.Write(sc.stage[i], 0, sc.host[:a.n]); err != nil {
				return nil, nil, err
			}
			b = sc.stage[i]
		}
		ins = append(ins, b)
	}
	if sc.merge, err = optstate.Exact(s.be, sc.merge, len(u)*w); err != nil {
		return nil, nil, err
	}
	if err = s.be.Fill(sc.merge, 0); err != nil {
		return nil, nil, err
	}
	for i, b := range ins {
		if b == nil {
			continue
		}
		if err = compute.ScatterRows(s.be, sc.merge, b, positions(o.rows[i], u), w, 0, true); err != nil {
			return nil, nil, err
		}
	}
	return u, sc.merge, nil
}

// applyRows applies a merged row-sparse push (rows u of mg) to e's stored
// value: assign, lazy optimizer step, or the densified sum through an
// updater.
func (s *Store) applyRows(e *entry, u []uint32, mg compute.Buffer, w int) error {
	s.mu.RLock()
	opt, upd, mod := s.opt, s.updater, s.module
	s.mu.RUnlock()
	sc := e.rows
	if opt != nil {
		e.slot.T++
		s.mu.Lock()
		s.numUpdate = max(s.numUpdate, e.slot.T)
		num := s.numUpdate
		s.mu.Unlock()
		return e.slot.StepRows(s.be, &sc.opt, opt, e.name, e.n, num, e.stored, mg, u, w, 0)
	}
	if upd == nil && mod == nil {
		// Assign: the stored value becomes the sparse sum.
		if err := s.be.Fill(e.stored, 0); err != nil {
			return err
		}
		if len(u) == 0 {
			return nil
		}
		return compute.ScatterRows(s.be, e.stored, mg, u, w, 0, false)
	}
	var err error
	if sc.dense, err = optstate.Exact(s.be, sc.dense, e.n); err != nil {
		return err
	}
	if err := s.be.Fill(sc.dense, 0); err != nil {
		return err
	}
	if len(u) > 0 {
		if err := compute.ScatterRows(s.be, sc.dense, mg, u, w, 0, false); err != nil {
			return err
		}
	}
	if mod != nil {
		return s.moduleStep(mod, e, sc.dense, 1)
	}
	e.mview = Array{shape: e.shape, n: e.n, dev: s.dev, be: s.be, buf: sc.dense}
	e.sview = Array{shape: e.shape, n: e.n, dev: s.dev, be: s.be, buf: e.stored}
	if err := upd(e.key, &e.mview, &e.sview); err != nil {
		return fmt.Errorf("updater: %w", err)
	}
	return nil
}

// pullRows writes the rows of a local or device store's row-sparse pull.
func (s *Store) pullRows(e *entry, o *rsOp) error {
	a, rows, w := o.out, o.pullRows, o.width
	if a == nil {
		return nil
	}
	if len(rows) == 0 {
		return a.be.Fill(a.buf, 0)
	}
	m := len(rows) * w
	if !o.dense && compatible(a.be, s.be) {
		return compute.GatherRows(s.be, a.buf, e.stored, rows, w, 0)
	}
	sc := e.rows
	var err error
	if sc.out, err = optstate.Exact(s.be, sc.out, m); err != nil {
		return err
	}
	if err := compute.GatherRows(s.be, sc.out, e.stored, rows, w, 0); err != nil {
		return err
	}
	if compatible(a.be, s.be) {
		if err := a.be.Fill(a.buf, 0); err != nil {
			return err
		}
		return compute.ScatterRows(s.be, a.buf, sc.out, rows, w, 0, false)
	}
	if cap(sc.host) < m {
		sc.host = make([]float32, m)
	}
	if err := s.be.Read(sc.out, 0, sc.host[:m]); err != nil {
		return err
	}
	return o.writeOut(sc.host[:m])
}

// writeOut writes pulled rows (host memory, back to back) into the
// output: as they are, or scattered into a zeroed dense array.
func (o *rsOp) writeOut(rowsData []float32) error {
	a, w := o.out, o.width
	if !o.dense {
		return a.be.Write(a.buf, 0, rowsData)
	}
	d := make([]float32, a.n)
	for i, r := range o.pullRows {
		copy(d[int(r)*w:(int(r)+1)*w], rowsData[i*w:(i+1)*w])
	}
	return a.be.Write(a.buf, 0, d)
}
