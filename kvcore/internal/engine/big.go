package engine

import "slices"

// pushBig is Push for a big operation (a dist store's list call) whose
// variables are all free to lock right now and appear once each, the
// common case: it locks and joins them in the order given, with
// tryLockJoin, so nothing is sorted. Holding every lock at once before
// any is released keeps the FIFOs agreeing with one order of the pushes,
// as in Push; never waiting for a lock while holding others (beyond a
// bounded spin) keeps it from deadlocking with an operation that locks in
// address order. A lock that stays taken (by another push, or by o
// itself: a variable named twice) undoes the joins made so far and
// reports false: the caller then sorts, merges and locks as Push does.
// o.r is set.
func (r *Runner) pushBig(o *Op) bool {
	var waits int32
	for i, v := range o.vars {
		// tryLockJoin's first try here (the variable free: the common
		// case), the spin only when it is locked.
		s := v.state.Load()
		ok := s&stLocked == 0 && v.state.CompareAndSwap(s, s+stOne|stLocked)
		if !ok {
			s, ok = v.tryLockJoin()
		}
		if !ok {
			for j := i - 1; j >= 0; j-- {
				o.vars[j].unjoin()
			}
			return false
		}
		if v.join(o, s>>stCountShift) {
			waits++
		}
	}
	o.seq = r.seq.Add(1)
	r.pending.Add(1)
	o.waitFor.Store(1 + waits)
	for i := len(o.vars) - 1; i >= 0; i-- {
		o.vars[i].release()
	}
	if o.waitFor.Add(-1) == 0 {
		r.ready(o, true)
	}
	return true
}

// TryPush queues o as Push does if every variable it names appears once
// and none is locked at this moment (nothing to sort: see pushBig);
// otherwise it queues nothing and returns false.
func (r *Runner) TryPush(o *Op) bool {
	o.r = r
	if r.pushBig(o) {
		return true
	}
	o.r = nil
	return false
}

// Add is Use without merging duplicates (a nil v is still ignored): for
// an operation handed to TryPush, which refuses one that names a
// variable twice.
func (o *Op) Add(v *Var, write bool) {
	if v != nil {
		o.vars = append(o.vars, v)
		o.writes = append(o.writes, write)
	}
}

// Add2 is two Adds (a key's variable and its array's, in one append).
func (o *Op) Add2(v *Var, write bool, v2 *Var, write2 bool) {
	if v == nil || v2 == nil {
		o.Add(v, write)
		o.Add(v2, write2)
		return
	}
	o.vars = append(o.vars, v, v2)
	o.writes = append(o.writes, write, write2)
}

// Room returns o's variable and write slices extended by n entries for
// the caller to fill in place (a list call's keys, in a loop that keeps
// them in registers instead of appending one by one); Took(m) then keeps
// the first m of them. Nil variables must not be left in what Took keeps.
func (o *Op) Room(n int) (vars []*Var, writes []bool) {
	l := len(o.vars)
	o.vars, o.writes = slices.Grow(o.vars, n), slices.Grow(o.writes, n)
	return o.vars[l : l+n], o.writes[l : l+n]
}

// Took keeps m of the n entries the last Room returned.
func (o *Op) Took(m int) {
	o.vars, o.writes = o.vars[:len(o.vars)+m], o.writes[:len(o.writes)+m]
}
