package psm

import (
	"fmt"
	"slices"
	"time"

	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/kvcore/internal/optstate"
	"github.com/webkv/webkv/kvcore/wire"
)

// Row-sparse keys (wire.TypeRowPush, wire.TypeRowPull). A key part is
// stored dense whatever its pushes; a row-sparse push is checked against
// the part (wire.CheckRows), its rows scattered into a zeroed arrival
// buffer of the part (the same buffer, and the same budget, as a dense
// push), and it joins the key's dist_sync round as a dense push does: the
// sum is MXNet's sparse aggregation (rows of several workers add up; a
// push without rows counts for the round). Without an optimizer the sum
// is assigned (rows nobody pushed become zero, MXNet's assign of a
// row_sparse push). With one, a round whose pushes were all row-sparse
// updates only the union of their rows when the optimizer updates lazily
// (optimizer.Spec.Lazy: sgd, adam, adagrad, ftrl); the others, a custom updater
// module, and rounds mixing dense pushes take the dense update. A pull of
// rows answers only those rows' values inside the part.

// keyRows is a key part's row-sparse scratch.
type keyRows struct {
	opt   optstate.Rows
	grad  compute.Buffer // compact merged gradient
	host  []float32      // full rows of a push, host side
	stage compute.Buffer // the same on the backend
	rows  []uint32
	resv  int64 // bytes reserved from the budget for the scratch (rowScratch)
}

func (j *Job) freeRows(k *key) {
	if k.rs == nil {
		return
	}
	k.rs.opt.Free(j.be)
	for _, b := range []compute.Buffer{k.rs.grad, k.rs.stage} {
		if b != nil {
			j.be.Free(b)
		}
	}
	j.release(k.rs.resv)
	k.rs = nil
}

// rowWidth is the number of values in a row of k (0: a 0-d key).
func (k *key) rowWidth() int {
	if len(k.shape) == 0 {
		return 0
	}
	w := 1
	for _, d := range k.shape[1:] {
		w *= int(d)
	}
	return w
}

// rowScratch returns k's scratch, first reserving from the budget the
// words it may hold (at least: the reservation only grows): the lazy
// update's compact weights, gradient and states, and on a backend other
// than the CPU the staging of one push.
func (j *Job) rowScratch(k *key, words int) (*keyRows, *wire.Error) {
	if k.rs == nil {
		k.rs = &keyRows{}
	}
	if _, cpu := j.be.(*compute.CPU); !cpu {
		words += k.n
	}
	if need := 4 * int64(words); need > k.rs.resv {
		if !j.reserve(need-k.rs.resv, false) {
			return nil, j.errBudget(fmt.Sprintf("the row-sparse scratch of key %s", k.label()), need-k.rs.resv)
		}
		k.rs.resv = need
	}
	return k.rs, nil
}

func (j *Job) rowPush(now time.Duration, w *worker, m *wire.Msg) {
	k := j.lookup(w, m)
	if k == nil {
		return
	}
	width := k.rowWidth()
	if int(m.Offset) != k.off || int(m.Total) != k.total || m.DType != wire.DTypeF32 {
		j.reject(w, m.Seq, wire.Errorf(wire.CodeShape, "key %s: row-sparse push of %v for part [%d, +%d) of %d, this shard holds [%d, +%d) of %d",
			k.label(), m.DType, m.Offset, m.Count, m.Total, k.off, k.n, k.total))
		return
	}
	rs, werr := j.rowScratch(k, 0)
	if werr != nil {
		j.reject(w, m.Seq, werr)
		return
	}
	rows, werr := wire.CheckRows(rs.rows[:0], m.Meta(), width, k.off, k.n, int(m.Count))
	rs.rows = rows[:0]
	if werr != nil {
		j.reject(w, m.Seq, wire.Errorf(werr.Code, "key %s: %s", k.label(), werr.Msg))
		return
	}
	if j.mode == wire.ModeAsync && j.opt == nil && j.cu == nil {
		j.reject(w, m.Seq, wire.Errorf(wire.CodeMode, "key %s: dist_async needs an optimizer on the server: call SetOptimizer before pushing", k.label()))
		return
	}
	j.stats.Pushes++
	j.stats.BytesIn += uint64(len(m.Payload))
	if j.mode == wire.ModeSync && m.Round < k.rounds {
		j.stats.LatePushes++
		j.answer(w, m.Seq, m.Type, wire.Header{Key: k.id, Round: k.rounds - 1, Flags: wire.FlagLate})
		return
	}
	buf, err := j.decodeRows(k, rows, width, m)
	if err != nil {
		j.reject(w, m.Seq, wire.Errorf(wire.CodeInternal, "key %s: %v", k.label(), err))
		return
	}
	a := arrival{w: w, seq: m.Seq, buf: buf, rsp: true, ext: &arrivalExt{rows: slices.Clone(rows)}}
	if j.mode == wire.ModeAsync {
		err := j.updateArrivals(k, buf, []arrival{a})
		k.putFree(buf)
		j.touch(k)
		if err != nil {
			j.reject(w, m.Seq, wire.Errorf(updateCode(err), "key %s: optimizer step: %v", k.label(), err))
			return
		}
		k.rounds++
		j.stats.Updates++
		j.rd.Persist = true
		j.answer(w, m.Seq, m.Type, wire.Header{Key: k.id, Round: k.rounds - 1})
		return
	}
	j.arrive(now, w, m.Seq, k, &a, buf)
}

// decodeRows makes the arrival buffer of a row-sparse push: the part,
// zero but for the pushed rows.
func (j *Job) decodeRows(k *key, rows []uint32, width int, m *wire.Msg) (compute.Buffer, error) {
	buf, err := j.bufferOf(k)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (compute.Buffer, error) {
		k.putFree(buf)
		return nil, err
	}
	if err := j.be.Fill(buf, 0); err != nil {
		return fail(err)
	}
	if len(rows) == 0 {
		return buf, nil
	}
	// The data is rows' values inside the part: full rows but for the
	// start of the first and the end of the last.
	vals := wire.Float32View(m.Data(), nil)
	full := len(rows) * width
	lead := max(k.off-int(rows[0])*width, 0)
	if cb, ok := buf.(*compute.CPUBuffer); ok {
		d := cb.Float32s()
		at := 0
		for _, r := range rows {
			lo, hi := max(int(r)*width-k.off, 0), min((int(r)+1)*width-k.off, k.n)
			copy(d[lo:hi], vals[at:at+hi-lo])
			at += hi - lo
		}
		return buf, nil
	}
	rs := k.rs
	if cap(rs.host) < full {
		rs.host = make([]float32, full)
	}
	h := rs.host[:full]
	clear(h)
	copy(h[lead:], vals)
	if rs.stage, err = optstate.Exact(j.be, rs.stage, full); err != nil {
		return fail(err)
	}
	if err := j.be.Write(rs.stage, 0, h); err != nil {
		return fail(err)
	}
	if err := compute.ScatterRows(j.be, buf, rs.stage, rows, width, k.off, false); err != nil {
		return fail(err)
	}
	return buf, nil
}

// updateArrivals runs the update of k with the merged gradient g of the
// pushes arr: lazily on the union of their rows when all were row-sparse
// and the optimizer updates lazily, densely otherwise (update).
func (j *Job) updateArrivals(k *key, g compute.Buffer, arr []arrival) error {
	opt := j.opt
	if opt == nil || j.cu != nil || !opt.Lazy() {
		return j.update(k, g)
	}
	u := j.rowUnion[:0] // reused: one lazy update a round, no allocation
	for _, a := range arr {
		if a.buf == nil {
			continue // refused (NaN or Inf): not part of the update
		}
		if !a.rsp {
			return j.update(k, g)
		}
		u = append(u, a.rows()...)
	}
	slices.Sort(u)
	u = slices.Compact(u)
	j.rowUnion = u
	width := k.rowWidth()
	k.slot.T++
	j.numUpdate = max(j.numUpdate, k.slot.T)
	var p compute.StepParams
	opt.Params(k.optName(), k.slot.T, k.slot.T, &p)
	want := opt.Kind().NumStates(&p)
	if len(k.slot.States) != want {
		if need := keyBytes(k.n, opt, want); need > k.resv && !j.rebudget(k, need) {
			return &codedErr{j.errBudget(fmt.Sprintf("the %d optimizer states of key %s", want, k.label()), need-k.resv)}
		}
	}
	// Compact weights, gradient and states of at most every row.
	rs, werr := j.rowScratch(k, (want+2)*k.n)
	if werr != nil {
		return &codedErr{werr}
	}
	if len(u) == 0 {
		// Nothing to update, but the update is counted (MXNet's lazy
		// update of an empty gradient).
		_, err := k.slot.Prepare(j.be, opt, k.optName(), k.n, k.slot.T)
		return err
	}
	var err error
	if rs.grad, err = optstate.Exact(j.be, rs.grad, len(u)*width); err != nil {
		return err
	}
	if err := compute.GatherRows(j.be, rs.grad, g, u, width, k.off); err != nil {
		return err
	}
	return k.slot.StepRows(j.be, &rs.opt, opt, k.optName(), k.n, k.slot.T, k.stored, rs.grad, u, width, k.off)
}

func (j *Job) rowPull(w *worker, m *wire.Msg) {
	k := j.lookup(w, m)
	if k == nil {
		return
	}
	width := k.rowWidth()
	if k.rs == nil {
		k.rs = &keyRows{} // a pull needs only the row list
	}
	rs := k.rs
	rows, werr := wire.CheckRows(rs.rows[:0], m.Meta(), width, k.off, k.n, int(m.Count))
	rs.rows = rows[:0]
	if werr != nil || int(m.Offset) != k.off || int(m.Total) != k.total {
		if werr == nil {
			werr = wire.Errorf(wire.CodeShape, "part [%d, …) of %d, this shard holds [%d, +%d) of %d", m.Offset, m.Total, k.off, k.n, k.total)
		}
		j.reject(w, m.Seq, wire.Errorf(werr.Code, "key %s: %s", k.label(), werr.Msg))
		return
	}
	vals, err := j.hostValue(k)
	if err != nil {
		j.fail(w.conn, m.Seq, wire.Errorf(wire.CodeInternal, "key %s: reading the value: %v", k.label(), err))
		return
	}
	j.stats.Pulls++
	delete(w.held, m.Seq)
	start := len(j.scratch)
	for _, r := range rows {
		lo, hi := max(int(r)*width-k.off, 0), min((int(r)+1)*width-k.off, k.n)
		j.scratch = wire.AppendFloat32s(j.scratch, vals[lo:hi])
	}
	p := j.scratch[start:]
	h := wire.Header{Type: wire.TypeAck, Seq: m.Seq, Round: k.rounds, Key: k.id, DType: wire.DTypeF32,
		Count: m.Count, Offset: uint32(k.off), Total: uint32(k.total)}
	if k.str {
		h.Flags |= wire.FlagStrKey
	}
	j.stats.BytesOut += uint64(len(p))
	j.send(w.conn, wire.Msg{Header: h, Payload: p})
}
