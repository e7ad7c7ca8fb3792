package stats

import (
	"math"

	"gonum.org/v1/gonum/stat/distuv"
)

// Interval is a two-sided interval from Lower to Upper.
type Interval struct {
	Lower float64
	Upper float64
}

// Contains reports whether v lies in the closed interval.
func (i Interval) Contains(v float64) bool { return i.Lower <= v && v <= i.Upper }

// Estimate is a point estimate with its standard error and a two-sided
// interval at the confidence level the caller asked for.
type Estimate struct {
	Value float64
	SE    float64
	CI    Interval
}

// undefinedEstimate is an Estimate whose every field is NaN.
func undefinedEstimate() Estimate {
	nan := math.NaN()
	return Estimate{Value: nan, SE: nan, CI: Interval{nan, nan}}
}

// symmetric returns value ± q·se.
func symmetric(value, se, q float64) Estimate {
	return Estimate{Value: value, SE: se, CI: Interval{value - q*se, value + q*se}}
}

// ZQuantile returns Φ⁻¹(1 − alpha/2), the two-sided normal critical value
// (1.959963984540054 for alpha = 0.05).
func ZQuantile(alpha float64) float64 {
	return distuv.UnitNormal.Quantile(1 - alpha/2)
}

// normalP returns the two-sided p-value 2·Φ(−|z|). Computing the lower tail
// directly keeps tiny p-values accurate, where 2·(1−Φ(|z|)) would round to 0.
func normalP(z float64) float64 {
	return 2 * distuv.UnitNormal.CDF(-math.Abs(z))
}

// studentT returns the Student t distribution with df degrees of freedom,
// which may be non-integer.
func studentT(df float64) distuv.StudentsT {
	return distuv.StudentsT{Mu: 0, Sigma: 1, Nu: df}
}

// tP returns the two-sided p-value 2·F_t(−|t|; df). An infinite df is the
// normal distribution; a NaN df or statistic gives NaN.
func tP(t, df float64) float64 {
	switch {
	case math.IsNaN(t) || math.IsNaN(df) || df <= 0:
		return math.NaN()
	case math.IsInf(df, 1):
		return normalP(t)
	}
	return 2 * studentT(df).CDF(-math.Abs(t))
}

// tQuantile returns F_t⁻¹(1 − alpha/2; df).
func tQuantile(alpha, df float64) float64 {
	switch {
	case math.IsNaN(df) || df <= 0:
		return math.NaN()
	case math.IsInf(df, 1):
		return ZQuantile(alpha)
	}
	return studentT(df).Quantile(1 - alpha/2)
}

// relativeLift returns L = mt/mc − 1 with its delta-method standard error
// for a ratio of two independent means, SE_L = √(vt/mc² + mt²·vc/mc⁴), where
// vt and vc are the squared standard errors of mt and mc, and the interval
// L ∓ z·SE_L on the linear scale. It is undefined (NaN) when mc is 0.
func relativeLift(mc, mt, vc, vt, z float64) Estimate {
	if mc == 0 || math.IsNaN(mc) {
		return undefinedEstimate()
	}
	mc2 := mc * mc
	se := math.Sqrt(vt/mc2 + mt*mt*vc/(mc2*mc2))
	return symmetric(mt/mc-1, se, z)
}
