// Package engine runs a store's queued operations the way MXNet's
// dependency engine does, reduced to what a KVStore needs:
//
//   - every operation names the variables it touches (a key's stored
//     value, the arrays it reads or writes); each variable keeps a FIFO of
//     the operations that use it, so operations on one key or array run in
//     the order they were issued;
//   - an operation is ready when it heads the FIFO of every variable it
//     names; ready operations are picked by priority (higher first), then by
//     issue order;
//   - an operation may finish asynchronously (a dist push whose answer
//     comes from the network): its Task returns pending and the operation's
//     Finish is called later.
//
// The dependency bookkeeping lives on the variables; the ready queue, the
// worker goroutines and the count of unfinished operations live on a
// Runner, one per store. An array used by several stores orders their
// operations through its variable, and each operation still runs on its
// own store's workers.
//
// Every variable belongs to a lock domain, that of the Runner whose push
// named it first (set once, never changed): the domain's mutex guards
// the FIFOs of all its variables, and its push lock is held for the joins
// of one operation. An operation's joins take the domain's mutex once per
// batch of joinBatch variables, not a locked instruction per variable,
// and a finish leaves its variables a batch at a time the same way
// (RATIONALE: "Why do a runner's variables share one lock?"). A push
// whose variables are all of its Runner's domain (the common case: a
// store's keys are its own, and its arrays are mostly used by it alone)
// holds that domain's push lock (one of up to joinBatch variables joins
// them in one hold of the mutex, and needs the push lock only while a
// bigger push is between two holds); one whose variables span domains (an
// array that two stores use) holds the push locks of all of them, taken
// in address order. Either way the joins of two operations that share a
// variable never interleave, so the FIFOs agree with one order of the
// pushes and no cycle (deadlock) can form. A domain's mutex is held for a
// batch of joins or leaves, or a Wait's look at a FIFO, and whoever holds
// one waits for no push lock and no other domain's mutex (only, to ready
// an operation, for a Runner's queue lock, under which nothing else is
// taken): push locks are taken first (one, or several in address order),
// mutexes one at a time.
//
// An operation waits to head its FIFOs through a count of the FIFOs it
// waits on (waitFor): it starts at a bias that no finish can bring to
// zero while the joins go on (a finish between two batches may already
// hand a variable over to it), and the joins' count of waits is settled
// against the bias once they are all done. Finishes hand over under the
// variable's domain mutex, so a push that must undo its joins (a
// variable named twice, or one of another domain, found in a later
// batch) sees every hand-over made so far and discards them with the
// bias.
//
// A Runner's workers start with its first ready operation and stop at
// Close. Nothing here allocates per operation: the caller pools its
// operations (see Op.Reset).
package engine

import (
	"container/heap"
	"context"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"
)

// Var is an engine variable: the FIFO of operations on one key or array.
// Its zero value is ready to use.
type Var struct {
	// state is the FIFO's length above the tag of the last push that
	// joined it and the flag bits (waiters, err set); second is the operation behind the head; more the rest.
	// All three are read and written under dom's mutex only (plain
	// fields: a push or a finish touches thousands in one hold). A Var is
	// 32 bytes (two to a cache line; those of keys made one after another
	// are neighbours).
	state  uint64
	second *Op
	more   *varMore       // made at the first error, or when two operations or a Wait wait
	dom    unsafe.Pointer // *domain: set once, by the first push naming v (see domain)
}

// The state word of a Var: two flags, the tag of the last pushOne that
// joined it and the number of operations in the FIFO (the head, which
// runs or waits to run, then second, then more.rest).
const (
	stWaiters = 1 << iota // more.waiters > 0: a leave broadcasts more.done
	stErr                 // more.err != nil

	stTagShift   = 2
	stTagBits    = 16
	stTag        = (1<<stTagBits - 1) << stTagShift // pushOne's tag (domain.tag): its check for a variable named twice
	stCountShift = stTagShift + stTagBits
	stOne        = 1 << stCountShift // one operation in the FIFO
)

// domain is a lock domain: the variables first named by one Runner's
// pushes (see the package comment).
type domain struct {
	// push is held for the joins of one operation on the domain's
	// variables (with the push locks of its other domains, if any).
	push sync.Mutex
	// mu guards the state, second and more of the domain's variables,
	// and busy.
	mu sync.Mutex
	// busy says that a push holding the push lock joins variables over
	// several holds of mu: a small push, which joins in one hold without
	// the push lock, waits for it (see pushOne).
	busy bool
	// tag is the last pushOne's tag (in stTag's bits, never 0): each
	// push's joins write the next one into their variables' state, so a
	// variable that shows the push's own tag was named twice. A tag comes
	// back after 65,535 pushes: a variable last joined that long ago
	// looks named twice, and Push then merges (nothing to merge) and
	// pushes again with the next tag; no clearing pass is needed.
	tag uint64
}

// nextTag returns the tag of a push that starts (d.mu held).
func (d *domain) nextTag() uint64 {
	d.tag = (d.tag + 1<<stTagShift) & stTag
	if d.tag == 0 {
		d.tag = 1 << stTagShift
	}
	return d.tag
}

// varMore is the part of a Var that only waiting (two or more operations
// behind the head, or a Wait) and errors need (a Var stays 32 bytes).
type varMore struct {
	rest    []*Op // operations behind second, in order
	err     error // error of the last op that wrote the var (cleared by a later successful write)
	mu      sync.Mutex
	done    sync.Cond // broadcast (under mu) when an operation leaves and waiters > 0
	waiters int       // Wait and Drain calls waiting (under the domain's mutex)
	// left counts the operations that left the FIFO while waiters > 0
	// (each broadcasts then): a Wait waits for it to pass the count when
	// it began plus the FIFO's length then.
	left uint64
}

// ext returns v.more, made if need be; the caller holds v's domain mutex.
func (v *Var) ext() *varMore {
	if v.more == nil {
		v.more = new(varMore)
	}
	return v.more
}

// domain returns v's domain (nil: no push named v yet). An
// unsafe.Pointer rather than an atomic.Pointer, whose generic methods
// would cost the browser runtime's budget.
func (v *Var) domain() *domain { return (*domain)(atomic.LoadPointer(&v.dom)) }

// claim returns v's domain, which becomes d if v has none yet.
func (v *Var) claim(d *domain) *domain {
	if atomic.CompareAndSwapPointer(&v.dom, nil, unsafe.Pointer(d)) {
		return d
	}
	return v.domain()
}

// Wait waits until every operation queued on v before the call finished
// (or ctx ends) and returns the error of the last one that wrote v, or
// ctx's. A nil Var, or one no push named yet, has nothing to wait for.
func (v *Var) Wait(ctx context.Context) error { return v.wait(ctx, true) }

// Drain is Wait without the write error: it returns only ctx's.
func (v *Var) Drain(ctx context.Context) error { return v.wait(ctx, false) }

func (v *Var) wait(ctx context.Context, writeErr bool) error {
	if v == nil {
		return nil
	}
	d := v.domain()
	if d == nil {
		return nil
	}
	d.mu.Lock()
	err := v.drain(ctx, d)
	if err == nil && writeErr && v.state&stErr != 0 {
		err = v.more.err
	}
	d.mu.Unlock()
	return err
}

// drain waits for the operations queued so far; the caller holds d.mu,
// v's domain mutex, which drain holds again when it returns.
func (v *Var) drain(ctx context.Context, d *domain) error {
	n := v.state >> stCountShift
	if n == 0 {
		return nil
	}
	m := v.ext()
	if m.done.L == nil {
		m.done.L = &m.mu
	}
	target := m.left + n
	stop := wakeOnDone(ctx, &m.done)
	defer stop()
	m.waiters++
	v.state |= stWaiters
	var err error
	for m.left < target {
		// Take m.mu before letting go of d.mu: a leave broadcasts under
		// both, so it cannot slip between the check and the wait; ctx's
		// broadcast takes m.mu, and ctx.Err is set before it.
		m.mu.Lock()
		if err = ctx.Err(); err != nil {
			m.mu.Unlock()
			break
		}
		d.mu.Unlock()
		m.done.Wait()
		m.mu.Unlock()
		d.mu.Lock()
	}
	m.waiters--
	if m.waiters == 0 {
		v.state &^= stWaiters
	}
	return err
}

// ClearErr forgets the error of an earlier failed write (the caller has
// just overwritten the whole variable).
func (v *Var) ClearErr() {
	if v == nil {
		return
	}
	d := v.domain()
	if d == nil {
		return // no push named v: no error either
	}
	d.mu.Lock()
	if v.state&stErr != 0 {
		v.more.err = nil
		v.state &^= stErr
	}
	d.mu.Unlock()
}

// Task is the work of an Op.
type Task interface {
	// Run runs the operation on a worker. pending reports that it goes on
	// elsewhere and Op.Finish will be called once it is done; otherwise
	// the engine finishes it with err.
	Run() (pending bool, err error)
	// Done is called once the operation finished and the engine no longer
	// refers to it: the caller may reuse it.
	Done()
}

// Op is one queued operation. The caller fills Task and Prio, names its
// variables with Use and hands it to Runner.Push; it embeds or pools Ops
// itself and clears them for reuse with Reset.
type Op struct {
	Task Task
	Prio int

	vars    []*Var
	writes  []bool
	pairs   []varWrite // sortPacked's rebuild scratch (merge), kept for reuse
	packed  []int      // sortPacked's scratch
	waitFor atomic.Int32
	seq     uint64
	r       *Runner
}

// Use adds v to the variables of o (write says whether o modifies it).
// Duplicates are merged; a nil v is ignored.
func (o *Op) Use(v *Var, write bool) {
	if v == nil {
		return
	}
	if len(o.vars) < bigOp {
		for i, u := range o.vars {
			if u == v {
				o.writes[i] = o.writes[i] || write
				return
			}
		}
	}
	// A big operation (a dist store's list call) merges its duplicates
	// when Push finds one named twice (sortMergeVars).
	o.vars = append(o.vars, v)
	o.writes = append(o.writes, write)
}

// bigOp is the variable count from which Use stops looking for duplicates
// one by one (quadratic); Push merges them (sortMergeVars) if pushOne
// finds one.
const bigOp = 32

// Reset clears o for reuse, keeping its slices.
func (o *Op) Reset() {
	clear(o.vars)
	o.vars, o.writes = o.vars[:0], o.writes[:0]
	o.Task, o.Prio, o.seq, o.r = nil, 0, 0, nil
	o.waitFor.Store(0)
}

// sortMergeVars merges the duplicates among o's variables (a write wins),
// sorting them by address (an operation built with Add, refused by
// TryPush or by Push's first try for a variable named twice).
func (o *Op) sortMergeVars() {
	if o.sortPacked() {
		return
	}
	// The rare case (more than 2^16 variables, or an address sortPacked
	// cannot pack): the variables merged in a map by address, the
	// addresses sorted as ints (their sign bit flipped, so that the order
	// is the unsigned one of the other sorts). Not slices.SortFunc on
	// pairs: a generic sort of its own element type would cost the
	// browser runtime about 19 KB (RATIONALE: "Why is the browser runtime
	// small ...?").
	m := make(map[uintptr]varWrite, len(o.vars))
	for i, v := range o.vars {
		a := uintptr(unsafe.Pointer(v))
		m[a] = varWrite{v, m[a].w || o.writes[i]}
	}
	const flip = uintptr(1) << (8*unsafe.Sizeof(uintptr(0)) - 1)
	ps := o.packed[:0]
	for a := range m {
		ps = append(ps, int(a^flip))
	}
	slices.Sort(ps)
	for i, p := range ps {
		vw := m[uintptr(p)^flip]
		o.vars[i], o.writes[i] = vw.v, vw.w
	}
	clear(o.vars[len(ps):])
	o.vars, o.writes = o.vars[:len(ps)], o.writes[:len(ps)]
	o.packed = ps[:0]
}

// merge sets vars and writes from pairs sorted by variable, one entry per
// variable (writing if any pair writes), and recycles pairs.
func (o *Op) merge(pairs []varWrite) {
	n := 0
	for _, p := range pairs {
		if n > 0 && o.vars[n-1] == p.v {
			o.writes[n-1] = o.writes[n-1] || p.w
			continue
		}
		o.vars[n], o.writes[n] = p.v, p.w
		n++
	}
	clear(o.vars[n:])
	o.vars, o.writes = o.vars[:n], o.writes[:n]
	clear(pairs)
	o.pairs = pairs[:0]
}

// sortPacked is sortMergeVars for up to 2^16 variables at addresses
// below 2^47 (every 64-bit platform's user space): each variable is one
// non-negative int, its address above its index, so the sort is of plain
// integers (several times faster than sorting pairs with a comparison
// function; a list call of 4,096 keys has 8,192 variables). False if it
// does not apply. The integers are ints, not uint64s: fmt sorts ints
// already, and each element type slices.Sort is used with links its own
// sort code (about 12 KB of webkv.wasm; RATIONALE's runtime budget).
func (o *Op) sortPacked() bool {
	const idxBits = 16
	n := len(o.vars)
	if n > 1<<idxBits || unsafe.Sizeof(0) != 8 || unsafe.Sizeof(uintptr(0)) != 8 {
		return false
	}
	ps := o.packed[:0]
	for i, v := range o.vars {
		a := uint64(uintptr(unsafe.Pointer(v)))
		if a>>(63-idxBits) != 0 {
			return false
		}
		ps = append(ps, int(a<<idxBits|uint64(i)))
	}
	slices.Sort(ps)
	// Rebuild in place: vars and writes by sorted index, through the
	// pairs scratch (the originals are read while the slots are written).
	pairs := o.pairs[:0]
	for _, p := range ps {
		i := int(p & (1<<idxBits - 1))
		pairs = append(pairs, varWrite{o.vars[i], o.writes[i]})
	}
	o.merge(pairs)
	o.packed = ps[:0]
	return true
}

// varWrite is a variable of an operation and whether it writes it.
type varWrite struct {
	v *Var
	w bool
}

// Finish completes o: it releases its variables, records err on the ones
// it writes and on its Runner, wakes the operations and waiters behind it,
// then calls o.Task.Done. A Task that returned pending calls it once.
func (o *Op) Finish(err error) { o.finish(err, nil) }

// finish is Finish; self is the Runner whose worker calls it (nil from
// elsewhere): that worker looks for work right after, so an operation it
// makes ready on its own Runner needs no other worker woken.
func (o *Op) finish(err error, self *Runner) {
	r := o.r
	// The operations that o made the head of a FIFO: consecutive
	// variables often hand over to the same one (a pull list behind a
	// push list), so its count drops once per run of them, not once per
	// variable; the run is handed over before the domain's mutex is let
	// go (see the package comment). The variables are left a batch at a
	// time under their domain's mutex (one domain at a time).
	var next *Op
	var n int32
	var d *domain // whose mutex is held
	left := 0     // variables left under it
	for i, v := range o.vars {
		if vd := v.domain(); vd != d || left == r.batch {
			next.handOver(n, self)
			next, n = nil, 0
			if d != nil {
				d.mu.Unlock()
				r.yield()
			}
			d, left = vd, 0
			d.mu.Lock()
		}
		left++
		// leave's commonest cases (o alone in the FIFO, or one operation
		// behind it, as a pull list behind a push list; no error, no
		// Wait) here: a list's finish leaves thousands of variables, and
		// leave is too big to inline.
		var nx *Op
		if s := v.state; s&(stWaiters|stErr) == 0 && s>>stCountShift-1 <= 1 &&
			(err == nil || !o.writes[i]) {
			if s>>stCountShift == 2 {
				nx = v.second
			}
			v.state = s - stOne
		} else {
			nx = v.leave(o.writes[i], err)
		}
		if nx == nil {
			continue
		}
		if nx != next {
			next.handOver(n, self)
			next, n = nx, 0
		}
		n++
	}
	next.handOver(n, self)
	if d != nil {
		d.mu.Unlock()
	}
	if err != nil {
		r.mu.Lock()
		if r.err == nil {
			r.err = err
		}
		r.mu.Unlock()
	}
	// WaitAll counts itself in waiters before it reads pending, so a
	// waiter that saw this operation pending is counted here.
	if r.pending.Add(-1) == 0 && r.waiters.Load() > 0 {
		r.mu.Lock()
		r.idle.Broadcast()
		r.mu.Unlock()
	}
	o.Task.Done()
}

// handOver drops o's count of FIFOs it waits to head by n and readies it
// at zero (nothing on a nil o).
func (o *Op) handOver(n int32, self *Runner) {
	if o != nil && o.waitFor.Add(-n) == 0 {
		o.r.ready(o, o.r != self)
	}
}

// Runner runs the operations of one store: its ready queue, its workers,
// and the count and first error of its unfinished operations.
type Runner struct {
	pending atomic.Int64  // unfinished operations
	waiters atomic.Int32  // WaitAll calls waiting
	seq     atomic.Uint64 // issue order, for the ready queue
	dom     *domain       // the lock domain of the variables r names first
	batch   int           // variables joined or left per hold of a domain's mutex (joinBatch)
	between func()        // nil; tests' runtime.Gosched between two such holds (smallBatches)

	mu      sync.Mutex
	work    sync.Cond // signalled when queue gets an op or the runner closes
	idle    sync.Cond // broadcast when pending drops to 0 and waiters > 0
	queue   opHeap
	workers int
	started bool
	closed  bool
	err     error
	wg      sync.WaitGroup
}

// NewRunner returns a Runner with max(2, GOMAXPROCS) workers, started at
// its first ready operation.
func NewRunner() *Runner {
	r := &Runner{workers: max(2, runtime.GOMAXPROCS(0)), dom: new(domain), batch: joinBatch}
	r.work.L = &r.mu
	r.idle.L = &r.mu
	return r
}

// yield lets other goroutines run between two holds of a domain's mutex
// where a test asks for it (between; nothing otherwise).
func (r *Runner) yield() {
	if r.between != nil {
		r.between()
	}
}

// queued counts o, whose joins are done (waits of them behind another
// operation), as r's and readies it if it waits for none.
func (r *Runner) queued(o *Op, waits int32) {
	o.seq = r.seq.Add(1)
	r.pending.Add(1)
	if o.waitFor.Add(waits-waitBias) == 0 {
		r.ready(o, true)
	}
}

// Push queues o on r.
func (r *Runner) Push(o *Op) {
	o.r = r
	switch r.pushOne(o) {
	case pushed:
		return
	case pushTwice:
		o.sortMergeVars()
		if r.pushOne(o) == pushed {
			return
		}
	default:
		// pushOne stopped at a variable of another domain, maybe before a
		// variable named twice: pushSpan needs them merged.
		o.sortMergeVars()
	}
	r.pushSpan(o)
}

// ready hands o, which heads all its FIFOs, to r's workers; wake says
// whether one must be woken for it (not when a worker of r readies it: it
// takes the next operation itself).
func (r *Runner) ready(o *Op, wake bool) {
	r.mu.Lock()
	heap.Push(&r.queue, o)
	if !r.started {
		r.started = true
		r.wg.Add(r.workers)
		for range r.workers {
			go r.worker()
		}
	}
	if wake {
		r.work.Signal()
	}
	r.mu.Unlock()
}

func (r *Runner) worker() {
	defer r.wg.Done()
	r.mu.Lock()
	for {
		for r.queue.Len() == 0 && !r.closed {
			r.work.Wait()
		}
		if r.queue.Len() == 0 {
			r.mu.Unlock()
			return
		}
		o := heap.Pop(&r.queue).(*Op)
		r.mu.Unlock()
		pending, err := o.Task.Run()
		if !pending {
			o.finish(err, r)
		}
		r.mu.Lock()
	}
}

// Pending is the number of r's unfinished operations.
func (r *Runner) Pending() int { return int(r.pending.Load()) }

// WaitAll waits until all of r's operations finished (or ctx ends) and
// returns, and clears, the first error among them.
func (r *Runner) WaitAll(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.waiters.Add(1)
	defer r.waiters.Add(-1)
	if r.pending.Load() > 0 {
		stop := wakeOnDone(ctx, &r.idle)
		defer stop()
		for r.pending.Load() > 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
			r.idle.Wait()
		}
	}
	err := r.err
	r.err = nil
	return err
}

// Close stops r's workers once the ready queue is empty and waits for them
// to exit. The caller makes sure nothing is pushed afterwards and that
// every operation finished (WaitAll), or an operation left behind would
// never run.
func (r *Runner) Close() {
	r.mu.Lock()
	r.closed = true
	r.work.Broadcast()
	r.mu.Unlock()
	r.wg.Wait()
}

// wakeOnDone broadcasts c when ctx ends so a Wait loop can notice.
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

type opHeap []*Op

func (h opHeap) Len() int { return len(h) }
func (h opHeap) Less(i, j int) bool {
	if h[i].Prio != h[j].Prio {
		return h[i].Prio > h[j].Prio
	}
	return h[i].seq < h[j].seq
}
func (h opHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *opHeap) Push(x any)   { *h = append(*h, x.(*Op)) }
func (h *opHeap) Pop() any {
	old := *h
	o := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return o
}
