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
// A variable's state is one atomic word: a lock bit, a flag for waiting
// Waits, a flag for a recorded write error, and above them the length of
// its FIFO. The FIFO's head is implicit (the operation that finishes is
// the head), the operation behind it is in Var.second, the rest in a part
// made on demand. Push takes the lock bit of every variable of an
// operation (in address order, so two pushes cannot deadlock; TryPush in
// the order given, giving up on a taken one), counting the operation in
// the FIFO in the same CAS, before it releases any: the joins of two
// operations that share variables are never interleaved, so the FIFOs
// agree with one order of the pushes and no cycle (deadlock) can form.
// That is two atomic instructions per variable, as with a mutex.
//
// Leaving is one CAS and no lock when nothing else is to do: no Wait
// waits, and the operation writes no error and clears none. The CAS takes
// the length from 1 to 0, or from 2 to 1 handing the variable to second,
// read just before. The CAS expects the lock bit clear, so it never lands
// inside a push's or a slow path's critical section, and it fails if
// anything changed the word since it was read. The memory-model argument:
// second is written only by a join that takes the length from 1 to 2,
// under the lock, before the release (an atomic write of the word); the
// finisher's load of the word reads that release or a later write, so the
// write of second happens before its read (Go's atomics are sequentially
// consistent and synchronize). Nothing writes second again until the
// length drops below 2, which only the head's finish does (or the undo of
// that same join, under the lock, which the CAS sees). The next writer of
// second locks the word after the finisher's CAS, so the read happens
// before it. Whatever a finished operation wrote happens before its
// successor runs: the successor becomes ready only through the
// finisher's CAS (or lock) and its atomic count of FIFOs still to head.
// The slow path (a Wait waiting, an error to record or clear, two or more
// operations behind the head) takes the lock bit as a push does. The lock
// spins, yielding to the scheduler after a few tries: it is held for a
// join, a leave, or the joins of one operation.
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
	// state is the FIFO's length above the flag bits (locked, waiters,
	// err set); second is the operation behind the head. A push and a
	// finish touch these two words only. A Var is 32 bytes (two to a
	// cache line; those of keys made one after another are neighbours).
	state  atomic.Uint64
	second *Op
	more   *varMore // made at the first error, or when two operations or a Wait wait
	_      [8]byte
}

// The state word of a Var: a spin lock bit, two flags and the number of
// operations in the FIFO (the head, which runs or waits to run, then
// second, then more.rest).
const (
	stLocked  = 1 << iota // a push, a finish's slow path or a Wait holds the Var
	stWaiters             // more.waiters > 0: a finish broadcasts more.done
	stErr                 // more.err != nil
	stCountShift
	stOne = 1 << stCountShift // one operation in the FIFO
)

// varMore is the part of a Var that only waiting (two or more operations
// behind the head, or a Wait) and errors need (a Var stays 32 bytes).
type varMore struct {
	rest    []*Op // operations behind second, in order
	err     error // error of the last op that wrote the var (cleared by a later successful write)
	mu      sync.Mutex
	done    sync.Cond // broadcast (under mu) when an operation leaves and waiters > 0
	waiters int       // Wait and Drain calls waiting (under the Var's lock)
	// left counts the operations that left the FIFO while waiters > 0
	// (each takes the slow path then): a Wait waits for it to pass the
	// count when it began plus the FIFO's length then.
	left uint64
}

// ext returns v.more, made if need be; the caller holds v's lock.
func (v *Var) ext() *varMore {
	if v.more == nil {
		v.more = new(varMore)
	}
	return v.more
}

// lock takes v's lock bit and returns the state without it.
func (v *Var) lock() uint64 { return v.lockAdd(0) }

// lockAdd takes v's lock bit, adding add to the state in the same CAS, and
// returns the state before. The critical sections are short (a join or a
// leave, at most the joins of one operation while Push holds several), so
// it spins, yielding after a few tries (a single-threaded wasm runtime
// runs the holder then).
func (v *Var) lockAdd(add uint64) uint64 {
	for i := 0; ; i++ {
		s := v.state.Load()
		if s&stLocked == 0 && v.state.CompareAndSwap(s, s+add|stLocked) {
			return s
		}
		if i >= tryLockSpins {
			runtime.Gosched()
		}
	}
}

// unlock sets the state to s (without the lock bit): nothing else writes
// the state while it is locked, so a release store does (no locked
// instruction on amd64).
func (v *Var) unlock(s uint64) { storeRelease(&v.state, s) }

// Wait waits until every operation queued on v before the call finished
// (or ctx ends) and returns the error of the last one that wrote v, or
// ctx's. A nil Var has nothing to wait for.
func (v *Var) Wait(ctx context.Context) error {
	if v == nil {
		return nil
	}
	s, err := v.drain(ctx)
	if err == nil && s&stErr != 0 {
		err = v.more.err
	}
	v.unlock(s)
	return err
}

// Drain is Wait without the write error: it returns only ctx's.
func (v *Var) Drain(ctx context.Context) error {
	if v == nil {
		return nil
	}
	s, err := v.drain(ctx)
	v.unlock(s)
	return err
}

// drain waits for the operations queued so far and returns with v locked
// (the state to unlock with).
func (v *Var) drain(ctx context.Context) (uint64, error) {
	s := v.lock()
	n := s >> stCountShift
	if n == 0 {
		return s, nil
	}
	m := v.ext()
	if m.done.L == nil {
		m.done.L = &m.mu
	}
	target := m.left + n
	stop := wakeOnDone(ctx, &m.done)
	defer stop()
	m.waiters++
	s |= stWaiters
	var err error
	for m.left < target {
		// Take m.mu before letting go of v: a finish broadcasts under
		// both, so it cannot slip between the check and the wait; ctx's
		// broadcast takes m.mu, and ctx.Err is set before it.
		m.mu.Lock()
		if err = ctx.Err(); err != nil {
			m.mu.Unlock()
			break
		}
		v.unlock(s)
		m.done.Wait()
		m.mu.Unlock()
		s = v.lock()
	}
	m.waiters--
	if m.waiters == 0 {
		s &^= stWaiters
	}
	return s, err
}

// ClearErr forgets the error of an earlier failed write (the caller has
// just overwritten the whole variable).
func (v *Var) ClearErr() {
	if v == nil || v.state.Load()&stErr == 0 {
		return
	}
	s := v.lock()
	v.more.err = nil
	v.unlock(s &^ stErr)
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
	// when Push sorts its variables.
	o.vars = append(o.vars, v)
	o.writes = append(o.writes, write)
}

// bigOp is the variable count from which Use stops looking for duplicates
// one by one (quadratic) and sortVars sorts and merges instead.
const bigOp = 32

// Reset clears o for reuse, keeping its slices.
func (o *Op) Reset() {
	clear(o.vars)
	o.vars, o.writes = o.vars[:0], o.writes[:0]
	o.Task, o.Prio, o.seq, o.r = nil, 0, 0, nil
	o.waitFor.Store(0)
}

// sortVars orders o's variables by address: the lock order of Push.
// Heap objects do not move in Go, so the order is stable.
func (o *Op) sortVars() {
	vs, ws := o.vars, o.writes
	if len(vs) >= bigOp {
		o.sortMergeVars()
		return
	}
	for i := 1; i < len(vs); i++ {
		for j := i; j > 0 && uintptr(unsafe.Pointer(vs[j])) < uintptr(unsafe.Pointer(vs[j-1])); j-- {
			vs[j], vs[j-1] = vs[j-1], vs[j]
			ws[j], ws[j-1] = ws[j-1], ws[j]
		}
	}
}

// sortMergeVars sorts a big operation's variables by address and merges
// duplicates (a write wins).
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
	// variable. A count dropped late only readies it later.
	var next *Op
	var n int32
	for i, v := range o.vars {
		// o heads v's queue by construction. leave's commonest cases (o
		// alone in the FIFO, or one operation behind it, as a pull list
		// behind a push list; no error, no Wait) are tried here first: a
		// list's finish leaves thousands of variables, and leave is too
		// big to inline. second is read before the CAS, as leave does.
		var nx *Op
		if s := v.state.Load(); s&(stLocked|stWaiters|stErr) == 0 && s>>stCountShift-1 <= 1 &&
			(err == nil || !o.writes[i]) {
			if s>>stCountShift == 2 {
				nx = v.second
			}
			if !v.state.CompareAndSwap(s, s-stOne) {
				nx = v.leave(o.writes[i], err)
			}
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
	r := &Runner{workers: max(2, runtime.GOMAXPROCS(0))}
	r.work.L = &r.mu
	r.idle.L = &r.mu
	return r
}

// Push queues o on r.
func (r *Runner) Push(o *Op) {
	o.r = r
	if len(o.vars) >= bigOp && r.pushBig(o) {
		return
	}
	o.sortVars()
	o.seq = r.seq.Add(1)
	r.pending.Add(1)
	// Each variable is locked in address order and o queued on it at
	// once (one pass over the variables, not two); no lock is released
	// before o is on every queue, so two operations' orders agree on all
	// the variables they share. The waits are counted, and stored, still
	// under the locks: no operation ahead can leave a FIFO meanwhile. One
	// extra count, dropped after the release, keeps an operation that
	// finishes once a lock is released from readying o as well.
	var waits int32
	for _, v := range o.vars {
		if v.join(o, v.lockJoin()>>stCountShift) {
			waits++
		}
	}
	o.waitFor.Store(1 + waits)
	for i := len(o.vars) - 1; i >= 0; i-- {
		o.vars[i].release()
	}
	if o.waitFor.Add(-1) == 0 {
		r.ready(o, true)
	}
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
