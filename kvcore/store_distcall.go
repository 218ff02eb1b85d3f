package kvcore

import (
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/kvcore/internal/kernels"
)

// A dist store's list call in one pass (queueDistCall): every key is
// looked up and its arrays checked, and while doing so the call's engine
// operations (distList, distListChunk keys each) are built; once all is
// valid they are queued with engine.Runner.TryPush, which needs no sort of
// their variables. The checks a list call needs beyond that come free:
// a repeated key is seen on a bitset of the keys' ids, and an array that
// two keys of one operation share (a variable named twice) makes TryPush
// refuse. In both cases, and when an array's variable is of another
// store's engine (an array that two stores use, see engine.Runner.TryPush),
// the keys not yet queued take queueDistList's path (which sums repeated keys
// and splits operations where one key's output is another's array);
// operations queued before stay valid, as the engine orders every key and
// array across operations anyway.
//
// A call of several operations is checked and built by up to GOMAXPROCS
// goroutines, one fewer while earlier operations are pending (the caller
// and helpers, joined before it returns), each taking the next chunk of
// keys; each keeps its own bitset, and the bitsets are merged to find a
// key repeated across their shares. Queueing stays with the caller, in
// key order.

type distCall struct {
	entries []*entry
	lists   []*distList
	// bits holds one bitset per goroutine building the call: the ids of
	// the keys it saw (a key repeated within its share shows there;
	// across shares, when the bitsets are merged).
	bits   [][]uint64
	errs   []error // per operation: its first bad key, if any
	next   atomic.Int64
	failed atomic.Int64 // the lowest operation with a bad key (len(errs): none)
	repeat atomic.Bool
}

var distCallPool = sync.Pool{New: func() any { return new(distCall) }}

// queueDistCall checks and queues list call op of a dist store; the
// caller holds s.mu (read) and checked that the store is open.
//
// The call is checked and its operations built a chunk of distListChunk
// keys at a time; a big call's chunks are shared between the caller and
// up to GOMAXPROCS-1 goroutines (one fewer while the engine has
// operations pending; s.callWorkers in tests), each taking the next chunk
// in key order, all joined before anything is queued. The
// error is the first bad key in key order (every chunk before the first
// failing one is checked whole), and nothing is queued when there is one.
// The operations are then queued in key order by the caller alone (two
// chunks may share an array, and the engine must see them in the call's
// order).
func (s *Store) queueDistCall(op string, keys []Key, values, outs [][]*Array, prio int) error {
	c := distCallPool.Get().(*distCall)
	defer c.put()
	nc := (len(keys) + distListChunk - 1) / distListChunk
	c.entries = slices.Grow(c.entries[:0], len(keys))[:len(keys)]
	c.lists = slices.Grow(c.lists[:0], nc)[:nc]
	c.errs = slices.Grow(c.errs[:0], nc)[:nc]
	workers := s.callWorkers
	if workers == 0 {
		workers = runtime.GOMAXPROCS(0)
		if s.run.Pending() > 0 {
			// Operations queued before this call keep the engine worker,
			// the sender and the receiver busy: leave them a core.
			workers--
		}
	}
	workers = max(1, min(workers, nc))
	if cap(c.bits) < workers {
		c.bits = make([][]uint64, workers)
	}
	c.bits = c.bits[:workers]
	lim := 4*len(keys) + 1024
	c.next.Store(0)
	c.failed.Store(int64(nc))
	c.repeat.Store(false)
	if workers > 1 {
		var wg sync.WaitGroup
		for w := 1; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.buildDistCall(c, &c.bits[w], lim, op, keys, values, outs, prio)
			}()
		}
		s.buildDistCall(c, &c.bits[0], lim, op, keys, values, outs, prio)
		wg.Wait()
	} else {
		s.buildDistCall(c, &c.bits[0], lim, op, keys, values, outs, prio)
	}
	if f := c.failed.Load(); f < int64(nc) {
		return c.errs[f]
	}
	repeat := c.repeat.Load()
	if !repeat && workers > 1 {
		// A key in two goroutines' shares: their bitsets overlap.
		acc := c.bits[0]
	merge:
		for _, b := range c.bits[1:] {
			for w, x := range b {
				if acc[w]&x != 0 {
					repeat = true
					break merge
				}
				acc[w] |= x
			}
		}
	}
	if repeat {
		s.queueDistList(c.entries, values, outs, prio)
		return nil
	}
	for li, l := range c.lists {
		if s.run.TryPush(&l.eng) {
			c.lists[li] = nil
			continue
		}
		from := li * distListChunk
		s.queueDistList(c.entries[from:], tail(values, from), tail(outs, from), prio)
		break
	}
	return nil
}

// buildDistCall checks and builds chunks of call c until none is left
// (or one before the next has a bad key): the keys' entries, and while
// no key repeats, the chunks' operations.
func (s *Store) buildDistCall(c *distCall, bp *[]uint64, lim int, op string, keys []Key, values, outs [][]*Array, prio int) {
	bits := slices.Grow((*bp)[:0], (lim+63)/64)[:(lim+63)/64]
	clear(bits)
	*bp = bits
	for {
		li := c.next.Add(1) - 1
		if li >= int64(len(c.lists)) || li > c.failed.Load() {
			return
		}
		from := int(li) * distListChunk
		to := min(from+distListChunk, len(keys))
		c.errs[li] = nil
		repeat := c.repeat.Load()
		var l *distList
		var hk keyHot // a key outside dense: its record, made from the entry
		dense := s.dense
		// A push list's values or a pull list's outputs, one array a key
		// (buildRun's common case); nil: the general way only.
		var one [][]*Array
		switch {
		case !buildRuns || keys[from].isStr || !isCPU(s.be):
			// A call's keys are all of one kind: string keys are not in
			// dense. A device store's arrays are mostly not in host memory.
		case values == nil:
			one = outs
		case outs == nil:
			one = values
		}
		if !repeat && one != nil {
			l = s.newDistList(to-from, values != nil, outs != nil, prio)
			c.lists[li] = l
		}
		for i := from; i < to; i++ {
			if one != nil && l != nil && !repeat {
				// The keys of the common case in a loop of their own; the
				// key it stops at (if any) goes the general way below.
				if i = s.buildRun(c, l, bits, lim, keys, one, values != nil, i, to); i == to {
					break
				}
			}
			if j := i + pfAhead; kernels.HasPrefetch && j < to {
				// The arrays of a key pfAhead on: each is an object of
				// its own, whose first line fits and add read.
				if values != nil && len(values[j]) > 0 {
					kernels.Prefetch(unsafe.Pointer(values[j][0]))
				}
				if outs != nil && len(outs[j]) > 0 {
					kernels.Prefetch(unsafe.Pointer(outs[j][0]))
				}
			}
			k := &keys[i]
			// The record of a dense key is read in place (not copied: a
			// key's passes over 40 bytes add up over a call).
			var h *keyHot
			if !k.isStr && uint(k.i) < uint(len(dense)) && dense[k.i].e != nil {
				h = &dense[k.i]
			} else {
				var err error
				if hk, err = s.hotKey(op, *k); err != nil {
					c.errs[li] = err
					c.fail(li)
					return
				}
				h = &hk
			}
			var ins, outArrs []*Array
			var err error
			if values != nil {
				if ins = values[i]; !fits(h, ins) {
					err = checkArrays(op, *k, h.e, ins, "value")
				}
			}
			if err == nil && outs != nil {
				if outArrs = outs[i]; !fits(h, outArrs) {
					err = checkArrays(op, *k, h.e, outArrs, "output")
				}
			}
			if err != nil {
				c.errs[li] = err
				c.fail(li)
				return
			}
			c.entries[i] = h.e
			if id := h.id; id < 0 || id >= lim || bits[id/64]&(1<<(id%64)) != 0 {
				if !repeat {
					repeat = true // maybe: queueDistList looks exactly
					c.repeat.Store(true)
				}
			} else {
				bits[id/64] |= 1 << (id % 64)
			}
			if repeat {
				continue
			}
			if l == nil {
				l = s.newDistList(to-i, values != nil, outs != nil, prio)
				c.lists[li] = l // back to the pool with the others if not queued
			}
			l.add(h, k, ins, outArrs)
		}
	}
}

// buildRun checks and adds keys[i:to] of a push list (arrs: its values,
// push) or a pull list (arrs: its outputs) to l while each is the common
// case: a dense int key, one array of its shape in host memory (on a CPU
// store: a push is sent from where it is, a pull's answer goes straight
// into it), not seen before in the call. It returns the first key it did not add (to: none); that key goes
// the general way (fits, add, or an error). What it writes is what
// buildDistCall and add write for such a key, into the list's slices
// held in locals (sized for the chunk by newDistList) instead of one
// append at a time, and without calls in the loop but a prefetch every
// pfAhead keys: every register is the caller's in Go's calling
// convention, so a call per key reloads the loop's values after it.
//
//go:noinline
func (s *Store) buildRun(c *distCall, l *distList, bits []uint64, lim int, keys []Key, arrs [][]*Array, push bool, i, to int) int {
	m := to - i
	n0, e0, a0, t0 := len(l.items), len(l.es), len(l.arrs), len(l.at)
	if cap(l.items)-n0 < m || cap(l.es)-e0 < m || cap(l.arrs)-a0 < m || cap(l.at)-t0 < 2*m {
		return i
	}
	items, es, as, at := l.items[n0:n0+m], l.es[e0:e0+m], l.arrs[a0:a0+m], l.at[t0:t0+2*m]
	vars, writes := l.eng.Room(2 * m)
	dense, entries := s.dense, c.entries[i:to]
	keys, arrs = keys[i:to], arrs[i:to]
	x := 0
run:
	for ; x < m; x++ {
		if kernels.HasPrefetch && x%pfAhead == 0 {
			prefetchFirst(arrs, x+pfAhead, min(x+2*pfAhead, m))
		}
		k := &keys[x]
		if k.isStr || uint(k.i) >= uint(len(dense)) {
			break
		}
		h := &dense[k.i]
		e := h.e
		if e == nil || len(arrs[x]) != 1 {
			break
		}
		a := arrs[x][0]
		if a == nil || a.buf == nil || a.host == nil || a.n != h.n || len(a.shape) != h.dims || h.v == nil || a.v == nil {
			break
		}
		if h.dims > 1 {
			for d, n := range a.shape {
				if n != e.shape[d] {
					break run
				}
			}
		}
		id := h.id
		if uint(id) >= uint(lim) || bits[id/64]&(1<<(id%64)) != 0 {
			break
		}
		bits[id/64] |= 1 << (id % 64)
		entries[x] = e
		it := &items[x]
		it.k, it.n = *k, h.n
		if push {
			it.data, it.out, it.dn = a.host, nil, h.n
			at[2*x], at[2*x+1] = a0+x+1, a0+x+1
		} else {
			it.data, it.out, it.dn = nil, a.host, 0
			at[2*x], at[2*x+1] = a0+x, a0+x+1
		}
		es[x], as[x] = e, a
		vars[2*x], vars[2*x+1] = h.v, a.v
		writes[2*x], writes[2*x+1] = true, !push
	}
	l.items, l.es, l.arrs, l.at = l.items[:n0+x], l.es[:e0+x], l.arrs[:a0+x], l.at[:t0+2*x]
	l.eng.Took(2 * x)
	l.ready += x
	return i + x
}

// buildRuns says whether buildRun is used: not on wasm, where the browser
// runtime's size budget (RATIONALE: "Why is the browser runtime small?")
// has no room for its ~3.8 KB gzipped; there every key goes the general
// way.
const buildRuns = runtime.GOARCH != "wasm"

// prefetchFirst asks for the first array of arrs[from:to] (buildRun's
// look-ahead, a call per pfAhead keys).
func prefetchFirst(arrs [][]*Array, from, to int) {
	for j := from; j < to; j++ {
		if len(arrs[j]) > 0 {
			kernels.Prefetch(unsafe.Pointer(arrs[j][0]))
		}
	}
}

// pfAhead is how many keys ahead a list call's passes over its keys ask
// for the lines they will read (kernels.Prefetch): a key's work is ~100 ns
// and a miss to memory about as long, so a few keys ahead is in time, and
// the lines asked for stay cached until used.
const pfAhead = 8

// fail records that chunk li has a bad key: the lowest such chunk wins.
func (c *distCall) fail(li int64) {
	for {
		f := c.failed.Load()
		if li >= f || c.failed.CompareAndSwap(f, li) {
			return
		}
	}
}

func tail(as [][]*Array, from int) [][]*Array {
	if as == nil {
		return nil
	}
	return as[from:]
}

// put returns c (and the operations it did not queue) to their pools.
func (c *distCall) put() {
	for _, l := range c.lists {
		if l != nil {
			// Never run: a pull list's items still point into the
			// caller's outputs (Done leaves them to the completion, which
			// clears each as it finishes).
			clear(l.items)
			l.Done()
		}
	}
	clear(c.lists)
	clear(c.entries)
	clear(c.errs)
	c.lists, c.entries, c.errs = c.lists[:0], c.entries[:0], c.errs[:0]
	distCallPool.Put(c)
}

// fits reports whether arrs are one or more arrays of h's shape: the
// common case of checkArrays, with no error built. A 1-d shape matches
// on the element count alone (no read of the array's shape slice, nor of
// the entry's).
func fits(h *keyHot, arrs []*Array) bool {
	if len(arrs) == 0 {
		return false
	}
	for _, a := range arrs {
		if a == nil || a.buf == nil || a.n != h.n || len(a.shape) != h.dims {
			return false
		}
		if h.dims > 1 && !slices.Equal(a.shape, h.e.shape) {
			return false
		}
	}
	return true
}

// newDistList takes a list from the pool for up to n keys (sized once).
func (s *Store) newDistList(n int, push, pull bool, prio int) *distList {
	l := distListPool.Get().(*distList)
	if n = min(distListChunk, n); cap(l.es) < n {
		// A new list, or a pooled one sized for a shorter chunk (a
		// call's last): sized for these keys, not regrown by add.
		l.es, l.at, l.arrs = make([]*entry, 0, n), make([]int, 0, 2*n+1), make([]*Array, 0, 2*n)
	}
	if cap(l.items) < cap(l.es) {
		// add appends an item per key: sized once, not regrown (an item is
		// over 100 bytes; growing by doubling copied and allocated each
		// list's items about twice).
		l.items = make([]listItem, 0, cap(l.es))
	}
	l.s, l.push, l.pull, l.eng.Prio, l.eng.Task = s, push, pull, prio, l
	l.hostCPU = isCPU(s.be)
	l.at = append(l.at[:0], 0)
	return l
}

// add appends a key of the call (k, its record h, its inputs and
// outputs) to l with its variables. The entry itself is not read (see
// keyHot).
func (l *distList) add(h *keyHot, k *Key, ins, outArrs []*Array) {
	n := len(l.items)
	l.items = l.items[:n+1] // sized for the chunk by newDistList
	it := &l.items[n]
	// Field by field: a composite literal is built on the stack, then
	// copied (every field is written: a pooled item may be stale).
	it.k, it.n, it.data, it.out, it.dn = *k, h.n, nil, nil, 0
	l.es = append(l.es, h.e)
	if len(ins)+len(outArrs) == 1 {
		// A push list's or a pull list's key of one array: the common case,
		// without the general case's loops.
		if len(ins) == 1 {
			a := ins[0]
			l.eng.Add2(h.v, true, a.v, false)
			l.arrs = append(l.arrs, a)
			l.at = append(l.at, len(l.arrs), len(l.arrs))
			if a.host != nil && l.hostCPU {
				it.data, it.dn = a.host, h.n // see hostInput
				l.ready++
			} else if data, ok := l.s.hostInput(ins, h.n, compute.Compression{Kind: compute.CompressNone}); ok {
				it.data, it.dn = &data[0], len(data)
				l.ready++
			}
			return
		}
		a := outArrs[0]
		l.eng.Add2(h.v, true, a.v, true)
		l.arrs = append(l.arrs, a)
		l.at = append(l.at, len(l.arrs)-1, len(l.arrs))
		if out := a.hostOut(h.n); out != nil {
			it.out = &out[0]
			l.ready++
		}
		return
	}
	l.eng.Add(h.v, true)
	for _, a := range ins {
		l.arrs = append(l.arrs, a)
		if !slices.Contains(outArrs, a) { // an output too (in place): named once, below
			l.eng.Add(a.v, false)
		}
	}
	l.at = append(l.at, len(l.arrs))
	for _, a := range outArrs {
		l.arrs = append(l.arrs, a)
		l.eng.Add(a.v, true)
	}
	l.at = append(l.at, len(l.arrs))
	// While the key's arrays are at hand (their variables were just read
	// from them), take what Run would fetch them again for: a host input
	// (sent from where it is unless the store compresses, which Run
	// checks) and a pull list's only output in host memory (the answer
	// goes straight into it). An array's buffer stays until the array is
	// released, which waits for the operations queued on it.
	if len(ins) == 1 {
		if data, ok := l.s.hostInput(ins, h.n, compute.Compression{Kind: compute.CompressNone}); ok {
			it.data, it.dn = &data[0], len(data)
			if outArrs == nil {
				l.ready++ // a pushpull's output is taken by Run
			}
		}
	}
	if len(outArrs) == 1 && ins == nil {
		if out := outArrs[0].hostOut(h.n); out != nil {
			it.out = &out[0]
			l.ready++
		}
	}
}

// hostInput is distPrepareWith's common case without the entry: one
// input in host memory of the store's backend, sent uncompressed, is sent
// from where it is (the operation holds its variable until answered).
func (s *Store) hostInput(ins []*Array, n int, c compute.Compression) ([]float32, bool) {
	if len(ins) != 1 || c.Kind != compute.CompressNone {
		return nil, false
	}
	a := ins[0]
	if a.host != nil && n <= a.n && isCPU(s.be) {
		return unsafe.Slice(a.host, n), true // a.be is a CPU too: compatible
	}
	if !compatible(a.be, s.be) {
		return nil, false
	}
	cb, ok := a.buf.(*compute.CPUBuffer)
	if !ok {
		return nil, false
	}
	return cb.Float32s()[:n], true
}

// hostOut is the first n values of a when its buffer is in host memory (a
// CPUBuffer, of any backend), for an answer to go straight into; nil
// otherwise. Callers checked a's shape; n beyond a's size is still never
// made into a slice of host (unsafe.Slice has no bounds to check): the
// buffer's own slice below panics on it instead.
func (a *Array) hostOut(n int) []float32 {
	if a.host != nil && n <= a.n {
		return unsafe.Slice(a.host, n)
	}
	if cb, ok := a.buf.(*compute.CPUBuffer); ok {
		return cb.Float32s()[:n]
	}
	return nil
}
