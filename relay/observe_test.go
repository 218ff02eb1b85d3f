//go:build !js && !wasip1

package relay

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore"
)

// scrape returns /metrics as the admin sees it.
func scrape(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func metricValue(t *testing.T, body, series string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no %s in /metrics", series)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// Issue 11, problem 10: /metrics comes from prometheus/client_golang with
// the Go and process collectors and build info, and its counters agree:
// every closed round is one observation of webkv_round_seconds (the
// demo's scrape said webkv_rounds_total 320 vs webkv_round_seconds_count
// 317: several keys closing at once counted as one observation). The log
// says when workers join and leave.
func TestMetricsAndLogs(t *testing.T) {
	var logBuf syncBuffer
	log := slog.New(slog.NewJSONHandler(&logBuf, nil))
	_, u := startServer(t, Config{OpenAdmin: true, Logger: log})
	base := strings.Replace(u, "ws://", "http://", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const workers, keys, rounds = 2, 3, 5
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = func() error {
				s, err := Create(ctx, "dist_sync", u, DialOptions{Job: "obs", Workers: workers, Logger: quietLogger()}, nil)
				if err != nil {
					return err
				}
				defer s.Close()
				ks := make([]kvcore.Key, keys)
				vals := make([]*kvcore.Array, keys)
				for k := range ks {
					ks[k] = kvcore.IntKey(k)
					vals[k] = mustArray(t, 4)
				}
				if err := s.InitList(ctx, ks, vals); err != nil {
					return err
				}
				for range rounds {
					vs := make([][]*kvcore.Array, keys)
					for k := range vs {
						vs[k] = []*kvcore.Array{vals[k]}
					}
					if err := s.PushPullList(ks, vs, vs, 0); err != nil {
						return err
					}
					if err := s.WaitAll(ctx); err != nil {
						return err
					}
				}
				return nil
			}()
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	body := scrape(t, base)
	total := metricValue(t, body, `webkv_rounds_total{job="obs"}`)
	count := metricValue(t, body, `webkv_round_seconds_count{job="obs"}`)
	if total != keys*rounds || count != total {
		t.Errorf("webkv_rounds_total %v, webkv_round_seconds_count %v; want both %d", total, count, keys*rounds)
	}
	for _, want := range []string{"go_goroutines ", "go_memstats_alloc_bytes ", "process_resident_memory_bytes ", "process_open_fds ", "go_build_info{", "webkv_relay_refused_origin_total 0", `webkv_job_run{job="obs"} 1`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// Join and leave lines, with the worker, its rank and the count.
	logs := logBuf.String()
	for _, want := range []string{`"msg":"worker joined"`, `"worker":"obs/1"`, `"rank":1`, `"msg":"worker left"`, `"workers":2`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %s:\n%s", want, logs)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for a logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
