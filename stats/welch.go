package stats

import "math"

// MeanResult is Welch's two-sample comparison of the means of a variant and
// a control arm (stats-cases README §3.2).
type MeanResult struct {
	Control Moments
	Variant Moments

	// Diff is ȳ_t − ȳ_c with SE = √(s_t²/n_t + s_c²/n_c) and the interval
	// Diff ∓ TQuantile·SE.
	Diff Estimate

	// T is Diff.Value/SE, DF the Welch–Satterthwaite degrees of freedom
	// (not an integer), P the two-sided p-value 2·F_t(−|T|; DF) and
	// TQuantile is F_t⁻¹(1 − alpha/2; DF).
	T         float64
	DF        float64
	P         float64
	TQuantile float64

	// Lift is ȳ_t/ȳ_c − 1 with its delta-method standard error and a
	// normal (not t) interval. Every field is NaN when ȳ_c = 0.
	Lift Estimate
}

// Welch compares the mean of variant with that of control by Welch's
// unequal-variance t-test (R t.test(variant, control, var.equal=FALSE)) at
// confidence level 1 − alpha. An arm with zero variance is allowed (DF
// becomes n_other − 1); when both have zero variance T, DF and P are NaN.
func Welch(control, variant Moments, alpha float64) MeanResult {
	vc, vt := control.varOfMean(), variant.varOfMean()
	se2 := vc + vt
	se := math.Sqrt(se2)
	df := se2 * se2 / (vt*vt/float64(variant.N-1) + vc*vc/float64(control.N-1))
	if se2 == 0 {
		df = math.NaN()
	}
	diff := variant.Mean - control.Mean
	t := diff / se
	q := tQuantile(alpha, df)
	return MeanResult{
		Control:   control,
		Variant:   variant,
		Diff:      symmetric(diff, se, q),
		T:         t,
		DF:        df,
		P:         tP(t, df),
		TQuantile: q,
		Lift:      relativeLift(control.Mean, variant.Mean, vc, vt, ZQuantile(alpha)),
	}
}
