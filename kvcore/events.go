package kvcore

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Events of a dist store: what its parameter servers report (rounds closed,
// the job's membership) and the state of its connections, for dashboards
// and for applications that react to peers joining and leaving. A store
// created with Options.Events = fn calls fn with each one; local and device
// stores have nothing to report.
//
// fn runs on one goroutine of its own, in order, never on the engine's or
// the network receiver's: events go through a bounded queue (1024 events)
// and when fn falls that far behind, new events are dropped and counted
// (Event.Dropped on the next delivered one, Store.EventsDropped in total),
// so a slow consumer never stalls training. fn may call the store's
// methods, but not wait for its Close: Close delivers the events queued
// before it and waits for fn to return (at most 10 s).

// EventKind says what an Event reports.
type EventKind uint8

// Event kinds.
const (
	// EventRound: a dist_sync round of Key closed; Round is its number
	// (rounds count from 0 per key). Late: this worker's push came after
	// the round had closed and was not applied (Round is then the key's
	// current round). Rescaled: the round closed at its deadline with a
	// quorum and its sum was rescaled. For a key split over shards, the
	// part on the first shard reports.
	EventRound EventKind = iota + 1
	// EventMembership: the job's members changed, as its first shard
	// reports: NumWorkers, Live (the members' ranks, ascending) and this
	// worker's Rank.
	EventMembership
	// EventConnection: the link to Shard changed state (Conn); Err says
	// why for ConnReconnecting and ConnLost.
	EventConnection
)

func (k EventKind) String() string {
	switch k {
	case EventRound:
		return "round"
	case EventMembership:
		return "membership"
	case EventConnection:
		return "connection"
	}
	return fmt.Sprintf("EventKind(%d)", uint8(k))
}

// ConnState is the state an EventConnection reports.
type ConnState uint8

// Connection states.
const (
	// ConnConnected: the shard welcomed this worker (first join).
	ConnConnected ConnState = iota + 1
	// ConnReconnecting: the transport lost its connection and is trying
	// again (Attempt counts the tries, Err is the last failure); only
	// transports that implement transport.Watcher report it.
	ConnReconnecting
	// ConnReconnected: after a reconnection, the shard welcomed this
	// worker back with its rank; unanswered requests are being resent.
	ConnReconnected
	// ConnLost: the link failed for good (Err); pending and later
	// operations fail with ErrConnLost. Not reported for Store.Close.
	ConnLost
)

func (s ConnState) String() string {
	switch s {
	case ConnConnected:
		return "connected"
	case ConnReconnecting:
		return "reconnecting"
	case ConnReconnected:
		return "reconnected"
	case ConnLost:
		return "lost"
	}
	return fmt.Sprintf("ConnState(%d)", uint8(s))
}

// Event is one report of a dist store (see EventKind for which fields each
// kind sets).
type Event struct {
	Kind EventKind

	// EventRound.
	Key            Key
	Round          uint64
	Late, Rescaled bool

	// EventMembership.
	Rank, NumWorkers int
	Live             []int

	// EventConnection.
	Conn    ConnState
	Shard   int
	Attempt int
	Err     error

	// Dropped is the number of events dropped, because the consumer was
	// slow, between the previous delivered event and this one.
	Dropped uint64
}

// eventQueueSize bounds the events waiting for a slow consumer.
const eventQueueSize = 1024

// EventsDropped is the number of events dropped so far because the
// Options.Events consumer was slow (0 without one).
func (s *Store) EventsDropped() uint64 {
	if r, ok := s.rem.(*distRemote); ok && r.ev != nil {
		return r.ev.total.Load()
	}
	return 0
}

// eventQueue delivers events to fn on its own goroutine. A nil queue drops
// everything silently (no Options.Events).
type eventQueue struct {
	fn      func(Event)
	mu      sync.Mutex
	ch      chan Event
	closed  bool
	dropped uint64        // since the last queued event (under mu)
	total   atomic.Uint64 // all dropped
	done    chan struct{}
}

func newEventQueue(fn func(Event)) *eventQueue {
	if fn == nil {
		return nil
	}
	q := &eventQueue{fn: fn, ch: make(chan Event, eventQueueSize), done: make(chan struct{})}
	go q.loop()
	return q
}

func (q *eventQueue) loop() {
	defer close(q.done)
	for e := range q.ch {
		q.fn(e)
	}
}

// emit queues e without blocking; a full queue drops it.
func (q *eventQueue) emit(e Event) {
	if q == nil {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	e.Dropped = q.dropped
	select {
	case q.ch <- e:
		q.dropped = 0
	default:
		q.dropped++
		q.total.Add(1)
	}
}

// close stops accepting events and waits until those queued were
// delivered and the delivery goroutine exited, so that it does not outlive
// the store's Close; a consumer that blocks longer than closeDrain (one
// that waits for Close itself, say) is left behind rather than waited for.
func (q *eventQueue) close() {
	if q == nil {
		return
	}
	q.mu.Lock()
	if !q.closed {
		q.closed = true
		close(q.ch)
	}
	q.mu.Unlock()
	t := time.NewTimer(closeDrain)
	defer t.Stop()
	select {
	case <-q.done:
	case <-t.C:
	}
}
