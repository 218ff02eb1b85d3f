package kvcore

// The store's keys are in s.keys; int keys from 0 up are also in s.dense,
// indexed by the key: a list call of 100,000 keys looks each one up, and a
// lookup in a map that big (of a struct key with a string) misses the
// cache every time. dense grows only to about twice the int keys (plus
// denseSlack), so a sparse or huge key costs no memory.

func (s *Store) denseEntry(k Key) *entry {
	if !k.isStr && k.i >= 0 && k.i < len(s.dense) {
		return s.dense[k.i]
	}
	return nil
}

// setKey adds e (s.mu held for writing).
func (s *Store) setKey(e *entry) {
	s.keys[e.key] = e
	k := e.key
	if k.isStr || k.i < 0 || k.i >= 2*len(s.keys)+denseSlack {
		return
	}
	if k.i >= len(s.dense) {
		s.dense = append(s.dense, make([]*entry, k.i+1-len(s.dense))...)
		s.dense = s.dense[:cap(s.dense)]
	}
	s.dense[k.i] = e
}

// delKey drops key k (s.mu held for writing).
func (s *Store) delKey(k Key) {
	delete(s.keys, k)
	if !k.isStr && k.i >= 0 && k.i < len(s.dense) {
		s.dense[k.i] = nil
	}
}
