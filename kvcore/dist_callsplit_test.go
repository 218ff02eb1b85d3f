package kvcore_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/webkv/webkv/kvcore"
)

// A dist list call of several engine operations (4,096 keys each) is
// checked and built by several goroutines (here five, one per operation,
// whatever the machine): the call behaves as when one goroutine does it.
// A bad key deep in the call fails it whole and queues nothing; with two
// bad keys the error names the first in key order, every time; a key
// repeated in the first and the last operation (two goroutines' shares) is
// summed; and a call with no fault pushes and pulls every key.
func TestDistListSplitCall(t *testing.T) {
	const chunk, elems = 4096, 4
	const n = 5*chunk - 100
	ctx := context.Background()
	s := soleWorker(t, "split")
	kvcore.SetCallWorkers(s, 5)
	keys := make([]kvcore.Key, n)
	for i := range keys {
		keys[i] = kvcore.IntKey(i)
	}
	arrs := func(fill func(i int) float32) [][]*kvcore.Array {
		l := make([][]*kvcore.Array, n)
		for i := range l {
			a, err := kvcore.NewArray(kvcore.CPU(0), elems)
			if err != nil {
				t.Fatal(err)
			}
			if err := a.Fill(ctx, fill(i)); err != nil {
				t.Fatal(err)
			}
			l[i] = []*kvcore.Array{a}
		}
		return l
	}
	inits := make([]*kvcore.Array, n)
	for i, a := range arrs(func(i int) float32 { return float32(i) }) {
		inits[i] = a[0]
	}
	if err := s.InitList(ctx, keys, inits); err != nil {
		t.Fatal(err)
	}
	// check pulls every key and compares it with want(i).
	check := func(what string, want func(i int) float32) {
		t.Helper()
		outs := arrs(func(int) float32 { return -1 })
		if err := s.PullList(keys, outs, 0); err != nil {
			t.Fatal(err)
		}
		if err := s.WaitAll(ctx); err != nil {
			t.Fatal(err)
		}
		for i, o := range outs {
			got, err := o[0].ToSlice(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for j, x := range got {
				if x != want(i) {
					t.Fatalf("%s: key %d element %d = %v, want %v", what, i, j, x, want(i))
				}
			}
		}
	}
	wrong, err := kvcore.NewArray(kvcore.CPU(0), 2, 2)
	if err != nil {
		t.Fatal(err)
	}

	// A bad key in the last operation only: the four before it were
	// built (by other goroutines) and none of them is queued.
	vals := arrs(func(i int) float32 { return float32(1000 + i) })
	deep := 4*chunk + 10
	saved := vals[deep]
	vals[deep] = []*kvcore.Array{wrong}
	err = s.PushList(keys, vals, 0)
	if !errors.Is(err, kvcore.ErrShapeMismatch) || !strings.Contains(err.Error(), "key 16394") {
		t.Fatalf("push list with key 16394 of shape [2 2]: err = %v, want ErrShapeMismatch naming the key", err)
	}
	check("after a failed push list", func(i int) float32 { return float32(i) })

	// Two bad keys, late in the second operation and early in the third
	// (taken by two goroutines at about the same time): the first one is
	// named, though the other is likely seen first.
	vals[deep] = saved
	first, second := chunk+4000, 2*chunk+10
	vals[first], vals[second] = []*kvcore.Array{nil}, []*kvcore.Array{wrong}
	for range 20 {
		err = s.PushList(keys, vals, 0)
		if !errors.Is(err, kvcore.ErrNilArray) || !strings.Contains(err.Error(), "key 8096") {
			t.Fatalf("push list with a nil array at key 8096 and a bad shape at key 8202: err = %v, want ErrNilArray naming key 8096", err)
		}
	}
	vals[first], vals[second] = saved, saved // saved: any array of the key's shape
	check("after failed push lists", func(i int) float32 { return float32(i) })

	// Key 7 again at the end of the call (in the last operation): the
	// call is queued key by key, key 7's two values summed.
	for r := range 10 {
		base := float32(10 * (r + 1))
		vals := arrs(func(i int) float32 { return base + float32(i) })
		extra, err := kvcore.FromSlice(kvcore.CPU(0), []float32{100, 100, 100, 100})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.PushList(append(keys, kvcore.IntKey(7)), append(vals, []*kvcore.Array{extra}), 0); err != nil {
			t.Fatal(err)
		}
		check("key 7 pushed twice in one call", func(i int) float32 {
			if i == 7 {
				return base + 7 + 100
			}
			return base + float32(i)
		})
	}

	// In place, every operation's keys split between the goroutines.
	vals = arrs(func(i int) float32 { return float32(3 * i) })
	if err := s.PushPullList(keys, vals, nil, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitAll(ctx); err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, chunk - 1, chunk, 3*chunk + 5, n - 1} {
		got, err := vals[i][0].ToSlice(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got[0] != float32(3*i) || got[elems-1] != float32(3*i) {
			t.Fatalf("pushpull list in place: key %d = %v, want %v", i, got, 3*i)
		}
	}
	check("after the pushpull list", func(i int) float32 { return float32(3 * i) })
}

// The keys of a list call that are not the common case (a key of two
// arrays) interrupt the run of common keys (of one array, 1-d or 2-d) a
// loop of its own builds (buildRun) at any place of an operation, its
// first key included: each goes the general way and the run resumes
// after it. The
// values pushed and pulled are every key's, in every array, whichever way
// it was built, and the engine orders the arrays' next uses after them;
// a repeated key still sends the call the exact way (summed into its
// first occurrence).
func TestDistListCommonRunInterrupted(t *testing.T) {
	const n = 2*4096 + 300 // three operations
	ctx := context.Background()
	s := soleWorker(t, "mixed")
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	// kind: 0 a key of 3 floats, 1 a 2x2 key, 2 a key of 3 floats with
	// two arrays (the uncommon one). Operation starts (0, 4096, 8192) are
	// of kind 1 or 2, and so is a random tenth of the others.
	kind := make([]int, n)
	for i := range kind {
		if i%4096 == 0 || rng.IntN(10) == 0 {
			kind[i] = 1 + i%2
		}
	}
	keys := make([]kvcore.Key, n)
	inits := make([]*kvcore.Array, n)
	newArr := func(i int) *kvcore.Array {
		shape := []int{3}
		if kind[i] == 1 {
			shape = []int{2, 2}
		}
		a, err := kvcore.NewArray(kvcore.CPU(0), shape...)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	for i := range keys {
		keys[i] = kvcore.IntKey(i)
		inits[i] = newArr(i)
	}
	if err := s.InitList(ctx, keys, inits); err != nil {
		t.Fatal(err)
	}
	// arrays are the arrays of keys ks (one per key, two for kind 2),
	// filled with fill(key, array).
	arrays := func(ks []kvcore.Key, fill func(i, j int) float32) [][]*kvcore.Array {
		as := make([][]*kvcore.Array, len(ks))
		for x, k := range ks {
			i := k.Int()
			for j := range 1 + b2i(kind[i] == 2) {
				a := newArr(i)
				if err := a.Fill(ctx, fill(i, j)); err != nil {
					t.Fatal(err)
				}
				as[x] = append(as[x], a)
			}
		}
		return as
	}
	pushPull := func(keys []kvcore.Key, vals [][]*kvcore.Array, want func(i int) float32) {
		t.Helper()
		if err := s.PushList(keys, vals, 0); err != nil {
			t.Fatal(err)
		}
		// The engine orders what follows after the calls, with no
		// WaitAll: a write of the values waits until the push read them,
		// a read of the outputs until the pull wrote them.
		for _, as := range vals {
			for _, a := range as {
				if err := a.Fill(ctx, 999); err != nil {
					t.Fatal(err)
				}
			}
		}
		outs := arrays(keys, func(int, int) float32 { return -1 })
		if err := s.PullList(keys, outs, 0); err != nil {
			t.Fatal(err)
		}
		for x, os := range outs {
			i := keys[x].Int()
			for j, o := range os {
				got, err := o.ToSlice(ctx)
				if err != nil {
					t.Fatal(err)
				}
				for e, v := range got {
					if w := want(i); v != w {
						t.Fatalf("key %d (kind %d) output %d element %d = %v, want %v", i, kind[i], j, e, v, w)
					}
				}
			}
		}
		if err := s.WaitAll(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Every key once: a key of two arrays pushes their sum.
	pushPull(keys, arrays(keys, func(i, j int) float32 { return float32(i + 1000*j) }), func(i int) float32 {
		if kind[i] == 2 {
			return float32(2*i + 1000)
		}
		return float32(i)
	})
	// A repeated key: key 7 pushed twice (its pushes summed) in a call of
	// the keys up to the second operation's start; the rest unchanged.
	m := 4096 + 10
	rk := append(slices.Clone(keys[:m]), keys[7])
	vals := arrays(keys[:m], func(i, j int) float32 { return float32(3 * (i + j)) })
	vals = append(vals, arrays(keys[7:8], func(i, j int) float32 { return float32(5 * (i + j)) })...)
	want := func(i int) float32 {
		v := float32(3*i) + float32(b2i(kind[i] == 2))*float32(3*(i+1))
		if i == 7 {
			v += float32(5*7) + float32(b2i(kind[7] == 2))*float32(5*8)
		}
		return v
	}
	pushPull(rk, vals, want)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
