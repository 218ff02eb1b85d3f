package engine

// A variable's FIFO: its head in the Var itself, the operations behind
// it in more.rest, which is touched only when operations wait on the
// variable. A list call of a dist store joins and leaves the FIFOs of
// thousands of variables, each a cache miss; the queue's own backing
// array was a second one. The caller holds v.mu.

// join queues o on v and reports whether it waits behind another.
func (v *Var) join(o *Op) bool {
	v.issued++
	if v.head == nil {
		v.head = o
		return false
	}
	if v.more == nil {
		v.more = new(varMore)
	}
	v.more.rest = append(v.more.rest, o)
	return true
}

// unjoin takes back the last join (pushBig's undo).
func (v *Var) unjoin() {
	v.issued--
	if v.more != nil && len(v.more.rest) > 0 {
		m := v.more
		m.rest[len(m.rest)-1] = nil
		m.rest = m.rest[:len(m.rest)-1]
		return
	}
	v.head = nil
}

// leave removes the head (it finished) and returns the new one, if any.
func (v *Var) leave() *Op {
	v.completed++
	if v.issued == v.completed {
		v.head = nil
		return nil
	}
	m := v.more
	next := m.rest[0]
	copy(m.rest, m.rest[1:])
	m.rest[len(m.rest)-1] = nil
	m.rest = m.rest[:len(m.rest)-1]
	v.head = next
	return next
}
