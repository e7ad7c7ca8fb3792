//go:build !race

package analysis

// upliftSims is the number of runs of each uplift simulation (250 under
// the race detector: race_on_test.go).
const upliftSims = 1000
