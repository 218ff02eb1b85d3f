package kvcore

import "testing"

// A list call's operation that was built but never queued (a later chunk
// had a bad key) goes back to the pool without pointing into the caller's
// outputs: a pull list's items are otherwise cleared only as its keys
// finish, which never happens for it.
func TestUnqueuedListForgetsOutputs(t *testing.T) {
	out, err := NewArray(CPU(0), 4)
	if err != nil {
		t.Fatal(err)
	}
	s := &Store{}
	l := s.newDistList(1, false, true, 0)
	l.items = append(l.items, listItem{k: IntKey(1), n: 4, out: &out.hostOut(4)[0]})
	items := l.items
	c := distCallPool.Get().(*distCall)
	c.lists = append(c.lists[:0], l)
	c.put()
	if it := items[0]; it.out != nil || it.n != 0 {
		t.Fatalf("an unqueued pull list kept its item %+v", it)
	}
}

// A pooled list sized for a short chunk (a call's last) is sized again
// for a longer one, not grown by appends.
func TestPooledListResized(t *testing.T) {
	s := &Store{}
	l := s.newDistList(3, true, false, 0)
	l.Done()
	l = s.newDistList(distListChunk, true, false, 0)
	defer l.Done()
	if cap(l.es) < distListChunk || cap(l.items) < distListChunk || cap(l.arrs) < 2*distListChunk {
		t.Fatalf("list for %d keys: capacities es %d, items %d, arrs %d", distListChunk, cap(l.es), cap(l.items), cap(l.arrs))
	}
}
