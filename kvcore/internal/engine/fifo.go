package engine

// A variable's FIFO: its length in the state word, its head implicit (the
// operation that finishes it knows it is the head), the operation behind
// the head in v.second, the ones behind that in more.rest, which is
// touched only when two or more operations wait on the variable. A list
// call of a dist store joins and leaves the FIFOs of thousands of
// variables, each a cache miss; the queue's own backing array was a
// second one. Everything here runs under the variable's domain mutex.

// join queues o on v, with tag (stTag's bits), and reports whether o
// waits behind another.
func (v *Var) join(o *Op, tag uint64) bool {
	s := v.state
	v.state = s&^stTag + stOne | tag
	switch s >> stCountShift {
	case 0:
		return false
	case 1:
		v.second = o
	default:
		v.queue(o)
	}
	return true
}

// queue puts o behind second (join's rare case, out of line).
func (v *Var) queue(o *Op) {
	m := v.ext()
	m.rest = append(m.rest, o)
}

// unjoin takes back the last join (a push's undo): no other push joined
// v since (the push lock is held), and leaves only shortened the FIFO
// from its head, so the last operation in it is the one to take back.
func (v *Var) unjoin() {
	s := v.state - stOne
	switch s >> stCountShift {
	case 0:
	case 1:
		v.second = nil
	default:
		m := v.more
		m.rest[len(m.rest)-1] = nil
		m.rest = m.rest[:len(m.rest)-1]
	}
	v.state = s
}

// leave removes the head, which finished (writing v if write, with err),
// and returns the new head, if any: finish's slow path (an error to
// record or clear, a Wait waiting, two or more operations behind the
// head).
func (v *Var) leave(write bool, err error) *Op {
	s := v.state
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
	v.state = s - stOne
	return next
}
