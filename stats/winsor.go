package stats

import (
	"math"
	"slices"
)

// Winsorising: a metric with a cap has each unit's value limited before it
// enters the sums, so a few extreme units (a bulk buyer, a bot) cannot
// dominate the variance. The server computes the cap percentile in SQL
// (percentile_cont); Percentile is the same definition for tests and for
// callers that hold the values.

// Cap returns v limited to at most limit, the winsorised value of v. A NaN
// limit means no cap.
func Cap(v, limit float64) float64 {
	if math.IsNaN(limit) || v <= limit {
		return v
	}
	return limit
}

// Percentile returns the q-quantile (0 ≤ q ≤ 1) of values by linear
// interpolation between the order statistics: with the n values sorted,
// h = (n−1)·q and the result is x₍⌊h⌋₎ + (h−⌊h⌋)·(x₍⌊h⌋+1₎ − x₍⌊h⌋₎).
// This is PostgreSQL percentile_cont, R quantile type 7 and numpy's
// default. It does not modify values. It returns NaN for no values, a q
// outside [0, 1], or NaN values.
func Percentile(values []float64, q float64) float64 {
	if len(values) == 0 || !(q >= 0 && q <= 1) || slices.ContainsFunc(values, math.IsNaN) {
		return math.NaN()
	}
	s := slices.Sorted(slices.Values(values))
	h := float64(len(s)-1) * q
	lo := int(math.Floor(h))
	if lo >= len(s)-1 {
		return s[len(s)-1]
	}
	return s[lo] + (h-float64(lo))*(s[lo+1]-s[lo])
}
