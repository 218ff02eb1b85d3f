package kvcore

// PLACEHOLDER: the dist-mode link is built by the relay work.

import "context"

// remote is a dist store's link to its parameter server(s).
type remote interface {
	rank() int
	numWorkers() int
	// init creates k on the servers with rank 0's data and returns once the
	// key exists for every worker.
	init(ctx context.Context, k Key, shape []int, data []float32) error
	// push sends this worker's merged value of k (n values; data holds the
	// packed words when c.Kind != CompressNone). data stays valid until done
	// is called, once the server acknowledged the push (dist_sync: once the
	// round closed).
	push(k Key, data []float32, n int, c Compression, done func(error))
	// pull fills out with the server's value of k, then calls done.
	pull(k Key, out []float32, done func(error))
	// pushPull is push then pull in one round trip.
	pushPull(k Key, data []float32, n int, c Compression, out []float32, done func(error))
	barrier(ctx context.Context) error
	command(ctx context.Context, head int, body []byte) error
	setOptimizer(ctx context.Context, spec []byte) error
	setCompression(ctx context.Context, c Compression) error
	saveStates(ctx context.Context) (*stateSnapshot, error)
	loadStates(ctx context.Context, s *stateSnapshot) error
	close() error
}

// Transport carries encoded wire messages between a dist store and its
// relay. Pipe gives an in-memory pair; package relay gives a websocket one.
type Transport interface {
	Send(ctx context.Context, msg []byte) error
	Recv(ctx context.Context) ([]byte, error)
	Close() error
}

func newRemote(ctx context.Context, typ string, async bool, t Transport) (remote, error) {
	return nil, ErrNoTransport
}
