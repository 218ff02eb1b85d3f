package kvcore

import (
	"context"
	"errors"
	"sync"

	"github.com/webkv/webkv/kvcore/internal/bufpool"
)

// ErrPipeClosed is returned by a Pipe end's Send after either end closed,
// and by Recv once the messages sent before the close are read.
var ErrPipeClosed = errors.New("kvcore: pipe closed")

// Pipe returns two connected in-memory Transports: what one end sends, the
// other receives, in order, with no size limit and no loss. Send copies the
// message (into a pooled buffer), so the caller may reuse it at once; the
// slice Recv returns stays valid until the next Recv on that end. Closing
// either end closes both: the peer receives what was already sent, then
// ErrPipeClosed.
//
// Package kvcore/psm/inproc serves psm jobs over pipes, which gives tests a
// complete dist store without sockets.
func Pipe() (Transport, Transport) {
	a, b := newPipeQueue(), newPipeQueue()
	return &pipeEnd{in: a, out: b}, &pipeEnd{in: b, out: a}
}

type pipeQueue struct {
	mu     sync.Mutex
	msgs   []*[]byte // queued messages are msgs[head:]
	head   int
	closed bool
	signal chan struct{} // capacity 1: "something changed"
}

func newPipeQueue() *pipeQueue { return &pipeQueue{signal: make(chan struct{}, 1)} }

func (q *pipeQueue) notify() {
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

func (q *pipeQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.notify()
}

type pipeEnd struct {
	in, out *pipeQueue
	last    *[]byte // the message Recv returned last, recycled at the next Recv
}

func (p *pipeEnd) Send(ctx context.Context, msg []byte) error {
	return p.SendParts(ctx, msg, nil)
}

// SendParts sends head and body as one message (PartSender).
func (p *pipeEnd) SendParts(ctx context.Context, head, body []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b := bufpool.Get(len(head) + len(body))
	*b = append(append(*b, head...), body...)
	q := p.out
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		bufpool.Put(b)
		return ErrPipeClosed
	}
	q.msgs = append(q.msgs, b)
	q.mu.Unlock()
	q.notify()
	return nil
}

// Recv is called from one goroutine at a time (the Transport contract).
func (p *pipeEnd) Recv(ctx context.Context) ([]byte, error) {
	if p.last != nil {
		bufpool.Put(p.last)
		p.last = nil
	}
	q := p.in
	for {
		q.mu.Lock()
		if q.head < len(q.msgs) {
			b := q.msgs[q.head]
			q.msgs[q.head] = nil
			q.head++
			if q.head == len(q.msgs) {
				// Empty: reuse the slice from its start (no allocation in
				// steady state).
				q.msgs, q.head = q.msgs[:0], 0
			}
			q.mu.Unlock()
			p.last = b
			return *b, nil
		}
		closed := q.closed
		q.mu.Unlock()
		if closed {
			q.notify() // let other waiters see it too
			return nil, ErrPipeClosed
		}
		select {
		case <-q.signal:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (p *pipeEnd) Close() error {
	p.in.close()
	p.out.close()
	return nil
}
