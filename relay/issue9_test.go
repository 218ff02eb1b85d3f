//go:build !js && !wasip1

package relay_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore"
	"github.com/webkv/webkv/kvcore/storetest"
	"github.com/webkv/webkv/kvcore/transport"
	"github.com/webkv/webkv/kvcore/wire"
	"github.com/webkv/webkv/relay"
)

// The repros of issue 9 over real relays (kvcore's dist_repro_test.go runs
// them over in-process servers, also in wazero and node).

// sharded starts n relays serving the shards of one job.
func sharded(t testing.TB, n int, cfg relay.Config) []string {
	var urls []string
	for i := range n {
		c := cfg
		c.Shards, c.ShardIndex = make([]string, n), i
		_, u := start(t, c)
		urls = append(urls, u)
	}
	return urls
}

// dialShards dials every url and combines them.
func dialShards(t testing.TB, ctx context.Context, urls []string, o relay.DialOptions) ([]*relay.Conn, transport.Transport) {
	var cs []*relay.Conn
	var ts []transport.Transport
	for _, u := range urls {
		c, err := relay.Dial(ctx, u, o)
		if err != nil {
			t.Fatal(err)
		}
		cs, ts = append(cs, c), append(ts, c)
	}
	tr, err := transport.Shards(ts...)
	if err != nil {
		t.Fatal(err)
	}
	return cs, tr
}

// Bug 2 over websockets: 2 shards, heartbeat 1 ms, shard 1's connection
// killed after every round once the store is back on it, while pushing a
// key split over both shards (each round's requests race the reconnection
// and the pings). Before, the store failed within 6 to 34 reconnects (a
// ping reached shard 1's new connection before its Hello); it must survive
// hundreds, the Hello first on every connection, every round exact.
func TestShardReconnectsHelloFirst(t *testing.T) {
	target := 200
	if testing.Short() {
		target = 50
	}
	urls := sharded(t, 2, relay.Config{Heartbeat: time.Millisecond, Timeout: 10 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cs, _ := dialShards(t, ctx, urls, relay.DialOptions{Job: "bug2", BigArrayBound: 8, ReconnectMin: time.Millisecond,
		ReconnectMax: 5 * time.Millisecond, Logger: quiet()})
	w1 := &helloFirst{Transport: cs[1]}
	tr, err := transport.Shards(cs[0], w1)
	if err != nil {
		t.Fatal(err)
	}
	count := storetest.NewConnEvents(2)
	s, err := kvcore.Create(ctx, "dist_sync", &kvcore.Options{Transport: tr, Events: count.Fn})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const n = 16
	k := kvcore.IntKey(5)
	in, out := arrOf(t, make([]float32, n)), arrOf(t, make([]float32, n))
	if err := s.Init(ctx, k, in); err != nil {
		t.Fatal(err)
	}
	grad, kills := make([]float32, n), 0
	for round := 0; ; round++ {
		rs, lost := count.Get()
		r := rs[1]
		if len(lost) > 0 {
			t.Fatalf("round %d, after %d reconnects: the store lost its connection: %v", round, r, lost[0])
		}
		if err := w1.violation(); err != nil {
			t.Fatal(err)
		}
		if r >= target {
			t.Logf("%d rounds, %d reconnects of shard 1", round, r)
			break
		}
		if r == kills { // back on shard 1 since the last kill
			cs[1].Kill()
			kills++
		}
		for i := range grad {
			grad[i] = float32(round*100 + i)
		}
		if err := in.CopyFrom(ctx, grad); err != nil {
			t.Fatal(err)
		}
		if err := s.PushPullTo(k, []*kvcore.Array{in}, out); err != nil {
			t.Fatal(err)
		}
		got, err := out.ToSlice(ctx)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		for i, v := range got {
			if v != grad[i] {
				t.Fatalf("round %d: element %d is %v, want %v", round, i, v, grad[i])
			}
		}
	}
}

// helloFirst checks, on the way out, that the first message on every
// connection epoch is a Hello (a test may look inside messages; the
// transports never do).
type helloFirst struct {
	transport.Transport
	mu   sync.Mutex
	last transport.Epoch
	bad  error
}

func (h *helloFirst) Send(ctx context.Context, shard int, e transport.Epoch, head, body []byte) error {
	h.mu.Lock()
	if e != h.last {
		if typ := wire.Type(head[3]); typ != wire.TypeHello && h.bad == nil {
			h.bad = fmt.Errorf("the first message on connection epoch %d is a %v, not the Hello", e, typ)
		}
		h.last = e
	}
	h.mu.Unlock()
	return h.Transport.Send(ctx, shard, e, head, body)
}

func (h *helloFirst) violation() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.bad
}

func arrOf(t testing.TB, v []float32) *kvcore.Array {
	a, err := kvcore.FromSlice(kvcore.CPU(0), v)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// Bug 3 over websockets, ps-lite's test_kv_app: 2 workers, 2 relay shards
// with default settings, each worker pushes its own 10,000 one-float keys
// 50 times into an accumulating job (dist_async, SGD at rate 1 on negated
// values), then pulls them: value = 50 x pushed, and no reconnect (before,
// 1,020 reconnects in 107 s as a "slow peer").
func TestKVApp(t *testing.T) {
	num, repeat := 10000, 50
	switch {
	case testing.Short():
		num, repeat = 2000, 10
	case raceEnabled:
		repeat = 5
	}
	twoShardWorkers(t, "kvapp", func(ctx context.Context, tr transport.Transport) error {
		return storetest.KVApp(ctx, tr, num, repeat)
	})
}

// A 10,000-key dist_sync job, 2 workers, 2 relay shards with default
// settings: 3 rounds of every key, exact, with 0 reconnects.
func TestManyKeysSyncNoReconnects(t *testing.T) {
	num, rounds := 10000, 3
	if testing.Short() {
		num, rounds = 2000, 2
	}
	twoShardWorkers(t, "many", func(ctx context.Context, tr transport.Transport) error {
		return storetest.ManyKeysSync(ctx, tr, num, rounds)
	})
}

// twoShardWorkers runs work as the two workers of job on two relay shards
// with default settings, each on its own sharded transport, and fails t
// with each worker's error.
func twoShardWorkers(t *testing.T, job string, work func(context.Context, transport.Transport) error) {
	urls := sharded(t, 2, relay.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, tr := dialShards(t, ctx, urls, relay.DialOptions{Job: job, Workers: 2, Logger: quiet()})
			errs[w] = work(ctx, tr)
		}()
	}
	wg.Wait()
	for w, err := range errs {
		if err != nil {
			t.Errorf("worker %d: %v", w, err)
		}
	}
}
