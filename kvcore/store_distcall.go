package kvcore

import (
	"slices"
	"sync"

	"github.com/webkv/webkv/kvcore/compute"
)

// A dist store's list call in one pass (queueDistCall): every key is
// looked up and its arrays checked, and while doing so the call's engine
// operations (distList, distListChunk keys each) are built; once all is
// valid they are queued with engine.Runner.TryPush, which needs no sort of
// their variables. The checks a list call needs beyond that come free:
// a repeated key is seen on a bitset of the keys' ids, and an array that
// two keys of one operation share (a variable named twice) makes TryPush
// refuse. In both cases, and when a variable is busy at that moment, the
// keys not yet queued take queueDistList's path (which sums repeated keys
// and splits operations where one key's output is another's array);
// operations queued before stay valid, as the engine orders every key and
// array across operations anyway.

type distCall struct {
	entries []*entry
	bits    []uint64
	lists   []*distList
}

var distCallPool = sync.Pool{New: func() any { return new(distCall) }}

// queueDistCall checks and queues list call op of a dist store; the
// caller holds s.mu (read) and checked that the store is open.
func (s *Store) queueDistCall(op string, keys []Key, values, outs [][]*Array, prio int) error {
	c := distCallPool.Get().(*distCall)
	defer c.put()
	entries := slices.Grow(c.entries[:0], len(keys))
	lim := 4*len(keys) + 1024
	bits := slices.Grow(c.bits[:0], (lim+63)/64)[:(lim+63)/64]
	clear(bits)
	repeat := false
	var l *distList
	fail := func(err error) error {
		if l != nil {
			c.lists = append(c.lists, l) // back to the pool with the others
		}
		c.entries = entries
		return err
	}
	for i, k := range keys {
		h, err := s.hotKey(op, k)
		if err != nil {
			return fail(err)
		}
		if values != nil && !fits(h, values[i]) {
			if err := checkArrays(op, k, h.e, values[i], "value"); err != nil {
				return fail(err)
			}
		}
		if outs != nil && !fits(h, outs[i]) {
			if err := checkArrays(op, k, h.e, outs[i], "output"); err != nil {
				return fail(err)
			}
		}
		entries = append(entries, h.e)
		if id := h.id; id < 0 || id >= lim || bits[id/64]&(1<<(id%64)) != 0 {
			repeat = true // maybe: queueDistList looks exactly
		} else {
			bits[id/64] |= 1 << (id % 64)
		}
		if repeat {
			continue
		}
		if l == nil {
			l = s.newDistList(len(keys)-i, values != nil, outs != nil, prio)
		}
		l.add(h, k, values, outs, i)
		if len(l.es) == distListChunk {
			c.lists = append(c.lists, l)
			l = nil
		}
	}
	if l != nil {
		c.lists = append(c.lists, l)
	}
	c.entries, c.bits = entries, bits
	if repeat {
		s.queueDistList(entries, values, outs, prio)
		return nil
	}
	for li, l := range c.lists {
		if s.tryPush(l) {
			c.lists[li] = nil
			continue
		}
		from := li * distListChunk
		s.queueDistList(entries[from:], tail(values, from), tail(outs, from), prio)
		break
	}
	return nil
}

// tryPush queues l if its variables are all distinct; a busy variable gets
// two more tries (an operation finishing holds one only briefly).
func (s *Store) tryPush(l *distList) bool {
	for range 3 {
		if s.run.TryPush(&l.eng) {
			return true
		}
	}
	return false
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
			l.Done()
		}
	}
	clear(c.lists)
	clear(c.entries)
	c.lists, c.entries = c.lists[:0], c.entries[:0]
	distCallPool.Put(c)
}

// fits reports whether arrs are one or more arrays of h's shape: the
// common case of checkArrays, with no error built. A 1-d shape matches
// on the element count alone (no read of the array's shape slice, nor of
// the entry's).
func fits(h keyHot, arrs []*Array) bool {
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
	if cap(l.es) == 0 {
		n = min(distListChunk, n)
		l.es, l.at, l.arrs = make([]*entry, 0, n), make([]int, 0, 2*n+1), make([]*Array, 0, 2*n)
	}
	if cap(l.items) < cap(l.es) {
		// add appends an item per key: sized once, not regrown (an item is
		// over 100 bytes; growing by doubling copied and allocated each
		// list's items about twice).
		l.items = make([]listItem, 0, cap(l.es))
	}
	l.s, l.push, l.pull, l.eng.Prio, l.eng.Task = s, push, pull, prio, l
	l.at = append(l.at[:0], 0)
	return l
}

// add appends key i of the call (k, its record h) to l with its
// variables. The entry itself is not read (see keyHot).
func (l *distList) add(h keyHot, k Key, values, outs [][]*Array, i int) {
	l.eng.Add(h.v, true)
	var ins, outArrs []*Array
	if values != nil {
		ins = values[i]
	}
	if outs != nil {
		outArrs = outs[i]
	}
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
	l.es = append(l.es, h.e)
	it := listItem{k: k, n: h.n}
	// While the key's arrays are at hand (their variables were just read
	// from them), take what Run would fetch them again for: a host input
	// (sent from where it is unless the store compresses, which Run
	// checks) and a pull list's only output in host memory (the answer
	// goes straight into it). An array's buffer stays until the array is
	// released, which waits for the operations queued on it.
	if len(ins) == 1 {
		it.data, _ = l.s.hostInput(ins, h.n, compute.Compression{Kind: compute.CompressNone})
	}
	if len(outArrs) == 1 && values == nil {
		if cb, ok := outArrs[0].buf.(*compute.CPUBuffer); ok {
			it.out = cb.Float32s()[:h.n]
		}
	}
	l.items = append(l.items, it)
}

// hostInput is distPrepareWith's common case without the entry: one
// input in host memory of the store's backend, sent uncompressed, is sent
// from where it is (the operation holds its variable until answered).
func (s *Store) hostInput(ins []*Array, n int, c compute.Compression) ([]float32, bool) {
	if len(ins) != 1 || c.Kind != compute.CompressNone || !compatible(ins[0].be, s.be) {
		return nil, false
	}
	cb, ok := ins[0].buf.(*compute.CPUBuffer)
	if !ok {
		return nil, false
	}
	return cb.Float32s()[:n], true
}
