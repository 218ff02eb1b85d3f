package kvcore

import (
	"testing"
	"time"
)

// A consumer that does not keep up loses events, counted, and never makes
// emit wait; the first event delivered after a gap says how many it missed.
func TestEventQueueDropsForSlowConsumer(t *testing.T) {
	release := make(chan struct{})
	got := make(chan Event, 2*eventQueueSize)
	q := newEventQueue(func(e Event) {
		<-release
		got <- e
	})
	const n = 3 * eventQueueSize
	start := time.Now()
	for i := range n {
		q.emit(Event{Kind: EventRound, Round: uint64(i)})
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("emitting %d events to a stuck consumer took %v", n, d)
	}
	dropped := q.total.Load()
	// At most one event is in the consumer's hands and eventQueueSize wait.
	if dropped < n-eventQueueSize-1 {
		t.Errorf("dropped %d of %d, want at least %d", dropped, n, n-eventQueueSize-1)
	}
	close(release)
	// Once the consumer caught up, an event gets through and says how
	// many were dropped since the last one queued.
	for len(q.ch) > 0 {
		time.Sleep(time.Millisecond)
	}
	q.emit(Event{Kind: EventRound, Round: 1e9})
	q.close()
	q.emit(Event{Kind: EventRound, Round: 2e9}) // after close: ignored, no panic
	<-q.done
	close(got)
	var rounds []uint64
	var sum uint64
	for e := range got {
		rounds = append(rounds, e.Round)
		sum += e.Dropped
	}
	for i := 1; i < len(rounds); i++ {
		if rounds[i] <= rounds[i-1] {
			t.Fatalf("events out of order: %d after %d", rounds[i], rounds[i-1])
		}
	}
	if rounds[len(rounds)-1] != 1e9 {
		t.Errorf("last delivered round %d, want the marker 1e9", rounds[len(rounds)-1])
	}
	if sum != dropped || uint64(len(rounds)-1)+dropped != n {
		t.Errorf("delivered %d (Dropped fields sum to %d), dropped %d, of %d", len(rounds)-1, sum, dropped, n)
	}
}
