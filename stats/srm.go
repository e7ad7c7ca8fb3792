package stats

import (
	"math"
	"slices"
)

// SRMResult is a sample-ratio-mismatch test: Pearson's χ² goodness of fit
// of the observed arm sizes to the configured traffic weights (stats-cases
// README §3.5, R chisq.test(observed, p = w/sum(w))).
type SRMResult struct {
	Observed []int64
	// Expected[i] is N·w_i/Σw.
	Expected []float64
	// ChiSq is Σ(O_i − E_i)²/E_i on DF = arms − 1 degrees of freedom, and
	// P is P(χ²_DF > ChiSq). A small P means the assignment or the
	// exposure logging is broken and the comparison cannot be trusted.
	ChiSq float64
	DF    int
	P     float64
}

// SRM tests the observed arm sizes against the configured weights, which
// are normalised by their sum. observed and weights are in the same arm
// order. With fewer than two arms, a weights slice of another length, or weights that do not sum to a positive
// number, ChiSq and P are NaN. An arm with weight 0 and no units adds
// nothing; one with units makes ChiSq infinite and P 0.
func SRM(observed []int64, weights []float64) SRMResult {
	res := SRMResult{
		Observed: slices.Clone(observed),
		Expected: make([]float64, len(observed)),
		ChiSq:    math.NaN(),
		DF:       len(observed) - 1,
		P:        math.NaN(),
	}
	if len(observed) < 2 || len(weights) != len(observed) {
		return res
	}
	var n int64
	var wsum float64
	for i := range observed {
		n += observed[i]
		wsum += weights[i]
	}
	if !(wsum > 0) {
		return res
	}
	var chi float64
	for i, o := range observed {
		e := float64(n) * weights[i] / wsum
		res.Expected[i] = e
		d := float64(o) - e
		if d != 0 {
			chi += d * d / e
		}
	}
	res.ChiSq = chi
	res.P = chiSquareP(chi, res.DF)
	return res
}
