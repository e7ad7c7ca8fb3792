package stats

import (
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/stat/distuv"
)

// The simulations draw sufficient statistics, not unit rows, wherever that
// is exact: a binomial count per arm for conversions; for normal data the
// sample mean ~ N(μ, σ²/n) and, independently, the sample variance
// ~ σ²·χ²_{n−1}/(n−1). Seeds are fixed, so the outcomes are reproducible.

// drawProportion draws the conversions of n units with rate p.
func drawProportion(src rand.Source, n int64, p float64) Proportion {
	x := distuv.Binomial{N: float64(n), P: p, Src: src}.Rand()
	return Proportion{N: n, Conversions: int64(x)}
}

// drawMoments draws the mean and sample variance of n normal units.
func drawMoments(rng *rand.Rand, n int64, mu, sigma float64) Moments {
	chi := distuv.ChiSquared{K: float64(n - 1), Src: rng}.Rand()
	return Moments{
		N:    n,
		Mean: mu + sigma/math.Sqrt(float64(n))*rng.NormFloat64(),
		Var:  sigma * sigma * chi / float64(n-1),
	}
}

// rate returns the share of sims for which test is true.
func rate(sims int, test func() bool) float64 {
	hits := 0
	for range sims {
		if test() {
			hits++
		}
	}
	return float64(hits) / float64(sims)
}

// TestFalsePositiveRate runs A/A experiments through the fixed-horizon
// tests at alpha 0.05. With 10,000 experiments the binomial standard error
// of the rate is 0.0022, so [0.04, 0.06] is a ±4.5 SE window.
func TestFalsePositiveRate(t *testing.T) {
	const sims = 10000
	tests := []struct {
		name string
		run  func(rng *rand.Rand) bool
	}{
		{"ProportionTest", func(rng *rand.Rand) bool {
			c, v := drawProportion(rng, 2000, 0.1), drawProportion(rng, 1500, 0.1)
			return ProportionTest(c, v, 0.05).P <= 0.05
		}},
		{"Welch unequal variances", func(rng *rand.Rand) bool {
			c, v := drawMoments(rng, 40, 5, 1), drawMoments(rng, 25, 5, 3)
			return Welch(c, v, 0.05).P <= 0.05
		}},
		{"Welch CI", func(rng *rand.Rand) bool {
			c, v := drawMoments(rng, 12, 5, 2), drawMoments(rng, 30, 5, 1)
			return !Welch(c, v, 0.05).Diff.CI.Contains(0)
		}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(0x5eed, uint64(i)))
			got := rate(sims, func() bool { return tt.run(rng) })
			t.Logf("false-positive rate %v", got)
			if got < 0.04 || got > 0.06 {
				t.Errorf("%s A/A false-positive rate = %v, want within [0.04, 0.06]", tt.name, got)
			}
		})
	}
}

// TestPowerBySimulation runs A/B experiments with the effect a power
// analysis was asked about, at the (rounded up) sample size it returned for
// power 0.8: the observed power must be 0.8 ± 0.03 (the binomial standard
// error with 4,000 experiments is 0.006).
func TestPowerBySimulation(t *testing.T) {
	const sims = 4000
	t.Run("proportions", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(0xb0b, 1))
		n := int64(math.Ceil(SampleSizeProportions(0.10, 0.12, 0.05, 0.8)))
		got := rate(sims, func() bool {
			return ProportionTest(drawProportion(rng, n, 0.10), drawProportion(rng, n, 0.12), 0.05).P <= 0.05
		})
		t.Logf("n = %d per arm, observed power %v", n, got)
		if math.Abs(got-0.8) > 0.03 {
			t.Errorf("ProportionTest power at n = %d per arm = %v, want 0.8 ± 0.03", n, got)
		}
	})
	t.Run("means", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(0xb0b, 2))
		n := int64(math.Ceil(SampleSizeMeans(0.5, 1, 0.05, 0.8)))
		got := rate(sims, func() bool {
			return Welch(drawMoments(rng, n, 0, 1), drawMoments(rng, n, 0.5, 1), 0.05).P <= 0.05
		})
		t.Logf("n = %d per arm, observed power %v", n, got)
		if math.Abs(got-0.8) > 0.03 {
			t.Errorf("Welch power at n = %d per arm = %v, want 0.8 ± 0.03", n, got)
		}
	})
}

// simulateLooks draws one sequence of cumulative looks of two normal arms
// (known σ = 1, per-look batches of m units) with true difference delta.
func simulateLooks(rng *rand.Rand, looks int, m int64, delta float64) []Look {
	var out []Look
	var sumC, sumV float64
	for k := 1; k <= looks; k++ {
		sd := math.Sqrt(float64(m))
		sumC += sd * rng.NormFloat64()
		sumV += float64(m)*delta + sd*rng.NormFloat64()
		n := int64(k) * m
		out = append(out, Look{
			Control: Moments{N: n, Mean: sumC / float64(n), Var: 1},
			Variant: Moments{N: n, Mean: sumV / float64(n), Var: 1},
		})
	}
	return out
}

// TestMSPRTPeeking peeks at A/A experiments 20 times: the always-valid
// p-value must keep the false-positive rate at or below alpha, where
// rejecting a fixed-horizon z-test at any look would not.
func TestMSPRTPeeking(t *testing.T) {
	const sims, looks = 2000, 20
	rng := rand.New(rand.NewPCG(0xa11, 0xa1d))
	var msprt, naive int
	for range sims {
		seq := simulateLooks(rng, looks, 250, 0)
		res := MSPRT(seq, 0.01, 0.05)
		if res[looks-1].Reject {
			msprt++
		}
		for _, r := range res { // the fixed-horizon z-test at every look
			if normalP(r.Diff/math.Sqrt(r.V)) <= 0.05 {
				naive++
				break
			}
		}
	}
	t.Logf("false-positive rate over %d looks: mSPRT %v, naive peeking %v", looks, float64(msprt)/sims, float64(naive)/sims)
	if got := float64(msprt) / sims; got > 0.05 {
		t.Errorf("MSPRT false-positive rate over %d looks = %v, want ≤ 0.05", looks, got)
	}
	// The point of the test: peeking at a fixed-horizon test inflates it.
	if got := float64(naive) / sims; got < 0.15 {
		t.Errorf("naive peeking false-positive rate = %v, want well above 0.05 (simulation broken?)", got)
	}
}

// TestConfidenceSequenceCoverage checks that the always-valid interval
// covers the true difference at all 20 looks at once in at least 95% of
// experiments, for several true effects.
func TestConfidenceSequenceCoverage(t *testing.T) {
	const sims, looks = 2000, 20
	for i, delta := range []float64{0, 0.05, -0.2} {
		rng := rand.New(rand.NewPCG(0xc0, uint64(i)))
		miss := rate(sims, func() bool {
			for _, r := range MSPRT(simulateLooks(rng, looks, 250, delta), 0.01, 0.05) {
				if !r.CI.Contains(delta) {
					return true
				}
			}
			return false
		})
		t.Logf("delta %v: miss rate %v", delta, miss)
		if miss > 0.05 {
			t.Errorf("delta %v: confidence sequence missed the truth in %v of experiments, want ≤ 0.05", delta, miss)
		}
	}
}
