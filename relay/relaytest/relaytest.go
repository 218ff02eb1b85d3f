// Package relaytest holds the training workload shared by the relay's
// in-process tests (relay/) and its multi-process tests (tests/relay_*):
// deterministic gradients per (seed, round, rank, key), a worker loop over a
// dist store, and the single-process reference that every dist_sync run must
// match bit for bit.
package relaytest

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/webkv/webkv/kvcore"
	"github.com/webkv/webkv/kvcore/optimizer"
	"github.com/webkv/webkv/relay"
)

// Workload is one training run. It travels to worker processes as JSON.
type Workload struct {
	Seed      uint64
	Workers   int
	Rounds    int
	Sizes     []int           // element count of each int key 0..len-1
	Optimizer json.RawMessage // spec; empty: no optimizer (assign)
	PushPull  bool            // one PushPull per key per round instead of Push then Pull
	Lists     bool            // one PushList and one PullList of every key per round
	// Short, if > 0, makes the worker with this rank stop (and leave)
	// after ShortRounds rounds: uneven batches at epoch end.
	ShortRank, ShortRounds int
	// Pause, if > 0, sleeps that long after each round (to leave room for
	// faults in the middle of training).
	Pause time.Duration
}

// Init is the initial value of key k.
func (w *Workload) Init(k int) []float32 {
	r := rand.New(rand.NewPCG(w.Seed, uint64(k)<<32|0xffffffff))
	v := make([]float32, w.Sizes[k])
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

// Grad is rank's gradient of key k in round.
func (w *Workload) Grad(round, rank, k int, dst []float32) []float32 {
	r := rand.New(rand.NewPCG(w.Seed^uint64(round+1)*0x9E3779B97F4A7C15, uint64(rank)<<40|uint64(k)))
	dst = dst[:0]
	for range w.Sizes[k] {
		dst = append(dst, float32(r.NormFloat64()*0.1))
	}
	return dst
}

// Rounds of rank.
func (w *Workload) roundsOf(rank int) int {
	if w.ShortRounds > 0 && rank == w.ShortRank {
		return w.ShortRounds
	}
	return w.Rounds
}

// Reference runs the workload in one process on a local store: each round
// pushes every rank's gradient of a key in one call (one value per device,
// summed in rank order), as the relay sums a dist_sync round. It returns the
// final values.
func (w *Workload) Reference() ([][]float32, error) {
	ctx := context.Background()
	s, err := kvcore.Create(ctx, "local", nil)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	if len(w.Optimizer) > 0 {
		opt, err := optimizer.Parse(w.Optimizer)
		if err != nil {
			return nil, err
		}
		if err := s.SetOptimizer(ctx, opt); err != nil {
			return nil, err
		}
	}
	for k := range w.Sizes {
		a, err := kvcore.FromSlice(kvcore.CPU(0), w.Init(k), w.Sizes[k])
		if err != nil {
			return nil, err
		}
		if err := s.Init(ctx, kvcore.IntKey(k), a); err != nil {
			return nil, err
		}
	}
	var g []float32
	for round := 0; round < w.Rounds; round++ {
		for k := range w.Sizes {
			var vals []*kvcore.Array
			for rank := 0; rank < w.Workers; rank++ {
				if round >= w.roundsOf(rank) {
					continue
				}
				g = w.Grad(round, rank, k, g)
				a, err := kvcore.FromSlice(kvcore.CPU(rank), g, w.Sizes[k])
				if err != nil {
					return nil, err
				}
				vals = append(vals, a)
			}
			if err := s.Push(kvcore.IntKey(k), vals...); err != nil {
				return nil, err
			}
		}
	}
	out := make([][]float32, len(w.Sizes))
	for k := range w.Sizes {
		a, err := kvcore.NewArray(kvcore.CPU(0), w.Sizes[k])
		if err != nil {
			return nil, err
		}
		if err := s.Pull(kvcore.IntKey(k), a); err != nil {
			return nil, err
		}
		if out[k], err = a.ToSlice(ctx); err != nil {
			return nil, err
		}
	}
	return out, s.WaitAll(ctx)
}

// Result is what a worker reports.
type Result struct {
	Rank   int
	Values [][]float32 // final values (nil for a worker that left early)
}

// RunWorker trains one worker of w through the relay at url (a comma-
// separated list for shards) with store type typ. Rank 0 sets the
// optimizer; everyone waits at a barrier before the first round and after
// the last, then pulls the final values. A short worker leaves after its
// rounds (Store.Close sends Leave) without waiting for the others.
func RunWorker(ctx context.Context, url, typ string, w *Workload, opts relay.DialOptions) (*Result, error) {
	opts.Workers = w.Workers
	s, err := relay.Create(ctx, typ, url, opts, nil)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	rank := s.Rank()
	if n := s.NumWorkers(); n != w.Workers {
		return nil, fmt.Errorf("rank %d: %d workers, want %d", rank, n, w.Workers)
	}
	if rank == 0 && len(w.Optimizer) > 0 {
		opt, err := optimizer.Parse(w.Optimizer)
		if err != nil {
			return nil, err
		}
		if err := s.SetOptimizer(ctx, opt); err != nil {
			return nil, fmt.Errorf("rank 0: set optimizer: %w", err)
		}
	}
	arrs := make([]*kvcore.Array, len(w.Sizes))
	outs := make([]*kvcore.Array, len(w.Sizes))
	for k := range w.Sizes {
		a, err := kvcore.FromSlice(kvcore.CPU(0), w.Init(k), w.Sizes[k])
		if err != nil {
			return nil, err
		}
		if err := s.Init(ctx, kvcore.IntKey(k), a); err != nil {
			return nil, fmt.Errorf("rank %d: init key %d: %w", rank, k, err)
		}
		arrs[k] = a
		if outs[k], err = kvcore.NewArray(kvcore.CPU(0), w.Sizes[k]); err != nil {
			return nil, err
		}
	}
	if err := s.Barrier(ctx); err != nil {
		return nil, fmt.Errorf("rank %d: barrier: %w", rank, err)
	}
	var g []float32
	keys := make([]kvcore.Key, len(w.Sizes))
	vals, outl := make([][]*kvcore.Array, len(w.Sizes)), make([][]*kvcore.Array, len(w.Sizes))
	for k := range w.Sizes {
		keys[k], vals[k], outl[k] = kvcore.IntKey(k), []*kvcore.Array{arrs[k]}, []*kvcore.Array{outs[k]}
	}
	for round := 0; round < w.roundsOf(rank); round++ {
		for k := range w.Sizes {
			if !w.Lists {
				break
			}
			g = w.Grad(round, rank, k, g)
			if err := arrs[k].CopyFrom(ctx, g); err != nil {
				return nil, err
			}
		}
		if w.Lists {
			err = s.PushList(keys, vals, 0)
			if err == nil {
				err = s.PullList(keys, outl, 0)
			}
			if err != nil {
				return nil, fmt.Errorf("rank %d round %d: lists: %w", rank, round, err)
			}
		}
		for k := range w.Sizes {
			if w.Lists {
				break
			}
			g = w.Grad(round, rank, k, g)
			if err := arrs[k].CopyFrom(ctx, g); err != nil {
				return nil, err
			}
			key := kvcore.IntKey(k)
			if w.PushPull {
				err = s.PushPullTo(key, []*kvcore.Array{arrs[k]}, outs[k])
			} else {
				err = s.Push(key, arrs[k])
				if err == nil {
					err = s.Pull(key, outs[k])
				}
			}
			if err != nil {
				return nil, fmt.Errorf("rank %d round %d key %d: %w", rank, round, k, err)
			}
		}
		// Wait for the round's answers before reusing arrs next round.
		if err := s.WaitAll(ctx); err != nil {
			return nil, fmt.Errorf("rank %d round %d: %w", rank, round, err)
		}
		if w.Pause > 0 {
			time.Sleep(w.Pause)
		}
	}
	res := &Result{Rank: rank}
	if w.roundsOf(rank) < w.Rounds {
		return res, nil // leaves via the deferred Close
	}
	if err := s.Barrier(ctx); err != nil {
		return nil, fmt.Errorf("rank %d: final barrier: %w", rank, err)
	}
	for k := range w.Sizes {
		if err := s.Pull(kvcore.IntKey(k), outs[k]); err != nil {
			return nil, err
		}
		v, err := outs[k].ToSlice(ctx)
		if err != nil {
			return nil, fmt.Errorf("rank %d: final pull key %d: %w", rank, k, err)
		}
		res.Values = append(res.Values, v)
	}
	return res, nil
}

// Compare reports the first element where got differs from want, bit for
// bit (NaNs compare by bits too).
func Compare(got, want [][]float32) error {
	if len(got) != len(want) {
		return fmt.Errorf("%d keys, want %d", len(got), len(want))
	}
	for k := range want {
		if len(got[k]) != len(want[k]) {
			return fmt.Errorf("key %d: %d values, want %d", k, len(got[k]), len(want[k]))
		}
		for i := range want[k] {
			if math.Float32bits(got[k][i]) != math.Float32bits(want[k][i]) {
				return fmt.Errorf("key %d[%d] = %v, want %v (bit-exact)", k, i, got[k][i], want[k][i])
			}
		}
	}
	return nil
}
