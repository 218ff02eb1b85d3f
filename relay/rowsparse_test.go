//go:build !js && !wasip1

package relay_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore"
	"github.com/webkv/webkv/kvcore/optimizer"
	"github.com/webkv/webkv/relay"
)

// An embedding table trained over the relay with row-sparse pushes and
// pulls: the workers' rows add up on the server, lazy Adam updates only
// the rows pushed, the result is the single-process one, and the relay
// received only the rows.
func TestRelayRowSparse(t *testing.T) {
	const workers, rows, width, steps = 2, 500, 16, 4
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	dir := t.TempDir()
	srv, err := relay.NewServer(relay.Config{MinWorkers: workers, DataDir: dir, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	u, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	defer srv.Shutdown(ctx)
	p := func(v float64) *float64 { return &v }
	opt := &optimizer.Spec{Name: "adam", LearningRate: p(0.01), WD: p(0.001)}
	init := make([]float32, rows*width)
	for i := range init {
		init[i] = float32(i%97) / 97
	}
	// grads(step, rank): the rank's rows of the step (about 5%) and values.
	grads := func(step, rank int) kvcore.RowSparse {
		r := rand.New(rand.NewPCG(seed, uint64(step*100+rank)))
		var v kvcore.RowSparse
		var data []float32
		for row := range rows {
			if r.IntN(20) == 0 {
				v.Rows = append(v.Rows, int64(row))
				for range width {
					data = append(data, r.Float32()*2-1)
				}
			}
		}
		if len(v.Rows) > 0 {
			v.Data, _ = kvcore.FromSlice(kvcore.CPU(rank), data, len(v.Rows), width)
		}
		return v
	}
	k := kvcore.StrKey("embedding")

	// The single-process reference: one local store, the workers' values as
	// devices of one push.
	ref, err := kvcore.Create(ctx, "local", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	a, _ := kvcore.FromSlice(kvcore.CPU(0), init, rows, width)
	if err := ref.Init(ctx, k, a); err != nil {
		t.Fatal(err)
	}
	if err := ref.SetOptimizer(ctx, opt); err != nil {
		t.Fatal(err)
	}
	pushed := 0
	for step := range steps {
		var vs []kvcore.RowSparse
		for rank := range workers {
			vs = append(vs, grads(step, rank))
			pushed += len(vs[rank].Rows)
		}
		if err := ref.PushRowSparse(k, vs...); err != nil {
			t.Fatal(err)
		}
	}
	want := make([]float32, rows*width)
	wa, _ := kvcore.NewArray(kvcore.CPU(0), rows, width)
	if err := ref.Pull(k, wa); err != nil {
		t.Fatal(err)
	}
	if err := wa.CopyTo(ctx, want); err != nil {
		t.Fatal(err)
	}

	errs := make([]error, workers)
	var wg sync.WaitGroup
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = func() error {
				c, err := relay.Dial(ctx, u, relay.DialOptions{Job: "emb", Logger: quiet()})
				if err != nil {
					return err
				}
				s, err := kvcore.Create(ctx, "dist_sync", &kvcore.Options{Transport: c})
				if err != nil {
					return err
				}
				defer s.Close()
				a, _ := kvcore.FromSlice(kvcore.CPU(0), init, rows, width)
				if err := s.Init(ctx, k, a); err != nil {
					return err
				}
				if err := s.SetOptimizer(ctx, opt); err != nil {
					return err
				}
				for step := range steps {
					if err := s.PushRowSparse(k, grads(step, s.Rank())); err != nil {
						return err
					}
				}
				// Pull every row, in a scrambled order, into a row-sparse out.
				ids := rand.New(rand.NewPCG(seed, 9)).Perm(rows)
				rowIDs := make([]int64, rows)
				for j, id := range ids {
					rowIDs[j] = int64(id)
				}
				out := kvcore.RowSparse{Data: mustArray(rows, width)}
				if err := s.RowSparsePull(k, &out, rowIDs); err != nil {
					return err
				}
				got, err := out.Data.ToSlice(ctx)
				if err != nil {
					return err
				}
				for j := range got {
					if got[j] != want[j] {
						return fmt.Errorf("rank %d: [%d] (row %d) = %v, single process %v", s.Rank(), j, j/width, got[j], want[j])
					}
				}
				return s.WaitAll(ctx)
			}()
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("worker %d: %v", i, err)
		}
	}
	// The pushes carried the rows only: the relay received far less than
	// the dense pushes would have been (the inits and the pulls' requests
	// aside).
	st := srv.Status()
	dense := uint64(workers * steps * rows * width * 4)
	if len(st.Jobs) != 1 || st.Jobs[0].BytesIn >= dense/4 {
		t.Fatalf("relay received %+v; %d dense pushes would be %d bytes, %d rows %d", st.Jobs, workers*steps, dense, pushed, pushed*width*4)
	}
	t.Logf("relay received %d bytes; dense pushes would be %d", st.Jobs[0].BytesIn, dense)

	// Checkpointed like a dense key: a relay restarted on the same data
	// directory serves the trained rows to a new worker (that resumes the run).
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	_, u2 := start(t, relay.Config{DataDir: dir})
	s, err := relay.Create(ctx, "dist_sync", u2, relay.DialOptions{Job: "emb", Resume: true, Logger: quiet()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a, _ = kvcore.FromSlice(kvcore.CPU(0), init, rows, width)
	if err := s.Init(ctx, k, a); err != nil {
		t.Fatal(err)
	}
	ids := []int64{rows - 1, 0, 7, 7, 250}
	out := kvcore.RowSparse{Data: mustArray(4, width)}
	if err := s.RowSparsePull(k, &out, ids); err != nil {
		t.Fatal(err)
	}
	got, err := out.Data.ToSlice(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, row := range out.Rows {
		for j := range width {
			if g, w := got[i*width+j], want[int(row)*width+j]; g != w {
				t.Fatalf("after the restart: row %d [%d] = %v, want %v", row, j, g, w)
			}
		}
	}
}

func mustArray(shape ...int) *kvcore.Array {
	a, err := kvcore.NewArray(kvcore.CPU(0), shape...)
	if err != nil {
		panic(err)
	}
	return a
}

// BenchmarkRowSparsePush: the bytes a relay receives for one push of a
// 100,000 x 64 embedding key (25.6 MB dense) from a worker that touched 1%
// of its rows, row-sparse and dense; the ratio is reported as
// dense/rowsparse.
func BenchmarkRowSparsePush(b *testing.B) {
	const rows, width = 100_000, 64
	srv, u := start(b, relay.Config{})
	ctx := context.Background()
	c, err := relay.Dial(ctx, u, relay.DialOptions{Job: "bench", Logger: quiet()})
	if err != nil {
		b.Fatal(err)
	}
	s, err := kvcore.Create(ctx, "dist_sync", &kvcore.Options{Transport: c})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	k := kvcore.IntKey(1)
	if err := s.Init(ctx, k, mustArray(rows, width)); err != nil {
		b.Fatal(err)
	}
	var v kvcore.RowSparse
	for r := 0; r < rows; r += 100 {
		v.Rows = append(v.Rows, int64(r))
	}
	v.Data = mustArray(len(v.Rows), width)
	dense := mustArray(rows, width)
	in := func() uint64 { return srv.Status().Jobs[0].BytesIn }
	var sparseBytes, denseBytes uint64
	b.ResetTimer()
	for range b.N {
		x := in()
		if err := s.PushRowSparse(k, v); err != nil {
			b.Fatal(err)
		}
		if err := s.WaitAll(ctx); err != nil {
			b.Fatal(err)
		}
		y := in()
		if err := s.Push(k, dense); err != nil {
			b.Fatal(err)
		}
		if err := s.WaitAll(ctx); err != nil {
			b.Fatal(err)
		}
		sparseBytes, denseBytes = sparseBytes+(y-x), denseBytes+(in()-y)
	}
	b.ReportMetric(float64(sparseBytes)/float64(b.N), "rowsparse-B/push")
	b.ReportMetric(float64(denseBytes)/float64(b.N), "dense-B/push")
	b.ReportMetric(float64(denseBytes)/float64(sparseBytes), "dense/rowsparse")
}
