package kvcore_test

import (
	"context"
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore"
	"github.com/webkv/webkv/kvcore/psm"
	"github.com/webkv/webkv/kvcore/psm/inproc"
	"github.com/webkv/webkv/kvcore/storetest"
)

// BenchmarkDistManyKeys is relay's BenchmarkManyKeys without the relay
// (storetest.BenchManyKeys: 100,000 keys of 16 floats pushed and pulled
// with list calls, against one key of the same bytes) on one dist_sync
// worker of an in-process server: the client's cost per key.
func BenchmarkDistManyKeys(b *testing.B) {
	storetest.BenchManyKeys(b, inprocStore(b, storetest.ManyKeysKeys))
}

// BenchmarkDistManyKeysInCache is BenchmarkDistManyKeys with 8,192 keys,
// whose state stays in the caches (storetest.BenchManyKeysInCache): its
// cpu_ns/key is a key's instructions, client and in-process server, with
// no socket in the way.
func BenchmarkDistManyKeysInCache(b *testing.B) {
	storetest.BenchManyKeysInCache(b, inprocStore(b, storetest.ManyKeysInCache))
}

// inprocStore is a dist_sync store of the one worker of an in-process
// server that admits twice keys; both close at the benchmark's end.
func inprocStore(b *testing.B, keys int) *kvcore.Store {
	srv := inproc.New(psm.Config{MaxKeys: 2 * keys, Heartbeat: time.Second, Timeout: time.Minute})
	b.Cleanup(srv.Close)
	s, err := kvcore.Create(context.Background(), "dist_sync", &kvcore.Options{Transport: srv.Connect("many", 1)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}
