package kvcore_test

import (
	"context"
	"errors"
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
