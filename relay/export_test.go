//go:build !js && !wasip1

package relay

import (
	"context"
	"time"
)

// SetSaveDelay makes every checkpoint of s take d longer (tests of a
// relay whose job goroutines are busy).
func SetSaveDelay(s *Server, d time.Duration) { s.db.delaySave.Store(int64(d)) }

// WaitStatus waits until cond holds of s.Status() or ctx ends (it returns
// the last Status read, and ctx's error if it ended first). It reads
// Status again at each change of the counts it reports (see changes), not
// at intervals.
func WaitStatus(ctx context.Context, s *Server, cond func(Status) bool) (Status, error) {
	for {
		next := s.changes.next()
		st := s.Status()
		if cond(st) {
			return st, nil
		}
		select {
		case <-next:
		case <-ctx.Done():
			return st, ctx.Err()
		}
	}
}
