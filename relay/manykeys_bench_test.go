//go:build !js && !wasip1

package relay_test

import (
	"context"
	"testing"

	"github.com/webkv/webkv/kvcore/storetest"
	"github.com/webkv/webkv/relay"
)

// BenchmarkManyKeys is issue 12's many-keys benchmark through a relay
// (storetest.BenchManyKeys: 100,000 keys of 16 floats pushed with PushList
// and pulled with PullList by one dist_sync worker, against one key of the
// same 6.4 MB; x_one_key is the many-keys time over the one-key time, the
// goal at most 3).
func BenchmarkManyKeys(b *testing.B) {
	u := startBench(b, relay.Config{MaxKeys: 2 * storetest.ManyKeysKeys})
	s, err := relay.Create(context.Background(), "dist_sync", u, relay.DialOptions{Job: "many", Logger: quiet()}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	storetest.BenchManyKeys(b, s)
}

// BenchmarkManyKeysInCache is BenchmarkManyKeys with 8,192 keys, whose
// state stays in the caches: its cpu_ns/key is what a key's instructions
// cost through the client, the relay and the server, to set against
// BenchmarkManyKeys' (RATIONALE: "Why is the many-keys gap instructions
// more than memory?").
func BenchmarkManyKeysInCache(b *testing.B) {
	u := startBench(b, relay.Config{MaxKeys: 2 * storetest.ManyKeysInCache})
	s, err := relay.Create(context.Background(), "dist_sync", u, relay.DialOptions{Job: "cached", Logger: quiet()}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	storetest.BenchManyKeysInCache(b, s)
}
