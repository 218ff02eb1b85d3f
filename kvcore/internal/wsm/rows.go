package wsm

import (
	"fmt"

	"github.com/webkv/webkv/kvcore/wire"
)

// RowPush sends this worker's row-sparse value of k (wire.TypeRowPush):
// rows (strictly increasing row numbers, rows of width values) and data,
// their values back to back. Every part of k gets its share (possibly no
// rows: an empty push still counts for its dist_sync round). rows and data
// stay untouched until the operation's Done.
func (m *Machine) RowPush(tok any, k *Key, rows []uint32, width int, data []float32) error {
	if err := m.checkRows(k, rows, width, len(data), "push"); err != nil {
		return err
	}
	o := m.newOp(tok, opPush, len(k.parts))
	for i, p := range k.parts {
		i0, i1, lo, hi := wire.RowSpan(rows, width, p.Offset, p.Len)
		r := m.newReq(o, wire.TypeRowPush, m.shards[p.Shard])
		m.keyReq(r, k, i)
		r.dt, r.count = wire.DTypeF32, uint32(hi-lo)
		r.meta = wire.AppendRowIDs(nil, rows[i0:i1])
		r.data = f32Bytes(data[lo:hi])
		m.submit(r)
	}
	return nil
}

// RowPull fills out with rows rows (strictly increasing, of width values)
// of k, back to back (wire.TypeRowPull). Parts of k that hold none of the
// rows are not asked.
func (m *Machine) RowPull(tok any, k *Key, rows []uint32, width int, out []float32) error {
	if err := m.checkRows(k, rows, width, len(out), "pull"); err != nil {
		return err
	}
	var parts [8]int
	asked := parts[:0]
	for i, p := range k.parts {
		if i0, i1, _, _ := wire.RowSpan(rows, width, p.Offset, p.Len); i1 > i0 {
			asked = append(asked, i)
		}
	}
	o := m.newOp(tok, opPull, len(asked))
	if len(asked) == 0 {
		m.rd.Done = append(m.rd.Done, Done{Tok: tok})
		m.putOp(o)
		return nil
	}
	for _, i := range asked {
		p := k.parts[i]
		i0, i1, lo, hi := wire.RowSpan(rows, width, p.Offset, p.Len)
		r := m.newReq(o, wire.TypeRowPull, m.shards[p.Shard])
		m.keyReq(r, k, i)
		r.count = uint32(hi - lo)
		r.meta = wire.AppendRowIDs(nil, rows[i0:i1])
		r.out = out[lo:hi]
		m.submit(r)
	}
	return nil
}

func (m *Machine) checkRows(k *Key, rows []uint32, width, values int, op string) error {
	if err := m.check(); err != nil {
		return err
	}
	if width < 1 || k.n%width != 0 {
		return fmt.Errorf("wsm: row-sparse %s key %d: rows of %d values in a key of %d: %w", op, k.id, width, k.n, ErrArg)
	}
	for i, r := range rows {
		if int(r) >= k.n/width || i > 0 && r <= rows[i-1] {
			return fmt.Errorf("wsm: row-sparse %s key %d: row %d at %d is out of range or order: %w", op, k.id, r, i, ErrArg)
		}
	}
	if values != len(rows)*width {
		return fmt.Errorf("wsm: row-sparse %s key %d: %d values for %d rows of %d: %w", op, k.id, values, len(rows), width, ErrArg)
	}
	return nil
}
