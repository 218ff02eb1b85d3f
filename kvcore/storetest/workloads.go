package storetest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"

	"github.com/webkv/webkv/kvcore"
	"github.com/webkv/webkv/kvcore/optimizer"
	"github.com/webkv/webkv/kvcore/transport"
)

// The dist workloads of issue 9's repros, one worker each over any
// transport: kvcore runs them over in-process servers (natively, in wazero
// and in node), package relay over websockets.

// ConnEvents counts a store's connection events by shard (set its Fn as
// kvcore.Options.Events); Wake has a value after each one.
type ConnEvents struct {
	mu          sync.Mutex
	reconnected []int
	lost        []error
	Wake        chan struct{}
}

// NewConnEvents returns a counter for a store of shards shards.
func NewConnEvents(shards int) *ConnEvents {
	return &ConnEvents{reconnected: make([]int, shards), Wake: make(chan struct{}, 1)}
}

// Fn takes a store's event.
func (c *ConnEvents) Fn(e kvcore.Event) {
	if e.Kind != kvcore.EventConnection {
		return
	}
	c.mu.Lock()
	switch e.Conn {
	case kvcore.ConnReconnected:
		c.reconnected[e.Shard]++
	case kvcore.ConnLost:
		c.lost = append(c.lost, e.Err)
	}
	c.mu.Unlock()
	select {
	case c.Wake <- struct{}{}:
	default:
	}
}

// Get returns the reconnections by shard and the losses so far.
func (c *ConnEvents) Get() (reconnected []int, lost []error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int(nil), c.reconnected...), append([]error(nil), c.lost...)
}

// none reports reconnections or losses as an error.
func (c *ConnEvents) none() error {
	r, lost := c.Get()
	n := 0
	for _, k := range r {
		n += k
	}
	if n != 0 || len(lost) != 0 {
		return fmt.Errorf("reconnects by shard %v, lost %v: want none", r, lost)
	}
	return nil
}

// KVApp is one worker of ps-lite's test_kv_app: it pushes its own num
// one-float keys (2*i + rank, so two workers' keys interleave over the
// shards) repeat times into a dist_async job that adds every push (SGD at
// learning rate 1 on the negated values), waiting for the push 10 back as
// test_kv_app does, then pulls them all: each must be repeat × its value,
// and the store must never have reconnected.
func KVApp(ctx context.Context, tr transport.Transport, num, repeat int) error {
	count := NewConnEvents(tr.Shards())
	s, err := kvcore.Create(ctx, "dist_async", &kvcore.Options{Transport: tr, Events: count.Fn})
	if err != nil {
		return err
	}
	defer s.Close()
	rank := s.Rank()
	lr := 1.0
	if err := s.SetOptimizer(ctx, &optimizer.Spec{Name: "sgd", LearningRate: &lr}); err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(uint64(rank)+7, 0))
	keys := make([]kvcore.Key, num)
	vals := make([]float32, num)
	grads, outs := make([][]*kvcore.Array, num), make([][]*kvcore.Array, num)
	inits := make([]*kvcore.Array, num)
	for i := range keys {
		keys[i] = kvcore.IntKey(2*i + rank)
		vals[i] = float32(rng.IntN(1000))
		g, err := kvcore.FromSlice(kvcore.CPU(0), []float32{-vals[i]}) // w -= lr*g adds vals[i]
		if err != nil {
			return err
		}
		o, _ := kvcore.NewArray(kvcore.CPU(0), 1)
		grads[i], outs[i] = []*kvcore.Array{g}, []*kvcore.Array{o}
		inits[i], _ = kvcore.NewArray(kvcore.CPU(0), 1)
	}
	if err := s.InitList(ctx, keys, inits); err != nil {
		return err
	}
	for i := range repeat {
		if err := s.PushList(keys, grads, 0); err != nil {
			return err
		}
		if i%10 == 9 {
			if err := s.WaitAll(ctx); err != nil {
				return err
			}
		}
	}
	if err := s.PullList(keys, outs, 0); err != nil {
		return err
	}
	if err := s.WaitAll(ctx); err != nil {
		return err
	}
	for i := range keys {
		got, err := outs[i][0].ToSlice(ctx)
		if err != nil {
			return err
		}
		if want := vals[i] * float32(repeat); got[0] != want {
			return fmt.Errorf("key %v: %v, want %v (%d pushes of %v)", keys[i], got[0], want, repeat, vals[i])
		}
	}
	return count.none()
}

// ManyKeysSync is one worker of a dist_sync job of num one-float keys:
// in each of rounds rounds worker r pushpulls round*1000 + key + r for
// every key (MXNet's default updater assigns the sum), every result must be
// exact, and the store must never have reconnected.
func ManyKeysSync(ctx context.Context, tr transport.Transport, num, rounds int) error {
	count := NewConnEvents(tr.Shards())
	s, err := kvcore.Create(ctx, "dist_sync", &kvcore.Options{Transport: tr, Events: count.Fn})
	if err != nil {
		return err
	}
	defer s.Close()
	nw := s.NumWorkers()
	keys := make([]kvcore.Key, num)
	vals := make([][]*kvcore.Array, num)
	inits := make([]*kvcore.Array, num)
	for i := range keys {
		keys[i] = kvcore.IntKey(i)
		inits[i], _ = kvcore.NewArray(kvcore.CPU(0), 1)
		a, _ := kvcore.NewArray(kvcore.CPU(0), 1)
		vals[i] = []*kvcore.Array{a}
	}
	if err := s.InitList(ctx, keys, inits); err != nil {
		return err
	}
	for r := range rounds {
		for i := range keys {
			if err := vals[i][0].Fill(ctx, float32(r*1000+i+s.Rank())); err != nil {
				return err
			}
		}
		if err := s.PushPullList(keys, vals, nil, 0); err != nil {
			return err
		}
		if err := s.WaitAll(ctx); err != nil {
			return err
		}
		for i := range keys {
			got, err := vals[i][0].ToSlice(ctx)
			if err != nil {
				return err
			}
			if want := float32(nw*(r*1000+i) + nw*(nw-1)/2); got[0] != want {
				return fmt.Errorf("round %d key %d: %v, want %v", r, i, got[0], want)
			}
		}
	}
	return count.none()
}
