//go:build !js && !wasip1

package relay_test

import (
	"context"
	"testing"

	"github.com/webkv/webkv/kvcore"
	"github.com/webkv/webkv/relay"
)

// BenchmarkManyKeys: 100,000 keys of 16 floats pushed and pulled through a
// relay (one worker, dist_sync: PushList then PullList of every key), and
// one key of the same 6.4 MB pushed and pulled, alternately; keys/s is the
// many-keys rate (a key pushed and pulled), x_one_key the many-keys time
// over the one-key time (issue 12's goal: at most 3). Medians over b.N.
func BenchmarkManyKeys(b *testing.B) {
	const keys, elems = 100_000, 16
	ctx := context.Background()
	u := startBench(b, relay.Config{MaxKeys: 2 * keys})
	s, err := relay.Create(ctx, "dist_sync", u, relay.DialOptions{Job: "many", Logger: quiet()}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	ks := make([]kvcore.Key, keys)
	vals, outs := make([][]*kvcore.Array, keys), make([][]*kvcore.Array, keys)
	inits := make([]*kvcore.Array, keys)
	for i := range ks {
		ks[i] = kvcore.IntKey(i)
		v, err := kvcore.NewArray(kvcore.CPU(0), elems)
		if err != nil {
			b.Fatal(err)
		}
		o, _ := kvcore.NewArray(kvcore.CPU(0), elems)
		if err := v.Fill(ctx, float32(i%7)); err != nil {
			b.Fatal(err)
		}
		vals[i], outs[i], inits[i] = []*kvcore.Array{v}, []*kvcore.Array{o}, v
	}
	if err := s.InitList(ctx, ks, inits); err != nil {
		b.Fatal(err)
	}
	big, _ := kvcore.NewArray(kvcore.CPU(0), keys*elems)
	bigOut, _ := kvcore.NewArray(kvcore.CPU(0), keys*elems)
	bigKey := kvcore.IntKey(-1)
	if err := s.Init(ctx, bigKey, big); err != nil {
		b.Fatal(err)
	}
	many := func() {
		if err := s.PushList(ks, vals, 0); err != nil {
			b.Fatal(err)
		}
		if err := s.PullList(ks, outs, 0); err != nil {
			b.Fatal(err)
		}
		if err := s.WaitAll(ctx); err != nil {
			b.Fatal(err)
		}
	}
	one := func() {
		if err := s.Push(bigKey, big); err != nil {
			b.Fatal(err)
		}
		if err := s.Pull(bigKey, bigOut); err != nil {
			b.Fatal(err)
		}
		if err := s.WaitAll(ctx); err != nil {
			b.Fatal(err)
		}
	}
	t := timed(b, many, one)
	b.ReportMetric(float64(keys)/t[0].Seconds(), "keys/s")
	b.ReportMetric(t[0].Seconds()/t[1].Seconds(), "x_one_key")
	b.ReportMetric(float64(t[0].Microseconds())/1000, "ms/many_keys")
	b.ReportMetric(float64(t[1].Microseconds())/1000, "ms/one_key")
}
