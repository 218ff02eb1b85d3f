package kvcore

import (
	"container/heap"
	"context"
	"runtime"
	"sync"
)

// The engine runs queued operations the way MXNet's dependency engine does,
// reduced to what a KVStore needs:
//
//   - every operation names the variables it touches (a key's stored value,
//     the arrays it reads or writes); each variable keeps a FIFO of the
//     operations that use it, so operations on one key or array run in the
//     order they were issued;
//   - an operation is ready when it heads the FIFO of every variable it
//     names; ready operations are picked by priority (higher first), then by
//     issue order;
//   - an operation may finish asynchronously (a dist push whose answer comes
//     from the network): it returns pending and calls done later.
//
// Because an operation joins all its FIFOs at once under one lock, the FIFOs
// agree with the global issue order, so no cycle (deadlock) can form.
//
// Operations and their slices are pooled: a steady-state push or pull
// allocates nothing.
type engine struct {
	mu      sync.Mutex
	work    sync.Cond // signalled when ready gets an op
	ready   opHeap
	seq     uint64
	started bool
}

var theEngine = &engine{}

func init() { theEngine.work.L = &theEngine.mu }

// evar is an engine variable: the queue of operations on one key or array.
type evar struct {
	queue     []*op
	issued    uint64 // ops ever queued on this var
	completed uint64 // ops finished on this var (in issue order)
	waiters   int
	done      sync.Cond // broadcast when completed grows and waiters > 0
	err       error     // error of the last op that wrote this var, cleared by a later successful write
}

func newVar() *evar {
	v := &evar{}
	v.done.L = &theEngine.mu
	return v
}

// opFunc runs an operation; it returns pending=true when it will call
// o.finish itself later.
type opFunc func(o *op) (pending bool, err error)

type op struct {
	fn      opFunc
	vars    []*evar
	writes  []bool
	waitFor int
	prio    int
	seq     uint64
	tracker *tracker
	// operation arguments (interpreted by fn); kept here so that queuing an
	// operation allocates nothing.
	s      *Store
	e      *entry
	arrs   []*Array
	n      int
	direct bool // a dist pull decoded straight into its only output
	// finish and pullDone bound once per pooled op, so handing them to a
	// transport as callbacks allocates nothing.
	finishFn, pullDoneFn func(error)
}

var opPool = sync.Pool{New: func() any { return new(op) }}

func newOp(fn opFunc, prio int, t *tracker) *op {
	o := opPool.Get().(*op)
	if o.finishFn == nil {
		o.finishFn, o.pullDoneFn = o.finish, o.pullDone
	}
	o.fn, o.prio, o.tracker = fn, prio, t
	return o
}

// use adds v to the variables of o (write says whether o modifies it).
// Duplicates are merged.
func (o *op) use(v *evar, write bool) {
	if v == nil {
		return
	}
	for i, u := range o.vars {
		if u == v {
			o.writes[i] = o.writes[i] || write
			return
		}
	}
	o.vars = append(o.vars, v)
	o.writes = append(o.writes, write)
}

func (o *op) release() {
	for i := range o.vars {
		o.vars[i] = nil
	}
	for i := range o.arrs {
		o.arrs[i] = nil
	}
	*o = op{vars: o.vars[:0], writes: o.writes[:0], arrs: o.arrs[:0],
		finishFn: o.finishFn, pullDoneFn: o.pullDoneFn}
	opPool.Put(o)
}

// tracker counts the unfinished operations of one store and keeps the
// first error since the last WaitAll.
type tracker struct {
	pending int
	done    sync.Cond
	err     error
}

func newTracker() *tracker {
	t := &tracker{}
	t.done.L = &theEngine.mu
	return t
}

// push queues o.
func (e *engine) push(o *op) {
	e.mu.Lock()
	if !e.started {
		e.started = true
		n := max(2, runtime.GOMAXPROCS(0))
		for range n {
			go e.worker()
		}
	}
	e.seq++
	o.seq = e.seq
	if o.tracker != nil {
		o.tracker.pending++
	}
	for _, v := range o.vars {
		v.queue = append(v.queue, o)
		v.issued++
		if len(v.queue) > 1 {
			o.waitFor++
		}
	}
	if o.waitFor == 0 {
		heap.Push(&e.ready, o)
		e.work.Signal()
	}
	e.mu.Unlock()
}

func (e *engine) worker() {
	e.mu.Lock()
	for {
		for e.ready.Len() == 0 {
			e.work.Wait()
		}
		o := heap.Pop(&e.ready).(*op)
		e.mu.Unlock()
		pending, err := o.fn(o)
		if !pending {
			o.finish(err)
		}
		e.mu.Lock()
	}
}

// finish completes o: it releases its variables, records err, and wakes the
// operations and waiters behind it.
func (o *op) finish(err error) {
	e := theEngine
	e.mu.Lock()
	for i, v := range o.vars {
		// o heads v's queue by construction.
		copy(v.queue, v.queue[1:])
		v.queue[len(v.queue)-1] = nil
		v.queue = v.queue[:len(v.queue)-1]
		v.completed++
		if o.writes[i] {
			v.err = err
		}
		if len(v.queue) > 0 {
			next := v.queue[0]
			next.waitFor--
			if next.waitFor == 0 {
				heap.Push(&e.ready, next)
				e.work.Signal()
			}
		}
		if v.waiters > 0 {
			v.done.Broadcast()
		}
	}
	if t := o.tracker; t != nil {
		t.pending--
		if err != nil && t.err == nil {
			t.err = err
		}
		if t.pending == 0 {
			t.done.Broadcast()
		}
	}
	e.mu.Unlock()
	o.release()
}

// waitVar waits until every operation queued on v before the call finished,
// and returns the error of the last one that wrote v.
func waitVar(ctx context.Context, v *evar) error {
	if v == nil {
		return nil
	}
	e := theEngine
	e.mu.Lock()
	defer e.mu.Unlock()
	target := v.issued
	if v.completed >= target {
		return v.err
	}
	stop := wakeOnDone(ctx, &v.done)
	defer stop()
	v.waiters++
	defer func() { v.waiters-- }()
	for v.completed < target {
		if err := ctx.Err(); err != nil {
			return err
		}
		v.done.Wait()
	}
	return v.err
}

// waitTracker waits until all operations of t finished and returns (and
// clears) the first error among them.
func waitTracker(ctx context.Context, t *tracker) error {
	e := theEngine
	e.mu.Lock()
	defer e.mu.Unlock()
	stop := wakeOnDone(ctx, &t.done)
	defer stop()
	for t.pending > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		t.done.Wait()
	}
	err := t.err
	t.err = nil
	return err
}

// wakeOnDone broadcasts c when ctx is cancelled so a Wait loop can notice.
func wakeOnDone(ctx context.Context, c *sync.Cond) (stop func() bool) {
	if ctx.Done() == nil {
		return func() bool { return false }
	}
	return context.AfterFunc(ctx, func() {
		c.L.Lock()
		c.Broadcast()
		c.L.Unlock()
	})
}

type opHeap []*op

func (h opHeap) Len() int { return len(h) }
func (h opHeap) Less(i, j int) bool {
	if h[i].prio != h[j].prio {
		return h[i].prio > h[j].prio
	}
	return h[i].seq < h[j].seq
}
func (h opHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *opHeap) Push(x any)   { *h = append(*h, x.(*op)) }
func (h *opHeap) Pop() any {
	old := *h
	o := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return o
}
