//go:build !race

package sdk

// raceEnabled: the race detector is off.
const raceEnabled = false
