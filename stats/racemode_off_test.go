//go:build !race

package stats

// regretRuns is the number of simulated tests per policy in
// TestBanditRegret: the 500 of the table in BENCHMARKS.md.
const regretRuns = 500
