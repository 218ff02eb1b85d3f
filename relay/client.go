package relay

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/webkv/webkv/kvcore"
	"github.com/webkv/webkv/kvcore/wire"
	"nhooyr.io/websocket"
)

// DialOptions configure a client connection to a relay.
type DialOptions struct {
	// Job is the job id (required); Token its access token (empty for an
	// open relay). The token travels as a "webkv.token.<token>"
	// subprotocol, which browsers can set, never as a header.
	Job, Token string
	// Workers, if > 0, makes the job's first join wait until that many
	// workers joined (MXNet's DMLC_NUM_WORKER), so ranks are final before
	// training starts.
	Workers int
	// BigArrayBound is the element count from which keys are split over
	// every shard (0: MXNet's 1,000,000); all workers must agree.
	BigArrayBound int
	// MaxMessage is the largest message accepted from the relay (the
	// websocket read limit; the library's 32 KiB default is far too small
	// for arrays). Default 1 GiB + header.
	MaxMessage int64
	// ReconnectMin and ReconnectMax bound the exponential backoff between
	// reconnection attempts (defaults 50 ms and 5 s); each wait is drawn
	// uniformly from [d/2, d] (jitter) so that workers cut off together do
	// not reconnect in lockstep.
	ReconnectMin, ReconnectMax time.Duration
	// GiveUp is how long the client keeps trying to reconnect before Recv
	// and Send fail for good (default 2 min).
	GiveUp time.Duration
	// IdleTimeout is how long Recv waits for any message before it deems
	// the connection dead and reconnects (default 60 s; the store pings
	// every heartbeat and the relay answers each ping, so a healthy
	// connection is never silent that long). It also bounds the transfer
	// of one message. Negative disables it.
	IdleTimeout time.Duration
	// Header is added to the HTTP upgrade request (native only; browsers
	// set their own, e.g. Origin).
	Header http.Header
	// TLSConfig is used for wss:// URLs (native only).
	TLSConfig *tls.Config
	// Logger receives reconnection events (default slog.Default()).
	Logger *slog.Logger
}

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
		o.Logger = slog.Default()
	}
	return o
}

// ErrReconnected is returned once by Recv after the connection was lost and
// a new one established. Messages sent on the old connection may or may not
// have arrived, and the new connection knows nothing yet: the caller must
// handshake again (Hello with its worker id) and resend the requests it has
// not had answers to (same seq; the relay answers a retried request without
// applying it twice).
// It wraps kvcore.ErrReconnected, the Transport contract's sentinel.
var ErrReconnected = fmt.Errorf("relay: connection re-established; handshake again and resend unanswered requests: %w", kvcore.ErrReconnected)

// ErrClosed is returned after Close.
var ErrClosed = errors.New("relay: transport closed")

// Conn is a reconnecting websocket link to a relay. It implements
// kvcore.Transport (with its reconnection contract), kvcore.PartSender and
// kvcore.Joiner: Send and Recv may be called concurrently (one Recv at a
// time). The slice Recv returns stays valid until the next Recv.
//
// Recv must be called with a context that lives as long as the link: the
// websocket library closes the connection when a read's context ends.
type Conn struct {
	url    string
	opts   DialOptions
	protos []string

	mu      sync.Mutex
	cur     *link
	gen     uint64        // incremented per established link
	up      chan struct{} // closed when cur is set, or dead/closed
	dead    error         // reconnection gave up
	closed  bool
	closeCh chan struct{}

	recvGen  uint64 // generation Recv last read from (Recv is single-caller; guarded by mu)
	helloGen uint64 // generation a Hello was sent on
	store    bool   // a kvcore store speaks through c (JoinInfo was called): Hello goes first on every connection

	watch func(kvcore.ConnState, int, error) // WatchConn's (under mu)
}

// WatchConn implements kvcore.ConnWatcher: fn hears of every reconnection
// attempt (kvcore.ConnReconnecting: attempt 0 when the connection is lost,
// then each failed try with its error) and of giving up (kvcore.ConnLost),
// so a dist store reports them as events instead of anyone parsing logs.
// fn must not block; it replaces any earlier one.
func (c *Conn) WatchConn(fn func(state kvcore.ConnState, attempt int, err error)) {
	c.mu.Lock()
	c.watch = fn
	c.mu.Unlock()
}

// notify calls the WatchConn callback, if any (not under mu).
func (c *Conn) notify(st kvcore.ConnState, attempt int, err error) {
	c.mu.Lock()
	fn := c.watch
	c.mu.Unlock()
	if fn != nil {
		fn(st, attempt, err)
	}
}

// Dial connects to the relay at url (ws://, wss://, http:// or https://;
// an empty path means /ws) for opts.Job. The first connection attempt is
// retried with backoff until ctx ends or opts.GiveUp passes, so workers may
// start before their relay; an HTTP refusal (bad token, unknown job, bad
// origin) or an untrusted certificate is final.
func Dial(ctx context.Context, url string, opts DialOptions) (*Conn, error) {
	if opts.Job == "" {
		return nil, errors.New("relay: dial: DialOptions.Job is empty")
	}
	u, err := wsURL(url, opts.Job, opts.Token)
	if err != nil {
		return nil, fmt.Errorf("relay: dial: %w", err)
	}
	c := &Conn{url: u, opts: opts.withDefaults(), protos: subprotocols(opts.Token), closeCh: make(chan struct{})}
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
		if !sleepCtx(ctx, c.backoff(attempt)) {
			return nil, fmt.Errorf("relay: dial %s: %w (last error: %v)", url, ctx.Err(), err)
		}
	}
	c.cur, c.gen, c.recvGen = l, 1, 1
	c.up = make(chan struct{})
	close(c.up)
	return c, nil
}

// finalError marks a dial error that retrying cannot fix.
type finalError struct{ err error }

func (e *finalError) Error() string { return e.err.Error() }
func (e *finalError) Unwrap() error { return e.err }

// isCertError reports a TLS certificate the client does not trust: waiting
// does not fix that.
func isCertError(err error) bool {
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	return errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &hn) || errors.As(err, &ci)
}

func isFinal(err error) bool {
	var f *finalError
	return errors.As(err, &f)
}

func (c *Conn) dialOnce(ctx context.Context) (*link, error) {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c.mu.Lock()
	u := c.url
	c.mu.Unlock()
	l, resp, err := dialLink(dctx, u, c.protos, &c.opts)
	if err != nil {
		if resp != nil && resp.StatusCode >= 400 && resp.StatusCode < 500 {
			return nil, &finalError{fmt.Errorf("relay refused the connection (HTTP %d): %w", resp.StatusCode, err)}
		}
		if isCertError(err) {
			return nil, &finalError{err}
		}
		return nil, err
	}
	l.ws.SetReadLimit(c.opts.MaxMessage)
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

// get waits for a live link.
func (c *Conn) get(ctx context.Context) (*link, uint64, error) {
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, 0, ErrClosed
		}
		if c.dead != nil {
			err := c.dead
			c.mu.Unlock()
			return nil, 0, err
		}
		if c.cur != nil {
			l, g := c.cur, c.gen
			c.mu.Unlock()
			return l, g, nil
		}
		up := c.up
		c.mu.Unlock()
		select {
		case <-up:
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		}
	}
}

// lost drops link generation gen (if still current) and starts
// reconnecting in the background.
func (c *Conn) lost(gen uint64, why error) {
	c.mu.Lock()
	if c.closed || c.gen != gen || c.cur == nil {
		c.mu.Unlock()
		return
	}
	c.cur.ws.CloseNow()
	c.cur = nil
	c.up = make(chan struct{})
	c.opts.Logger.Info("relay connection lost; reconnecting", "job", c.opts.Job, "err", why)
	go c.reconnect()
	c.mu.Unlock()
	c.notify(kvcore.ConnReconnecting, 0, why)
}

func (c *Conn) reconnect() {
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.GiveUp)
	defer cancel()
	go func() {
		select {
		case <-c.closeCh:
			cancel()
		case <-ctx.Done():
		}
	}()
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
				l.ws.CloseNow()
				return
			}
			c.cur = l
			c.gen++
			close(c.up)
			c.mu.Unlock()
			c.opts.Logger.Info("relay connection re-established", "job", c.opts.Job, "attempts", attempt+1)
			return
		}
		if isFinal(err) {
			break
		}
		c.notify(kvcore.ConnReconnecting, attempt+1, err)
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
	c.notify(kvcore.ConnLost, 0, dead)
}

// Send writes one message. If the connection is down it waits (bounded by
// ctx) for the next one; a message whose write fails is not retried here:
// the caller resends it after Recv reports ErrReconnected.
func (c *Conn) Send(ctx context.Context, msg []byte) error {
	l, gen, err := c.get(ctx)
	if err != nil {
		return fmt.Errorf("relay: send: %w", err)
	}
	if err := c.checkGen(gen, msg); err != nil {
		return err
	}
	if err := l.send(ctx, msg); err != nil {
		if ctx.Err() == nil {
			c.lost(gen, err)
		}
		return fmt.Errorf("relay: send: %w", err)
	}
	return nil
}

// SendParts sends head followed by body as one message without copying them
// together: the two writes go into one websocket message (two frames).
func (c *Conn) SendParts(ctx context.Context, head, body []byte) error {
	l, gen, err := c.get(ctx)
	if err != nil {
		return fmt.Errorf("relay: send: %w", err)
	}
	if err := c.checkGen(gen, head); err != nil {
		return err
	}
	if err := l.sendParts(ctx, head, body); err != nil {
		if ctx.Err() == nil {
			c.lost(gen, err)
		}
		return fmt.Errorf("relay: send: %w", err)
	}
	return nil
}

// errUnannounced is returned by a send on a new connection that Recv has
// not yet reported as ErrReconnected.
var errUnannounced = errors.New("relay: send: connection replaced; the request is resent after the reconnect is reported")

// checkGen refuses msg on connection generation gen until Recv has
// reported the reconnect and the store's Hello went out on it: a request or
// ping before the Hello is a protocol error the server answers by closing
// the connection, and the store's sender can pick a message just before the
// reconnect is reported. The store resends every unanswered request after
// its Hello, so a refused one is not lost.
func (c *Conn) checkGen(gen uint64, msg []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.recvGen {
		return errUnannounced
	}
	if c.store && c.helloGen != gen {
		if len(msg) <= 3 || wire.Type(msg[3]) != wire.TypeHello {
			return errUnannounced
		}
		c.helloGen = gen
	}
	return nil
}

// JoinInfo implements kvcore.Joiner: what the store's Hello carries.
//
// It also tells c that a kvcore store's remote speaks through it, so after
// a reconnect c lets nothing but the store's Hello go out first (see
// checkGen); a plain Send/Recv user of Conn is not held to that.
func (c *Conn) JoinInfo() kvcore.JoinInfo {
	c.mu.Lock()
	c.store = true
	c.mu.Unlock()
	return kvcore.JoinInfo{Job: c.opts.Job, Token: c.opts.Token, Workers: c.opts.Workers, BigArrayBound: c.opts.BigArrayBound}
}

// Recv returns the next message. After a reconnection it returns
// ErrReconnected once, then messages from the new connection.
func (c *Conn) Recv(ctx context.Context) ([]byte, error) {
	for {
		l, gen, err := c.get(ctx)
		if err != nil {
			return nil, fmt.Errorf("relay: recv: %w", err)
		}
		c.mu.Lock()
		fresh := gen != c.recvGen
		c.recvGen = gen
		c.mu.Unlock()
		if fresh {
			return nil, ErrReconnected
		}
		rctx, cancel := ctx, context.CancelFunc(func() {})
		if c.opts.IdleTimeout > 0 {
			// An expired read context makes the library close the
			// connection, which is what a dead link deserves.
			rctx, cancel = context.WithTimeout(ctx, c.opts.IdleTimeout)
		}
		msg, err := l.recv(rctx)
		cancel()
		if err == nil {
			return msg, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("relay: recv: %w", ctx.Err())
		}
		c.lost(gen, err)
	}
}

// Close closes the connection and stops reconnecting.
func (c *Conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	close(c.closeCh)
	if c.cur != nil {
		// Close sends a close frame and waits (up to 5 s) for the answer;
		// CloseNow would drop queued bytes, so do the polite close
		// asynchronously.
		ws := c.cur.ws
		go ws.Close(websocket.StatusNormalClosure, "")
		c.cur = nil
	}
	if c.up != nil {
		select {
		case <-c.up:
		default:
			close(c.up)
		}
	}
	return nil
}

// Kill drops the current connection abruptly without closing the
// transport, as a network failure would (for tests of the reconnection
// path).
func (c *Conn) Kill() {
	c.mu.Lock()
	gen := c.gen
	c.mu.Unlock()
	c.lost(gen, errors.New("killed"))
}
