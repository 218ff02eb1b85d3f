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
	srv := inproc.New(psm.Config{MaxKeys: 2 * storetest.ManyKeysKeys, Heartbeat: time.Second, Timeout: time.Minute})
	defer srv.Close()
	s, err := kvcore.Create(context.Background(), "dist_sync", &kvcore.Options{Transport: srv.Connect("many", 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	storetest.BenchManyKeys(b, s)
}
