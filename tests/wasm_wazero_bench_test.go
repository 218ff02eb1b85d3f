//go:build !js && !wasip1

package tests

import (
	"math"
	"runtime"
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore/compute"
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
//
// On amd64 kvcore's native 4-input reduce uses AVX2, which Go's wasm backend
// cannot emit, so the benchmark also times the portable Go loop (the one
// kvcore runs where there is no vector path) natively: "wazero/native-scalar"
// compares the same Go source compiled both ways.
func BenchmarkReduceWazero(b *testing.B) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	const want = reduceSrcs * (reduceSrcs + 1) / 2

	be := compute.NewCPU(nil)
	dst, err := be.Alloc(reduceN)
	if err != nil {
		b.Fatal(err)
	}
	defer be.Free(dst)
	srcs := make([]compute.Buffer, reduceSrcs)
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

	var native, scalar, wasm time.Duration
	var got float32
	d := dst.(*compute.CPUBuffer).Float32s()
	var in [reduceSrcs][]float32
	for i := range in {
		in[i] = srcs[i].(*compute.CPUBuffer).Float32s()
	}
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		if err := be.Reduce(dst, srcs, 1); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		scalarSum4(d, in[0], in[1], in[2], in[3])
		t2 := time.Now()
		got = math.Float32frombits(uint32(m.call("reduce")))
		native, scalar, wasm = native+t1.Sub(t0), scalar+t2.Sub(t1), wasm+time.Since(t2)
	}
	b.StopTimer()
	if got != want {
		b.Fatalf("wazero reduce: dst[0] = %v, want %v", got, want)
	}
	if last := dst.(*compute.CPUBuffer).Float32s()[reduceN-1]; last != want {
		b.Fatalf("native reduce: dst[last] = %v, want %v", last, want)
	}
	bytes := float64((reduceSrcs + 1) * reduceN * 4 * b.N)
	b.ReportMetric(float64(wasm.Nanoseconds())/float64(b.N), "ns/op")
	b.ReportMetric(float64(native.Nanoseconds())/float64(b.N), "native-ns/op")
	b.ReportMetric(bytes/wasm.Seconds()/1e9, "wazero-GB/s")
	b.ReportMetric(bytes/native.Seconds()/1e9, "native-GB/s")
	b.ReportMetric(float64(wasm)/float64(native), "wazero/native")
	b.ReportMetric(float64(wasm)/float64(scalar), "wazero/native-scalar")
}

// scalarSum4 is kvcore's portable 4-input reduce loop (kvcore/internal/kernels/sum.go).
func scalarSum4(d, a, b, c, e []float32) {
	a, b, c, e = a[:len(d)], b[:len(d)], c[:len(d)], e[:len(d)]
	for i := range d {
		d[i] = (((a[i] + b[i]) + c[i]) + e[i]) * 1
	}
}
