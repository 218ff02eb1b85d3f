package kvcore

import (
	"sync"

	"github.com/webkv/webkv/kvcore/internal/engine"
)

// opFunc runs an operation; it returns pending=true when it will call
// o.finish itself later.
type opFunc func(o *op) (pending bool, err error)

// op is one queued store operation: an engine operation and its arguments,
// kept here (and pooled) so that queuing allocates nothing.
type op struct {
	eng engine.Op
	fn  opFunc

	s      *Store
	e      *entry
	arrs   []*Array // n inputs, then the outputs
	n      int
	direct bool // a dist pull decoded straight into its only output
	// finish and pullDone bound once per pooled op, so handing them to a
	// transport as callbacks allocates nothing.
	pushDoneFn, pullDoneFn func(error)
}

var opPool = sync.Pool{New: func() any {
	o := new(op)
	o.pushDoneFn, o.pullDoneFn = o.pushDone, o.pullDone
	o.eng.Task = o
	return o
}}

func newOp(s *Store, fn opFunc, prio int) *op {
	o := opPool.Get().(*op)
	o.s, o.fn, o.eng.Prio = s, fn, prio
	return o
}

// use adds v to the variables of o (write: o modifies it).
func (o *op) use(v *engine.Var, write bool) { o.eng.Use(v, write) }

// Run implements engine.Task.
func (o *op) Run() (bool, error) { return o.fn(o) }

// finish completes o (for operations that returned pending).
func (o *op) finish(err error) { o.eng.Finish(err) }

// Done implements engine.Task: o goes back to the pool.
func (o *op) Done() {
	clear(o.arrs)
	o.eng.Reset()
	o.eng.Task = o
	o.fn, o.s, o.e, o.arrs, o.n, o.direct = nil, nil, nil, o.arrs[:0], 0, false
	opPool.Put(o)
}
