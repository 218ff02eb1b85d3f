package kvcore_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore"
	"github.com/webkv/webkv/kvcore/psm"
	"github.com/webkv/webkv/kvcore/psm/inproc"
	"github.com/webkv/webkv/kvcore/transport"
)

// evLog collects a store's events for a test.
type evLog struct{ ch chan kvcore.Event }

func newEvLog() *evLog { return &evLog{ch: make(chan kvcore.Event, 4096)} }

func (l *evLog) fn(e kvcore.Event) { l.ch <- e }

// next waits for the first event that ok accepts, skipping others.
func (l *evLog) next(t *testing.T, what string, ok func(kvcore.Event) bool) kvcore.Event {
	t.Helper()
	timeout := time.After(time.Minute) // a bound, not a margin: events come in milliseconds
	for {
		select {
		case e := <-l.ch:
			if ok(e) {
				return e
			}
		case <-timeout:
			t.Fatalf("no %s event within a minute", what)
		}
	}
}

func membersAre(live ...int) func(kvcore.Event) bool {
	return func(e kvcore.Event) bool {
		return e.Kind == kvcore.EventMembership && slices.Equal(e.Live, live) && e.NumWorkers == len(live)
	}
}

// TestDistEvents checks the events of a dist_sync store end to end against
// psm: connected at the join, one round event per push with increasing
// round numbers, membership as a second worker joins and leaves (without
// any barrier), and reconnected after the connection breaks.
func TestDistEvents(t *testing.T) {
	t.Parallel()
	srv := testServer(t, psm.Config{})
	ctx := testCtx(t)
	ev := newEvLog()
	conn := srv.Connect("ev", 0)
	s, err := kvcore.Create(ctx, "dist_sync", &kvcore.Options{Transport: conn, Events: ev.fn})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	e := ev.next(t, "connected", func(e kvcore.Event) bool { return e.Kind == kvcore.EventConnection })
	if e.Conn != kvcore.ConnConnected || e.Shard != 0 {
		t.Fatalf("first connection event %v shard %d, want connected shard 0", e.Conn, e.Shard)
	}
	e = ev.next(t, "membership [0]", func(e kvcore.Event) bool { return e.Kind == kvcore.EventMembership })
	if !membersAre(0)(e) || e.Rank != 0 {
		t.Fatalf("first membership event %+v, want rank 0 of live [0]", e)
	}

	k := kvcore.StrKey("w")
	if err := s.Init(ctx, k, arr(t, []float32{0, 0})); err != nil {
		t.Fatal(err)
	}
	const rounds = 5
	for i := range rounds {
		if err := s.Push(k, arr(t, []float32{1, float32(i)})); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.WaitAll(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range rounds {
		e := ev.next(t, fmt.Sprintf("round %d", i), func(e kvcore.Event) bool { return e.Kind == kvcore.EventRound })
		if e.Key != k || e.Round != uint64(i) || e.Late || e.Rescaled {
			t.Fatalf("round event %d: %+v, want key %v round %d, not late or rescaled", i, e, k, i)
		}
	}

	// A second worker joins: both see the new membership at once.
	ev2 := newEvLog()
	s2, err := kvcore.Create(ctx, "dist_sync", &kvcore.Options{Transport: srv.Connect("ev", 0), Events: ev2.fn})
	if err != nil {
		t.Fatal(err)
	}
	ev.next(t, "membership [0 1]", membersAre(0, 1))
	if e := ev2.next(t, "membership of the joiner", func(e kvcore.Event) bool { return e.Kind == kvcore.EventMembership }); !membersAre(0, 1)(e) || e.Rank != 1 {
		t.Fatalf("joiner's membership event %+v, want rank 1 of live [0 1]", e)
	}
	if n := s.NumWorkers(); n != 2 {
		t.Errorf("NumWorkers %d after the notice, want 2", n)
	}
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	ev.next(t, "membership [0] after the leave", membersAre(0))
	if n := s.NumWorkers(); n != 1 {
		t.Errorf("NumWorkers %d after the leave, want 1", n)
	}
	// Store.Close reports no lost connection (Close delivered every event
	// before it returned).
	for len(ev2.ch) > 0 {
		if e := <-ev2.ch; e.Kind == kvcore.EventConnection && e.Conn == kvcore.ConnLost {
			t.Errorf("closing store reported %+v", e)
		}
	}

	conn.Break()
	ev.next(t, "reconnected", func(e kvcore.Event) bool {
		return e.Kind == kvcore.EventConnection && e.Conn == kvcore.ConnReconnected
	})
	// The store carries on: the next round is numbered on.
	if err := s.Push(k, arr(t, []float32{1, 1})); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitAll(ctx); err != nil {
		t.Fatal(err)
	}
	e = ev.next(t, "round after reconnect", func(e kvcore.Event) bool { return e.Kind == kvcore.EventRound })
	if e.Round != rounds {
		t.Errorf("round after the reconnect %d, want %d", e.Round, rounds)
	}
	if d := s.EventsDropped(); d != 0 {
		t.Errorf("%d events dropped with a fast consumer", d)
	}
}

// watchConn is a transport whose reconnection attempts (like relay.Conn's)
// the test reports itself.
type watchConn struct {
	*transport.Conn
	fn func(transport.Status)
}

func (w *watchConn) Watch(fn func(transport.Status)) { w.fn = fn }

// TestDistEventsLost checks that ConnReconnecting comes from a Watcher
// transport and that a link that fails for good reports ConnLost with why.
func TestDistEventsLost(t *testing.T) {
	t.Parallel()
	srv := testServer(t, psm.Config{})
	ctx := testCtx(t)
	ev := newEvLog()
	w := &watchConn{Conn: srv.Connect("lost", 0)}
	s, err := kvcore.Create(ctx, "dist_sync", &kvcore.Options{Transport: w, Events: ev.fn})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if w.fn == nil {
		t.Fatal("the store did not watch its Watcher transport")
	}
	why := errors.New("network unreachable")
	w.fn(transport.Status{State: transport.Reconnecting, Attempt: 3, Err: why})
	e := ev.next(t, "reconnecting", func(e kvcore.Event) bool {
		return e.Kind == kvcore.EventConnection && e.Conn == kvcore.ConnReconnecting
	})
	if e.Attempt != 3 || !errors.Is(e.Err, why) {
		t.Errorf("reconnecting event %+v, want attempt 3 and the transport's error", e)
	}
	// The server forgets the worker (as after its silence timeout): the
	// next Hello is refused for good.
	srv.Do("lost", func(j *psm.Job) {
		j.Tick(time.Hour) // its messages are for the removed worker: dropped
	})
	w.Break()
	e = ev.next(t, "lost", func(e kvcore.Event) bool {
		return e.Kind == kvcore.EventConnection && e.Conn == kvcore.ConnLost
	})
	if e.Err == nil || !errors.Is(e.Err, kvcore.ErrConnLost) && !errors.Is(e.Err, kvcore.ErrServer) {
		t.Errorf("lost event error %v", e.Err)
	}
	t.Logf("lost: %v", e.Err)
	if err := s.Barrier(context.Background()); err == nil {
		t.Error("barrier on a lost store succeeded")
	}
}

// Over two shards: one connected event per shard, membership from the first
// shard only, and one round event per push of a key split over both.
func TestDistEventsSharded(t *testing.T) {
	t.Parallel()
	srvs := []*inproc.Server{
		testServer(t, psm.Config{Shard: 0, Shards: 2}),
		testServer(t, psm.Config{Shard: 1, Shards: 2}),
	}
	ctx := testCtx(t)
	ev := newEvLog()
	sh := shardsOf(t, srvs, transport.Join{Job: "sh", BigArrayBound: 30})
	s, err := kvcore.Create(ctx, "dist_sync", &kvcore.Options{Transport: sh, Events: ev.fn})
	if err != nil {
		t.Fatal(err)
	}
	k := kvcore.IntKey(-7)
	if err := s.Init(ctx, k, arr(t, make([]float32, 100))); err != nil {
		t.Fatal(err)
	}
	const rounds = 3
	for range rounds {
		if err := s.Push(k, arr(t, make([]float32, 100))); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.WaitAll(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Close delivered every event before it returned: read them.
	var conn []int
	var members, got []uint64
	for len(ev.ch) > 0 {
		switch e := <-ev.ch; e.Kind {
		case kvcore.EventConnection:
			conn = append(conn, e.Shard)
		case kvcore.EventMembership:
			members = append(members, uint64(e.NumWorkers))
		case kvcore.EventRound:
			if e.Key != k {
				t.Errorf("round event of key %v, want %v", e.Key, k)
			}
			got = append(got, e.Round)
		}
	}
	slices.Sort(conn)
	if fmt.Sprint(conn) != "[0 1]" || fmt.Sprint(members) != "[1]" || fmt.Sprint(got) != "[0 1 2]" {
		t.Errorf("connected shards %v, membership sizes %v, rounds %v; want [0 1], [1], [0 1 2]", conn, members, got)
	}
}
