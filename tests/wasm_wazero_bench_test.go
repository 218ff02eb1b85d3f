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
// goroutine (GOMAXPROCS=1: wasm has one thread). Each iteration runs one
// native reduce and then one in wazero, so both see the same machine load
// (the machines this runs on are shared); ns/op is wazero's time, and
// "wazero/native" their ratio (goal: at most 3). The GB/s metrics count
// bytes read and written.
func BenchmarkReduceWazero(b *testing.B) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	const want = reduceSrcs * (reduceSrcs + 1) / 2

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
	m := instantiate(b, buildReactor(b, "./tests/wazeroreduce"))
	if rc := int32(uint32(m.call("setup", reduceSrcs, reduceN))); rc != 0 {
		b.Fatalf("setup(%d, %d) = %d", reduceSrcs, reduceN, rc)
	}
	// Touch every output page once on both sides.
	if err := be.Reduce(dst, srcs, 1); err != nil {
		b.Fatal(err)
	}
	m.call("reduce")

	var native, wasm time.Duration
	var got float32
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		if err := be.Reduce(dst, srcs, 1); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		got = math.Float32frombits(uint32(m.call("reduce")))
		native, wasm = native+t1.Sub(t0), wasm+time.Since(t1)
	}
	b.StopTimer()
	if got != want {
		b.Fatalf("wazero reduce: dst[0] = %v, want %v", got, want)
	}
	if last := dst.(*kvcore.CPUBuffer).Float32s()[reduceN-1]; last != want {
		b.Fatalf("native reduce: dst[last] = %v, want %v", last, want)
	}
	bytes := float64((reduceSrcs + 1) * reduceN * 4 * b.N)
	b.ReportMetric(float64(wasm.Nanoseconds())/float64(b.N), "ns/op")
	b.ReportMetric(float64(native.Nanoseconds())/float64(b.N), "native-ns/op")
	b.ReportMetric(bytes/wasm.Seconds()/1e9, "wazero-GB/s")
	b.ReportMetric(bytes/native.Seconds()/1e9, "native-GB/s")
	b.ReportMetric(float64(wasm)/float64(native), "wazero/native")
}
