//go:build !js && !wasip1

package relay_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/webkv/webkv/kvcore"
	"github.com/webkv/webkv/relay"
)

// README: distributed worker (begin)
func worker(ctx context.Context, url string) error {
	s, err := relay.Create(ctx, "dist_sync", url, relay.DialOptions{
		Job: "job", Token: "secret",
		Workers: 3, // the job's worker count (MXNet's DMLC_NUM_WORKER): the same on every worker
	}, nil)
	if err != nil {
		// Says why: kvcore.ErrUnreachable (no relay at url), kvcore.ErrAuth
		// (token, job), kvcore.ErrWorkerCount, ... (test with errors.Is).
		return err
	}
	defer s.Close()
	rank, n := s.Rank(), s.NumWorkers() // the same n on every worker: the relay waits for all 3
	w, err := kvcore.FromSlice(kvcore.CPU(0), make([]float32, 4), 4)
	if err != nil {
		return err
	}
	key := kvcore.StrKey("w")
	if err := s.Init(ctx, key, w); err != nil { // kvcore.ErrEarlierRun: the job holds w from an earlier run
		return err
	}
	g, err := kvcore.FromSlice(kvcore.CPU(0), []float32{1, 1, 1, 1}, 4)
	if err != nil {
		return err
	}
	if err := s.PushPullTo(key, []*kvcore.Array{g}, w); err != nil { // sums every worker's push
		return err
	}
	v, err := w.ToSlice(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("rank %d of %d: %v\n", rank, n, v)
	return nil
}

// README: distributed worker (end)

// The README's distributed recipe: a relay and three workers of one job
// (here goroutines; in the README, processes).
func Example_distributed() {
	srv, err := relay.NewServer(relay.Config{Tokens: map[string]string{"job": "secret"}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	url, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve()
	defer srv.Shutdown(context.Background())
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			if err := worker(context.Background(), url); err != nil {
				log.Print(err)
			}
		})
	}
	wg.Wait()
	// Unordered output:
	// rank 0 of 3: [3 3 3 3]
	// rank 1 of 3: [3 3 3 3]
	// rank 2 of 3: [3 3 3 3]
}

// The README shows the worker above verbatim (issue 11: its Go snippet
// ignored errors and gave each worker a different worker count).
func TestREADMEWorkerSnippet(t *testing.T) {
	src, err := os.ReadFile("example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	_, body, _ := strings.Cut(string(src), "// README: distributed worker (begin)\n")
	body, _, _ = strings.Cut(body, "\n// README: distributed worker (end)")
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "```go\n"+body+"```") {
		t.Errorf("README.md does not show relay/example_test.go's worker verbatim:\n%s", body)
	}
}
