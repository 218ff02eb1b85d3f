//go:build race

package kvcore

// raceEnabled: the race detector makes sync.Pool drop items at random, so
// allocation counts of pooled paths mean nothing under it; and it slows
// the biggest workloads tenfold, so they run smaller under it (the same
// code paths, fewer repetitions).
const raceEnabled = true
