package stats

import (
	"math"

	"gonum.org/v1/gonum/stat/distuv"
)

// BayesResult is the Bayesian reading of a comparison: how likely the
// variant is better, and what choosing each arm costs in expectation if it
// is in fact the worse one. Losses are in the units of the metric (absolute
// differences of rates for conversions). For a metric where lower is
// better, swap the arms.
type BayesResult struct {
	// ChanceToWin is P(variant > control) under the posterior.
	ChanceToWin float64
	// LossVariant is E[max(control − variant, 0)], the expected loss of
	// shipping the variant; LossControl is E[max(variant − control, 0)].
	// LossVariant − LossControl = E[control] − E[variant].
	LossVariant float64
	LossControl float64
	// Diff is the posterior mean of variant − control with its posterior
	// standard deviation and an equal-tailed credible interval.
	Diff Estimate
}

// Posterior is a Beta(Alpha, Beta) posterior of a conversion rate.
type Posterior struct {
	Alpha float64
	Beta  float64
}

// BetaPosterior returns the posterior of the conversion rate of one arm
// under the uniform Beta(1, 1) prior: Beta(1 + x, 1 + n − x).
func BetaPosterior(p Proportion) Posterior {
	return Posterior{Alpha: float64(1 + p.Conversions), Beta: float64(1 + p.N - p.Conversions)}
}

// Mean returns Alpha/(Alpha + Beta).
func (b Posterior) Mean() float64 { return b.Alpha / (b.Alpha + b.Beta) }

// Var returns the variance Alpha·Beta/((Alpha + Beta)²(Alpha + Beta + 1)).
func (b Posterior) Var() float64 {
	s := b.Alpha + b.Beta
	return b.Alpha * b.Beta / (s * s * (s + 1))
}

// Interval returns the equal-tailed credible interval of the rate with
// probability 1 − alpha.
func (b Posterior) Interval(alpha float64) Interval {
	d := distuv.Beta{Alpha: b.Alpha, Beta: b.Beta}
	return Interval{d.Quantile(alpha / 2), d.Quantile(1 - alpha/2)}
}

// BayesProportions compares two conversion rates under independent
// Beta(1, 1) priors (stats-cases README §3.6). ChanceToWin and both losses
// are exact, from the finite sums for integer Beta parameters (Evan Miller,
// "Formulas for Bayesian A/B testing"), evaluated term by term in log space
// from their largest term outwards, to where the rest cannot change a
// float64 (probGreater). Diff
// uses a normal approximation of the posterior of p_t − p_c for its
// interval at level 1 − alpha.
func BayesProportions(control, variant Proportion, alpha float64) BayesResult {
	c, t := BetaPosterior(control), BetaPosterior(variant)
	mc, mt := c.Mean(), t.Mean()
	cUp := Posterior{c.Alpha + 1, c.Beta} // density u·f_c(u)/m_c
	tUp := Posterior{t.Alpha + 1, t.Beta}

	// E[p_c·1{p_c > p_t}] = m_c·P(Beta(α_c+1, β_c) > p_t), and likewise.
	lossVariant := mc*probGreater(cUp, t) - mt*probGreater(c, tUp)
	lossControl := mt*probGreater(tUp, c) - mc*probGreater(t, cUp)
	return BayesResult{
		ChanceToWin: probGreater(t, c),
		LossVariant: math.Max(0, lossVariant),
		LossControl: math.Max(0, lossControl),
		Diff:        symmetric(mt-mc, math.Sqrt(c.Var()+t.Var()), ZQuantile(alpha)),
	}
}

// probGreater returns P(X > Y) for independent X ~ x and Y ~ y, whose
// Alpha (of x) or Beta (of y) parameters are integers:
//
//	P(X > Y) = Σ_{i=0}^{α_x−1} t_i,  t_i = B(α_y+i, β_y+β_x) / ((β_x+i)·B(1+i, β_x)·B(α_y, β_y)).
//
// By the symmetry P(X > Y) = P(1−Y > 1−X) the same sum runs over β_y terms
// instead; the shorter one is used. The ratio of consecutive terms,
//
//	r_i = t_{i+1}/t_i = (α_y+i)(β_x+i) / ((α_y+β_y+β_x+i)(1+i)),
//
// exceeds 1 exactly while i < (α_y·β_x − α_y − β_y − β_x)/(β_y + 1): the
// terms rise to one mode and fall on both sides of it. The sum starts at
// the mode and walks outwards, each way until the terms left (at most as
// many as remain, none larger than the last) cannot add 1e-18 of the sum,
// far below a float64's precision. With thousands of conversions the terms
// that matter are a few standard deviations wide, so the sum costs O(√n)
// terms instead of the n of the whole range (BenchmarkBayesProportions).
// Every 32nd term is evaluated from log-Beta values and the ones between
// by the ratio, which is six times faster and adds only a few ulps. All
// terms are positive, so the result keeps its relative precision (about
// 1e-12, from the log-Beta values) even when it is tiny.
func probGreater(x, y Posterior) float64 {
	const anchorEvery = 32
	const tail = 1e-18
	if y.Beta < x.Alpha {
		x, y = Posterior{y.Beta, y.Alpha}, Posterior{x.Beta, x.Alpha}
	}
	n := math.Ceil(x.Alpha) // terms i = 0 … n−1
	if n <= 0 {
		return 0
	}
	lbY := lbeta(y.Alpha, y.Beta)
	term := func(i float64) float64 {
		return math.Exp(lbeta(y.Alpha+i, y.Beta+x.Beta) - math.Log(x.Beta+i) - lbeta(1+i, x.Beta) - lbY)
	}
	ratio := func(i float64) float64 { // t_{i+1}/t_i
		return (y.Alpha + i) * (x.Beta + i) / ((y.Alpha + y.Beta + x.Beta + i) * (1 + i))
	}
	mode := math.Ceil((y.Alpha*x.Beta - y.Alpha - y.Beta - x.Beta) / (y.Beta + 1))
	mode = math.Max(0, math.Min(mode, n-1))
	var sum, comp float64 // Neumaier summation
	add := func(t float64) {
		s := sum + t
		if math.Abs(sum) >= t {
			comp += (sum - s) + t
		} else {
			comp += (t - s) + sum
		}
		sum = s
	}
	// Every term is computed as the whole sum would: from the anchor at
	// the start of its block of 32, by the ratios upwards. Those of two
	// sums with nearly the same parameters then carry nearly the same
	// rounding, which cancels in BayesProportions' losses (differences of
	// such sums).
	//
	// Upwards from the start of the mode's block: past the mode, the terms
	// after i are at most n−1−i, none larger than t_i (when t_i is 0, only
	// because the block's anchor underflowed: go on to the next anchor).
	first := math.Floor(mode/anchorEvery) * anchorEvery
	var t float64
	for i := first; i < n; i++ {
		if math.Mod(i, anchorEvery) == 0 {
			t = term(i)
		} else {
			t *= ratio(i - 1)
		}
		add(t)
		if i >= mode && t > 0 && (n-1-i)*t <= tail*(sum+comp) {
			break
		}
	}
	// Then the blocks below it, downwards: the terms before block b are b,
	// none larger than t_b.
	for b := first - anchorEvery; b >= 0; b -= anchorEvery {
		t = term(b)
		tb := t
		add(t)
		for i := b + 1; i < b+anchorEvery; i++ {
			t *= ratio(i - 1)
			add(t)
		}
		if b*tb <= tail*(sum+comp) {
			break
		}
	}
	return math.Min(1, sum+comp)
}

// BayesMeans compares two means with a normal approximation of the
// posterior of D = variant − control under a flat prior:
// D ~ N(ȳ_t − ȳ_c, SE²) with the Welch SE. Then ChanceToWin = Φ(μ/SE),
// LossVariant = E[max(−D, 0)] = SE·φ(μ/SE) − μ·Φ(−μ/SE),
// LossControl = E[max(D, 0)] = SE·φ(μ/SE) + μ·Φ(μ/SE), and Diff carries the
// credible interval μ ∓ z·SE at level 1 − alpha.
func BayesMeans(control, variant Moments, alpha float64) BayesResult {
	mu := variant.Mean - control.Mean
	se := math.Sqrt(control.varOfMean() + variant.varOfMean())
	z := mu / se
	n := distuv.UnitNormal
	return BayesResult{
		ChanceToWin: n.CDF(z),
		LossVariant: se*n.Prob(z) - mu*n.CDF(-z),
		LossControl: se*n.Prob(z) + mu*n.CDF(z),
		Diff:        symmetric(mu, se, ZQuantile(alpha)),
	}
}
