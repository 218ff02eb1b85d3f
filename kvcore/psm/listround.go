package psm

import (
	"cmp"
	"slices"
	"time"

	"github.com/webkv/webkv/kvcore/compute"
)

// List rounds (issue 12, many small keys). In dist_sync a push list opens
// a round for each of its keys that has none; every worker's list then
// arrives in each of them, and the last one closes them. A list round
// holds those rounds as ONE while they are alike: opened by one list at
// one time, with the same members, expecting the same workers, each
// worker's pushes arriving by a list of the same keys in the same order.
// The keys' cur points to the list round's shared round (its members,
// done bits, expected and waiting counts, opening time); each arrived
// worker's pushes are one slot, its arrival buffers by the list's key
// index; the list round has one deadline entry. The last expected
// worker's list closes each key's round as it reaches the key (the
// arrivals of that key taken from the slots, then the same settleRound a
// key's own round closes with), so nothing is held for it; with one
// worker, the list that opens the round is also the last.
//
// Anything else splits a list round into the per-key rounds it stands
// for, exactly those the same pushes would have opened one key at a time
// (the same members, done bits, arrivals and opening time, and deadline
// entries in its place in the queue): a list that differs (other keys,
// another order, a late, refused or failed push, a worker the rounds do
// not expect, a second push of a worker that already pushed), a single
// push or row push of one of its keys, its deadline (at its Tick, or at a
// list that comes after it and before the Tick: a key's push may then
// close its round with a quorum), a worker's removal, and Close. From then on the per-key rounds handle everything as they
// always did, so a list round changes no answer, update, order or note
// (TestListRoundsMatchPerKey compares both on random workloads).

// lround is a list round: the open rounds of a push list's keys.
type lround struct {
	r      round   // the keys' round (key.cur); r.list is this
	ks     []*key  // the keys, in the list's order
	from   int     // keys before from are closed (the last list's, in its call)
	slots  []lslot // the pushes of the workers that arrived, in rank order
	closed bool    // closed or split: its deadline entry is stale
	idx    int     // its index in listTurn.lrs
}

// lslot is a worker's push list in a list round: its buffers by key
// index (fewer than the keys only while its list is being taken).
type lslot struct {
	lr   *listReq
	bufs []compute.Buffer
}

// arrival is the slot's push of key index i.
func (s *lslot) arrival(i int) arrival {
	return arrival{w: s.lr.w, buf: s.bufs[i], lr: s.lr, seq: s.lr.seq, li: int32(i)}
}

// listTurn is the list round the push list being taken is in (listState).
type listTurn struct {
	l    *lround // nil: the list's keys take their own rounds
	w    *worker
	lr   *listReq
	open bool // the list opened l (else it joined l)
	last bool // the list is the last l waits for: it closes each key
	// assign: the list's pushes are its keys' rounds' only ones and
	// become their values (combine's assignment, decided once a list)
	assign bool
	// sum: the last list closes each small key with the sum (or mean,
	// scale) of every push on the CPU backend (combine's reduceCPU,
	// decided once a list); its pushes go at slot index at.
	sum   bool
	scale float32
	at    int
	srcs  []compute.Buffer
	slot  lslot // its pushes (not last)
	solo  lround
	arr   []arrival // a closing key's arrivals (listClose)
	lrs   []*lround // open list rounds (listSplitAll)
	kpool [][]*key
	bpool [][]compute.Buffer
}

// listStart decides whether push list lr of w, of keys ks, opens a list
// round (its first key has no open round, and w is a member), joins one
// (its first key is in a list round that expects w), or takes per-key
// rounds (j.ls.t.l stays nil).
func (j *Job) listStart(now time.Duration, w *worker, lr *listReq, ks []*key) {
	t := &j.ls.t
	t.l, t.assign, t.sum = nil, false, false
	if len(ks) == 0 || j.perKey {
		return
	}
	t.w, t.lr = w, lr
	r := ks[0].cur
	if r == nil {
		m := j.mem
		if m == nil {
			m = j.members()
		}
		if uint(w.rank) >= uint(len(m.w)) || m.w[w.rank] != w {
			return
		}
		t.open, t.last = true, m.n == 1
		t.assign = t.last && j.assigns()
		l := &t.solo
		if !t.last {
			l = &lround{ks: fromPool(&t.kpool), idx: len(t.lrs)}
			t.slot = lslot{lr: lr, bufs: fromPool(&t.bpool)}
			t.lrs = append(t.lrs, l)
		}
		l.r.list = l
		l.closed, l.from = false, 0
		l.r.mem, l.r.done, l.r.nexp, l.r.waiting = m, 0, m.n, m.n
		if len(m.w) > 64 {
			n := (len(m.w) - 1) / 64
			l.r.doneHi = slices.Grow(l.r.doneHi[:0], n)[:n]
			clear(l.r.doneHi)
		}
		if d := j.cfg.RoundDeadline; d > 0 {
			l.r.opened = now
			if !t.last {
				j.openQ = append(j.openQ, openEnt{l: l, at: now})
				if cap(j.openQ) > cap(j.openBuf) {
					j.openBuf = j.openQ[:0]
				}
			}
		}
		t.l = l
		return
	}
	l := r.list
	if l == nil || l.from != 0 || !r.expects(w) {
		return
	}
	if d := j.cfg.RoundDeadline; d > 0 && now-r.opened >= d {
		// Due, its Tick not yet come: a push may close each key's round
		// with a quorum (maybeClose), which the keys' own rounds do.
		j.listSplit(l)
		return
	}
	t.open, t.last = false, r.waiting == 1
	if !t.last {
		t.slot = lslot{lr: lr, bufs: fromPool(&t.bpool)}
	}
	t.sum = t.last && j.cpuLoops && j.assigns() && len(l.slots)+1 <= reduceSrcsMax
	if t.sum {
		t.scale = 1
		if j.agg.Kind == AggMean {
			t.scale = 1 / float32(len(l.slots)+1)
		}
		t.at = 0
		for t.at < len(l.slots) && l.slots[t.at].lr.w.rank < w.rank {
			t.at++
		}
	}
	t.l = l
}

// listAdd takes the push of key i (k), written into buf, into the list
// round: it reports false, having split the list round, if k does not
// fit it (the caller then takes the push the per-key way).
func (j *Job) listAdd(i int, k *key, buf compute.Buffer) bool {
	t := &j.ls.t
	l := t.l
	if t.open {
		if k.cur != nil {
			j.listStop(i)
			return false
		}
		if t.assign {
			j.listAssign(t.lr, i, k, buf)
			return true
		}
		k.cur = &l.r
		if t.last {
			j.listClose(i, k, buf)
			return true
		}
		l.ks = append(l.ks, k)
		t.slot.bufs = append(t.slot.bufs, buf)
		return true
	}
	if i >= len(l.ks) || l.ks[i] != k {
		j.listStop(i)
		return false
	}
	if t.last {
		j.listClose(i, k, buf)
		return true
	}
	t.slot.bufs = append(t.slot.bufs, buf)
	return true
}

// listAssign closes the round of key i (k) of push list lr, its only
// push, buf, taken as the value (listTurn.assign: combine's assignment,
// then settleRound's work): the old value's buffer goes to the free list.
func (j *Job) listAssign(lr *listReq, i int, k *key, buf compute.Buffer) {
	k.stored, buf = buf, k.stored
	k.putFree(buf)
	if r := j.roundDone(k); !lr.take(i, r, 0) {
		j.listSettle(lr, i, r, 0, nil)
	}
}

// listClose closes the round of key i (k) of the list round with the
// last expected push, buf, of the list being taken.
func (j *Job) listClose(i int, k *key, buf compute.Buffer) {
	t := &j.ls.t
	if t.sum && k.n <= cleanKeyMax && j.listSum(i, k, buf) {
		return
	}
	w := t.w
	cur := arrival{w: w, buf: buf, lr: t.lr, seq: t.lr.seq, li: int32(i)}
	arr := t.arr[:0]
	for x := range t.l.slots {
		s := &t.l.slots[x]
		if cur.w != nil && w.rank < s.lr.w.rank {
			arr, cur.w = append(arr, cur), nil
		}
		arr = append(arr, s.arrival(i))
	}
	if cur.w != nil {
		arr = append(arr, cur)
	}
	t.arr = arr
	j.settleRound(k, arr, false)
	k.cur = nil
	t.l.from = i + 1
}

// listSum is listClose by the sum of key i's pushes (listTurn.sum):
// combine's reduceCPU into the value, then settleRound's work for each
// push, in rank order. It reports false, having done nothing, where
// reduceCPU does (then listClose takes the general way).
func (j *Job) listSum(i int, k *key, buf compute.Buffer) bool {
	t := &j.ls.t
	slots := t.l.slots
	srcs := t.srcs[:0]
	for x := range slots {
		if x == t.at {
			srcs = append(srcs, buf)
		}
		srcs = append(srcs, slots[x].bufs[i])
	}
	if t.at == len(slots) {
		srcs = append(srcs, buf)
	}
	t.srcs = srcs
	ok := reduceCPU(k.stored, srcs, t.scale)
	clear(srcs)
	if !ok {
		return false
	}
	r := j.roundDone(k)
	for x := range slots {
		if x == t.at {
			k.putFree(buf)
			j.listResult(t.lr, i, r, 0)
		}
		s := &slots[x]
		k.putFree(s.bufs[i])
		j.listResult(s.lr, i, r, 0)
	}
	if t.at == len(slots) {
		k.putFree(buf)
		j.listResult(t.lr, i, r, 0)
	}
	k.cur = nil
	t.l.from = i + 1
	return true
}

// listStop ends the list being taken's part in its list round at its key
// i: the list round is split (what it holds of the list, keys before i,
// included), and key i on take their own rounds.
func (j *Job) listStop(i int) {
	t := &j.ls.t
	l := t.l
	defer t.done()
	switch {
	case t.last && t.open:
		l.r.mem = nil // every key before i closed; solo holds nothing
		return
	case t.last:
		l.from = i
	default:
		j.listSlot(l)
	}
	j.listSplit(l)
}

// listEnd ends the list being taken's part in its list round after its n
// keys.
func (j *Job) listEnd(n int) {
	t := &j.ls.t
	l := t.l
	if l == nil {
		return
	}
	defer t.done()
	switch {
	case t.last && t.open:
		l.r.mem = nil
	case t.last:
		l.from = n
		if n < len(l.ks) {
			j.listSplit(l) // the list was shorter
			return
		}
		j.listFree(l)
	default:
		short := n < len(l.ks)
		j.listSlot(l)
		if short {
			j.listSplit(l)
		}
	}
}

// done ends the turn of the list that was taken: nothing of it (its
// worker, its request) is kept.
func (t *listTurn) done() { t.l, t.w, t.lr = nil, nil, nil }

// listSlot puts the slot of the list being taken into l, in rank order,
// and counts its worker as arrived if its pushes cover every key.
func (j *Job) listSlot(l *lround) {
	t := &j.ls.t
	s := t.slot
	t.slot = lslot{}
	x := len(l.slots)
	for x > 0 && l.slots[x-1].lr.w.rank > t.w.rank {
		x--
	}
	l.slots = slices.Insert(l.slots, x, s)
	if len(s.bufs) == len(l.ks) {
		l.r.arrive(t.w)
	}
}

// listSplit replaces list round l by the per-key rounds it stands for
// (see the top of this file), each with the arrivals its key has in the
// slots, in l's place in the deadline queue.
func (j *Job) listSplit(l *lround) {
	var ents []openEnt
	deadline := j.cfg.RoundDeadline > 0
	if deadline {
		ents = make([]openEnt, 0, len(l.ks)-l.from)
	}
	for x := l.from; x < len(l.ks); x++ {
		k := l.ks[x]
		r := j.newRound()
		r.mem, r.done, r.nexp, r.waiting, r.opened = l.r.mem, l.r.done, l.r.nexp, l.r.waiting, l.r.opened
		r.doneHi = append(r.doneHi[:0], l.r.doneHi...)
		for si := range l.slots {
			s := &l.slots[si]
			if x >= len(s.bufs) {
				continue
			}
			w := s.lr.w
			if !r.isDone(w.rank) {
				r.arrive(w) // a worker whose list stopped before the end
			}
			*r.add() = s.arrival(x)
		}
		k.cur = r
		if deadline {
			j.roundSeq++
			r.seq = j.roundSeq
			ents = append(ents, openEnt{k: k, at: r.opened, seq: r.seq})
		}
	}
	if deadline {
		// The queue is in opening order: l's entry is among those of
		// its time (one, unless steps share a time), found by a binary
		// search, so that splitting many list rounds stays linear.
		q := j.openQ
		x, _ := slices.BinarySearchFunc(q, l.r.opened, func(e openEnt, at time.Duration) int { return cmp.Compare(e.at, at) })
		for x < len(q) && q[x].at == l.r.opened && q[x].l != l {
			x++
		}
		if x < len(q) && q[x].l == l {
			j.openQ = slices.Replace(j.openQ, x, x+1, ents...)
			if cap(j.openQ) > cap(j.openBuf) {
				j.openBuf = j.openQ[:0]
			}
		}
	}
	j.listFree(l)
}

// listSplitAll splits every open list round.
func (j *Job) listSplitAll() {
	for len(j.ls.t.lrs) > 0 {
		j.listSplit(j.ls.t.lrs[0])
	}
}

// splitKey splits the list round k's round is part of, if it is.
func (j *Job) splitKey(k *key) {
	if r := k.cur; r != nil && r.list != nil {
		j.listSplit(r.list)
	}
}

// listFree drops l, closed or split, and keeps its slices for the next.
func (j *Job) listFree(l *lround) {
	t := &j.ls.t
	l.closed = true
	if x := l.idx; x < len(t.lrs) && t.lrs[x] == l {
		last := len(t.lrs) - 1
		if x != last {
			t.lrs[x] = t.lrs[last]
			t.lrs[x].idx = x
		}
		t.lrs[last] = nil
		t.lrs = t.lrs[:last]
	}
	toPool(&t.kpool, l.ks)
	for _, s := range l.slots {
		toPool(&t.bpool, s.bufs)
	}
	l.ks, l.slots, l.r.mem, l.r.list = nil, nil, nil, nil
}

// poolMax bounds the slices listFree keeps for the next list rounds (a
// job has one list round open a step, or a few; a burst of many does not
// stay in memory).
const poolMax = 16

// fromPool takes a kept slice (empty) from pool, or returns nil.
func fromPool[T any](pool *[][]T) []T {
	p := *pool
	if n := len(p); n > 0 {
		s := p[n-1]
		p[n-1] = nil
		*pool = p[:n-1]
		return s
	}
	return nil
}

// toPool keeps s, cleared, in pool while it holds fewer than poolMax.
func toPool[T any](pool *[][]T, s []T) {
	clear(s)
	if len(*pool) < poolMax {
		*pool = append(*pool, s[:0])
	}
}
