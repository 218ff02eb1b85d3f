package kvcore_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/webkv/webkv/kvcore"
	"github.com/webkv/webkv/kvcore/optimizer"
)

// A local store with an optimizer: two devices push their gradients of a
// key, the store sums them and runs one SGD step, and a pull reads the
// updated weights back.
func Example() {
	ctx := context.Background()
	s, err := kvcore.Create(ctx, "local", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()

	w, err := kvcore.FromSlice(kvcore.CPU(0), []float32{1, 2, 3, 4}, 2, 2)
	if err != nil {
		fmt.Println(err)
		return
	}
	key := kvcore.StrKey("w")
	if err := s.Init(ctx, key, w); err != nil {
		fmt.Println(err)
		return
	}
	if err := s.SetOptimizer(ctx, optimizer.SGD(0.5, 0)); err != nil {
		fmt.Println(err)
		return
	}
	g0, _ := kvcore.FromSlice(kvcore.CPU(0), []float32{1, 1, 1, 1}, 2, 2)
	g1, _ := kvcore.FromSlice(kvcore.CPU(1), []float32{1, 0, 1, 0}, 2, 2)
	// Push and Pull return once queued; reading w waits for them.
	if err := s.Push(key, g0, g1); err != nil {
		fmt.Println(err)
		return
	}
	if err := s.Pull(key, w); err != nil {
		fmt.Println(err)
		return
	}
	v, err := w.ToSlice(ctx)
	fmt.Println(v, err)
	// Output: [0 1.5 2 3.5] <nil>
}

// Errors name the operation and key, and wrap a sentinel to test with
// errors.Is. Bad arguments fail at the call; a failure inside a queued
// operation surfaces at the next Wait of an array it writes, or WaitAll.
func Example_errors() {
	ctx := context.Background()
	s, err := kvcore.Create(ctx, "local", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()
	a, _ := kvcore.NewArray(kvcore.CPU(0), 3)
	err = s.Push(kvcore.IntKey(7), a)
	fmt.Println(err)
	fmt.Println(errors.Is(err, kvcore.ErrUnknownKey))

	if err := s.Init(ctx, kvcore.IntKey(7), a); err != nil {
		fmt.Println(err)
		return
	}
	// An updater that fails: the push returns nil (it was queued), the
	// error comes from WaitAll, once.
	if err := s.SetUpdater(ctx, func(kvcore.Key, *kvcore.Array, *kvcore.Array) error {
		return errors.New("out of budget")
	}); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(s.Push(kvcore.IntKey(7), a))
	fmt.Println(s.WaitAll(ctx))
	fmt.Println(s.WaitAll(ctx))

	_, err = kvcore.Create(ctx, "dist_snyc", nil)
	fmt.Println(errors.Is(err, kvcore.ErrUnknownType))
	// Output:
	// kvcore: push key 7: key was not initialized (call Init first)
	// true
	// <nil>
	// kvcore: push key 7: updater: out of budget
	// <nil>
	// true
}
