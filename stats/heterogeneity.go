package stats

import (
	"math"

	"gonum.org/v1/gonum/stat/distuv"
)

// HeterogeneityResult is Cochran's Q test that several independent
// estimates share one true value.
type HeterogeneityResult struct {
	// Pooled is the inverse-variance weighted mean Σwᵢdᵢ/Σwᵢ, wᵢ = 1/seᵢ².
	Pooled float64
	// Q is Σwᵢ(dᵢ − Pooled)², DF the number of estimates used minus one,
	// and P the upper tail of χ²(DF) at Q.
	Q  float64
	DF int
	P  float64
}

// CochranQ tests whether the estimates d (with standard errors se) differ
// by more than their noise: under the hypothesis of one common value, Q is
// asymptotically χ² with k − 1 degrees of freedom (Cochran 1954; the
// heterogeneity test of meta-analysis, as in R metafor::rma(method="FE")
// QE). Pairs whose estimate or standard error is not finite, or whose
// standard error is not positive, are skipped. With fewer than two usable
// estimates, Q, P and Pooled are NaN and DF is 0.
func CochranQ(d, se []float64) HeterogeneityResult {
	var sw, swd float64
	k := 0
	for i := range d {
		if !usable(d[i], se[i]) {
			continue
		}
		w := 1 / (se[i] * se[i])
		sw += w
		swd += w * d[i]
		k++
	}
	if k < 2 {
		return HeterogeneityResult{Pooled: math.NaN(), Q: math.NaN(), P: math.NaN()}
	}
	pooled := swd / sw
	q := 0.0
	for i := range d {
		if !usable(d[i], se[i]) {
			continue
		}
		r := d[i] - pooled
		q += r * r / (se[i] * se[i])
	}
	df := k - 1
	return HeterogeneityResult{Pooled: pooled, Q: q, DF: df, P: distuv.ChiSquared{K: float64(df)}.Survival(q)}
}

func usable(d, se float64) bool {
	return !math.IsNaN(d) && !math.IsInf(d, 0) && se > 0 && !math.IsInf(se, 0)
}
