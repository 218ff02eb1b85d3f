package kvcore

import (
	"math/rand/v2"
	"testing"

	"github.com/webkv/webkv/kvcore/internal/wsm"
)

// keyMap against a plain map, on dense, sparse, negative, huge and string
// keys set, replaced and deleted in random order; the dense slice stays
// within its bound.
func TestKeyMap(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	m := keyMap{ints: map[int]*wsm.Key{}, strs: map[string]*wsm.Key{}}
	ref := map[Key]*wsm.Key{}
	most := 0 // the most int keys held at once: the slice never shrinks
	pick := func() Key {
		switch rng.IntN(5) {
		case 0:
			return IntKey(rng.IntN(3000) - 10)
		case 1:
			return IntKey(rng.Int() - rng.Int())
		case 2:
			return StrKey(string(rune('a' + rng.IntN(20))))
		default:
			return IntKey(rng.IntN(200))
		}
	}
	for i := 0; i < 20000; i++ {
		k := pick()
		if rng.IntN(3) == 0 {
			delete(ref, k)
			m.del(k)
		} else {
			wk := new(wsm.Key)
			ref[k] = wk
			m.set(k, wk)
		}
		k = pick()
		if got, want := m.get(k), ref[k]; got != want {
			t.Fatalf("step %d: get(%v) = %p, want %p", i, k, got, want)
		}
		ints := 0
		for rk := range ref {
			if !rk.isStr {
				ints++
			}
		}
		most = max(most, ints)
		if len(m.dense) > 2*(2*most+1)+2*denseSlack {
			t.Fatalf("step %d: dense slice of %d for at most %d int keys", i, len(m.dense), most)
		}
	}
	for k, wk := range ref {
		if m.get(k) != wk {
			t.Fatalf("get(%v) = %p, want %p", k, m.get(k), wk)
		}
	}
}

// sameEntries against a quadratic reference, on lists with and without
// repetitions, small and out-of-range ids.
func TestSameEntries(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	for round := 0; round < 500; round++ {
		pool := make([]*entry, 1+rng.IntN(50))
		for i := range pool {
			pool[i] = &entry{id: i}
			switch rng.IntN(4) {
			case 0:
				pool[i].id = rng.Int() - rng.Int() // huge or negative
			case 1:
				pool[i].id = i % 7 // ids shared by distinct entries (int and string keys)
			}
		}
		es := make([]*entry, rng.IntN(60))
		perm := rng.Perm(len(pool))
		for i := range es {
			if rng.IntN(4) == 0 {
				es[i] = pool[rng.IntN(len(pool))]
			} else {
				es[i] = pool[perm[i%len(perm)]]
			}
		}
		next, dup := sameEntries(es)
		for i := range es {
			wantNext, wantDup := -1, false
			for j := i + 1; j < len(es); j++ {
				if es[j] == es[i] {
					wantNext = j
					break
				}
			}
			for j := 0; j < i; j++ {
				if es[j] == es[i] {
					wantDup = true
				}
			}
			gotNext, gotDup := -1, false
			if next != nil {
				gotNext, gotDup = next[i], dup[i]
			}
			if gotNext != wantNext || gotDup != wantDup {
				t.Fatalf("round %d, entry %d: next %d dup %v, want %d %v", round, i, gotNext, gotDup, wantNext, wantDup)
			}
		}
	}
}
