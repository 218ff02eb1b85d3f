package transport_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/webkv/webkv/kvcore/transport"
	"github.com/webkv/webkv/kvcore/transport/transporttest"
)

// rawConn adapts a one-shard server end to transporttest.Conn.
type rawConn struct{ t transport.Transport }

func (c rawConn) Send(ctx context.Context, msg []byte) error {
	return c.t.Send(ctx, 0, transport.FirstEpoch, msg, nil)
}

func (c rawConn) Recv(ctx context.Context) ([]byte, error) {
	m, _, err := c.t.Recv(ctx, 0)
	return m, err
}

func (c rawConn) Close() error { return c.t.Close() }

// pipePeer hands out the other end of one Pipe.
type pipePeer struct {
	mu  sync.Mutex
	end transport.Transport
}

func (p *pipePeer) Accept(ctx context.Context) (transporttest.Conn, error) {
	p.mu.Lock()
	e := p.end
	p.end = nil
	p.mu.Unlock()
	if e == nil {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return rawConn{e}, nil
}

func TestPipeConformance(t *testing.T) {
	transporttest.Run(t, transporttest.Harness{
		New: func(t *testing.T) (transport.Transport, transporttest.Peer) {
			a, b := transport.Pipe()
			return a, &pipePeer{end: b}
		},
		MaxBuffered: transport.PipeCapacity + 1<<20,
	})
}

type listenerPeer struct{ l *transport.Listener }

func (p listenerPeer) Accept(ctx context.Context) (transporttest.Conn, error) {
	t, err := p.l.Accept(ctx)
	if err != nil {
		return nil, err
	}
	return rawConn{t}, nil
}

func TestListenerConformance(t *testing.T) {
	transporttest.Run(t, transporttest.Harness{
		New: func(t *testing.T) (transport.Transport, transporttest.Peer) {
			l := transport.NewListener()
			t.Cleanup(func() { l.Close() })
			return l.Dial(transport.Join{Job: "j"}), listenerPeer{l}
		},
		Reconnects:  true,
		MaxBuffered: transport.PipeCapacity + 1<<20,
	})
}

// Shards of two listeners: the suite runs on shard 0 of the combination
// (Shards, routing and Close), and shard 1 routes to the second.
func TestShardsConformance(t *testing.T) {
	transporttest.Run(t, transporttest.Harness{
		New: func(t *testing.T) (transport.Transport, transporttest.Peer) {
			l0, l1 := transport.NewListener(), transport.NewListener()
			t.Cleanup(func() { l0.Close(); l1.Close() })
			s, err := transport.Shards(l0.Dial(transport.Join{Job: "j"}), l1.Dial(transport.Join{Job: "j"}))
			if err != nil {
				t.Fatal(err)
			}
			return s, listenerPeer{l0}
		},
		Reconnects:  true,
		MaxBuffered: transport.PipeCapacity + 1<<20,
	})
}

func TestShardsRouting(t *testing.T) {
	ctx := context.Background()
	a0, b0 := transport.Pipe()
	a1, b1 := transport.Pipe()
	s, err := transport.Shards(a0, a1)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Shards() != 2 {
		t.Fatalf("Shards() = %d", s.Shards())
	}
	if err := s.Send(ctx, 1, transport.FirstEpoch, []byte("to 1"), nil); err != nil {
		t.Fatal(err)
	}
	if m, _, err := b1.Recv(ctx, 0); err != nil || string(m) != "to 1" {
		t.Fatalf("shard 1 got %q, %v", m, err)
	}
	if err := b0.Send(ctx, 0, transport.FirstEpoch, []byte("from 0"), nil); err != nil {
		t.Fatal(err)
	}
	if m, e, err := s.Recv(ctx, 0); err != nil || string(m) != "from 0" || e != transport.FirstEpoch {
		t.Fatalf("shard 0 gave %q, %d, %v", m, e, err)
	}
	if _, err := transport.Shards(); err == nil {
		t.Error("Shards() of nothing: no error")
	}
	l := transport.NewListener()
	defer l.Close()
	x := l.Dial(transport.Join{Job: "x"})
	y := l.Dial(transport.Join{Job: "y", Token: "secret"})
	_, err = transport.Shards(x, y)
	if err == nil {
		t.Fatal("shards of two jobs: no error")
	}
	if contains(err.Error(), "secret") {
		t.Errorf("error shows the token: %v", err)
	}
	s.Close()
	if _, _, err := b0.Recv(ctx, 0); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("after Shards.Close, the peer's Recv: %v", err)
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// A Conn whose listener closed cannot reconnect: the loss is final, and a
// Watcher hears of it.
func TestListenerClosedIsFinal(t *testing.T) {
	ctx := context.Background()
	l := transport.NewListener()
	c := l.Dial(transport.Join{})
	defer c.Close()
	var got []transport.Status
	var mu sync.Mutex
	c.Watch(func(s transport.Status) { mu.Lock(); got = append(got, s); mu.Unlock() })
	srv, err := l.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	srv.Close()
	if _, _, err := c.Recv(ctx, 0); err == nil || errors.Is(err, transport.ErrReconnected) {
		t.Fatalf("Recv after the listener closed: %v, want a permanent error", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 || got[0].State != transport.Reconnecting || got[1].State != transport.Lost {
		t.Fatalf("watched %+v, want reconnecting then lost", got)
	}
	if _, _, err := l.Dial(transport.Join{}).Recv(ctx, 0); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Recv on a Conn dialed on a closed listener: %v, want ErrClosed", err)
	}
}
