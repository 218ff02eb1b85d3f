package engine

import (
	"slices"
	"unsafe"
)

// The outcomes of pushOne.
type pushResult int

const (
	pushed    pushResult = iota
	pushTwice            // o names a variable twice: nothing joined
	pushSpans            // o names a variable of another domain: nothing joined
)

// joinBatch is how many variables a push joins, or a finish leaves, per
// hold of a domain's mutex (Runner.batch; tests make it smaller): holds
// short enough that a finish (the receiver's) and a push (the caller's)
// of one store take turns without waiting long for each other, and long
// enough that the mutex costs little a variable.
const joinBatch = 256

// waitBias starts an operation's waitFor while it is pushed (see the
// package comment): more than any operation's variables.
const waitBias = 1 << 30

// pushOne queues o on r if every variable it names is of r's domain (or
// of none yet, and becomes r's) and appears once, joining them in the
// order given (nothing sorted). Otherwise it undoes the joins made so far
// and says why. o.r is set.
//
// An operation of up to r.batch variables joins them in one hold of the
// domain's mutex, where nothing interleaves: it needs the push lock only
// while a bigger push, which joins across several holds, is under way
// (busy). A bigger one holds the push lock and joins r.batch variables
// per hold.
func (r *Runner) pushOne(o *Op) pushResult {
	d, batch := r.dom, r.batch
	n := len(o.vars)
	big := n > batch
	o.waitFor.Store(waitBias)
	d.mu.Lock()
	if big || d.busy {
		d.mu.Unlock()
		d.push.Lock()
		d.mu.Lock() // not busy: a busy push holds the push lock
		if !big {
			d.push.Unlock() // one hold from here on
		}
	}
	var waits int32
	res := pushed
	i := 0
	tag := d.nextTag()
	for {
		var w int32
		i, res, w = o.joinRun(d, tag, i, min(i+batch, n))
		waits += w
		if i == n || res != pushed {
			break
		}
		d.busy = true
		d.mu.Unlock() // a finish may take its turn
		r.yield()
		d.mu.Lock()
	}
	// A refused push takes its joins back, a batch per hold as they were
	// made (the order does not matter). A finish may have handed a
	// variable over to o meanwhile (under the mutex, so before this
	// reaches it): the bias kept o from being readied, and its count is
	// set afresh at the next push.
	for b := 0; res != pushed && b < i; b += batch {
		if b > 0 {
			d.mu.Unlock()
			r.yield()
			d.mu.Lock()
		}
		for _, v := range o.vars[b:min(b+batch, i)] {
			v.unjoin()
		}
	}
	d.busy = false
	d.mu.Unlock()
	if big {
		d.push.Unlock()
	}
	if res == pushed {
		r.queued(o, waits)
	}
	return res
}

// joinRun joins o to o.vars[i:end], of domain d (whose mutex the caller
// holds), with the push's tag; it stops at a variable of another domain
// or one with the tag already (named twice). It returns where it stopped,
// why, and how many of the joins wait behind another operation.
func (o *Op) joinRun(d *domain, tag uint64, i, end int) (int, pushResult, int32) {
	var waits int32
	for ; i < end; i++ {
		v := o.vars[i]
		if c := v.domain(); c != d && (c != nil || v.claim(d) != d) {
			return i, pushSpans, waits
		}
		if v.state&stTag == tag {
			return i, pushTwice, waits
		}
		if v.join(o, tag) {
			waits++
		}
	}
	return i, pushed, waits
}

// pushSpan queues o, whose variables appear once each, on r when they
// span several domains (an array that two stores use): it holds the push
// locks of all of them, taken in address order, while it joins each
// variable under its own domain's mutex.
func (r *Runner) pushSpan(o *Op) {
	var few [4]*domain
	doms := few[:0] // the domains, in address order
	for _, v := range o.vars {
		if d := v.claim(r.dom); !slices.Contains(doms, d) {
			doms = append(doms, d)
		}
	}
	for i := 1; i < len(doms); i++ { // a few: sorted by insertion
		for j := i; j > 0 && uintptr(unsafe.Pointer(doms[j])) < uintptr(unsafe.Pointer(doms[j-1])); j-- {
			doms[j], doms[j-1] = doms[j-1], doms[j]
		}
	}
	for _, d := range doms {
		d.push.Lock()
		d.mu.Lock()
		d.busy = true
		d.mu.Unlock()
	}
	o.waitFor.Store(waitBias)
	var waits int32
	for _, v := range o.vars {
		d := v.domain()
		d.mu.Lock()
		if v.join(o, v.state&stTag) {
			waits++
		}
		d.mu.Unlock()
		r.yield()
	}
	for _, d := range doms {
		d.mu.Lock()
		d.busy = false
		d.mu.Unlock()
		d.push.Unlock()
	}
	r.queued(o, waits)
}

// TryPush queues o as Push does if every variable it names appears once
// and is of r's domain (or of none yet), in the order given; otherwise it
// queues nothing and returns false (the caller then pushes it, or its
// parts, with Push).
func (r *Runner) TryPush(o *Op) bool {
	o.r = r
	if r.pushOne(o) == pushed {
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
