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
// "Formulas for Bayesian A/B testing"), evaluated term by term in log space;
// they cost O(min(conversions, non-conversions)) log-Beta evaluations. Diff
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
// instead; the shorter one is used. Every 32nd term is evaluated from
// log-Beta values and the ones between by the ratio
// t_{i+1}/t_i = (α_y+i)(β_x+i) / ((α_y+β_y+β_x+i)(1+i)), which is six times
// faster and adds only a few ulps. All terms are positive, so the result
// keeps its relative precision (about 1e-12, from the log-Beta values) even
// when it is tiny.
func probGreater(x, y Posterior) float64 {
	const anchorEvery = 32
	if y.Beta < x.Alpha {
		x, y = Posterior{y.Beta, y.Alpha}, Posterior{x.Beta, x.Alpha}
	}
	lbY := lbeta(y.Alpha, y.Beta)
	var sum, comp, term float64 // Neumaier summation
	for k := 0; float64(k) < x.Alpha; k++ {
		i := float64(k)
		if k%anchorEvery == 0 {
			term = math.Exp(lbeta(y.Alpha+i, y.Beta+x.Beta) - math.Log(x.Beta+i) - lbeta(1+i, x.Beta) - lbY)
		} else {
			j := i - 1
			term *= (y.Alpha + j) * (x.Beta + j) / ((y.Alpha + y.Beta + x.Beta + j) * (1 + j))
		}
		s := sum + term
		if math.Abs(sum) >= term {
			comp += (sum - s) + term
		} else {
			comp += (term - s) + sum
		}
		sum = s
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
