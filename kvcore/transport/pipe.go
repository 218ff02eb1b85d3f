package transport

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/webkv/webkv/kvcore/internal/bufpool"
)

// PipeCapacity is how many unread bytes a Pipe end holds before Send blocks
// (a message larger than that is taken when nothing is unread).
const PipeCapacity = 16 << 20

// errPipeClosed is what a pipe end's Send and Recv return after either end
// closed (Recv once the messages sent before are read).
var errPipeClosed = fmt.Errorf("transport: pipe: %w", ErrClosed)

// Pipe returns two connected in-memory Transports of one shard each: what
// one end sends, the other receives, in order and without loss. There is
// one connection (epoch 1) and it is never replaced. Send copies the
// message into a pooled buffer; it blocks while PipeCapacity bytes wait
// unread on the other end. Closing either end closes both: the peer
// receives what was already sent, then errors wrapping ErrClosed. Join is
// the zero Join.
func Pipe() (Transport, Transport) {
	a, b := newPipe(PipeCapacity, PipeCapacity)
	return a, b
}

// newPipe returns connected ends; capAB bounds the bytes a sends that b has
// not read (<= 0: unbounded), capBA the other way.
func newPipe(capAB, capBA int) (*pipeEnd, *pipeEnd) {
	ab, ba := newPipeQueue(capAB), newPipeQueue(capBA)
	return &pipeEnd{in: ba, out: ab}, &pipeEnd{in: ab, out: ba}
}

type pipeQueue struct {
	mu     sync.Mutex
	msgs   []*[]byte // queued messages are msgs[head:]
	head   int
	bytes  int // bytes queued
	cap    int // <= 0: unbounded
	closed bool
	data   chan struct{} // capacity 1: "a message was queued, or closed"
	space  chan struct{} // capacity 1: "a message was taken, or closed"
	// Goroutines waiting on data and on space (under mu): a put or take
	// signals only when someone waits, so the common case, a reader already
	// waiting and a sender with room, costs one channel operation a
	// message, not three.
	takers, putters int
}

func newPipeQueue(capacity int) *pipeQueue {
	return &pipeQueue{cap: capacity, data: make(chan struct{}, 1), space: make(chan struct{}, 1)}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

func (q *pipeQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	signal(q.data)
	signal(q.space)
}

// put queues head+body, waiting for room.
func (q *pipeQueue) put(ctx context.Context, head, body []byte) error {
	n := len(head) + len(body)
	q.mu.Lock()
	for {
		if q.closed {
			q.mu.Unlock()
			return errPipeClosed
		}
		if q.cap <= 0 || q.bytes == 0 || q.bytes+n <= q.cap {
			b := bufpool.Get(n)
			*b = append(append(*b, head...), body...)
			q.msgs = append(q.msgs, b)
			q.bytes += n
			wake := q.takers > 0
			more := q.putters > 0 && (q.cap <= 0 || q.bytes < q.cap)
			q.mu.Unlock()
			if wake {
				signal(q.data)
			}
			if more {
				signal(q.space) // another waiting sender may fit too
			}
			return nil
		}
		q.putters++
		q.mu.Unlock()
		var err error
		select {
		case <-q.space:
		case <-ctx.Done():
			err = ctx.Err()
		}
		q.mu.Lock()
		q.putters--
		if err != nil {
			q.mu.Unlock()
			return err
		}
	}
}

// take returns the next message, waiting for one.
func (q *pipeQueue) take(ctx context.Context) (*[]byte, error) {
	q.mu.Lock()
	for {
		if q.head < len(q.msgs) {
			b := q.msgs[q.head]
			q.msgs[q.head] = nil
			q.head++
			if q.head == len(q.msgs) {
				// Empty: reuse the slice from its start (no allocation in
				// steady state).
				q.msgs, q.head = q.msgs[:0], 0
			}
			q.bytes -= len(*b)
			wake := q.putters > 0
			q.mu.Unlock()
			if wake {
				signal(q.space)
			}
			return b, nil
		}
		if q.closed {
			q.mu.Unlock()
			signal(q.data) // let another waiter see it too
			return nil, errPipeClosed
		}
		q.takers++
		q.mu.Unlock()
		var err error
		select {
		case <-q.data:
		case <-ctx.Done():
			err = ctx.Err()
		}
		q.mu.Lock()
		q.takers--
		if err != nil {
			q.mu.Unlock()
			return nil, err
		}
	}
}

type pipeEnd struct {
	in, out *pipeQueue
	last    *[]byte // the message Recv returned last, recycled at the next Recv
}

func (p *pipeEnd) Shards() int { return 1 }
func (p *pipeEnd) Join() Join  { return Join{} }

func (p *pipeEnd) Send(ctx context.Context, shard int, epoch Epoch, head, body []byte) error {
	if err := CheckShard(shard, 1); err != nil {
		return err
	}
	if epoch != FirstEpoch {
		return fmt.Errorf("transport: send for epoch %d, a pipe has only epoch %d: %w", epoch, FirstEpoch, ErrStale)
	}
	return p.send(ctx, head, body)
}

func (p *pipeEnd) send(ctx context.Context, head, body []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return p.out.put(ctx, head, body)
}

// Recv is called from one goroutine at a time (the Transport contract).
func (p *pipeEnd) Recv(ctx context.Context, shard int) ([]byte, Epoch, error) {
	if err := CheckShard(shard, 1); err != nil {
		return nil, 0, err
	}
	b, err := p.recv(ctx)
	return b, FirstEpoch, err
}

func (p *pipeEnd) recv(ctx context.Context) ([]byte, error) {
	if p.last != nil {
		bufpool.Put(p.last)
		p.last = nil
	}
	b, err := p.in.take(ctx)
	if err != nil {
		return nil, err
	}
	p.last = b
	return *b, nil
}

func (p *pipeEnd) Close() error {
	p.in.close()
	p.out.close()
	return nil
}

// isPipeClosed reports an error of a closed pipe (not of a context).
func isPipeClosed(err error) bool { return errors.Is(err, errPipeClosed) }
