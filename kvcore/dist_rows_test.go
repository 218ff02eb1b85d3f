package kvcore_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/webkv/webkv/kvcore"
	"github.com/webkv/webkv/kvcore/optimizer"
	"github.com/webkv/webkv/kvcore/psm"
	"github.com/webkv/webkv/kvcore/psm/inproc"
	"github.com/webkv/webkv/kvcore/transport"
)

// TestDistRowSparse ports the row-sparse checks of MXNet's
// tests/nightly/dist_sync_kvstore.py (check_row_sparse_keys,
// check_row_sparse_keys_with_zeros, check_big_row_sparse_keys) to
// dist_sync stores of 4 workers over 2 shards, with keys split over the
// shards inside a row. MXNet's Test optimizer (weight += rescale_grad *
// grad, rate 2) is SGD with learning rate 2 on the negated gradient; the
// expected numbers are MXNet's.
func TestDistRowSparse(t *testing.T) {
	const nworker, rate, nrepeat = 4, 2, 3
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	shape := []int{2, 3}
	big := []int{121, 119} // 14399 values: split over 2 shards inside row 60
	srvs := []*inproc.Server{
		testServer(t, psm.Config{Shard: 0, Shards: 2}),
		testServer(t, psm.Config{Shard: 1, Shards: 2}),
	}
	p := func(v float64) *float64 { return &v }
	test := &optimizer.Spec{Name: "sgd", LearningRate: p(rate)}
	ones := func(shape []int) *kvcore.Array { return filled(t, kvcore.CPU(0), 1, shape...) }

	// Every worker's choice of rows for check_big_row_sparse_keys (MXNet
	// draws them from one seed on every worker).
	rb := rand.New(rand.NewPCG(seed, 123))
	var indices []int
	for row := range big[0] {
		if rb.Float64() < 0.3 {
			indices = append(indices, row)
		}
	}
	updateRows := make([][]int, nworker)
	for rank := range nworker {
		for i := 0; i < len(indices); i += (rank + 1) * 2 {
			updateRows[rank] = append(updateRows[rank], indices[i])
		}
	}

	worker := func(ctx context.Context, rank int) error {
		kv, err := kvcore.Create(ctx, "dist_sync", &kvcore.Options{Transport: shardsOf(t, srvs, transport.Join{Job: "rsp", Workers: nworker, BigArrayBound: 1000})})
		if err != nil {
			return err
		}
		defer kv.Close()
		my := kv.Rank()
		keys := kvcore.StrKeys("9", "11", "97")
		if err := kv.InitList(ctx, keys, []*kvcore.Array{ones(shape), ones(shape), ones(big)}); err != nil {
			return err
		}
		if err := kv.SetOptimizer(ctx, test); err != nil {
			return err
		}
		r := rand.New(rand.NewPCG(seed, uint64(my)))
		pull := func(k kvcore.Key, shape, ids []int) ([]float32, error) {
			out := kvcore.RowSparse{Data: filled(t, kvcore.CPU(0), 7, shape...)}
			rowIDs := make([]int64, len(ids))
			for i, id := range ids {
				rowIDs[i] = int64(id)
			}
			if err := kv.RowSparsePull(k, &out, rowIDs); err != nil {
				return nil, err
			}
			return out.Data.ToSlice(ctx)
		}
		randomRows := func(n int) []int {
			ids := make([]int, n)
			for i := range ids {
				ids[i] = r.IntN(n)
			}
			return ids
		}
		check := func(what string, got []float32, shape, ids []int, updated func(row int) float32) error {
			in := map[int]bool{}
			for _, id := range ids {
				in[id] = true
			}
			w := len(got) / shape[0]
			for i, g := range got {
				want := float32(0)
				if in[i/w] {
					want = updated(i / w)
				}
				if g != want {
					return fmt.Errorf("rank %d: %s: [%d] (row %d) = %v, want %v", my, what, i, i/w, g, want)
				}
			}
			return nil
		}

		// check_row_sparse_keys: each worker pushes row rank%2 of value rank+1.
		myRow := my % shape[0]
		v := make([]float32, shape[1])
		for j := range v {
			v[j] = -float32(my + 1) // negated: the Test optimizer adds
		}
		for i := range nrepeat {
			data, _ := kvcore.FromSlice(kvcore.CPU(0), v, 1, shape[1])
			if err := kv.PushRowSparse(keys[0], kvcore.RowSparse{Rows: []int64{int64(myRow)}, Data: data}); err != nil {
				return err
			}
			ids := randomRows(shape[0])
			got, err := pull(keys[0], shape, ids)
			if err != nil {
				return err
			}
			err = check(fmt.Sprintf("row_sparse_keys repeat %d", i), got, shape, ids, func(row int) float32 {
				x := float32(1)
				for rank := range nworker {
					if rank%shape[0] == row {
						x += float32((rank + 1) * rate * (i + 1))
					}
				}
				return x
			})
			if err != nil {
				return err
			}
		}

		// check_row_sparse_keys_with_zeros: empty pushes change nothing;
		// pulls of every row read 1, pulls of no rows read 0.
		for i := range nrepeat {
			if err := kv.PushRowSparse(keys[1], kvcore.RowSparse{}); err != nil {
				return err
			}
			if err := kv.PushRowSparse(keys[2], kvcore.RowSparse{}); err != nil {
				return err
			}
			for _, c := range []struct {
				k     kvcore.Key
				shape []int
			}{{keys[1], shape}, {keys[2], big}} {
				all := make([]int, c.shape[0])
				for j := range all {
					all[j] = j
				}
				got, err := pull(c.k, c.shape, all)
				if err != nil {
					return err
				}
				if err := check(fmt.Sprintf("zeros repeat %d key %v", i, c.k), got, c.shape, all, func(int) float32 { return 1 }); err != nil {
					return err
				}
				if got, err = pull(c.k, c.shape, nil); err != nil {
					return err
				}
				if err := check(fmt.Sprintf("zeros repeat %d key %v, no rows", i, c.k), got, c.shape, nil, nil); err != nil {
					return err
				}
			}
		}

		// check_big_row_sparse_keys: worker rank updates every
		// (rank+1)*2-th of the sampled rows by rank+1.
		mine := updateRows[my]
		bv := make([]float32, len(mine)*big[1])
		rows := make([]int64, len(mine))
		for i, row := range mine {
			rows[i] = int64(row)
			for j := range big[1] {
				bv[i*big[1]+j] = -float32(my + 1)
			}
		}
		for i := range nrepeat {
			val := kvcore.RowSparse{Rows: rows}
			if len(rows) > 0 {
				val.Data, _ = kvcore.FromSlice(kvcore.CPU(0), bv, len(rows), big[1])
			}
			if err := kv.PushRowSparse(keys[2], val); err != nil {
				return err
			}
			ids := randomRows(big[0])
			got, err := pull(keys[2], big, ids)
			if err != nil {
				return err
			}
			err = check(fmt.Sprintf("big_row_sparse_keys repeat %d", i), got, big, ids, func(row int) float32 {
				x := float32(1)
				for rank := range nworker {
					for _, ur := range updateRows[rank] {
						if ur == row {
							x += float32((rank + 1) * rate * (i + 1))
						}
					}
				}
				return x
			})
			if err != nil {
				return err
			}
		}
		return kv.WaitAll(ctx)
	}

	ctx := testCtx(t)
	errs := make([]error, nworker)
	var wg sync.WaitGroup
	for i := range nworker {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = worker(ctx, i)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("worker %d: %v", i, err)
		}
	}
	// The big key is split: both shards hold a part of it.
	for i, s := range srvs {
		s.Do("rsp", func(j *psm.Job) {
			if st := j.Stats(); st.Keys < 1 {
				t.Errorf("shard %d holds %d keys", i, st.Keys)
			}
		})
	}
}

// TestDistRowSparseAsync: dist_async applies every worker's row-sparse
// push on arrival, lazily (plain SGD: the order of the pushes does not
// change the result); a pushpull-free worker reads the sum of every update
// after a barrier.
func TestDistRowSparseAsync(t *testing.T) {
	const nworker, rows, width, steps = 3, 40, 5, 4
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	srv := testServer(t, psm.Config{})
	p := func(v float64) *float64 { return &v }
	opt := &optimizer.Spec{Name: "sgd", LearningRate: p(0.5)}
	// Each worker's rows and values per step, and the expected result.
	type push struct {
		rows []int64
		data []float32
	}
	plan := make([][]push, nworker)
	want := make([]float32, rows*width)
	for i := range want {
		want[i] = 1
	}
	r := rand.New(rand.NewPCG(seed, 5))
	for w := range plan {
		for range steps {
			var ps push
			for row := range rows {
				if r.IntN(4) == 0 {
					ps.rows = append(ps.rows, int64(row))
					for j := range width {
						v := float32(r.IntN(8)) // small integers: exact sums in any order
						ps.data = append(ps.data, v)
						want[row*width+j] -= 0.5 * v
					}
				}
			}
			plan[w] = append(plan[w], ps)
		}
	}
	ctx := testCtx(t)
	k := kvcore.IntKey(4)
	errs := make([]error, nworker)
	var wg sync.WaitGroup
	for i := range nworker {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = func() error {
				kv, err := kvcore.Create(ctx, "dist_async", &kvcore.Options{Transport: srv.Connect("async", nworker)})
				if err != nil {
					return err
				}
				defer kv.Close()
				if err := kv.Init(ctx, k, filled(t, kvcore.CPU(0), 1, rows, width)); err != nil {
					return err
				}
				if err := kv.SetOptimizer(ctx, opt); err != nil {
					return err
				}
				if err := kv.Barrier(ctx); err != nil {
					return err
				}
				for _, ps := range plan[kv.Rank()] {
					v := kvcore.RowSparse{Rows: ps.rows}
					if len(ps.rows) > 0 {
						v.Data, _ = kvcore.FromSlice(kvcore.CPU(0), ps.data, len(ps.rows), width)
					}
					if err := kv.PushRowSparse(k, v); err != nil {
						return err
					}
				}
				if err := kv.WaitAll(ctx); err != nil {
					return err
				}
				if err := kv.Barrier(ctx); err != nil {
					return err
				}
				out := filled(t, kvcore.CPU(0), 0, rows, width)
				if err := kv.Pull(k, out); err != nil {
					return err
				}
				got, err := out.ToSlice(ctx)
				if err != nil {
					return err
				}
				for i := range got {
					if got[i] != want[i] {
						return fmt.Errorf("rank %d: [%d] = %v, want %v", kv.Rank(), i, got[i], want[i])
					}
				}
				return nil
			}()
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("worker %d: %v", i, err)
		}
	}
}
