//go:build race && !js && !wasip1

package relay_test

// raceEnabled: the race detector slows the biggest workloads tenfold; they
// run smaller under it (the same code paths, fewer repetitions).
const raceEnabled = true
