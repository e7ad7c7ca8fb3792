package stats

import "math"

// RatioSummary is the sufficient statistics of one arm for a ratio metric,
// such as revenue per session or clicks per page view, where each unit
// contributes a numerator and a denominator. The metric is
// ΣNum/ΣDen over the arm: a ratio of two means, not a mean of per-unit
// ratios.
type RatioSummary struct {
	N         int64   // units
	SumNum    float64 // Σnum
	SumDen    float64 // Σden
	SumNumSq  float64 // Σnum²
	SumDenSq  float64 // Σden²
	SumNumDen float64 // Σnum·den
}

// Add accumulates one unit.
func (r *RatioSummary) Add(num, den float64) {
	r.N++
	r.SumNum += num
	r.SumDen += den
	r.SumNumSq += num * num
	r.SumDenSq += den * den
	r.SumNumDen += num * den
}

// Ratio returns ΣNum/ΣDen, or NaN when ΣDen is 0.
func (r RatioSummary) Ratio() float64 {
	if r.SumDen == 0 {
		return math.NaN()
	}
	return r.SumNum / r.SumDen
}

// VarRatio returns the delta-method variance of Ratio. The units are the
// independent observations, so with per-unit sample (co)variances s (n−1
// denominators), mean denominator d̄ and R = Ratio,
//
//	Var(R) ≈ (s_num² − 2R·s_num,den + R²·s_den²) / (n·d̄²),
//
// the variance of the mean of the linearised values (num − R·den)/d̄ (Deng,
// Knoblich & Lu, "Applying the Delta Method in Metric Analytics", KDD 2018).
func (r RatioSummary) VarRatio() float64 {
	ratio := r.Ratio()
	dbar := mean(r.SumDen, r.N)
	snn := comoment(r.SumNumSq, r.SumNum, r.SumNum, r.N)
	sdd := comoment(r.SumDenSq, r.SumDen, r.SumDen, r.N)
	snd := comoment(r.SumNumDen, r.SumNum, r.SumDen, r.N)
	v := (snn - 2*ratio*snd + ratio*ratio*sdd) / (float64(r.N) * dbar * dbar)
	if v < 0 { // rounding, when num is exactly proportional to den
		v = 0
	}
	return v
}

// RatioResult is the comparison of a ratio metric between a variant and a
// control arm.
type RatioResult struct {
	// Control and Variant are the two ratios.
	Control float64
	Variant float64
	// Diff is Variant − Control with SE = √(Var_t + Var_c) and a normal
	// interval.
	Diff Estimate
	// Z is Diff.Value/SE and P its two-sided p-value 2·Φ(−|Z|).
	Z float64
	P float64
	// Lift is Variant/Control − 1 with its delta-method standard error and
	// a normal interval; NaN when Control is 0.
	Lift Estimate
}

// RatioTest compares a ratio metric between variant and control by the
// delta method and a z-test at confidence level 1 − alpha. The normal
// approximation needs enough units per arm (hundreds, not tens).
func RatioTest(control, variant RatioSummary, alpha float64) RatioResult {
	z := ZQuantile(alpha)
	rc, rt := control.Ratio(), variant.Ratio()
	vc, vt := control.VarRatio(), variant.VarRatio()
	diff := rt - rc
	se := math.Sqrt(vc + vt)
	stat := diff / se
	return RatioResult{
		Control: rc,
		Variant: rt,
		Diff:    symmetric(diff, se, z),
		Z:       stat,
		P:       normalP(stat),
		Lift:    relativeLift(rc, rt, vc, vt, z),
	}
}
