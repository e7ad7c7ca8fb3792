package stats

import (
	"math"

	"gonum.org/v1/gonum/stat/distuv"
)

// Source is a source of uniformly distributed random 64-bit values, as
// math/rand/v2's Source (which satisfies it). Thompson sampling takes one
// explicitly so that every result is reproducible from a seed: stats holds
// no random state of its own.
type Source interface {
	Uint64() uint64
}

// BanditArm is one arm's posterior for Thompson sampling, summarised for
// the audit log: the data it came from, and the chance that the arm is the
// best one.
type BanditArm struct {
	N int64 `json:"n"`
	// Mean is the observed mean (the conversion rate for a conversion
	// metric); NaN when the arm has no units.
	Mean float64 `json:"mean"`
	// PosteriorMean and PosteriorSD describe the arm's posterior: Beta(1 +
	// conversions, 1 + non-conversions) for a conversion metric, the normal
	// N(ȳ, s²/n) for a mean metric.
	PosteriorMean float64 `json:"posterior_mean"`
	PosteriorSD   float64 `json:"posterior_sd"`
	// ProbBest is the Monte Carlo estimate of P(this arm has the highest
	// mean | data), before the exploration floor.
	ProbBest float64 `json:"prob_best"`
}

// ThompsonProbabilities returns, for each arm, the posterior probability
// that it has the highest mean, estimated from draws joint Monte Carlo
// draws of the arms' posteriors (Thompson 1933; Russo et al. 2018, §3),
// and the posterior summary of each arm.
//
// binary selects the model: true, the Sum of each arm counts conversions
// and the posterior is Beta(1 + Sum, 1 + N − Sum) (uniform prior); false,
// the posterior of the mean is the normal approximation N(ȳ, s²/n) under a
// flat prior. A mean-metric arm with fewer than two units has no variance
// yet: then no arm can be compared and every arm gets 1/k (explore until
// each arm has data). Ties in a draw (possible only with degenerate
// posteriors) go to the lower index. Higher is better; for a metric where
// lower is better, negate the sums.
//
// draws ≤ 0 or fewer than two arms return nil.
func ThompsonProbabilities(arms []Summary, binary bool, draws int, src Source) ([]float64, []BanditArm) {
	k := len(arms)
	if k < 2 || draws <= 0 {
		return nil, nil
	}
	summary := make([]BanditArm, k)
	sample := make([]func() float64, k)
	ready := true
	for i, a := range arms {
		s := BanditArm{N: a.N, Mean: a.Mean()}
		if binary {
			conv := math.Min(math.Max(a.Sum, 0), float64(a.N))
			b := distuv.Beta{Alpha: 1 + conv, Beta: 1 + float64(a.N) - conv, Src: src}
			s.PosteriorMean = b.Mean()
			s.PosteriorSD = b.StdDev()
			sample[i] = b.Rand
		} else {
			m := a.Moments()
			if m.N < 2 || math.IsNaN(m.Var) {
				ready = false
				s.PosteriorMean, s.PosteriorSD = math.NaN(), math.NaN()
			} else {
				sd := math.Sqrt(m.varOfMean())
				s.PosteriorMean, s.PosteriorSD = m.Mean, sd
				n := distuv.Normal{Mu: m.Mean, Sigma: sd, Src: src}
				if sd == 0 {
					mu := m.Mean
					sample[i] = func() float64 { return mu }
				} else {
					sample[i] = n.Rand
				}
			}
		}
		summary[i] = s
	}
	p := make([]float64, k)
	if !ready {
		for i := range p {
			p[i] = 1 / float64(k)
			summary[i].ProbBest = p[i]
		}
		return p, summary
	}
	wins := make([]int, k)
	for range draws {
		best, bestV := 0, math.Inf(-1)
		for i := range k {
			if v := sample[i](); v > bestV {
				best, bestV = i, v
			}
		}
		wins[best]++
	}
	for i := range p {
		p[i] = float64(wins[i]) / float64(draws)
		summary[i].ProbBest = p[i]
	}
	return p, summary
}

// FloorWeights mixes the probabilities p (which sum to 1) with the uniform
// split so that every arm keeps at least floor of the traffic:
//
//	w_i = floor + (1 − k·floor)·p_i.
//
// The floor keeps exploring (a bad early draw cannot starve an arm) and
// keeps every assignment probability away from 0, which the epoch-stratified
// estimate needs (Hadad et al. 2021). It needs 0 ≤ floor ≤ 1/k; outside
// that, or for p not summing to 1 within 1e-6, it returns nil. The weights
// sum to 1 up to rounding; the last one absorbs the rounding.
func FloorWeights(p []float64, floor float64) []float64 {
	k := float64(len(p))
	if len(p) == 0 || math.IsNaN(floor) || floor < 0 || floor*k > 1+1e-12 {
		return nil
	}
	sum := 0.0
	for _, v := range p {
		if math.IsNaN(v) || v < 0 {
			return nil
		}
		sum += v
	}
	if math.Abs(sum-1) > 1e-6 {
		return nil
	}
	w := make([]float64, len(p))
	rest := 1.0
	for i, v := range p {
		w[i] = floor + math.Max(0, 1-k*floor)*v/sum
		if i < len(p)-1 {
			rest -= w[i]
		}
	}
	w[len(w)-1] = math.Max(rest, 0)
	return w
}
