package stats

import (
	"math"

	"gonum.org/v1/gonum/stat/distuv"
)

// EstimatorEpochStratified names the estimate of EpochStratified in results.
const EstimatorEpochStratified = "epoch-stratified"

// Stratum is one weight epoch of an adaptive experiment: the sufficient
// statistics of the control and of one variant over the units whose first
// exposure fell in the epoch. Units is the epoch's size, every arm
// together, which weighs the stratum; 0 means Control.N + Variant.N.
type Stratum struct {
	Control Summary
	Variant Summary
	Units   int64
}

// StratifiedResult is the comparison of a variant with the control when
// the assignment weights changed between strata.
type StratifiedResult struct {
	// Control and Variant are the stratified means Σ w_k·ȳ_k of each arm.
	Control float64
	Variant float64
	// Diff is Σ w_k·(ȳ_t,k − ȳ_c,k) with SE = √(Σ w_k²·(s²_t,k/n_t,k +
	// s²_c,k/n_c,k)) and the normal interval Diff ∓ z·SE.
	Diff Estimate
	// Z is Diff.Value/NullSE and P its two-sided normal p-value. For
	// means NullSE = Diff.SE; for conversions NullSE pools the two arms'
	// rates within each stratum, √(Σ w_k²·p̄_k(1−p̄_k)(1/n_c,k + 1/n_t,k)),
	// the standard error under the null as in ProportionTest.
	NullSE float64
	Z      float64
	P      float64
	// Lift is Variant/Control − 1 with its delta-method standard error,
	// NaN when the stratified control mean is 0.
	Lift Estimate
	// Strata is the number of strata used; DroppedUnits counts the units of
	// the strata left out because an arm had too few units to estimate its
	// variance (none for conversions, fewer than two for means).
	Strata       int
	DroppedUnits int64
}

// EpochStratified compares a variant with the control across strata with
// different assignment weights (the epochs of a bandit): a difference in
// means within each stratum, combined with weights w_k = Units_k/ΣUnits
// proportional to the strata's sizes, which are fixed by design, not by
// the outcomes. Within a stratum assignment is randomised with constant
// probabilities, so each difference is unbiased for that stratum's effect
// whatever the weights were, and the combination estimates the effect
// averaged over the enrolled units. A pooled difference of means is not:
// when the base rate drifts while the weights move, the arm that got more
// traffic in the better period looks better (Simpson's paradox).
//
// binary selects the variance: p̂(1−p̂)/n per arm for conversions (Sum
// counts conversions), s²/n for means. The interval is normal at level
// 1 − alpha. Strata whose arms are too small are dropped and counted; with
// no stratum left every estimate is NaN.
func EpochStratified(strata []Stratum, binary bool, alpha float64) StratifiedResult {
	minN := int64(2)
	if binary {
		minN = 1
	}
	var total float64
	var res StratifiedResult
	for _, s := range strata {
		if s.Control.N < minN || s.Variant.N < minN {
			res.DroppedUnits += s.Control.N + s.Variant.N
			continue
		}
		total += float64(stratumUnits(s))
	}
	var mc, mt, vc, vt, v0 float64
	for _, s := range strata {
		if s.Control.N < minN || s.Variant.N < minN || total == 0 {
			continue
		}
		w := float64(stratumUnits(s)) / total
		c, t := armMoments(s.Control, binary), armMoments(s.Variant, binary)
		mc += w * c.Mean
		mt += w * t.Mean
		vc += w * w * c.varOfMean()
		vt += w * w * t.varOfMean()
		if binary {
			p := (s.Control.Sum + s.Variant.Sum) / float64(s.Control.N+s.Variant.N)
			v0 += w * w * p * (1 - p) * (1/float64(s.Control.N) + 1/float64(s.Variant.N))
		} else {
			v0 += w*w*c.varOfMean() + w*w*t.varOfMean()
		}
		res.Strata++
	}
	if res.Strata == 0 {
		nan := math.NaN()
		res.Control, res.Variant, res.NullSE, res.Z, res.P = nan, nan, nan, nan, nan
		res.Diff, res.Lift = undefinedEstimate(), undefinedEstimate()
		return res
	}
	q := ZQuantile(alpha)
	se := math.Sqrt(vc + vt)
	res.Control, res.Variant = mc, mt
	res.Diff = symmetric(mt-mc, se, q)
	res.NullSE = math.Sqrt(v0)
	res.Z = (mt - mc) / res.NullSE
	res.P = normalP(res.Z)
	if res.NullSE == 0 {
		res.Z, res.P = math.NaN(), math.NaN()
	}
	res.Lift = relativeLift(mc, mt, vc, vt, q)
	return res
}

func stratumUnits(s Stratum) int64 {
	if s.Units > 0 {
		return s.Units
	}
	return s.Control.N + s.Variant.N
}

// armMoments returns an arm's size, mean and the variance whose ratio to n
// is the squared standard error of its mean.
func armMoments(s Summary, binary bool) Moments {
	if binary {
		p := Proportion{N: s.N, Conversions: int64(math.Round(s.Sum))}
		r := p.Rate()
		return Moments{N: s.N, Mean: r, Var: r * (1 - r)}
	}
	return s.Moments()
}

// NormalBayes is the Bayesian reading of an estimated difference d with
// standard error se under a flat prior, D ~ N(d, se²), as BayesMeans
// computes it: ChanceToWin = Φ(d/se), LossVariant = se·φ(z) − d·Φ(−z),
// LossControl = se·φ(z) + d·Φ(z). A zero or undefined se gives NaN.
func NormalBayes(d, se, alpha float64) BayesResult {
	if se == 0 || math.IsNaN(se) || math.IsNaN(d) {
		return BayesResult{ChanceToWin: math.NaN(), LossVariant: math.NaN(), LossControl: math.NaN(), Diff: undefinedEstimate()}
	}
	z := d / se
	n := distuv.UnitNormal
	return BayesResult{
		ChanceToWin: n.CDF(z),
		LossVariant: se*n.Prob(z) - d*n.CDF(-z),
		LossControl: se*n.Prob(z) + d*n.CDF(z),
		Diff:        symmetric(d, se, ZQuantile(alpha)),
	}
}
