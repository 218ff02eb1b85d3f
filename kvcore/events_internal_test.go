package kvcore

import "testing"

// A consumer that does not keep up loses events, counted, and never makes
// emit wait; the first event delivered after a gap says how many it missed.
func TestEventQueueDropsForSlowConsumer(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	got := make(chan Event, 2*eventQueueSize)
	q := newEventQueue(func(e Event) {
		<-release
		got <- e
	})
	const n = 3 * eventQueueSize
	// emit never waits: with the consumer stuck, a blocking emit would
	// hang here.
	for i := range n {
		q.emit(Event{Kind: EventRound, Round: uint64(i)})
	}
	dropped := q.total.Load()
	// At most one event is in the consumer's hands and eventQueueSize wait.
	if dropped < n-eventQueueSize-1 {
		t.Errorf("dropped %d of %d, want at least %d", dropped, n, n-eventQueueSize-1)
	}
	close(release)
	// Once the consumer caught up (it delivered every queued event), an
	// event gets through and says how many were dropped since the last one
	// queued.
	var rounds []uint64
	var sum uint64
	for range n - int(dropped) {
		e := <-got
		rounds = append(rounds, e.Round)
		sum += e.Dropped
	}
	q.emit(Event{Kind: EventRound, Round: 1e9})
	q.close()                                   // delivers the marker, waits for the consumer
	q.emit(Event{Kind: EventRound, Round: 2e9}) // after close: ignored, no panic
	close(got)
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
