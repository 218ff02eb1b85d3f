package transporttest

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/webkv/webkv/kvcore/transport"
)

// These tests check the suite itself: transports with one deliberate bug
// ("mutants") must fail the case that covers it, and the correct in-memory
// transport must pass every case. Without them a suite could pass while
// checking nothing.

// recorder records failures; Fatalf ends the checking goroutine as
// testing.T does.
type recorder struct {
	mu     sync.Mutex
	failed bool
	msgs   []string
}

func (r *recorder) Helper() {}
func (r *recorder) fail(msg string) {
	r.mu.Lock()
	r.failed = true
	r.msgs = append(r.msgs, msg)
	r.mu.Unlock()
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.fail(fmt.Sprintf(format, args...))
	runtime.Goexit()
}
func (r *recorder) Errorf(format string, args ...any) { r.fail(fmt.Sprintf(format, args...)) }
func (r *recorder) Logf(string, ...any)               {}

// check runs the named case on the transport h makes and returns its
// failures.
func check(t *testing.T, h Harness, name string) []string {
	t.Helper()
	for _, c := range cases {
		if c.name != name {
			continue
		}
		f := newFixture(t, h)
		r := &recorder{}
		f.t = r
		done := make(chan struct{})
		go func() {
			defer close(done)
			c.fn(f, h)
		}()
		<-done
		return r.msgs
	}
	t.Fatalf("no case %q", name)
	return nil
}

type listenerPeer struct{ l *transport.Listener }

type rawConn struct{ t transport.Transport }

func (c rawConn) Send(ctx context.Context, msg []byte) error {
	return c.t.Send(ctx, 0, transport.FirstEpoch, msg, nil)
}
func (c rawConn) Recv(ctx context.Context) ([]byte, error) {
	m, _, err := c.t.Recv(ctx, 0)
	return m, err
}
func (c rawConn) Close() error { return c.t.Close() }

func (p listenerPeer) Accept(ctx context.Context) (Conn, error) {
	t, err := p.l.Accept(ctx)
	if err != nil {
		return nil, err
	}
	return rawConn{t}, nil
}

// harness makes Listener connections wrapped by wrap.
func harness(wrap func(*transport.Conn) transport.Transport) Harness {
	return Harness{
		New: func(t *testing.T) (transport.Transport, Peer) {
			l := transport.NewListener()
			t.Cleanup(func() { l.Close() })
			return wrap(l.Dial(transport.Join{})), listenerPeer{l}
		},
		Reconnects:    true,
		MaxBuffered:   transport.PipeCapacity + 1<<20,
		Reconnections: 50,
	}
}

// noGate sends for any epoch on the current connection.
type noGate struct{ *transport.Conn }

func (m noGate) Send(ctx context.Context, s int, _ transport.Epoch, head, body []byte) error {
	return m.Conn.Send(ctx, s, m.Conn.Epoch(), head, body)
}

// reorder swaps the messages after the first in pairs.
type reorder struct {
	*transport.Conn
	n    int
	held []byte
}

func (m *reorder) Send(ctx context.Context, s int, e transport.Epoch, head, body []byte) error {
	m.n++
	if m.n == 1 {
		return m.Conn.Send(ctx, s, e, head, body)
	}
	msg := append(append([]byte(nil), head...), body...)
	if m.held == nil {
		m.held = msg
		return nil
	}
	if err := m.Conn.Send(ctx, s, e, msg, nil); err != nil {
		return err
	}
	err := m.Conn.Send(ctx, s, e, m.held, nil)
	m.held = nil
	return err
}

// unbounded takes every message at once into a queue that a goroutine
// forwards.
type unbounded struct {
	*transport.Conn
	once sync.Once
	mu   sync.Mutex
	q    [][]byte
	sig  chan struct{}
}

func (m *unbounded) Send(ctx context.Context, s int, e transport.Epoch, head, body []byte) error {
	m.once.Do(func() {
		m.sig = make(chan struct{}, 1)
		go func() {
			for range m.sig {
				for {
					m.mu.Lock()
					if len(m.q) == 0 {
						m.mu.Unlock()
						break
					}
					msg := m.q[0]
					m.q = m.q[1:]
					m.mu.Unlock()
					if m.Conn.Send(context.Background(), s, e, msg, nil) != nil {
						return
					}
				}
			}
		}()
	})
	m.mu.Lock()
	m.q = append(m.q, append(append([]byte(nil), head...), body...))
	m.mu.Unlock()
	select {
	case m.sig <- struct{}{}:
	default:
	}
	return nil
}

// twice announces every reconnection two times.
type twice struct {
	*transport.Conn
	again bool
	e     transport.Epoch
	err   error
}

func (m *twice) Recv(ctx context.Context, s int) ([]byte, transport.Epoch, error) {
	if m.again {
		m.again = false
		return nil, m.e, m.err
	}
	b, e, err := m.Conn.Recv(ctx, s)
	if err != nil && strings.Contains(err.Error(), "reconnected") {
		m.again, m.e, m.err = true, e, err
	}
	return b, e, err
}

func TestMutantsFail(t *testing.T) {
	for _, tc := range []struct {
		mutant string
		wrap   func(*transport.Conn) transport.Transport
		cases  []string
	}{
		{"ignores epochs", func(c *transport.Conn) transport.Transport { return noGate{c} }, []string{"StaleEpoch", "PeerDrops"}},
		{"reorders", func(c *transport.Conn) transport.Transport { return &reorder{Conn: c} }, []string{"Order"}},
		{"buffers without bound", func(c *transport.Conn) transport.Transport { return &unbounded{Conn: c} }, []string{"Backpressure"}},
		{"announces twice", func(c *transport.Conn) transport.Transport { return &twice{Conn: c} }, []string{"PeerDrops"}},
	} {
		for _, name := range tc.cases {
			t.Run(tc.mutant+"/"+name, func(t *testing.T) {
				msgs := check(t, harness(tc.wrap), name)
				if len(msgs) == 0 {
					t.Fatalf("a transport that %s passes %s", tc.mutant, name)
				}
				t.Logf("fails as it should: %s", msgs[0])
			})
		}
	}
}

func TestCorrectPasses(t *testing.T) {
	h := harness(func(c *transport.Conn) transport.Transport { return c })
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if msgs := check(t, h, c.name); len(msgs) > 0 {
				t.Fatalf("the in-memory transport fails: %v", msgs)
			}
		})
	}
}
