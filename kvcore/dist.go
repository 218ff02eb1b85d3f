package kvcore

import (
	"context"
	"errors"
	"fmt"

	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/kvcore/wire"
)

// Dist mode (dist_sync, dist_async, dist_device_sync).
//
// A dist store talks to parameter servers through Transports that carry
// kvcore/wire messages; the servers are kvcore/psm state machines, run by
// package relay over websockets or by kvcore/psm/inproc over Pipes:
//
//	srv := inproc.New(psm.Config{}) // tests: no sockets
//	s, _ := kvcore.Create(ctx, "dist_sync", &kvcore.Options{Transport: srv.Connect("job", 4)})
//	s, _ := kvcore.Create(ctx, "dist_sync", &kvcore.Options{Transport: kvcore.Shards{t0, t1}})
//
// Create sends a Hello (JoinInfo from a Transport implementing Joiner) to
// shard 0, then to the other shards asking for the same rank, and returns
// once every shard welcomed it: Rank and NumWorkers come from shard 0.
// Keys are placed with wire.Place (big keys split over every shard). Init
// sends every worker's value and the servers keep rank 0's; Push and
// PushPull send the locally reduced value (or the 2bit/1bit words, with one
// residual per key); Pull receives the value. Each request carries a
// per-shard sequence number; a request stays pending until answered, and
// after a reconnect (Recv reporting ErrReconnected) the store resumes its
// worker id and resends all pending requests, which the servers answer
// without applying twice. Sends run on one goroutine per shard and answers
// on another, so engine workers never wait on the network; a heartbeat
// goroutine pings every shard. Close sends Leave (so others' rounds do not
// wait for this worker's timeout), stops the goroutines and closes the
// transports; an operation pending on a transport that failed for good
// fails with ErrConnLost. Options.Events hears what happens meanwhile (rounds
// closed, membership notices, connection state; see Event).

// remote is a dist store's link to its parameter server(s).
type remote interface {
	rank() int
	numWorkers() int
	// init creates k on the servers with rank 0's data and returns once the
	// key exists for every worker.
	init(ctx context.Context, k Key, shape []int, data []float32) error
	// push sends this worker's merged value of k (n values; data holds the
	// packed words when c.Kind != compute.CompressNone). data stays valid until done
	// is called, once the server acknowledged the push (dist_sync: once the
	// round closed).
	push(k Key, data []float32, n int, c compute.Compression, done func(error))
	// pull fills out with the server's value of k, then calls done.
	pull(k Key, out []float32, done func(error))
	// pushPull is push then pull in one round trip.
	pushPull(k Key, data []float32, n int, c compute.Compression, out []float32, done func(error))
	barrier(ctx context.Context) error
	command(ctx context.Context, head int, body []byte) error
	setOptimizer(ctx context.Context, spec []byte) error
	setCompression(ctx context.Context, c compute.Compression) error
	saveStates(ctx context.Context) (*stateSnapshot, error)
	loadStates(ctx context.Context, s *stateSnapshot) error
	close() error
}

// Transport carries encoded wire messages (package kvcore/wire) between a
// dist store and one parameter server (one relay shard). Pipe gives an
// in-memory pair; package relay gives a reconnecting websocket one.
//
// Contract, as the store's remote uses it:
//
//   - Send sends one whole message. The remote never calls Send
//     concurrently with itself, but Send runs concurrently with Recv and
//     Close. msg may be reused by the caller once Send returns. Send may
//     block while a reconnecting transport waits for its next connection.
//   - Recv returns the next message; the slice stays valid until the next
//     Recv. One goroutine calls Recv, with a context that lives as long as
//     the store.
//   - Reconnection: a transport that replaces a lost connection returns an
//     error wrapping ErrReconnected from Recv once. Messages sent before it
//     may or may not have arrived. The remote then sends a Hello with its
//     worker id (resuming its rank) and resends every request that has no
//     answer yet with its original sequence number; the server answers a
//     request it already applied from its cache, so every push is applied
//     exactly once. A Send that fails while the connection is down is
//     harmless: its request is resent after ErrReconnected.
//   - Any other Recv error is permanent: operations waiting on the store
//     fail with ErrConnLost (wrapping the transport's error) instead of
//     hanging, and later operations fail at once.
//   - Close unblocks Send and Recv (they return errors) and releases the
//     transport. The store calls it from Store.Close, and also when Recv
//     failed for good; a second call must do nothing.
type Transport interface {
	Send(ctx context.Context, msg []byte) error
	Recv(ctx context.Context) ([]byte, error)
	Close() error
}

// PartSender is an optional Transport method: send head followed by body as
// one message, without first copying them together (a websocket writer can
// write both into one frame). The remote uses it for pushes when present.
type PartSender interface {
	SendParts(ctx context.Context, head, body []byte) error
}

// Joiner is an optional Transport method giving what the remote's handshake
// says: the job to join, its token and how many workers to wait for.
// Without it the remote joins job "" with no token and waits for no one.
type Joiner interface {
	JoinInfo() JoinInfo
}

// JoinInfo is what a dist store's handshake carries.
type JoinInfo struct {
	Job   string
	Token string
	// Workers, if > 0, makes the first join wait until that many workers
	// joined the job (MXNet's DMLC_NUM_WORKER), so that ranks and
	// NumWorkers are final before training starts.
	Workers int
	// BigArrayBound is the element count from which keys are split over
	// every shard (0: wire.DefaultBigArrayBound); all workers of a job must
	// agree on it.
	BigArrayBound int
}

// Shards is a Transport made of one Transport per parameter-server shard;
// give it to Options.Transport to shard a dist store's keys with wire.Place:
// big keys are split over all shards, small ones placed by hash, and
// commands, barriers and optimizer settings reach every shard. Shards
// carries no messages itself (Send and Recv fail); Close closes every
// shard. JoinInfo comes from the first shard that implements Joiner.
type Shards []Transport

// Send fails: a Shards value is only a list of transports.
func (s Shards) Send(ctx context.Context, msg []byte) error {
	return errors.New("kvcore: Shards carries no messages itself; pass it as Options.Transport")
}

// Recv fails: a Shards value is only a list of transports.
func (s Shards) Recv(ctx context.Context) ([]byte, error) {
	return nil, errors.New("kvcore: Shards carries no messages itself; pass it as Options.Transport")
}

// Close closes every shard's transport.
func (s Shards) Close() error {
	var first error
	for _, t := range s {
		if err := t.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Dist-mode errors.
var (
	// ErrReconnected is wrapped by a Transport's Recv error after it
	// replaced a lost connection (see Transport).
	ErrReconnected = errors.New("transport reconnected")
	// ErrConnLost is wrapped by the errors of operations that were pending
	// or issued after a transport failed for good.
	ErrConnLost = errors.New("connection to the parameter server lost")
	// ErrServer is wrapped by errors the parameter server returned that
	// have no more specific kvcore error.
	ErrServer = errors.New("parameter server error")
	// ErrAuth is wrapped by the error of a dist store that the parameter
	// server (or its relay) refused: wrong or missing token, unknown job.
	// Retrying does not help.
	ErrAuth = errors.New("access refused by the parameter server")
)

// serverErr turns a wire error into a kvcore error: the matching kvcore
// sentinel (so errors.Is(err, ErrDuplicateInit) works in dist mode too) and
// the server's text.
func serverErr(e *wire.Error) error {
	var s error
	switch e.Code {
	case wire.CodeReinit:
		s = ErrDuplicateInit
	case wire.CodeUnknownKey:
		s = ErrUnknownKey
	case wire.CodeShape:
		s = ErrShapeMismatch
	case wire.CodeBadCompression:
		s = ErrBadCompression
	case wire.CodeBadStates:
		s = ErrBadStates
	case wire.CodeBadOptimizer:
		s = ErrBadOptimizer
	case wire.CodeUpdater:
		s = ErrUpdater
	case wire.CodeMode:
		s = ErrUnsupported
	case wire.CodeAuth:
		s = ErrAuth
	default:
		s = ErrServer
	}
	return fmt.Errorf("%w (server: %w)", s, e)
}

func newRemote(ctx context.Context, typ string, async bool, t Transport, events func(Event)) (remote, error) {
	ts := []Transport{t}
	if sh, ok := t.(Shards); ok {
		if len(sh) == 0 {
			return nil, fmt.Errorf("dist: Shards is empty: %w", ErrNoTransport)
		}
		ts = sh
	}
	var info JoinInfo
	for _, x := range ts {
		if x == nil {
			return nil, fmt.Errorf("dist: nil transport: %w", ErrNoTransport)
		}
		if j, ok := x.(Joiner); ok {
			info = j.JoinInfo()
			break
		}
	}
	mode := wire.ModeSync
	if async {
		mode = wire.ModeAsync
	}
	return dialRemote(ctx, ts, mode, info, events)
}
