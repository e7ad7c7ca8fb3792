package stats

import (
	"math"

	"gonum.org/v1/gonum/stat/distuv"
)

// ProportionResult is the comparison of the conversion rates of a variant
// and a control arm (stats-cases README §3.1).
type ProportionResult struct {
	Control Proportion
	Variant Proportion

	// Diff is p̂_t − p̂_c with the unpooled standard error
	// √(p̂_c(1−p̂_c)/n_c + p̂_t(1−p̂_t)/n_t) and the Wald interval
	// Diff ∓ z·SE. The interval is not clipped to [−1, 1].
	Diff Estimate

	// PooledRate is (x_c + x_t)/(n_c + n_t) and PooledSE is
	// √(p̄(1−p̄)(1/n_c + 1/n_t)), the standard error under the null.
	PooledRate float64
	PooledSE   float64

	// Z is Diff.Value/PooledSE and P its two-sided p-value 2·Φ(−|Z|).
	Z float64
	P float64

	// ChiSq is Pearson's χ² of the 2×2 table without Yates' correction
	// (equal to Z²) and PChiSq is P(χ²₁ > ChiSq), equal to P.
	ChiSq  float64
	PChiSq float64

	// Lift is p̂_t/p̂_c − 1 with its delta-method standard error and a
	// normal interval on the linear scale. Every field is NaN when
	// p̂_c = 0.
	Lift Estimate
}

// ProportionTest compares the conversion rate of variant with that of
// control: the pooled two-proportion z-test (R prop.test(correct=FALSE)),
// the unpooled Wald interval of the difference and the relative lift, at
// confidence level 1 − alpha. The test is undefined (NaN) when no unit of
// either arm converted, or every unit did.
func ProportionTest(control, variant Proportion, alpha float64) ProportionResult {
	z := ZQuantile(alpha)
	pc, pt := control.Rate(), variant.Rate()
	vc, vt := control.varOfRate(), variant.varOfRate()

	nc, nt := float64(control.N), float64(variant.N)
	pooled := float64(control.Conversions+variant.Conversions) / (nc + nt)
	pooledSE := math.Sqrt(pooled * (1 - pooled) * (1/nc + 1/nt))

	diff := pt - pc
	stat := diff / pooledSE
	chi := pearson2x2(control, variant)
	return ProportionResult{
		Control:    control,
		Variant:    variant,
		Diff:       symmetric(diff, math.Sqrt(vc+vt), z),
		PooledRate: pooled,
		PooledSE:   pooledSE,
		Z:          stat,
		P:          normalP(stat),
		ChiSq:      chi,
		PChiSq:     chiSquareP(chi, 1),
		Lift:       relativeLift(pc, pt, vc, vt, z),
	}
}

// pearson2x2 returns Σ(O−E)²/E over the four cells (arm × converted) of
// the contingency table, with E from the margins.
func pearson2x2(a, b Proportion) float64 {
	n := float64(a.N + b.N)
	conv := float64(a.Conversions + b.Conversions)
	var chi float64
	for _, arm := range []Proportion{a, b} {
		rowN := float64(arm.N)
		cells := [2][2]float64{
			{float64(arm.Conversions), rowN * conv / n},
			{float64(arm.N - arm.Conversions), rowN * (n - conv) / n},
		}
		for _, c := range cells {
			d := c[0] - c[1]
			chi += d * d / c[1]
		}
	}
	return chi
}

// chiSquareP returns P(χ²_df > stat), or NaN for a NaN statistic.
func chiSquareP(stat float64, df int) float64 {
	if math.IsNaN(stat) || df < 1 {
		return math.NaN()
	}
	return distuv.ChiSquared{K: float64(df)}.Survival(stat)
}
