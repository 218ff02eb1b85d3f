//go:build !js && !wasip1

package sandbox_test

import (
	"slices"
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore"
	"github.com/webkv/webkv/kvcore/optimizer"
	"github.com/webkv/webkv/kvcore/updater"
	"github.com/webkv/webkv/wasm/sandbox"
	"github.com/webkv/webkv/wasm/updater/updatertest"
)

// BenchmarkWasmUpdater1M: one push of a 1M-element key (4 MB) on a local
// store, and the wait for its update, with the built-in SGD (one fused CPU
// kernel over the stored value) against the same push through a wasm
// updater: the MXNet Test optimizer module (weight += rescale_grad*grad,
// state = weight: one state array) and a stateless module (stored +=
// recv). The wasm path copies recv, stored and the states into the
// module's memory and stored and the states back, and runs the loop as
// wazero-compiled code. Reported: microseconds per push of each, and the
// ratios (median of the iterations).
func BenchmarkWasmUpdater1M(b *testing.B) {
	const n = 1 << 20
	h := newHost(b, sandbox.Options{})
	store := func(set func(s *kvcore.Store) error) (*kvcore.Store, *kvcore.Array) {
		s := newStore(b, "local", h)
		if err := s.Init(bg, kvcore.IntKey(0), fill(b, 1, n)); err != nil {
			b.Fatal(err)
		}
		if err := set(s); err != nil {
			b.Fatal(err)
		}
		return s, fill(b, 1e-6, n)
	}
	sgd, gs := store(func(s *kvcore.Store) error { return s.SetOptimizer(bg, optimizer.SGD(0.1, 0)) })
	mx, gm := store(func(s *kvcore.Store) error {
		return s.SetUpdaterModule(bg, &updater.Module{Code: updatertest.Build(b, "mxtest")})
	})
	plain, gp := store(func(s *kvcore.Store) error {
		return s.SetUpdaterModule(bg, &updater.Module{Code: updatertest.Build(b, "hostile"), Config: []byte("ok")})
	})
	push := func(s *kvcore.Store, g *kvcore.Array) func() {
		return func() {
			if err := s.Push(kvcore.IntKey(0), g); err != nil {
				b.Fatal(err)
			}
			if err := s.WaitAll(bg); err != nil {
				b.Fatal(err)
			}
		}
	}
	t := timed(b, push(sgd, gs), push(mx, gm), push(plain, gp))
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
	b.ReportMetric(us(t[0]), "us/push_sgd")
	b.ReportMetric(us(t[1]), "us/push_wasm_mxtest")
	b.ReportMetric(us(t[2]), "us/push_wasm_stateless")
	b.ReportMetric(t[1].Seconds()/t[0].Seconds(), "ratio_mxtest_vs_sgd")
	b.ReportMetric(t[2].Seconds()/t[0].Seconds(), "ratio_stateless_vs_sgd")
}

// timed runs each f once (warm-up), then b.N times in turn, and returns the
// median duration of each.
func timed(b *testing.B, fs ...func()) []time.Duration {
	for _, f := range fs {
		f()
	}
	ds := make([][]time.Duration, len(fs))
	b.ResetTimer()
	for range b.N {
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
