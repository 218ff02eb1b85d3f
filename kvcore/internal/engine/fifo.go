package engine

// A variable's FIFO: its length in the state word, its head implicit (the
// operation that finishes it knows it is the head), the operation behind
// the head in v.second, the ones behind that in more.rest, which is
// touched only when two or more operations wait on the variable. A list
// call of a dist store joins and leaves the FIFOs of thousands of
// variables, each a cache miss; the queue's own backing array was a
// second one.

// lockJoin takes v's lock and counts one more operation in its FIFO, in
// one CAS; it returns the state before (the FIFO's length above
// stCountShift). The caller then calls join and releases the lock with
// release.
func (v *Var) lockJoin() uint64 { return v.lockAdd(stOne) }

// tryLockJoin is lockJoin that gives up (false) if v stays locked for
// tryLockSpins tries. A lock is held for a join, a leave, or the joins
// of one operation: a short spin outlasts the first two, which a
// concurrent finish takes, and pushBig, which holds other locks, must
// not wait longer (see pushBig).
func (v *Var) tryLockJoin() (uint64, bool) {
	for range tryLockSpins {
		s := v.state.Load()
		if s&stLocked == 0 && v.state.CompareAndSwap(s, s+stOne|stLocked) {
			return s, true
		}
	}
	return 0, false
}

// tryLockSpins is how many times tryLockJoin tries a lock (lockAdd's
// spins before it yields).
const tryLockSpins = 16

// release lets go of the lock taken by lockJoin: nothing else writes the
// state while it is locked, so the state read is the state to clear the
// lock bit of.
func (v *Var) release() { v.unlock(v.state.Load() &^ stLocked) }

// join queues o on v, whose FIFO held n operations, and reports whether
// o waits behind another. The caller holds the lock (lockJoin).
func (v *Var) join(o *Op, n uint64) bool {
	switch n {
	case 0:
		return false
	case 1:
		v.second = o
	default:
		m := v.ext()
		m.rest = append(m.rest, o)
	}
	return true
}

// unjoin takes back the last join (pushBig's undo) and unlocks v.
func (v *Var) unjoin() {
	s := v.state.Load() - stLocked - stOne
	switch n := s >> stCountShift; n {
	case 0:
	case 1:
		v.second = nil
	default:
		m := v.more
		m.rest[len(m.rest)-1] = nil
		m.rest = m.rest[:len(m.rest)-1]
	}
	v.unlock(s)
}

// leave removes the head, which finished (writing v if write, with err),
// and returns the new head, if any.
//
// Without a lock when it can: if no Wait waits and there is no error to
// record or clear, one CAS takes the FIFO from one operation to none or
// from two to one (the new head is second, which only a join from one
// operation to two writes: the state's count says it was written, and by
// whom nothing else until this CAS). Otherwise under the lock.
func (v *Var) leave(write bool, err error) *Op {
	for {
		s := v.state.Load()
		if s&(stLocked|stWaiters) != 0 || write && (err != nil || s&stErr != 0) {
			break
		}
		switch s >> stCountShift {
		case 1:
			if v.state.CompareAndSwap(s, s-stOne) {
				return nil
			}
			continue
		case 2:
			next := v.second
			if v.state.CompareAndSwap(s, s-stOne) {
				return next
			}
			continue
		}
		break
	}
	return v.leaveLocked(write, err)
}

// leaveLocked is leave's slow path.
func (v *Var) leaveLocked(write bool, err error) *Op {
	s := v.lock()
	var next *Op
	if n := s >> stCountShift; n >= 2 {
		next = v.second
		if n >= 3 {
			m := v.more
			v.second = m.rest[0]
			copy(m.rest, m.rest[1:])
			m.rest[len(m.rest)-1] = nil
			m.rest = m.rest[:len(m.rest)-1]
		} else {
			v.second = nil
		}
	}
	if write {
		if err != nil {
			v.ext().err = err
			s |= stErr
		} else if s&stErr != 0 {
			v.more.err = nil
			s &^= stErr
		}
	}
	if s&stWaiters != 0 {
		m := v.more
		m.left++
		m.mu.Lock()
		m.done.Broadcast()
		m.mu.Unlock()
	}
	v.unlock(s - stOne)
	return next
}
