//go:build race

package stats

// regretRuns is 100 under the race detector, which makes the posterior
// draws about seven times slower (31 s for 500 runs); the normal build runs
// the 500 of the table in BENCHMARKS.md.
const regretRuns = 100
