// Package optstate holds what store and parameter server share about
// optimizer states: the states file format ("WKVS") that
// kvcore.Store.SaveOptimizerStates writes and LoadOptimizerStates reads.
package optstate
