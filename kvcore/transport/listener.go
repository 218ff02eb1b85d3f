package transport

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Listener hands out in-memory connections, like a network listener without
// the network: Dial returns a client Transport that, like package relay's,
// replaces a lost connection by itself (a new epoch), and Accept returns the
// server end of each connection it makes, a one-shard Transport with one
// epoch. Client-to-server traffic is bounded by PipeCapacity (Send blocks);
// server-to-client traffic is not, so a server may send while holding a
// lock (its client must keep reading, as a dist store does).
//
// Package kvcore/psm/inproc serves psm jobs on a Listener.
type Listener struct {
	mu     sync.Mutex
	queue  []Transport // server ends not yet accepted
	closed bool
	signal chan struct{} // capacity 1: "queued, or closed"
}

// NewListener returns an open Listener.
func NewListener() *Listener { return &Listener{signal: make(chan struct{}, 1)} }

// Accept returns the server end of the next connection a Conn makes.
func (l *Listener) Accept(ctx context.Context) (Transport, error) {
	for {
		l.mu.Lock()
		if len(l.queue) > 0 {
			t := l.queue[0]
			l.queue[0] = nil
			l.queue = l.queue[1:]
			l.mu.Unlock()
			return t, nil
		}
		closed := l.closed
		l.mu.Unlock()
		if closed {
			signal(l.signal)
			return nil, fmt.Errorf("transport: listener: %w", ErrClosed)
		}
		select {
		case <-l.signal:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Close stops the listener: Accept fails, and Conns fail for good when
// their connection is lost (they cannot reconnect). Connections made
// already are not closed.
func (l *Listener) Close() error {
	l.mu.Lock()
	l.closed = true
	q := l.queue
	l.queue = nil
	l.mu.Unlock()
	for _, t := range q {
		t.Close()
	}
	signal(l.signal)
	return nil
}

// connect makes a connection and returns its client end.
func (l *Listener) connect() (*pipeEnd, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, fmt.Errorf("transport: listener: %w", ErrClosed)
	}
	c, s := newPipe(PipeCapacity, 0)
	l.queue = append(l.queue, s)
	signal(l.signal)
	return c, nil
}

// Dial returns a Conn to l whose handshake says join. On a closed
// Listener the Conn is dead: Send and Recv fail (wrapping ErrClosed).
func (l *Listener) Dial(join Join) *Conn {
	c := &Conn{l: l, join: join, epoch: FirstEpoch, announced: FirstEpoch}
	p, err := l.connect()
	if err != nil {
		c.dead = fmt.Errorf("transport: dial: %w", err)
		p, _ = newPipe(0, 0)
		p.Close()
	}
	c.cur = p
	return c
}

// Conn is a client connection to a Listener: a one-shard Transport that
// reconnects when its connection is lost (the server closed it, or Break).
// It implements Watcher.
type Conn struct {
	l    *Listener
	join Join

	mu        sync.Mutex
	cur       *pipeEnd
	epoch     Epoch // of cur
	announced Epoch // the newest epoch Recv announced
	closed    bool
	dead      error // reconnecting failed (the listener is closed)
	breakSend int   // Break after this many more Sends (0: off)
	watch     func(Status)
}

// Shards implements Transport: 1.
func (c *Conn) Shards() int { return 1 }

// Join implements Transport.
func (c *Conn) Join() Join { return c.join }

// Watch implements Watcher.
func (c *Conn) Watch(fn func(Status)) {
	c.mu.Lock()
	c.watch = fn
	c.mu.Unlock()
}

// Epoch is the epoch of the current connection (for tests).
func (c *Conn) Epoch() Epoch {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.epoch
}

// Break drops the current connection, as a network failure would (messages
// in flight either way may be lost), and connects again.
func (c *Conn) Break() {
	c.mu.Lock()
	p := c.cur
	c.mu.Unlock()
	c.lost(p, errors.New("connection broken"))
}

// BreakAfter makes the connection Break right after the n-th next Send
// (n >= 1), so that a request reaches the server but its answer is lost.
func (c *Conn) BreakAfter(n int) {
	c.mu.Lock()
	c.breakSend = n
	c.mu.Unlock()
}

// lost replaces connection p, if still current.
func (c *Conn) lost(p *pipeEnd, why error) {
	c.mu.Lock()
	if c.closed || c.dead != nil || c.cur != p {
		c.mu.Unlock()
		return
	}
	p.Close()
	np, err := c.l.connect()
	var st []Status
	st = append(st, Status{State: Reconnecting, Err: why})
	if err != nil {
		c.dead = fmt.Errorf("transport: reconnecting: %w", err)
		st = append(st, Status{State: Lost, Err: c.dead})
	} else {
		c.cur = np
		c.epoch++
	}
	fn := c.watch
	c.mu.Unlock()
	if fn != nil {
		for _, s := range st {
			fn(s)
		}
	}
}

// Send implements Transport.
func (c *Conn) Send(ctx context.Context, shard int, epoch Epoch, head, body []byte) error {
	if err := CheckShard(shard, 1); err != nil {
		return err
	}
	c.mu.Lock()
	switch {
	case c.closed:
		c.mu.Unlock()
		return fmt.Errorf("transport: send: %w", ErrClosed)
	case c.dead != nil:
		err := c.dead
		c.mu.Unlock()
		return err
	case epoch != c.epoch:
		cur := c.epoch
		c.mu.Unlock()
		return fmt.Errorf("transport: send for epoch %d on epoch %d: %w", epoch, cur, ErrStale)
	}
	p := c.cur
	c.mu.Unlock()
	err := p.send(ctx, head, body)
	if err != nil {
		if isPipeClosed(err) {
			c.lost(p, err)
		}
		return fmt.Errorf("transport: send: %w", err)
	}
	c.mu.Lock()
	brk := false
	if c.breakSend > 0 {
		c.breakSend--
		brk = c.breakSend == 0
	}
	c.mu.Unlock()
	if brk {
		c.lost(p, errors.New("connection broken after a send (BreakAfter)"))
	}
	return nil
}

// Recv implements Transport.
func (c *Conn) Recv(ctx context.Context, shard int) ([]byte, Epoch, error) {
	if err := CheckShard(shard, 1); err != nil {
		return nil, 0, err
	}
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, 0, fmt.Errorf("transport: recv: %w", ErrClosed)
		}
		if c.epoch != c.announced {
			c.announced = c.epoch
			e := c.epoch
			c.mu.Unlock()
			return nil, e, fmt.Errorf("transport: epoch %d: %w", e, ErrReconnected)
		}
		if c.dead != nil {
			err := c.dead
			c.mu.Unlock()
			return nil, 0, err
		}
		p, e := c.cur, c.epoch
		c.mu.Unlock()
		msg, err := p.recv(ctx)
		if err == nil {
			return msg, e, nil
		}
		if ctx.Err() != nil {
			return nil, 0, fmt.Errorf("transport: recv: %w", ctx.Err())
		}
		c.lost(p, err)
	}
}

// Close implements Transport.
func (c *Conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	c.cur.Close()
	return nil
}
