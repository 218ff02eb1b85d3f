//go:build !js

package relay_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/webkv/webkv/relay"
	"github.com/webkv/webkv/relay/internal/relaytest"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func start(t testing.TB, cfg relay.Config) (*relay.Server, string) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet()
	}
	s, err := relay.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	u, err := s.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return s, u
}

// runWorkers runs w's workers as goroutines and returns their results.
func runWorkers(t *testing.T, ctx context.Context, url, typ, job string, w *relaytest.Workload) []*relaytest.Result {
	t.Helper()
	res := make([]*relaytest.Result, w.Workers)
	errs := make([]error, w.Workers)
	var wg sync.WaitGroup
	for i := 0; i < w.Workers; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			res[i], errs[i] = relaytest.RunWorker(ctx, url, typ, w, relay.DialOptions{Job: job, Logger: quiet()})
		}(i)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return res
}

var optimizers = []string{
	``,
	`{"name":"sgd","learning_rate":0.1,"momentum":0.9,"wd":0.001}`,
	`{"name":"nag","learning_rate":0.05,"momentum":0.8}`,
	`{"name":"adam","learning_rate":0.01}`,
	`{"name":"adamw","learning_rate":0.01,"wd":0.01}`,
	`{"name":"adagrad","learning_rate":0.1}`,
	`{"name":"rmsprop","learning_rate":0.01,"centered":true}`,
	`{"name":"adadelta"}`,
	`{"name":"signum","learning_rate":0.01}`,
	`{"name":"ftrl","learning_rate":0.1}`,
	`{"name":"lamb","learning_rate":0.01}`,
}

// TestDistSyncMatchesSingleProcess: N goroutine workers through a real
// relay give bit for bit the result of one process pushing the same values,
// for every optimizer (and for assign).
func TestDistSyncMatchesSingleProcess(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i, opt := range optimizers {
		w := &relaytest.Workload{Seed: seed + uint64(i), Workers: 2 + i%3, Rounds: 3, Sizes: []int{5, 1000, 3}, PushPull: i%2 == 1}
		if opt != "" {
			w.Optimizer = json.RawMessage(opt)
		}
		name := "assign"
		if opt != "" {
			var o struct{ Name string }
			json.Unmarshal(w.Optimizer, &o)
			name = o.Name
		}
		t.Run(name, func(t *testing.T) {
			_, u := start(t, relay.Config{MinWorkers: w.Workers})
			want, err := w.Reference()
			if err != nil {
				t.Fatal(err)
			}
			res := runWorkers(t, ctx, u, "dist_sync", fmt.Sprintf("job-%d", i), w)
			for _, r := range res {
				if err := relaytest.Compare(r.Values, want); err != nil {
					t.Fatalf("rank %d of %d (pushpull %v): %v", r.Rank, w.Workers, w.PushPull, err)
				}
			}
		})
	}
}
