//go:build !js && !wasip1

package relay_test

// Benchmarks of the relay's data path (run with `make bench`, or
// go test -run XXX -bench . -benchtime 10x ./relay/). Each one measures its
// baseline in the same run, interleaved with the contender, and reports
// medians and their ratio:
//
//   - BenchmarkPushPull{16,64}MB: one native worker's PushPull of one key
//     through a dist_sync relay, against a plain websocket echo of the same
//     bytes over the same library with its default client
//     (ratio_vs_plain_echo; goal >= 0.70), and against the same echo through
//     this package's client write path (ratio_vs_fast_echo: the cost of the
//     protocol and the parameter server alone).
//   - BenchmarkAggregate{4,8}Workers: every worker PushPulls its own 4 MB
//     share of a key each round; aggregate bytes moved per second, against
//     the one-worker echo throughput.
//   - BenchmarkShards2vs1: a 64 MB key split over two relay shards against
//     the same key on one.
//   - BenchmarkDurableRounds: rounds with a checkpoint before every answer
//     against rounds in memory only.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore"
	"github.com/webkv/webkv/kvcore/transport"
	"github.com/webkv/webkv/relay"
	"nhooyr.io/websocket"
)

// echoURL starts a plain websocket echo server (the library on both ends,
// default options apart from the read limit).
func echoURL(b *testing.B) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow() // its goroutines end with the handler
		c.SetReadLimit(-1)
		var buf []byte
		for {
			_, rd, err := c.Reader(context.Background())
			if err != nil {
				return
			}
			buf, err = readAll(rd, buf)
			if err != nil {
				return
			}
			if err := c.Write(context.Background(), websocket.MessageBinary, buf); err != nil {
				return
			}
		}
	}))
	b.Cleanup(srv.Close)
	return "ws" + srv.URL[len("http"):]
}

func readAll(r io.Reader, buf []byte) ([]byte, error) {
	buf = buf[:0]
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// plainEcho returns a function doing one round trip of size bytes with the
// library's default client (websocket.Dial, Conn.Write, Conn.Reader).
func plainEcho(b *testing.B, size int) func() {
	ctx := context.Background()
	c, _, err := websocket.Dial(ctx, echoURL(b), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.CloseNow() })
	c.SetReadLimit(-1)
	msg := make([]byte, size)
	out := make([]byte, 0, size+1)
	return func() {
		if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
			b.Fatal(err)
		}
		_, rd, err := c.Reader(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if out, err = readAll(rd, out); err != nil || len(out) != size {
			b.Fatal(err)
		}
	}
}

// fastEcho returns a function doing the same round trip through relay.Conn
// (this package's write path).
func fastEcho(b *testing.B, size int) func() {
	ctx := context.Background()
	c, err := relay.Dial(ctx, echoURL(b), relay.DialOptions{Job: "echo", Logger: quiet()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	msg := make([]byte, size)
	return func() {
		if err := c.Send(ctx, 0, transport.FirstEpoch, msg, nil); err != nil {
			b.Fatal(err)
		}
		if out, _, err := c.Recv(ctx, 0); err != nil || len(out) != size {
			b.Fatal(err)
		}
	}
}

// timed runs the functions in turn b.N times (after one warm-up each) and
// returns each one's median time. Interleaving and the median make the
// comparison fair on a shared, noisy machine: load hits every contender
// alike, and a descheduled outlier does not move the result.
func timed(b *testing.B, fs ...func()) []time.Duration {
	for _, f := range fs {
		f()
	}
	ds := make([][]time.Duration, len(fs))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for k, f := range fs {
			t0 := time.Now()
			f()
			ds[k] = append(ds[k], time.Since(t0))
		}
	}
	b.StopTimer()
	med := make([]time.Duration, len(fs))
	for k, d := range ds {
		slices.Sort(d)
		med[k] = d[len(d)/2]
	}
	return med
}

func gbps(bytes int, d time.Duration) float64 { return float64(bytes) / d.Seconds() / 1e9 }

type benchWorker struct {
	s    *kvcore.Store
	in   *kvcore.Array
	out  *kvcore.Array
	rank int
}

// newBenchWorkers joins n workers to job on the relay (url may list
// shards) and inits key 0 with n*elems elements... each worker pushes the
// whole key.
func newBenchWorkers(b *testing.B, url, job string, n, elems int) []*benchWorker {
	ctx := context.Background()
	ws := make([]*benchWorker, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range ws {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			s, err := relay.Create(ctx, "dist_sync", url, relay.DialOptions{Job: job, Workers: n, Logger: quiet()}, nil)
			if err != nil {
				errs[i] = err
				return
			}
			w := &benchWorker{s: s, rank: s.Rank()}
			if w.in, err = kvcore.NewArray(kvcore.CPU(0), elems); err == nil {
				w.out, err = kvcore.NewArray(kvcore.CPU(0), elems)
			}
			if err == nil {
				err = w.in.Fill(ctx, 1)
			}
			if err == nil {
				err = s.Init(ctx, kvcore.IntKey(0), w.in)
			}
			errs[i], ws[i] = err, w
		}(i)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	b.Cleanup(func() {
		for _, w := range ws {
			w.s.Close()
		}
	})
	return ws
}

// round runs one PushPull of key 0 on every worker at once.
func round(b *testing.B, ws []*benchWorker) {
	ctx := context.Background()
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Add(1)
		go func(w *benchWorker) {
			defer wg.Done()
			if err := w.s.PushPullTo(kvcore.IntKey(0), []*kvcore.Array{w.in}, w.out); err != nil {
				b.Error(err)
				return
			}
			if err := w.out.Wait(ctx); err != nil {
				b.Error(err)
			}
		}(w)
	}
	wg.Wait()
}

func startBench(b *testing.B, cfg relay.Config) string {
	_, u := start(b, cfg)
	return u
}

func benchPushPull(b *testing.B, size int) {
	plain, fast := plainEcho(b, size), fastEcho(b, size)
	u := startBench(b, relay.Config{})
	ws := newBenchWorkers(b, u, "bench", 1, size/4)
	t := timed(b, plain, fast, func() { round(b, ws) })
	b.ReportMetric(gbps(2*size, t[2]), "GB/s")
	b.ReportMetric(gbps(2*size, t[0]), "plain_echo_GB/s")
	b.ReportMetric(gbps(2*size, t[1]), "fast_echo_GB/s")
	b.ReportMetric(t[0].Seconds()/t[2].Seconds(), "ratio_vs_plain_echo")
	b.ReportMetric(t[1].Seconds()/t[2].Seconds(), "ratio_vs_fast_echo")
	b.ReportMetric(t[0].Seconds()/t[1].Seconds(), "fast_vs_plain_echo")
}

func BenchmarkPushPull16MB(b *testing.B) { benchPushPull(b, 16<<20) }
func BenchmarkPushPull64MB(b *testing.B) { benchPushPull(b, 64<<20) }

func benchAggregate(b *testing.B, n int) {
	const size = 4 << 20
	plain := plainEcho(b, size)
	u := startBench(b, relay.Config{})
	ws := newBenchWorkers(b, u, fmt.Sprintf("agg%d", n), n, size/4)
	t := timed(b, plain, func() { round(b, ws) })
	agg := gbps(2*size*n, t[1])
	b.ReportMetric(agg, "aggregate_GB/s")
	b.ReportMetric(agg/gbps(2*size, t[0]), "ratio_vs_1worker_plain_echo")
}

func BenchmarkAggregate4Workers(b *testing.B) { benchAggregate(b, 4) }
func BenchmarkAggregate8Workers(b *testing.B) { benchAggregate(b, 8) }

// BenchmarkShards2vs1: one worker, a 64 MB key (16M elements, above the
// 1M-element bound, so split over both shards) on two shards against one.
func BenchmarkShards2vs1(b *testing.B) {
	const size = 64 << 20
	one := startBench(b, relay.Config{})
	w1 := newBenchWorkers(b, one, "s1", 1, size/4)
	a := startBench(b, relay.Config{Shards: []string{"a", "b"}, ShardIndex: 0})
	c := startBench(b, relay.Config{Shards: []string{"a", "b"}, ShardIndex: 1})
	w2 := newBenchWorkers(b, a+","+c, "s2", 1, size/4)
	t := timed(b, func() { round(b, w1) }, func() { round(b, w2) })
	b.ReportMetric(gbps(2*size, t[0]), "1shard_GB/s")
	b.ReportMetric(gbps(2*size, t[1]), "2shards_GB/s")
	b.ReportMetric(t[0].Seconds()/t[1].Seconds(), "ratio_2shards_vs_1")
}

// BenchmarkDurableRounds: dist_sync rounds of one 1 MB key with durable
// acknowledgements (a fsynced bbolt checkpoint before every answer) against
// the same rounds without persistence.
func BenchmarkDurableRounds(b *testing.B) {
	const size = 1 << 20
	plainU := startBench(b, relay.Config{})
	durU := startBench(b, relay.Config{DataDir: b.TempDir(), Durable: true})
	wp := newBenchWorkers(b, plainU, "nodisk", 1, size/4)
	wd := newBenchWorkers(b, durU, "durable", 1, size/4)
	t := timed(b, func() { round(b, wp) }, func() { round(b, wd) })
	b.ReportMetric(float64(t[0].Microseconds()), "us/round_memory")
	b.ReportMetric(float64(t[1].Microseconds()), "us/round_durable")
	b.ReportMetric(t[0].Seconds()/t[1].Seconds(), "ratio_durable_vs_memory")
}
