//go:build !race

package kvcore

const raceEnabled = false
