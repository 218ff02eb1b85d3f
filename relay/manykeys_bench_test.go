//go:build !js && !wasip1

package relay_test

import (
	"context"
	"testing"

	"github.com/webkv/webkv/kvcore"
	"github.com/webkv/webkv/kvcore/storetest"
	"github.com/webkv/webkv/relay"
)

// BenchmarkManyKeys is issue 12's many-keys benchmark through a relay
// (storetest.BenchManyKeys: 100,000 keys of 16 floats pushed with PushList
// and pulled with PullList by one dist_sync worker, against one key of the
// same 6.4 MB; x_one_key is the many-keys time over the one-key time, the
// goal at most 3).
func BenchmarkManyKeys(b *testing.B) {
	storetest.BenchManyKeys(b, manyKeysStore(b, "many", storetest.ManyKeysKeys))
}

// BenchmarkManyKeysInCache is BenchmarkManyKeys with 8,192 keys, whose
// state stays in the caches: its cpu_ns/key is what a key's instructions
// cost through the client, the relay and the server, to set against
// BenchmarkManyKeys' (RATIONALE: "Why is the many-keys gap instructions
// more than memory?").
func BenchmarkManyKeysInCache(b *testing.B) {
	storetest.BenchManyKeysInCache(b, manyKeysStore(b, "cached", storetest.ManyKeysInCache))
}

// manyKeysStore is a dist_sync store of one worker of job on a relay of
// its own that admits twice keys.
func manyKeysStore(b *testing.B, job string, keys int) *kvcore.Store {
	u := startBench(b, relay.Config{MaxKeys: 2 * keys})
	s, err := relay.Create(context.Background(), "dist_sync", u, relay.DialOptions{Job: job, Logger: quiet()}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}
