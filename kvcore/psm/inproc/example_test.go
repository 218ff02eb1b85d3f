package inproc_test

import (
	"context"
	"fmt"
	"sync"

	"github.com/webkv/webkv/kvcore"
	"github.com/webkv/webkv/kvcore/psm"
	"github.com/webkv/webkv/kvcore/psm/inproc"
)

// Two dist_sync workers in one process: each pushes its gradient, and both
// pull the sum once both pushed (no optimizer: the sum is assigned).
func Example() {
	srv := inproc.New(psm.Config{})
	defer srv.Close()
	ctx := context.Background()
	var wg sync.WaitGroup
	results := make([][]float32, 2)
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := kvcore.Create(ctx, "dist_sync", &kvcore.Options{Transport: srv.Connect("example", 2)})
			if err != nil {
				panic(err)
			}
			defer s.Close()
			init, _ := kvcore.FromSlice(kvcore.CPU(0), []float32{0, 0})
			if err := s.Init(ctx, kvcore.IntKey(0), init); err != nil {
				panic(err)
			}
			g, _ := kvcore.FromSlice(kvcore.CPU(0), []float32{1, float32(10 * (s.Rank() + 1))})
			out, _ := kvcore.NewArray(kvcore.CPU(0), 2)
			if err := s.PushPullTo(kvcore.IntKey(0), []*kvcore.Array{g}, out); err != nil {
				panic(err)
			}
			results[w], _ = out.ToSlice(ctx)
		}()
	}
	wg.Wait()
	fmt.Println(results[0], results[1])
	// Output: [2 30] [2 30]
}
