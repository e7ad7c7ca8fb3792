package stats

import "math"

// ANCOVAResult is the ordinary least-squares fit of
//
//	y = β₀ + Σ_k β_k·1[arm = k] + γ·x + ε
//
// with the first arm as the reference level and classical (homoskedastic)
// standard errors: R lm(y ~ arm + x). It cross-checks CUPED (stats-cases
// README §3.4); its standard errors use the residual variance pooled over
// the whole model, so they differ from Welch's when the arms differ in size
// or variance.
type ANCOVAResult struct {
	// Slope is γ, the within-arm regression slope of y on x.
	Slope float64
	// DF is the residual degrees of freedom, N − arms − 1.
	DF int64
	// Effects[i] is β for arms[i+1]: its difference from arms[0] at equal
	// x, with a t interval on DF degrees of freedom.
	Effects []Effect
}

// Effect is one coefficient of a linear model with its t-test.
type Effect struct {
	Diff Estimate
	T    float64
	P    float64
}

// ANCOVA fits the model from per-arm sufficient statistics; arms[0] is the
// control. With an intercept per arm the least-squares solution has a closed
// form in the within-arm sums of squares S (pooled over arms):
//
//	γ     = S_xy / S_xx
//	β_k   = (ȳ_k − ȳ_c) − γ·(x̄_k − x̄_c)
//	σ̂²    = (S_yy − γ·S_xy) / (N − arms − 1)
//	SE_k² = σ̂²·(1/n_k + 1/n_c + (x̄_k − x̄_c)²/S_xx)
//
// which matches the normal equations of the dummy-coded design matrix
// exactly. When x is constant within every arm γ is not identified: Slope
// is NaN and the effects are those of the model without x (as R lm does
// when it drops the aliased column), on N − arms degrees of freedom.
func ANCOVA(arms []Summary, alpha float64) ANCOVAResult {
	var n int64
	var sxx, sxy, syy float64
	for _, a := range arms {
		n += a.N
		if a.N < 2 {
			continue // a single unit has no within-arm spread
		}
		w := float64(a.N - 1)
		sxx += w * a.VarX()
		sxy += w * a.CovXY()
		syy += w * a.Var()
	}
	params := int64(len(arms)) + 1
	slope, rss := sxy/sxx, syy-sxy*sxy/sxx
	if !(sxx > 0) {
		params--
		slope, sxx, rss = math.NaN(), math.Inf(1), syy
	}
	df := n - params
	sigma2 := rss / float64(df)
	gamma := slope
	if math.IsNaN(gamma) {
		gamma = 0
	}
	q := tQuantile(alpha, float64(df))

	res := ANCOVAResult{Slope: slope, DF: df}
	if len(arms) == 0 {
		return res
	}
	c := arms[0]
	for _, a := range arms[1:] {
		dx := a.MeanX() - c.MeanX()
		beta := a.Mean() - c.Mean() - gamma*dx
		se := math.Sqrt(sigma2 * (1/float64(a.N) + 1/float64(c.N) + dx*dx/sxx))
		t := beta / se
		res.Effects = append(res.Effects, Effect{
			Diff: symmetric(beta, se, q),
			T:    t,
			P:    tP(t, float64(df)),
		})
	}
	return res
}
