package compute_test

import (
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore/compute"
)

// The CPU backend's speed is judged against the machine's memory bandwidth as
// Go sees it: copy() of the same number of bytes (read + written) split over
// the same number of goroutines the backend uses (GOMAXPROCS), timed in the
// same benchmark, interleaved with the measured operation so both see the
// same machine load. Each benchmark reports
//
//	GB/s         bytes the operation reads + writes, per second
//	copy_GB/s    the same for the copy baseline
//	x_copy       GB/s / copy_GB/s (goals: reduce >= 0.80; BenchmarkStep16M:
//	             Adam >= 0.60, every other optimizer >= 0.50; quantize >= 0.50)
//	x_copy_best  the same ratio from the fastest iteration of each, which
//	             is steadier when other processes share the cores
//
// Buffers come from the backend once and are reused (pooled), because
// first-touch page faults of fresh memory cost more than the arithmetic.

const bench16M = 16 << 20

// copyBaseline copies src into dst with GOMAXPROCS goroutines, each copying
// one contiguous part (Go's copy is its memmove, non-temporal stores for big
// moves).
type copyBaseline struct {
	src, dst []float32
	wg       sync.WaitGroup
	elapsed  time.Duration // total over runs
	best     time.Duration // fastest run
}

func newCopyBaseline(words int) *copyBaseline {
	c := &copyBaseline{src: make([]float32, words), dst: make([]float32, words)}
	for i := range c.src {
		c.src[i] = float32(i)
	}
	c.run() // touch dst
	c.elapsed, c.best = 0, 0
	return c
}

func (c *copyBaseline) run() {
	t0 := time.Now()
	p := runtime.GOMAXPROCS(0)
	per := (len(c.dst) + p - 1) / p
	for lo := 0; lo < len(c.dst); lo += per {
		hi := min(lo+per, len(c.dst))
		c.wg.Go(func() { copy(c.dst[lo:hi], c.src[lo:hi]) })
	}
	c.wg.Wait()
	d := time.Since(t0)
	c.elapsed += d
	if c.best == 0 || d < c.best {
		c.best = d
	}
}

// opTimer keeps the fastest iteration of the measured operation.
type opTimer struct {
	t0   time.Time
	best time.Duration
}

func (o *opTimer) start() { o.t0 = time.Now() }

func (o *opTimer) stop() {
	if d := time.Since(o.t0); o.best == 0 || d < o.best {
		o.best = d
	}
}

// report turns bytes moved per operation into the metrics described above.
func report(b *testing.B, bytesPerOp int, c *copyBaseline, o *opTimer) {
	n := float64(b.N)
	opSec := b.Elapsed().Seconds()
	gbs := float64(bytesPerOp) * n / opSec / 1e9
	copyGBs := float64(2*4*len(c.dst)) * n / c.elapsed.Seconds() / 1e9
	b.ReportMetric(gbs, "GB/s")
	b.ReportMetric(copyGBs, "copy_GB/s")
	b.ReportMetric(gbs/copyGBs, "x_copy")
	b.ReportMetric(c.best.Seconds()/o.best.Seconds(), "x_copy_best")
	b.ReportMetric(float64(runtime.GOMAXPROCS(0)), "goroutines")
}

func benchBuffers(b *testing.B, be compute.Backend, k, n int, rng *rand.Rand) []compute.Buffer {
	b.Helper()
	host := make([]float32, n)
	bufs := make([]compute.Buffer, k)
	for j := range bufs {
		for i := range host {
			host[i] = rng.Float32()*2 - 1
		}
		buf, err := be.Alloc(n)
		if err != nil {
			b.Fatal(err)
		}
		if err := be.Write(buf, 0, host); err != nil {
			b.Fatal(err)
		}
		bufs[j] = buf
	}
	b.Cleanup(func() {
		for _, x := range bufs {
			be.Free(x)
		}
	})
	return bufs
}

// BenchmarkReduce4x16M: the CPU backend sums 4 arrays of 16M float32 into a
// fifth with scale 0.25 (as a 4-device merge does): 5 x 64 MB read + written.
func BenchmarkReduce4x16M(b *testing.B) {
	be := compute.NewCPU(nil)
	rng := rand.New(rand.NewPCG(1, 2))
	bufs := benchBuffers(b, be, 5, bench16M, rng)
	dst, srcs := bufs[4], bufs[:4]
	const bytes = 5 * 4 * bench16M
	c := newCopyBaseline(bytes / 8)
	if err := be.Reduce(dst, srcs, 0.25); err != nil {
		b.Fatal(err)
	}
	var o opTimer
	b.SetBytes(bytes)
	b.ResetTimer()
	for b.Loop() {
		o.start()
		if err := be.Reduce(dst, srcs, 0.25); err != nil {
			b.Fatal(err)
		}
		o.stop()
		b.StopTimer()
		c.run()
		b.StartTimer()
	}
	report(b, bytes, c, &o)
}
