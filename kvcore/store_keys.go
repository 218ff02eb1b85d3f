package kvcore

import "github.com/webkv/webkv/kvcore/internal/engine"

// The store's keys are in s.keys; int keys from 0 up are also in s.dense,
// indexed by the key: a list call of 100,000 keys looks each one up, and a
// lookup in a map that big (of a struct key with a string) misses the
// cache every time. dense grows only to about twice the int keys (plus
// denseSlack), so a sparse or huge key costs no memory.
//
// dense holds, beside each entry, what a dist store's list call reads of
// it (keyHot): the call then reads one small record per key, back to back
// in one slice, instead of one entry (an object of about 500 bytes) per
// key. A list call of 100,000 keys fetched 100,000 entries from memory,
// on as many scattered cache lines and thousands of pages; the records
// of those keys are 4 MB read in order.

// keyHot is what a list call reads of an entry (the entry's fields, which
// do not change once the key is set).
type keyHot struct {
	e    *entry
	v    *engine.Var
	n    int
	id   int
	dims int // len(e.shape)
}

func hotOf(e *entry) keyHot {
	return keyHot{e: e, v: e.v, n: e.n, id: e.id, dims: len(e.shape)}
}

func (s *Store) denseEntry(k Key) *entry {
	if !k.isStr && k.i >= 0 && k.i < len(s.dense) {
		return s.dense[k.i].e
	}
	return nil
}

// hotKey is lookup for a list call: k's record, found in dense or made
// from the entry.
func (s *Store) hotKey(op string, k Key) (keyHot, error) {
	if !k.isStr && k.i >= 0 && k.i < len(s.dense) && s.dense[k.i].e != nil {
		return s.dense[k.i], nil
	}
	e, err := s.lookup(op, k)
	if err != nil {
		return keyHot{}, err
	}
	return hotOf(e), nil
}

// setKey adds e (s.mu held for writing).
func (s *Store) setKey(e *entry) {
	s.keys[e.key] = e
	k := e.key
	if k.isStr || k.i < 0 || k.i >= 2*len(s.keys)+denseSlack {
		return
	}
	if k.i >= len(s.dense) {
		s.dense = append(s.dense, make([]keyHot, k.i+1-len(s.dense))...)
		s.dense = s.dense[:cap(s.dense)]
	}
	s.dense[k.i] = hotOf(e)
}

// delKey drops key k (s.mu held for writing).
func (s *Store) delKey(k Key) {
	delete(s.keys, k)
	if !k.isStr && k.i >= 0 && k.i < len(s.dense) {
		s.dense[k.i] = keyHot{}
	}
}
