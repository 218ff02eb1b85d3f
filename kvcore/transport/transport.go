// Package transport is the seam between a dist store and its parameter
// server: a Transport carries encoded kvcore/wire messages to each shard of
// the server and back. Package relay implements it over websockets,
// kvcore/psm/inproc over in-memory pipes (Pipe, Listener); kvcore's dist
// store is its one user.
//
// # Epochs
//
// A Transport to a shard is a sequence of connections: when one is lost, a
// reconnecting transport replaces it. Connections are numbered by Epoch:
// the first is epoch 1 (FirstEpoch) and every replacement has a larger one.
// Every message is sent for one epoch and received from one epoch, so the
// two sides of the seam never disagree on which connection a message
// belongs to.
//
// # Contract
//
// Send(ctx, shard, epoch, head, body) writes head followed by body (body may
// be nil) as one message on shard's connection of that epoch, without
// copying them together first; the caller may reuse both once Send returns.
// If epoch is not the shard's current connection (it was replaced, whether
// or not Recv has announced the replacement yet), Send writes nothing and
// returns an error wrapping ErrStale. Messages sent on one connection arrive
// whole and in the order Send was called, or not at all. Send may block
// while the peer does not read (back-pressure: a transport buffers a bounded
// number of bytes, never an unbounded queue); when ctx ends first Send
// returns ctx's error, and a transport that cannot take back a partly
// written message drops that connection (the next epoch follows). Calls to
// Send for one shard are made one at a time; they may run concurrently with
// Recv and Close and with Sends to other shards.
//
// Recv(ctx, shard) returns the next message from shard and the epoch it
// arrived on; the slice stays valid until the next Recv of that shard. One
// goroutine per shard calls Recv. After the transport replaced the shard's
// connection, Recv returns, once, an error wrapping ErrReconnected with the
// new connection's epoch (if it replaced several before Recv could say so,
// only the newest is announced); later messages come from that connection.
// Messages sent on the old connection may or may not have arrived, and
// nothing sent before the announcement can reach the new connection.
// Any other Recv error is permanent for the shard.
//
// Close unblocks every Send and Recv (they return errors wrapping ErrClosed)
// and releases the transport; a second Close does nothing.
//
// # Who gates what after a reconnect
//
// The transport gates connections: a message goes out only on the epoch it
// was sent for, so nothing meant for a lost connection slips onto its
// replacement, and nothing at all reaches a connection before Recv announced
// it (its epoch is unknown until then). The transport never looks inside a
// message.
//
// The store's worker state machine (kvcore/internal/wsm) gates content: for
// every shard and every epoch, the first message it emits is the Hello; it
// emits pings only after that Hello, and requests only after the Welcome
// (then it resends every unanswered request with its original sequence
// number, which the server answers without applying it twice). The dist
// driver passes each message to Send with the epoch the state machine
// stamped on it, and feeds each announcement to the state machine.
//
// Together: after a reconnect, the Hello is the first thing the server sees
// on the new connection, on every shard, whatever the goroutines race.
package transport

import (
	"context"
	"errors"
	"fmt"
)

// Epoch numbers the connections a Transport makes to one shard.
type Epoch uint64

// FirstEpoch is the epoch of a shard's first connection.
const FirstEpoch Epoch = 1

// Transport carries wire messages between a dist store and the shards of
// its parameter server. See the package documentation for the contract.
type Transport interface {
	// Shards is the number of parameter-server shards reached (at least
	// 1); it never changes.
	Shards() int
	// Join is what the store's handshake says. It has no side effects.
	Join() Join
	// Send writes head then body as one message on shard's connection of
	// epoch.
	Send(ctx context.Context, shard int, epoch Epoch, head, body []byte) error
	// Recv returns shard's next message and the epoch it came on, or an
	// error wrapping ErrReconnected with the epoch of a new connection.
	Recv(ctx context.Context, shard int) ([]byte, Epoch, error)
	// Close releases the transport; Send and Recv then fail with ErrClosed.
	Close() error
}

// Join is what a dist store's handshake carries.
type Join struct {
	// Job names the job to join; Token is its access token.
	Job, Token string
	// Workers, if > 0, makes the first join wait until that many workers
	// joined the job (MXNet's DMLC_NUM_WORKER), so that ranks and the
	// number of workers are final before training starts.
	Workers int
	// BigArrayBound is the element count from which keys are split over
	// every shard (0: wire.DefaultBigArrayBound); all workers of a job
	// must agree on it.
	BigArrayBound int
	// Resume lets the worker's inits continue a run that the job's keys
	// hold from earlier (without it such an init is refused: reusing a
	// job id must not silently resume old weights).
	Resume bool
}

// Watcher is implemented by transports that reconnect by themselves: Watch
// makes them report each attempt and the end of trying (the store passes
// them on as connection events). fn must not block; a later Watch replaces
// an earlier fn.
type Watcher interface {
	Watch(fn func(Status))
}

// State is a connection state a Watcher reports.
type State uint8

// States a Watcher reports.
const (
	// Reconnecting: the shard's connection was lost (Attempt 0) or a try
	// to replace it failed (Attempt n, Err the failure).
	Reconnecting State = iota + 1
	// Lost: the transport gave up on the shard (Err says why); Recv fails
	// for good.
	Lost
)

func (s State) String() string {
	switch s {
	case Reconnecting:
		return "reconnecting"
	case Lost:
		return "lost"
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// Status is one report of a Watcher.
type Status struct {
	Shard   int
	State   State
	Attempt int
	Err     error
}

// Errors of the contract, matched with errors.Is; implementations wrap
// them with their package's prefix.
var (
	// ErrReconnected is wrapped by Recv's announcement of a new connection.
	ErrReconnected = errors.New("reconnected")
	// ErrStale is wrapped by the error of a Send for an epoch that is not
	// the shard's current connection: nothing was sent.
	ErrStale = errors.New("stale connection epoch")
	// ErrClosed is wrapped by errors after Close. kvcore.ErrClosed is the
	// same sentinel: one "closed" for stores and their transports.
	ErrClosed = errors.New("closed")
	// ErrNoShard is wrapped by the error of a Send or Recv for a shard the
	// transport does not have.
	ErrNoShard = errors.New("no such shard")
)

// CheckShard returns an error wrapping ErrNoShard unless 0 <= shard < n
// (for implementations).
func CheckShard(shard, n int) error {
	if shard < 0 || shard >= n {
		return fmt.Errorf("transport: shard %d of %d: %w", shard, n, ErrNoShard)
	}
	return nil
}

// Shards combines transports to the shards of one job, in shard order, into
// one Transport: shard i of the result is the i-th shard of the list, taken
// in order. They must agree on Join (the job, its token, the worker count
// and the big-array bound).
func Shards(ts ...Transport) (Transport, error) {
	if len(ts) == 0 {
		return nil, errors.New("transport: shards: no transport given")
	}
	s := &shards{}
	for i, t := range ts {
		if t == nil {
			return nil, fmt.Errorf("transport: shards: transport %d is nil", i)
		}
		if i > 0 && t.Join() != ts[0].Join() {
			return nil, fmt.Errorf("transport: shards: transport %d joins %+v, transport 0 %+v", i, redact(t.Join()), redact(ts[0].Join()))
		}
		for j := range t.Shards() {
			s.ts = append(s.ts, t)
			s.idx = append(s.idx, j)
		}
	}
	s.all = ts
	s.join = ts[0].Join()
	return s, nil
}

func redact(j Join) Join {
	if j.Token != "" {
		j.Token = "(token)"
	}
	return j
}

type shards struct {
	all  []Transport
	ts   []Transport // by shard
	idx  []int       // the shard's index in its transport
	join Join
}

func (s *shards) Shards() int { return len(s.ts) }
func (s *shards) Join() Join  { return s.join }

func (s *shards) Send(ctx context.Context, shard int, epoch Epoch, head, body []byte) error {
	if err := CheckShard(shard, len(s.ts)); err != nil {
		return err
	}
	return s.ts[shard].Send(ctx, s.idx[shard], epoch, head, body)
}

func (s *shards) Recv(ctx context.Context, shard int) ([]byte, Epoch, error) {
	if err := CheckShard(shard, len(s.ts)); err != nil {
		return nil, 0, err
	}
	return s.ts[shard].Recv(ctx, s.idx[shard])
}

// Close closes every transport; the first error is returned.
func (s *shards) Close() error {
	var first error
	for _, t := range s.all {
		if err := t.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Watch passes fn to every transport that is a Watcher, with shard numbers
// of the combined transport.
func (s *shards) Watch(fn func(Status)) {
	base := 0
	for _, t := range s.all {
		if w, ok := t.(Watcher); ok {
			off := base
			w.Watch(func(st Status) {
				st.Shard += off
				fn(st)
			})
		}
		base += t.Shards()
	}
}
