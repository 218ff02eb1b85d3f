//go:build !js && !wasip1

package relay

import "time"

// SetSaveDelay makes every checkpoint of s take d longer (tests of a
// relay whose job goroutines are busy).
func SetSaveDelay(s *Server, d time.Duration) { s.db.delaySave.Store(int64(d)) }
