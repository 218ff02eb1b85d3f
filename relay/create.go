package relay

import (
	"context"
	"fmt"
	"strings"

	"github.com/webkv/webkv/kvcore"
	"github.com/webkv/webkv/kvcore/transport"
)

// Create makes a dist store (typ: dist_sync, dist_async, dist_device_sync)
// served by the relay at url. A comma-separated url list names the shards
// of a sharded relay, in shard order: the store connects to every one and
// places keys with wire.Place (big keys split over all shards, small ones by
// hash). kvopts may add store options (a backend, events); its Transport
// is set here.
func Create(ctx context.Context, typ, url string, opts DialOptions, kvopts *kvcore.Options) (*kvcore.Store, error) {
	if !strings.HasPrefix(typ, "dist") {
		// A local or device store would silently ignore the relay.
		return nil, fmt.Errorf("relay: create %s: only dist_sync, dist_async and dist_device_sync stores use a relay (use kvcore.Create for %s): %w", typ, typ, kvcore.ErrUnsupported)
	}
	urls := splitURLs(url)
	if len(urls) == 0 {
		return nil, fmt.Errorf("relay: create %s: no relay url", typ)
	}
	ts := make([]transport.Transport, 0, len(urls))
	closeAll := func() {
		for _, t := range ts {
			t.Close()
		}
	}
	for _, u := range urls {
		c, err := Dial(ctx, u, opts)
		if err != nil {
			closeAll()
			return nil, err // "relay: dial <url>: ...", one prefix
		}
		ts = append(ts, c)
	}
	t, err := transport.Shards(ts...)
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("relay: create %s: %w", typ, err)
	}
	var o kvcore.Options
	if kvopts != nil {
		o = *kvopts
	}
	o.Transport = t
	s, err := kvcore.Create(ctx, typ, &o)
	if err != nil {
		t.Close()
		return nil, err // kvcore's error names the operation and the type
	}
	return s, nil
}

func splitURLs(s string) []string {
	var out []string
	for _, u := range strings.Split(s, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}
