package kvcore

import (
	"errors"
	"testing"
)

// The dense slice's record of a key (what a dist list call reads instead
// of the entry) mirrors its entry, and a dropped key leaves no record a
// list call could use.
func TestKeyHotMirrorsEntry(t *testing.T) {
	ctx := t.Context()
	s, err := Create(ctx, "local", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	shapes := [][]int{{3}, {2, 3}, {}, {1, 2, 2}}
	keys := make([]Key, len(shapes))
	vals := make([]*Array, len(shapes))
	for i, sh := range shapes {
		keys[i] = IntKey(i)
		if vals[i], err = NewArray(CPU(0), sh...); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.InitList(ctx, keys, vals); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, k := range keys {
		e := s.keys[k]
		h, err := s.hotKey("pull", k)
		if err != nil {
			t.Fatal(err)
		}
		if h.e != e || h.v != e.v || h.n != e.n || h.id != e.id || h.dims != len(shapes[i]) {
			t.Errorf("key %v: record %+v, entry: v %p n %d id %d shape %v", k, h, e.v, e.n, e.id, e.shape)
		}
	}
	s.delKey(IntKey(1))
	if _, err := s.hotKey("pull", IntKey(1)); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("dropped key: err = %v, want ErrUnknownKey", err)
	}
}
