//go:build js

package relay

import (
	"log/slog"
	"time"
)

// The browser's DialOptions: options_notjs.go's without Header and
// TLSConfig (the browser sets the upgrade request's headers and verifies
// certificates itself), so that webkv's browser runtime links neither
// net/http nor crypto/tls (see RATIONALE.md, "Why is the browser runtime
// small?"). TestDialOptionsTwins keeps the two in step.

// DialOptions configure a client connection to a relay.
type DialOptions struct {
	// Job is the job id (required); Token its access token (empty for an
	// open relay). The token travels as a "webkv.token.<token>"
	// subprotocol, which browsers can set, never as a header.
	Job, Token string
	// Workers is the job's worker count (MXNet's DMLC_NUM_WORKER): the
	// job's start waits until that many workers joined, so ranks are final
	// before training starts, and every worker's NumWorkers says it. Every
	// worker of a job must give the same count, or 0 to take the job's
	// (set by the relay's -workers or the job's first worker); another
	// count is refused (kvcore.ErrWorkerCount).
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
	// WaitForRelay retries the first connection with backoff (until ctx
	// ends or GiveUp passes), for workers started before their relay.
	// Without it a relay that cannot be reached fails Dial at once
	// (kvcore.ErrUnreachable, naming the address); reconnections after a
	// session existed are always retried.
	WaitForRelay bool
	// Resume lets this worker's Init continue a run of the job that its
	// keys hold from earlier (its workers all left, or the relay restarted
	// on its data). Without it such an Init fails (kvcore.ErrEarlierRun):
	// reusing a job id must not silently resume old weights.
	Resume bool
	// IdleTimeout is how long Recv waits for any message before it deems
	// the connection dead and reconnects (default 60 s; the store pings
	// every heartbeat and the relay answers each ping, so a healthy
	// connection is never silent that long). It also bounds the transfer
	// of one message. Negative disables it.
	IdleTimeout time.Duration
	// MaxBuffered bounds the bytes a browser's WebSocket may hold unsent
	// before Send waits (default 16 MiB; GOOS=js only: WebSocket.send never
	// blocks by itself). Natively the socket's own buffers bound it.
	MaxBuffered int
	// Logger receives reconnection events natively (default
	// slog.Default()). The browser build does not use it: a store's
	// "connection" events report them there, and calling slog would add
	// about 30 KB gzipped to the runtime.
	Logger *slog.Logger
	// Traffic, if set, counts the bytes of this client's connections
	// (every shard, every reconnection; see Traffic for what a browser
	// counts).
	Traffic *Traffic
}

// isCertError is false in the browser: a WebSocket that fails for an
// untrusted certificate reports no more than any other failed dial.
func isCertError(error) bool { return false }

// defaultLogger is none: in the browser a store's "connection" events
// report what the log would.
func defaultLogger() *slog.Logger { return nil }

// info logs nothing in the browser (see DialOptions.Logger).
func (o *DialOptions) info(msg string, args ...any) {}
