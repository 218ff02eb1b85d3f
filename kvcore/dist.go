package kvcore

import (
	"context"
	"errors"
	"fmt"
	"unsafe"

	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/kvcore/internal/wsm"
	"github.com/webkv/webkv/kvcore/transport"
	"github.com/webkv/webkv/kvcore/wire"
)

// Dist mode (dist_sync, dist_async, dist_device_sync).
//
// A dist store talks to its parameter servers through a transport.Transport
// (one connection per server shard) that carries kvcore/wire messages; the
// servers are kvcore/psm state machines, run by package relay over
// websockets or by kvcore/psm/inproc in memory:
//
//	srv := inproc.New(psm.Config{}) // tests: no sockets
//	s, _ := kvcore.Create(ctx, "dist_sync", &kvcore.Options{Transport: srv.Connect("job", 4)})
//	t, _ := transport.Shards(t0, t1) // a job sharded over two servers
//	s, _ := kvcore.Create(ctx, "dist_sync", &kvcore.Options{Transport: t})
//
// The protocol itself is the worker state machine of kvcore/internal/wsm;
// the store drives it (dist_remote.go). Create joins shard 0 (the
// transport's Join says the job, its token and how many workers to wait
// for), then the other shards asking for the same rank, and returns once
// every shard welcomed it: Rank and NumWorkers come from shard 0. Keys are
// placed with wire.Place (big keys split over every shard). Init sends the
// value from rank 0 only (MXNet: rank 0's value wins) and returns once the
// key exists for every worker; Push and PushPull send the locally reduced
// value (or the 2bit/1bit words, with one residual per key); Pull receives
// the value. Small keys travel batched, many per message; a window bounds
// what is in flight per shard. After a reconnection (on any shard, in any
// order) the store says Hello first, resumes its worker id and resends the
// unanswered requests, which the servers answer without applying twice.
// Sends run on one goroutine per shard and answers on another, so engine
// workers never wait on the network. Close sends Leave (so others' rounds
// do not wait for this worker's timeout), stops the goroutines and closes
// the transport; an operation pending on a transport that failed for good
// fails with ErrConnLost. Options.Events hears what happens meanwhile
// (rounds closed, membership notices, connection state; see Event).
//
// Per key, dist operations run in issue order, as MXNet's dist store does:
// PushPullList pushes and pulls each key in turn (a pull never overtakes
// the push of its own key).

// remote is a dist store's link to its parameter server(s).
type remote interface {
	rank() int
	numWorkers() int
	// initList creates keys on the servers with rank 0's data and returns
	// once each exists for every worker (or failed: errs[i] is keys[i]'s).
	initList(ctx context.Context, keys []Key, shapes [][]int, data [][]float32) (errs []error)
	// push sends this worker's merged value of k (n values; data holds the
	// packed words when c.Kind != compute.CompressNone). data stays valid until done
	// is called, once the server acknowledged the push (dist_sync: once the
	// round closed).
	push(k Key, data []float32, n int, c compute.Compression, done func(error))
	// pull fills out with the server's value of k, then calls done.
	pull(k Key, out []float32, done func(error))
	// pushPull is push then pull in one round trip.
	pushPull(k Key, data []float32, n int, c compute.Compression, out []float32, done func(error))
	// list starts items together, pushes (compressed as c) if push, then
	// pulls if pull; sink hears how each ends, once each, possibly before
	// list returns. An item with dn < 0 failed before the network: list
	// skips it (the caller reports it). Small whole keys of plain pushes
	// or pulls go in list requests, one per shard and distListBytes of
	// values (gs: the groups' buffers, kept until their groupDone), the
	// others as requests of their own (batched on the wire).
	list(push, pull bool, c compute.Compression, items []listItem, sink listSink, gs *[]listGroup)
	// rowPush and rowPull are push and pull of rows (rows of width
	// values, back to back in data and out; dist_rows.go).
	rowPush(k Key, rows []uint32, width int, data []float32, done func(error))
	rowPull(k Key, rows []uint32, width int, out []float32, done func(error))
	barrier(ctx context.Context) error
	command(ctx context.Context, head int, body []byte) error
	setOptimizer(ctx context.Context, spec []byte) error
	setCompression(ctx context.Context, c compute.Compression) error
	saveStates(ctx context.Context) (*stateSnapshot, error)
	loadStates(ctx context.Context, s *stateSnapshot) error
	close() error
}

// listSink hears how the items of a list call end.
type listSink interface {
	// itemDone reports items[i], sent on its own.
	itemDone(i int, err error)
	// groupDone reports the items g.idx, sent as one list request; for a
	// pull, g.vals holds their values back to back, in g.idx order.
	groupDone(g *listGroup, err error)
}

// listGroup is the items of a list call that go as one list request.
type listGroup struct {
	idx   []int32
	keys  []*wsm.Key
	vals  []float32 // a push's values gathered, or a pull's answer
	elems int       // the keys' elements
	req   wsm.ListReq
	c     *call // the list request's token
}

// listItem is one key of a list call (remote.list): a push of its dn
// words at data (n values, compressed as the call says), a pull of its n
// values into out, or both. What is the same for every key of a call
// (push, pull, the compression) is the call's, not the item's: an item
// is one cache line (64 bytes on 64-bit platforms), written once per key
// by the call and read by each pass after (RATIONALE: "Why is a list
// call's item one cache line, and a key of one array added without
// loops?").
type listItem struct {
	k    Key
	data *float32 // a push's first word (nil: a pull only)
	out  *float32 // where a pull's answer goes (nil: a push only)
	n    int
	dn   int // a push's words; -1: the key failed before the network
}

// words returns the dn words of a push item.
func (it *listItem) words() []float32 { return unsafe.Slice(it.data, it.dn) }

// outs returns the n values a pull item's answer goes into.
func (it *listItem) outs() []float32 { return unsafe.Slice(it.out, it.n) }

// Dist-mode errors.
var (
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
	case wire.CodeOrigin:
		s = ErrOrigin
	case wire.CodeEarlierRun:
		s = ErrEarlierRun
	case wire.CodeWorkerCount:
		s = ErrWorkerCount
	default:
		s = ErrServer
	}
	return fmt.Errorf("%w (server: %w)", s, e)
}

func newRemote(ctx context.Context, typ string, async bool, t transport.Transport, events func(Event)) (remote, error) {
	if t == nil {
		return nil, fmt.Errorf("nil transport: %w", ErrNoTransport)
	}
	mode := wire.ModeSync
	if async {
		mode = wire.ModeAsync
	}
	return dialRemote(ctx, t, mode, events)
}
