package stats

// CUPED is a fitted CUPED adjustment (Deng, Xu, Kohavi & Walker 2013,
// stats-cases README §3.3). The covariate x is the same metric measured
// before exposure; each unit's value becomes Y′ = Y − θ·(X − X̄).
//
// θ is fitted once over every unit of every arm, never per arm or per
// comparison: the arms share θ, so the adjustment cannot favour one of them
// and the adjusted difference stays unbiased.
type CUPED struct {
	// Theta is cov(X, Y)/var(X) over all units, or 0 (no adjustment) when
	// X is constant.
	Theta float64
	// MeanX is X̄ over all units.
	MeanX float64
	// VarY is var(Y) and VarAdjusted is var(Y′), over all units.
	VarY        float64
	VarAdjusted float64
	// VarianceReduction is 1 − VarAdjusted/VarY, which equals corr(X, Y)².
	VarianceReduction float64
}

// FitCUPED fits θ from the summaries of every arm of the experiment.
func FitCUPED(arms ...Summary) CUPED {
	var all Summary
	for _, a := range arms {
		all = all.Merge(a)
	}
	varX := all.VarX()
	theta := 0.0
	if varX > 0 {
		theta = all.CovXY() / varX
	}
	varY := all.Var()
	varAdj := adjustedVar(all, theta)
	return CUPED{
		Theta:             theta,
		MeanX:             all.MeanX(),
		VarY:              varY,
		VarAdjusted:       varAdj,
		VarianceReduction: 1 - varAdj/varY,
	}
}

// Adjust returns the size, mean and sample variance of Y′ = Y − θ·(X − X̄)
// over the units of one arm, computed from its sums: the mean is
// ȳ − θ·(x̄ − X̄) and, because X̄ is a constant within the arm, the variance
// is var(Y) − 2θ·cov(X, Y) + θ²·var(X), all with n−1 denominators.
func (c CUPED) Adjust(s Summary) Moments {
	return Moments{
		N:    s.N,
		Mean: s.Mean() - c.Theta*(s.MeanX()-c.MeanX),
		Var:  adjustedVar(s, c.Theta),
	}
}

func adjustedVar(s Summary, theta float64) float64 {
	v := s.Var() - 2*theta*s.CovXY() + theta*theta*s.VarX()
	if v < 0 { // rounding, when Y is an exact linear function of X
		v = 0
	}
	return v
}

// CUPEDResult is Welch's test on CUPED-adjusted values.
type CUPEDResult struct {
	// MeanResult is Welch's test of Y′, variant vs control. Its Lift is
	// the ratio of the adjusted means.
	MeanResult
	// Theta is the θ of the fit.
	Theta float64
	// VarianceReduction is 1 − SE′²/SE², where SE′ is the standard error
	// of the adjusted difference and SE that of the raw difference.
	VarianceReduction float64
}

// Compare runs Welch's test on the adjusted values of variant and control
// at confidence level 1 − alpha.
func (c CUPED) Compare(control, variant Summary, alpha float64) CUPEDResult {
	adj := Welch(c.Adjust(control), c.Adjust(variant), alpha)
	raw := control.Moments().varOfMean() + variant.Moments().varOfMean()
	return CUPEDResult{
		MeanResult:        adj,
		Theta:             c.Theta,
		VarianceReduction: 1 - adj.Diff.SE*adj.Diff.SE/raw,
	}
}
