package kvcore_test

import (
	"context"
	"testing"

	"github.com/webkv/webkv/kvcore"
)

// A dist list call bigger than one engine operation (4,096 keys) keeps
// MXNet's dist order whichever way its operations are queued: the one-pass
// path (no key repeated, no array shared within an operation), the
// fallback from the first operation that shares an array (key by key
// from there), the fallback for the whole call when a key repeats (its
// values are summed), and in-place pushpull.
func TestDistBigListsKeyByKey(t *testing.T) {
	const n, elems = 5000, 4
	ctx := context.Background()
	s := soleWorker(t, "big")
	keys := make([]kvcore.Key, n)
	arrs := func(fill func(i int) float32) []*kvcore.Array {
		as := make([]*kvcore.Array, n)
		for i := range as {
			a, err := kvcore.NewArray(kvcore.CPU(0), elems)
			if err != nil {
				t.Fatal(err)
			}
			if err := a.Fill(ctx, fill(i)); err != nil {
				t.Fatal(err)
			}
			as[i] = a
		}
		return as
	}
	lists := func(as []*kvcore.Array) [][]*kvcore.Array {
		l := make([][]*kvcore.Array, len(as))
		for i, a := range as {
			l[i] = []*kvcore.Array{a}
		}
		return l
	}
	for i := range keys {
		keys[i] = kvcore.IntKey(i)
	}
	if err := s.InitList(ctx, keys, arrs(func(i int) float32 { return float32(i) })); err != nil {
		t.Fatal(err)
	}
	want := func(what string, a *kvcore.Array, v float32) {
		t.Helper()
		got, err := a.ToSlice(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for j, x := range got {
			if x != v {
				t.Fatalf("%s: element %d = %v, want %v", what, j, x, v)
			}
		}
	}
	wait := func() {
		t.Helper()
		if err := s.WaitAll(ctx); err != nil {
			t.Fatal(err)
		}
	}

	// In place, keys x and y with one pair of arrays as the values and
	// outputs of both (MXNet's test_pushpull_single_kv_pair, as in the
	// store suite): key by key, y's push reads what x's pull wrote (a and
	// b: 1, then 2 after x, then 4 after y); had the two keys gone in one
	// operation, both would push 2. x and y in the second operation (the
	// first goes the one-pass way), then in the first.
	for _, xy := range [][2]int{{4500, 4600}, {10, 20}} {
		x, y := xy[0], xy[1]
		vals := arrs(func(i int) float32 { return float32(i) })
		l := lists(vals)
		ab := arrs(func(int) float32 { return 1 })[:2]
		l[x], l[y] = ab, ab
		if err := s.PushPullList(keys, l, nil, 0); err != nil {
			t.Fatal(err)
		}
		wait()
		want("the pair after both keys", ab[0], 4)
		want("the pair after both keys", ab[1], 4)
		for _, i := range []int{0, 4095, 4096, n - 1} {
			want("pushpull list in place", vals[i], float32(i))
		}
		outs := arrs(func(int) float32 { return -1 })
		if err := s.PullList(keys, lists(outs), 0); err != nil {
			t.Fatal(err)
		}
		wait()
		want("first key of the pair", outs[x], 2)
		want("second key of the pair", outs[y], 4)
	}

	// One output for keys 4500 and 4600: the later key's value.
	outs := arrs(func(int) float32 { return -1 })
	outs[4600] = outs[4500]
	if err := s.PullList(keys, lists(outs), 0); err != nil {
		t.Fatal(err)
	}
	wait()
	want("one output for two keys", outs[4500], 4600) // pushed by the second pair call
	want("key 4601", outs[4601], 4601)

	// In place: every key pushes 2i and pulls it back into the same array.
	vals := arrs(func(i int) float32 { return float32(2 * i) })
	if err := s.PushPullList(keys, lists(vals), nil, 0); err != nil {
		t.Fatal(err)
	}
	wait()
	for _, i := range []int{0, 1, 4096, n - 1} {
		want("pushpull list in place", vals[i], float32(2*i))
	}

	// Key 7 twice (its second value in the second operation): summed.
	vals = arrs(func(i int) float32 { return float32(i) })
	extra, err := kvcore.FromSlice(kvcore.CPU(0), []float32{100, 100, 100, 100})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PushList(append(keys, kvcore.IntKey(7)), append(lists(vals), []*kvcore.Array{extra}), 0); err != nil {
		t.Fatal(err)
	}
	outs = arrs(func(int) float32 { return -1 })
	if err := s.PullList(keys, lists(outs), 0); err != nil {
		t.Fatal(err)
	}
	wait()
	want("key 7 pushed twice in one call", outs[7], 107)
	want("key 8", outs[8], 8)
	want("key 4999", outs[n-1], n-1)
}
