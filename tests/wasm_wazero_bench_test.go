package tests

import (
	"math"
	"runtime"
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore"
)

// Reduce size for BenchmarkReduceWazero: 4 inputs of 4M float32 (64 MiB in,
// 16 MiB out). The 16M-element native benchmarks would need 320 MiB
// of wasm memory per instance; 4M is still far beyond every cache, so both
// sides stream from memory and the ratio compares the same work.
const (
	reduceSrcs = 4
	reduceN    = 4 << 20
)

// BenchmarkReduceWazero times kvcore's CPU reduce of 4 arrays into one,
// natively and as GOOS=wasip1 in wazero (compiled mode), both on one
// goroutine (GOMAXPROCS=1: wasm has one thread). The wazero sub-benchmark
// reports its time per reduce divided by native's, measured in the same
// run, as "wazero/native" (goal: at most 3). MB/s counts bytes read and
// written.
func BenchmarkReduceWazero(b *testing.B) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	const want = reduceSrcs * (reduceSrcs + 1) / 2
	var native time.Duration // per reduce

	b.Run("native", func(b *testing.B) {
		be := kvcore.CPU()
		dst, err := be.Alloc(reduceN)
		if err != nil {
			b.Fatal(err)
		}
		defer be.Free(dst)
		srcs := make([]kvcore.Buffer, reduceSrcs)
		for i := range srcs {
			if srcs[i], err = be.Alloc(reduceN); err != nil {
				b.Fatal(err)
			}
			defer be.Free(srcs[i])
			if err := be.Fill(srcs[i], float32(i+1)); err != nil {
				b.Fatal(err)
			}
		}
		if err := be.Reduce(dst, srcs, 1); err != nil { // touch dst once
			b.Fatal(err)
		}
		b.SetBytes((reduceSrcs + 1) * reduceN * 4)
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			if err := be.Reduce(dst, srcs, 1); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		native = b.Elapsed() / time.Duration(b.N)
		if got := dst.(*kvcore.CPUBuffer).Float32s()[reduceN-1]; got != want {
			b.Fatalf("native reduce: dst[last] = %v, want %v", got, want)
		}
	})

	b.Run("wazero", func(b *testing.B) {
		m := instantiate(b, buildReactor(b, "./tests/wazeroreduce"))
		if rc := int32(uint32(m.call("setup", reduceSrcs, reduceN))); rc != 0 {
			b.Fatalf("setup(%d, %d) = %d", reduceSrcs, reduceN, rc)
		}
		m.call("reduce") // touch dst once
		b.SetBytes((reduceSrcs + 1) * reduceN * 4)
		b.ResetTimer()
		var got float32
		for range b.N {
			got = math.Float32frombits(uint32(m.call("reduce")))
		}
		b.StopTimer()
		if got != want {
			b.Fatalf("wazero reduce: dst[0] = %v, want %v", got, want)
		}
		if native > 0 {
			b.ReportMetric(float64(b.Elapsed()/time.Duration(b.N))/float64(native), "wazero/native")
		}
	})
}
