//go:build !js && !wasip1

package demo

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/webkv/webkv/www/worker"
)

// TestDemoTrainsTogether runs the demo with 3 native workers on the CPU
// reference for 50 rounds through a real relay (dist_sync) and checks the
// test accuracy reached: a single worker reaches 87.2% after 50 rounds of
// 64 (3200 samples) and 3 workers 88.3% after 50 rounds (9600 samples), so
// 85% leaves room for seeds and round timing while catching a broken
// reduction (a worker alone at 25 rounds is at 82.8%).
func TestDemoTrainsTogether(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg := Config{Workers: 3, Listen: "127.0.0.1:0", Out: io.Discard,
		Train: worker.Config{Steps: 50, EvalEvery: 25, Shard: -1, IID: true, Momentum: 0.9}}
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Results) != 3 {
		t.Fatalf("%d results", len(res.Results))
	}
	for i, r := range res.Results {
		t.Logf("worker %d: rank %d of %d, %d rounds, test accuracy %.4f", i, r.Rank, r.Workers, r.Steps, r.TestAcc)
		if r.Workers != 3 || r.Steps != 50 {
			t.Errorf("worker %d: %d workers, %d rounds", i, r.Workers, r.Steps)
		}
		if r.TestAcc < 0.85 {
			t.Errorf("worker %d: test accuracy %.4f, want >= 0.85", i, r.TestAcc)
		}
		// dist_sync: every worker ends with the same weights.
		if r.TestAcc != res.Results[0].TestAcc {
			t.Errorf("worker %d: accuracy %.4f differs from worker 0's %.4f", i, r.TestAcc, res.Results[0].TestAcc)
		}
	}
	if !strings.HasPrefix(res.URL, "http://127.0.0.1:") {
		t.Errorf("URL %q", res.URL)
	}
}

// TestDemoServesPage checks the page is mounted next to the relay, and
// that an interrupted demo (its context cancelled while it lingers) stops
// serving and returns.
func TestDemoServesPage(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	urlc := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		cfg := Config{Workers: 1, Listen: "127.0.0.1:0", Out: &urlWriter{c: urlc}, Linger: time.Hour,
			Train: worker.Config{Steps: 5, Shard: -1, IID: true}}
		_, err := Run(ctx, cfg)
		done <- err
	}()
	defer func() {
		cancel()
		// Cancelled while training or while lingering: both end the demo.
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("demo: %v", err)
		}
	}()
	var u string
	select {
	case u = <-urlc:
	case err := <-done:
		t.Fatalf("demo returned before printing its URL: %v", err)
	}
	for _, p := range []string{"", "app.js", "mlp/xent.wgsl", "api/config", "status"} {
		resp, err := http.Get(u + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("GET %s%s: %s", u, p, resp.Status)
		}
	}
}

type urlWriter struct{ c chan string }

func (w *urlWriter) Write(p []byte) (int, error) {
	s := string(p)
	if i := strings.Index(s, "open http://"); i >= 0 {
		f := strings.Fields(s[i+5:])
		select {
		case w.c <- f[0]:
		default:
		}
	}
	return len(p), nil
}
