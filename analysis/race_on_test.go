//go:build race

package analysis

// upliftSims is the number of runs of each uplift simulation: under the
// race detector, which makes them about 40 times slower, the first 250 of
// the 1,000 runs of a plain `go test` (same seeds).
const upliftSims = 250
