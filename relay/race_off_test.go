//go:build !race && !js && !wasip1

package relay_test

const raceEnabled = false
