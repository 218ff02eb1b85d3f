//go:build !js && !wasip1

package relay_test

import (
	"context"
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore"
	"github.com/webkv/webkv/relay"
)

// Traffic counts what a worker's connection carries: an init, a push and
// a pull of n floats are at least 3 × 4n bytes, and the bytes each way
// cover what was sent that way (4n up for init and push, 4n down for the
// pull), plus no more than the frames' and the handshake's overhead.
func TestTraffic(t *testing.T) {
	_, u := start(t, relay.Config{Logger: quiet()})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var tr relay.Traffic
	s, err := relay.Create(ctx, "dist_sync", u, relay.DialOptions{Job: "traffic", Logger: quiet(), Traffic: &tr}, nil)
	if err != nil {
		t.Fatal(err)
	}
	const n = 100000
	a, err := kvcore.NewArray(kvcore.CPU(0), n)
	if err != nil {
		t.Fatal(err)
	}
	k := kvcore.StrKey("w")
	if err := s.Init(ctx, k, a); err != nil {
		t.Fatal(err)
	}
	up0, down0 := tr.Sent(), tr.Received()
	if up0 < 4*n {
		t.Fatalf("init of %d floats: %d bytes sent", n, up0)
	}
	if err := s.Push(k, a); err != nil {
		t.Fatal(err)
	}
	if err := s.Pull(k, a); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitAll(ctx); err != nil {
		t.Fatal(err)
	}
	up, down := tr.Sent()-up0, tr.Received()-down0
	t.Logf("init: %d up, %d down; push+pull of %d bytes: %d up, %d down", up0, down0, 4*n, up, down)
	if up < 4*n || down < 4*n || up > 4*n+64<<10 || down > 4*n+64<<10 {
		t.Errorf("push and pull of %d bytes each: %d bytes sent, %d received", 4*n, up, down)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if tr.Total() != tr.Sent()+tr.Received() {
		t.Error("Total is not Sent + Received")
	}
}
