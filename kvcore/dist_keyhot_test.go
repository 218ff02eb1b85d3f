package kvcore_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/webkv/webkv/kvcore"
)

// A dist list call checks every key's arrays against the key's shape
// before it queues anything, from the store's record of the key (not its
// entry): a 2-d array of the key's size in another shape, in the middle of
// a call bigger than one engine operation, fails the whole call naming
// the key, and no key's push reaches the server.
func TestDistListShapeFromKeyRecord(t *testing.T) {
	const n = 10_000
	ctx := context.Background()
	s := soleWorker(t, "shape")
	keys := make([]kvcore.Key, n)
	vals, outs := make([][]*kvcore.Array, n), make([][]*kvcore.Array, n)
	inits := make([]*kvcore.Array, n)
	for i := range keys {
		keys[i] = kvcore.IntKey(i)
		in, err := kvcore.FromSlice(kvcore.CPU(0), []float32{1, 2, 3, 4}, 2, 2)
		if err != nil {
			t.Fatal(err)
		}
		inits[i] = in
		v, err := kvcore.FromSlice(kvcore.CPU(0), []float32{5, 5, 5, 5}, 2, 2)
		if err != nil {
			t.Fatal(err)
		}
		o, err := kvcore.NewArray(kvcore.CPU(0), 2, 2)
		if err != nil {
			t.Fatal(err)
		}
		vals[i], outs[i] = []*kvcore.Array{v}, []*kvcore.Array{o}
	}
	if err := s.InitList(ctx, keys, inits); err != nil {
		t.Fatal(err)
	}
	bad := n / 2
	saved := vals[bad]
	wrong, err := kvcore.NewArray(kvcore.CPU(0), 1, 4)
	if err != nil {
		t.Fatal(err)
	}
	vals[bad] = []*kvcore.Array{wrong}
	err = s.PushList(keys, vals, 0)
	if !errors.Is(err, kvcore.ErrShapeMismatch) || !strings.Contains(err.Error(), "5000") {
		t.Fatalf("push list with key 5000 of shape [1 4]: err = %v, want ErrShapeMismatch naming the key", err)
	}
	vals[bad] = saved
	if err := s.PullList(keys, outs, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitAll(ctx); err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, bad - 1, bad, n - 1} {
		got, err := outs[i][0].ToSlice(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got[0] != 1 || got[3] != 4 {
			t.Errorf("key %d after the refused push list: %v, want the initial [1 2 3 4]", i, got)
		}
	}
}
