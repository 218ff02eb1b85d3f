package kvcore

// RaceEnabled is raceEnabled for the external tests (package kvcore_test).
const RaceEnabled = raceEnabled

// SetCallWorkers sets how many goroutines prepare s's dist list calls of
// several engine operations (0: GOMAXPROCS), whatever the machine.
func SetCallWorkers(s *Store, n int) {
	s.mu.Lock()
	s.callWorkers = n
	s.mu.Unlock()
}
