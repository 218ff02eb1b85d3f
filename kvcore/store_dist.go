package kvcore

import (
	"fmt"
	"slices"
	"sync"
	"unsafe"

	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/kvcore/internal/engine"
	"github.com/webkv/webkv/kvcore/internal/kernels"
)

// Dist-mode operations: the local part (gathering the per-device values and
// summing them on the store's backend, compressing) runs on an engine worker;
// the network part is handed to the remote, which finishes the operation when
// the server answers. The key's variable stays held until then, so a pull
// issued after a push waits for the push's acknowledgement, which in
// dist_sync comes only once every worker pushed (MXNet's ordering).

// distPrepare reduces the inputs and returns the host words to send.
func (s *Store) distPrepare(e *entry, vals []*Array) ([]float32, compute.Compression, error) {
	s.mu.RLock()
	c := s.comp
	s.mu.RUnlock()
	return s.distPrepareWith(e, vals, c)
}

// distPrepareWith is distPrepare with the store's compression c (a list
// reads it once for all its keys).
func (s *Store) distPrepareWith(e *entry, vals []*Array, c compute.Compression) ([]float32, compute.Compression, error) {
	ins, err := s.gather(e, vals, false)
	if err != nil {
		return nil, c, err
	}
	m, err := s.merged(e, ins)
	if err != nil {
		return nil, c, err
	}
	if c.Kind != compute.CompressNone {
		// One residual per key, after the local reduce (MXNet's dist rule).
		if e.resid, err = growBuffers(s.be, e.resid, 0, e.n); err != nil {
			return nil, c, err
		}
		pn := c.Kind.PackedLen(e.n)
		if e.packed, err = growBuffers(s.be, e.packed, 0, pn); err != nil {
			return nil, c, err
		}
		if err = s.be.Quantize(c, m, e.resid[0], e.packed[0]); err != nil {
			return nil, c, err
		}
		if len(e.hostP) < pn {
			e.hostP = make([]float32, pn)
		}
		return e.hostP[:pn], c, s.be.Read(e.packed[0], 0, e.hostP[:pn])
	}
	if cb, ok := m.(*compute.CPUBuffer); ok {
		// The buffer is held by this operation until the server answers.
		return cb.Float32s()[:e.n], c, nil
	}
	if len(e.host) < e.n {
		e.host = make([]float32, e.n)
	}
	return e.host[:e.n], c, s.be.Read(m, 0, e.host[:e.n])
}

func runDistPush(o *op) (bool, error) {
	s, e := o.s, o.e
	data, c, err := s.distPrepare(e, o.arrs[:o.n])
	if err != nil {
		return false, fmt.Errorf("kvcore: push key %v: %w", e.key, err)
	}
	s.rem.push(e.key, data, e.n, c, o.pushDoneFn)
	return true, nil
}

// pushDone finishes o when the server answered its push.
func (o *op) pushDone(err error) {
	if err != nil {
		err = fmt.Errorf("kvcore: push key %v: %w", o.e.key, err)
	}
	o.finish(err)
}

func (e *entry) pullBuf() []float32 {
	if len(e.hostIn) < e.n {
		e.hostIn = make([]float32, e.n)
	}
	return e.hostIn[:e.n]
}

func runDistPull(o *op) (bool, error) {
	e := o.e
	buf := e.pullBuf()
	if outs := o.arrs[o.n:]; len(outs) == 1 {
		if out := outs[0].hostOut(e.n); out != nil {
			// One host output: the answer is decoded straight into it
			// (the op holds its variable until done), saving a copy.
			buf, o.direct = out, true
		}
	}
	o.s.rem.pull(e.key, buf, o.pullDoneFn)
	return true, nil
}

func runDistPushPull(o *op) (bool, error) {
	s, e := o.s, o.e
	data, c, err := s.distPrepare(e, o.arrs[:o.n])
	if err != nil {
		return false, fmt.Errorf("kvcore: pushpull key %v: %w", e.key, err)
	}
	s.rem.pushPull(e.key, data, e.n, c, e.pullBuf(), o.pullDoneFn)
	return true, nil
}

// pullDone writes the pulled value into the outputs, then finishes o.
func (o *op) pullDone(err error) {
	if err == nil && !o.direct {
		e := o.e
		for _, a := range o.arrs[o.n:] {
			if werr := a.be.Write(a.buf, 0, e.hostIn[:e.n]); werr != nil {
				err = werr
				break
			}
		}
	}
	if err != nil {
		err = fmt.Errorf("kvcore: pull key %v: %w", o.e.key, err)
	}
	o.finish(err)
}

// A list call of a dist store (PushList, PullList, PushPullList) runs as
// engine operations of up to distListChunk keys each: one operation
// prepares its keys' values and hands them to the remote in one call. Its
// small whole keys of a push list or pull list go as ONE list request
// (wire/list.go: one seq, one dense value buffer, one answer); the other
// keys go as requests of their own, reaching the wire together (batched).
// Per key, the order is MXNet's dist order, as for single calls: the
// operation holds every key's variable (and its arrays') until the server
// answered that key's push or pull; a repeated key's values are summed.
const distListChunk = 4096

// distListBytes bounds the values of one list request (a call's keys of
// one shard go in as many as needed): a list request stays about a
// batch's size, so the server works on one while the next is on the wire.
const distListBytes = 1 << 20

type distList struct {
	eng        engine.Op
	s          *Store
	push, pull bool
	es         []*entry
	arrs       []*Array // every key's inputs then outputs, back to back
	at         []int    // key i's inputs are arrs[at[2i]:at[2i+1]], its outputs arrs[at[2i+1]:at[2i+2]]
	items      []listItem
	direct     []bool               // the answer went straight into the key's only output
	allDirect  bool                 // every key's did (direct is not filled)
	ready      int                  // items add completed: their push words, a pull list's output in host memory
	hostCPU    bool                 // the store's backend is a CPU: an array's host words are its input as is
	vars       map[*engine.Var]bool // the keys' arrays: written (true) or only read
	groups     []listGroup          // keys sent as list requests (per shard, distListBytes each)

	mu   sync.Mutex
	left int
	err  error
}

var distListPool = sync.Pool{New: func() any { return new(distList) }}

// queueDistList queues a checked list call of a dist store (its keys'
// entries, in order); the caller holds s.mu (read).
func (s *Store) queueDistList(entries []*entry, values, outs [][]*Array, prio int) {
	next, dup := sameEntries(entries)
	shared := outs != nil && sharedArrays(values, outs)
	var l *distList
	for i := range entries {
		if dup != nil && dup[i] {
			continue // summed into its first occurrence
		}
		if shared && l != nil && l.conflicts(i, next, values, outs) {
			// An array written by an earlier key of the operation is read or
			// written by this one (or this one writes what an earlier one
			// reads): key by key, as MXNet's dist store runs a list, this
			// key waits for the earlier ones.
			s.pushDistList(l)
			l = nil
		}
		if l == nil {
			l = distListPool.Get().(*distList)
			if n := min(distListChunk, len(entries)-i); cap(l.es) < n {
				// A new list, or a pooled one sized for fewer keys:
				// sized once for its keys, not regrown.
				l.es, l.at, l.arrs = make([]*entry, 0, n), make([]int, 0, 2*n+1), make([]*Array, 0, 2*n)
			}
			l.s, l.push, l.pull, l.eng.Prio, l.eng.Task = s, values != nil, outs != nil, prio, l
		}
		if len(l.at) == 0 {
			l.at = append(l.at, 0)
		}
		for j := i; j >= 0 && values != nil; j = next[j] {
			l.arrs = append(l.arrs, values[j]...)
			if next == nil {
				break
			}
		}
		l.at = append(l.at, len(l.arrs))
		for j := i; j >= 0 && outs != nil; j = next[j] {
			l.arrs = append(l.arrs, outs[j]...)
			if next == nil {
				break
			}
		}
		l.at = append(l.at, len(l.arrs))
		l.es = append(l.es, entries[i])
		if shared {
			l.mark(len(l.es) - 1)
		}
		if len(l.es) == distListChunk {
			s.pushDistList(l)
			l = nil
		}
	}
	if l != nil {
		s.pushDistList(l)
	}
}

// sharedArrays reports whether an array appears twice among a list
// call's inputs and outputs (only then can one key's output be another
// key's input or output, which conflicts checks key by key). One sort of
// the arrays' addresses, instead of a map insert and lookup per array.
func sharedArrays(values, outs [][]*Array) bool {
	bp := addrPool.Get().(*[]int)
	defer addrPool.Put(bp)
	ps := (*bp)[:0]
	defer func() { *bp = ps[:0] }()
	for _, as := range [2][][]*Array{values, outs} {
		for _, a := range as {
			for _, x := range a {
				ps = append(ps, int(uintptr(unsafe.Pointer(x.v))))
			}
		}
	}
	slices.Sort(ps)
	for i := 1; i < len(ps); i++ {
		if ps[i] == ps[i-1] {
			return true
		}
	}
	return false
}

// The addresses are ints, not uintptrs: fmt and the engine sort ints too,
// and every element type slices.Sort is used with links its own sort code
// (about 12 KB of webkv.wasm each; RATIONALE's runtime budget). Only
// equality matters here, so an address's sign does not.
var addrPool = sync.Pool{New: func() any { return new([]int) }}

// conflicts reports whether key i of a list call (with its repetitions,
// next) touches an array that the keys already in l write, or writes one
// they read.
func (l *distList) conflicts(i int, next []int, values, outs [][]*Array) bool {
	if len(l.vars) == 0 {
		return false
	}
	for j := i; j >= 0 && values != nil; j = next[j] {
		for _, a := range values[j] {
			if w, ok := l.vars[a.v]; ok && w {
				return true
			}
		}
		if next == nil {
			break
		}
	}
	for j := i; j >= 0 && outs != nil; j = next[j] {
		for _, a := range outs[j] {
			if _, ok := l.vars[a.v]; ok {
				return true
			}
		}
		if next == nil {
			break
		}
	}
	return false
}

// mark records the arrays key i of l reads and writes (a push list writes
// none: nothing to record).
func (l *distList) mark(i int) {
	if !l.pull {
		return
	}
	if l.vars == nil {
		l.vars = map[*engine.Var]bool{}
	}
	for _, a := range l.ins(i) {
		if _, ok := l.vars[a.v]; !ok {
			l.vars[a.v] = false
		}
	}
	for _, a := range l.outs(i) {
		l.vars[a.v] = true
	}
}

func (s *Store) pushDistList(l *distList) {
	for i, e := range l.es {
		l.eng.Use(e.v, true)
		for _, a := range l.ins(i) {
			l.eng.Use(a.v, false)
		}
		for _, a := range l.outs(i) {
			l.eng.Use(a.v, true)
		}
	}
	s.run.Push(&l.eng)
}

func (l *distList) ins(i int) []*Array  { return l.arrs[l.at[2*i]:l.at[2*i+1]] }
func (l *distList) outs(i int) []*Array { return l.arrs[l.at[2*i+1]:l.at[2*i+2]] }

// Run implements engine.Task: prepare every key, hand them to the remote.
func (l *distList) Run() (bool, error) {
	s := l.s
	if len(l.items) != len(l.es) {
		// Queued by queueDistList: the keys and sizes come from the
		// entries (queueDistCall wrote them while checking the call).
		if cap(l.items) < len(l.es) {
			l.items = make([]listItem, 0, len(l.es))
		}
		l.items = l.items[:0]
		for _, e := range l.es {
			l.items = append(l.items, listItem{k: e.key, n: e.n})
		}
	}
	var c compute.Compression
	if l.push {
		s.mu.RLock()
		c = s.comp
		s.mu.RUnlock()
	}
	l.left = len(l.items)
	if l.ready == len(l.items) && c.Kind == compute.CompressNone {
		// add found every key's words or output: nothing to prepare,
		// every pull goes straight to its output.
		l.allDirect = true
		s.rem.list(l.push, l.pull, c, l.items, l, &l.groups)
		return true, nil
	}
	if cap(l.direct) < len(l.es) {
		// Sized once (a list from the pool may be new): no regrowth.
		l.direct = make([]bool, 0, len(l.es))
	}
	l.direct, l.allDirect = l.direct[:0], false
	type fail struct {
		i   int
		err error
	}
	var fails []fail
	for i := range l.items {
		it := &l.items[i]
		if l.push && (it.data == nil || c.Kind != compute.CompressNone) {
			// Not a host input found by add (or the store compresses).
			data, ok := s.hostInput(l.ins(i), it.n, c)
			var err error
			if !ok {
				data, _, err = s.distPrepareWith(l.es[i], l.ins(i), c)
			}
			if err != nil {
				it.data, it.dn = nil, -1
				fails = append(fails, fail{i, err})
			} else {
				it.data, it.dn = &data[0], len(data)
			}
		}
		direct := false
		if l.pull {
			if it.out != nil {
				direct = true // a pull list's only output in host memory, found by add
			} else if outs := l.outs(i); len(outs) == 1 && !l.push {
				if out := outs[0].hostOut(it.n); out != nil {
					it.out, direct = &out[0], true
				}
			}
			if !direct {
				it.out = &l.es[i].pullBuf()[0]
			}
		}
		l.direct = append(l.direct, direct)
	}
	s.rem.list(l.push, l.pull, c, l.items, l, &l.groups)
	for _, f := range fails {
		l.itemDone(f.i, f.err)
	}
	return true, nil
}

// isDirect reports whether key i's answer goes straight into its output.
func (l *distList) isDirect(i int) bool { return l.allDirect || l.direct[i] }

// itemDone finishes key i; the operation finishes with its last key.
func (l *distList) itemDone(i int, err error) {
	e := l.es[i]
	l.items[i] = listItem{} // see groupDone
	if err == nil && l.pull && !l.isDirect(i) {
		for _, a := range l.outs(i) {
			if werr := a.be.Write(a.buf, 0, e.hostIn[:e.n]); werr != nil {
				err = werr
				break
			}
		}
	}
	if err != nil {
		err = fmt.Errorf("kvcore: %s key %v: %w", l.op(), e.key, err)
	}
	l.settled(1, err)
}

func (l *distList) op() string {
	switch {
	case l.push && l.pull:
		return "pushpull"
	case l.pull:
		return "pull"
	}
	return "push"
}

// settled counts n keys finished (err: the first failure); the operation
// finishes with its last key.
func (l *distList) settled(n int, err error) {
	l.mu.Lock()
	if err != nil && l.err == nil {
		l.err = err
	}
	l.left -= n
	last := l.left == 0
	err = l.err
	l.mu.Unlock()
	if last {
		l.eng.Finish(err)
	}
}

// groupDone finishes the keys sent as one list request: a pull's values
// go from the answer into the keys' outputs.
func (l *distList) groupDone(g *listGroup, err error) {
	if l.pull && err == nil && l.allDirect {
		// Every key's answer goes to its one host output (the common
		// case): one copy and the item's clear per key, no test of the
		// key's path (the loop's values in registers: nothing it
		// writes can change them).
		vals, items, at := g.vals, l.items, 0
		for x, i := range g.idx {
			if y := x + pfAhead; kernels.HasPrefetch && y < len(g.idx) {
				kernels.Prefetch(unsafe.Pointer(items[g.idx[y]].out)) // the output a few keys on
			}
			it := &items[i]
			n := it.n
			copy(it.outs(), vals[at:at+n])
			at += n
			*it = listItem{}
		}
	} else if l.pull {
		// Each item is cleared here, while its line is at hand: Done
		// clears a pull's items no more (a pass over cold lines on the
		// round's last goroutines).
		at := 0
		ok := err == nil
		for _, i := range g.idx {
			it := &l.items[i]
			n := it.n // not l.es[i].n: the entry is another object to fetch per key
			src := g.vals[at : at+n]
			at += n
			switch {
			case !ok:
			case l.isDirect(int(i)):
				copy(it.outs(), src)
			default:
				for _, a := range l.outs(int(i)) {
					if werr := a.be.Write(a.buf, 0, src); werr != nil && err == nil {
						err = werr
					}
				}
			}
			*it = listItem{}
		}
	}
	if err != nil {
		err = fmt.Errorf("kvcore: %s of %d keys (key %v first): %w", l.op(), len(g.idx), l.es[g.idx[0]].key, err)
	}
	l.settled(len(g.idx), err)
}

// Done implements engine.Task: l goes back to the pool.
func (l *distList) Done() {
	clear(l.es)
	clear(l.arrs)
	if !l.pull {
		clear(l.items) // a pull's items were cleared as they finished
	}
	clear(l.vars)
	for i := range l.groups {
		clear(l.groups[i].keys)
	}
	l.eng.Reset()
	l.es, l.arrs, l.at, l.items, l.direct = l.es[:0], l.arrs[:0], l.at[:0], l.items[:0], l.direct[:0]
	l.s, l.err, l.left, l.ready = nil, nil, 0, 0
	distListPool.Put(l)
}

// sameEntries is sameKeys on resolved entries (a pointer map: cheaper to
// hash than keys).
func sameEntries(es []*entry) (next []int, dup []bool) {
	if len(es) < 2 || !maybeSame(es) {
		return nil, nil
	}
	last := make(map[*entry]int32, len(es))
	for i, e := range es {
		if j, ok := last[e]; ok {
			if next == nil {
				next, dup = make([]int, len(es)), make([]bool, len(es))
				for x := range next {
					next[x] = -1
				}
			}
			next[j], dup[i] = i, true
		}
		last[e] = int32(i)
	}
	return next, dup
}

// maybeSame reports whether es may hold an entry twice. Two entries of one
// key share their id, so distinct ids rule a repetition out: checked on a
// bitset when the ids are small (a list of 100,000 keys: 12 KiB instead of
// a map of 100,000 entries). A false alarm (an id out of range, or equal
// ids of an int and a string key) only sends the caller to the exact map.
func maybeSame(es []*entry) bool {
	lim := 4*len(es) + 1024
	bits := make([]uint64, (lim+63)/64)
	for _, e := range es {
		id := e.id
		if id < 0 || id >= lim {
			return true
		}
		w, b := id/64, uint64(1)<<(id%64)
		if bits[w]&b != 0 {
			return true
		}
		bits[w] |= b
	}
	return false
}
