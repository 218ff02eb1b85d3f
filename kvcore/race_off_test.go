//go:build !race

package kvcore_test

const raceEnabled = false
