package kvcore

import (
	"fmt"

	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/kvcore/internal/wsm"
)

// Row-sparse operations of a dist store: the values are summed locally
// (mergeRows), then only the rows travel (wire.TypeRowPush/TypeRowPull,
// through the wsm Machine's RowPush and RowPull).

// distPush sends the merged rows u (in mg) of a row-sparse push.
func (o *rsOp) distPush(u []uint32, mg compute.Buffer) (bool, error) {
	s, e := o.s, o.e
	var data []float32
	if len(u) > 0 {
		m := len(u) * o.width
		if cb, ok := mg.(*compute.CPUBuffer); ok {
			data = cb.Float32s()[:m]
		} else {
			if cap(e.rows.host) < m {
				e.rows.host = make([]float32, m)
			}
			data = e.rows.host[:m]
			if err := s.be.Read(mg, 0, data); err != nil {
				return false, fmt.Errorf("kvcore: push key %v: %w", e.key, err)
			}
		}
	}
	s.rem.rowPush(e.key, u, o.width, data, o.pushDone)
	return true, nil
}

func (o *rsOp) pushDone(err error) {
	if err != nil {
		err = fmt.Errorf("kvcore: push key %v: %w", o.e.key, err)
	}
	o.eng.Finish(err)
}

// distPull asks the servers for the rows of a row-sparse pull.
func (o *rsOp) distPull() (bool, error) {
	o.host = make([]float32, len(o.pullRows)*o.width)
	o.s.rem.rowPull(o.e.key, o.pullRows, o.width, o.host, o.pullDone)
	return true, nil
}

func (o *rsOp) pullDone(err error) {
	if err == nil && o.out != nil {
		err = o.writeOut(o.host)
	}
	if err != nil {
		err = fmt.Errorf("kvcore: pull key %v: %w", o.e.key, err)
	}
	o.eng.Finish(err)
}

func (r *distRemote) rowPush(k Key, rows []uint32, width int, data []float32, done func(error)) {
	r.async(k, done, func(cl *call, wk *wsm.Key) error {
		return r.m.RowPush(cl, wk, rows, width, data)
	})
}

func (r *distRemote) rowPull(k Key, rows []uint32, width int, out []float32, done func(error)) {
	r.async(k, done, func(cl *call, wk *wsm.Key) error {
		return r.m.RowPull(cl, wk, rows, width, out)
	})
}
