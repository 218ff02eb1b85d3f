package relay

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/webkv/webkv/kvcore/transport"
)

func (o DialOptions) withDefaults() DialOptions {
	if o.MaxMessage <= 0 {
		o.MaxMessage = 1<<30 + 4096
	}
	if o.ReconnectMin <= 0 {
		o.ReconnectMin = 50 * time.Millisecond
	}
	if o.ReconnectMax <= 0 {
		o.ReconnectMax = 5 * time.Second
	}
	if o.ReconnectMax < o.ReconnectMin {
		o.ReconnectMax = o.ReconnectMin
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = 60 * time.Second
	}
	if o.GiveUp <= 0 {
		o.GiveUp = 2 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = defaultLogger()
	}
	if o.MaxBuffered <= 0 {
		o.MaxBuffered = 16 << 20
	}
	return o
}

// Conn is a reconnecting websocket link to one relay shard: a
// transport.Transport of one shard (see package kvcore/transport for the
// contract) and a transport.Watcher. Every connection it makes is an
// epoch: a Send for any epoch but the current connection's writes nothing
// (transport.ErrStale), and Recv announces each new connection
// (transport.ErrReconnected with its epoch) before anything read from it.
// It never looks inside a message: what goes first on a new connection is
// its user's business (a dist store's Hello).
//
// Recv must be called with a context that lives as long as the link: the
// websocket library closes the connection when a read's context ends.
type Conn struct {
	url    string
	opts   DialOptions
	protos []string

	mu        sync.Mutex
	cur       *link           // nil while reconnecting
	epoch     transport.Epoch // of cur, or of the one lost while reconnecting
	announced transport.Epoch // the newest epoch Recv announced
	up        chan struct{}   // closed when cur is set, or dead/closed
	dead      error           // reconnection gave up
	closed    bool
	ctx       context.Context // ends at Close: stops reconnecting
	cancel    context.CancelFunc
	wg        sync.WaitGroup // the reconnecting goroutine; Close waits for it

	watch func(transport.Status) // Watch's (under mu)
}

// Watch implements transport.Watcher: fn hears of every reconnection
// attempt (transport.Reconnecting: attempt 0 when the connection is lost,
// then each failed try with its error) and of giving up (transport.Lost),
// so a dist store reports them as events instead of anyone parsing logs.
// fn must not block; it replaces any earlier one.
func (c *Conn) Watch(fn func(transport.Status)) {
	c.mu.Lock()
	c.watch = fn
	c.mu.Unlock()
}

// notify calls the Watch callback, if any (not under mu).
func (c *Conn) notify(st transport.State, attempt int, err error) {
	c.mu.Lock()
	fn := c.watch
	c.mu.Unlock()
	if fn != nil {
		fn(transport.Status{State: st, Attempt: attempt, Err: err})
	}
}

// Dial connects to the relay at url (ws://, wss://, http:// or https://;
// an empty path means /ws) for opts.Job. A relay that cannot be reached
// fails the first attempt at once (kvcore.ErrUnreachable) unless
// opts.WaitForRelay asks to retry it with backoff until ctx ends or
// opts.GiveUp passes; a refusal (kvcore.ErrAuth for a bad token or an
// unknown job, HTTP 4xx and 5xx with the relay's reason) or an untrusted
// certificate is final.
func Dial(ctx context.Context, url string, opts DialOptions) (*Conn, error) {
	if opts.Job == "" {
		return nil, errors.New("relay: dial: DialOptions.Job is empty")
	}
	u, err := wsURL(url, opts.Job, opts.Token)
	if err != nil {
		return nil, fmt.Errorf("relay: dial: %w", err)
	}
	c := &Conn{url: u, opts: opts.withDefaults(), protos: subprotocols(opts.Token)}
	var l *link
	ctx, cancel := context.WithTimeout(ctx, c.opts.GiveUp)
	defer cancel()
	for attempt := 0; ; attempt++ {
		l, err = c.dialOnce(ctx)
		if err == nil {
			break
		}
		if isFinal(err) || ctx.Err() != nil {
			return nil, fmt.Errorf("relay: dial %s: %w", url, err)
		}
		if !c.opts.WaitForRelay {
			return nil, firstDialErr(url, err)
		}
		if !sleepCtx(ctx, c.backoff(attempt)) {
			return nil, fmt.Errorf("relay: dial %s: %w (last error: %v)", url, ctx.Err(), err)
		}
	}
	c.cur, c.epoch, c.announced = l, transport.FirstEpoch, transport.FirstEpoch
	c.up = make(chan struct{})
	close(c.up)
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c, nil
}

// finalError marks a dial error that retrying cannot fix.
type finalError struct{ err error }

func (e *finalError) Error() string { return e.err.Error() }
func (e *finalError) Unwrap() error { return e.err }

func isFinal(err error) bool {
	var f *finalError
	return errors.As(err, &f)
}

func (c *Conn) dialOnce(ctx context.Context) (*link, error) {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	l, status, err := dialLink(dctx, c.url, c.protos, &c.opts)
	if err != nil {
		if status >= 400 {
			return nil, err // classified by dialLink (refusal in dial_notjs.go)
		}
		if isCertError(err) {
			return nil, &finalError{err}
		}
		return nil, err
	}
	return l, nil
}

func (c *Conn) backoff(attempt int) time.Duration {
	d := c.opts.ReconnectMin << min(attempt, 20)
	if d > c.opts.ReconnectMax || d <= 0 {
		d = c.opts.ReconnectMax
	}
	return d/2 + rand.N(d/2+1)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// lost drops link l (if still current) and starts reconnecting in the
// background.
func (c *Conn) lost(l *link, why error) {
	c.mu.Lock()
	if c.closed || c.cur != l || l == nil {
		c.mu.Unlock()
		return
	}
	l.closeNow()
	c.cur = nil
	c.up = make(chan struct{})
	c.opts.info("relay connection lost; reconnecting", "job", c.opts.Job, "err", why)
	c.wg.Add(1)
	go c.reconnect()
	c.mu.Unlock()
	c.notify(transport.Reconnecting, 0, why)
}

func (c *Conn) reconnect() {
	defer c.wg.Done()
	ctx, cancel := context.WithTimeout(c.ctx, c.opts.GiveUp)
	defer cancel()
	var err error
	for attempt := 0; ; attempt++ {
		if !sleepCtx(ctx, c.backoff(attempt)) {
			break
		}
		var l *link
		l, err = c.dialOnce(ctx)
		if err == nil {
			c.mu.Lock()
			if c.closed {
				c.mu.Unlock()
				l.closeNow()
				return
			}
			c.cur = l
			c.epoch++
			close(c.up)
			c.mu.Unlock()
			c.opts.info("relay connection re-established", "job", c.opts.Job, "attempts", attempt+1)
			return
		}
		if isFinal(err) {
			break
		}
		c.notify(transport.Reconnecting, attempt+1, err)
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	if err == nil {
		err = ctx.Err()
	}
	c.dead = fmt.Errorf("relay: gave up reconnecting to %s after %v: %w", c.url, c.opts.GiveUp, err)
	close(c.up)
	dead := c.dead
	c.mu.Unlock()
	c.notify(transport.Lost, 0, dead)
}

// Shards implements transport.Transport: a Conn reaches one shard.
func (c *Conn) Shards() int { return 1 }

// Join implements transport.Transport: what a store's handshake says.
func (c *Conn) Join() transport.Join {
	return transport.Join{Job: c.opts.Job, Token: c.opts.Token, Workers: c.opts.Workers, BigArrayBound: c.opts.BigArrayBound, Resume: c.opts.Resume}
}

// Send implements transport.Transport: head then body as one websocket
// message (two frames, not copied together) on the connection of epoch.
// A Send for a connection that was lost or replaced writes nothing and
// returns an error wrapping transport.ErrStale; a message whose write
// fails is not retried here (its sender resends it after Recv announces
// the next connection), and the connection is dropped.
func (c *Conn) Send(ctx context.Context, shard int, epoch transport.Epoch, head, body []byte) error {
	if err := transport.CheckShard(shard, 1); err != nil {
		return err
	}
	c.mu.Lock()
	switch {
	case c.closed:
		c.mu.Unlock()
		return fmt.Errorf("relay: send: %w", transport.ErrClosed)
	case c.dead != nil:
		err := c.dead
		c.mu.Unlock()
		return err
	case epoch != c.epoch || c.cur == nil:
		cur := c.epoch
		c.mu.Unlock()
		return fmt.Errorf("relay: send for connection epoch %d (now %d, or lost): %w", epoch, cur, transport.ErrStale)
	}
	l := c.cur
	c.mu.Unlock()
	if err := l.send(ctx, head, body, &c.opts); err != nil {
		// A failed or cut write leaves the stream unusable: drop it.
		c.lost(l, err)
		c.mu.Lock()
		closed := c.closed
		c.mu.Unlock()
		if closed {
			return fmt.Errorf("relay: send: %w", transport.ErrClosed)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("relay: send: %w", ctx.Err())
		}
		return fmt.Errorf("relay: send: %w", err)
	}
	return nil
}

// Recv implements transport.Transport. After a reconnection it returns,
// once, an error wrapping transport.ErrReconnected with the new epoch, then
// messages from the new connection.
func (c *Conn) Recv(ctx context.Context, shard int) ([]byte, transport.Epoch, error) {
	if err := transport.CheckShard(shard, 1); err != nil {
		return nil, 0, err
	}
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, 0, fmt.Errorf("relay: recv: %w", transport.ErrClosed)
		}
		if c.cur == nil && c.dead == nil {
			up := c.up
			c.mu.Unlock()
			select {
			case <-up:
				continue
			case <-ctx.Done():
				return nil, 0, fmt.Errorf("relay: recv: %w", ctx.Err())
			}
		}
		if c.dead != nil {
			err := c.dead
			c.mu.Unlock()
			return nil, 0, err
		}
		if c.epoch != c.announced {
			c.announced = c.epoch
			e := c.epoch
			c.mu.Unlock()
			return nil, e, fmt.Errorf("relay: connection re-established (epoch %d): %w", e, transport.ErrReconnected)
		}
		l, e := c.cur, c.epoch
		c.mu.Unlock()
		rctx, cancel := ctx, context.CancelFunc(func() {})
		if c.opts.IdleTimeout > 0 {
			// An expired read context makes the library close the
			// connection, which is what a dead link deserves.
			rctx, cancel = context.WithTimeout(ctx, c.opts.IdleTimeout)
		}
		msg, err := l.recv(rctx)
		cancel()
		if err == nil {
			return msg, e, nil
		}
		if ctx.Err() != nil {
			return nil, 0, fmt.Errorf("relay: recv: %w", ctx.Err())
		}
		c.lost(l, err)
	}
}

// Close implements transport.Transport: reconnecting stops, the
// connection closes (politely: a close frame, its answer awaited for at
// most 5 s) and Send and Recv then fail (transport.ErrClosed). Close
// returns once nothing of the Conn runs any more.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.cancel()
	cur := c.cur
	c.cur = nil
	if c.up != nil {
		select {
		case <-c.up:
		default:
			close(c.up)
		}
	}
	c.mu.Unlock()
	if cur != nil {
		cur.closePolite()
	}
	c.wg.Wait()
	return nil
}

// Kill drops the current connection abruptly without closing the
// transport, as a network failure would (for tests of the reconnection
// path).
func (c *Conn) Kill() {
	c.mu.Lock()
	l := c.cur
	c.mu.Unlock()
	c.lost(l, errors.New("killed"))
}
