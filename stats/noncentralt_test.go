package stats

import (
	"math"
	"testing"

	"gonum.org/v1/gonum/integrate/quad"
	"gonum.org/v1/gonum/stat/distuv"
)

// ntIntegral is the noncentral t CDF from its definition, T = (Z+λ)/√(U/ν)
// with U ~ χ²_ν: P(T ≤ t) = ∫ Φ(t·√(u/ν) − λ)·f_χ²(u; ν) du, integrated by
// Gauss–Legendre quadrature over the body of the χ² density in s = √u
// (which makes the integrand smooth at 0). It is an independent check of
// the AS 243 series.
func ntIntegral(t, df, ncp float64) float64 {
	chi := distuv.ChiSquared{K: df}
	sd := math.Sqrt(2 * df)
	lo, hi := math.Max(0, df-40*sd), df+60*sd+200
	return quad.Fixed(func(s float64) float64 {
		return distuv.UnitNormal.CDF(t*s/math.Sqrt(df)-ncp) * chi.Prob(s*s) * 2 * s
	}, math.Sqrt(lo), math.Sqrt(hi), 4000, nil, 0)
}

func TestNoncentralTCDF(t *testing.T) {
	for _, df := range []float64{3, 10, 30.5, 200, 5000, 90000} {
		for _, ncp := range []float64{-2, 0.5, 2.8, 8} {
			for _, x := range []float64{-1, 0, 0.3, 2, 5} {
				got, want := NoncentralTCDF(x, df, ncp), ntIntegral(x, df, ncp)
				if math.Abs(got-want) > 2e-10 { // the quadrature itself is good to ~1e-10
					t.Errorf("NoncentralTCDF(%v, %v, %v) = %.15g, integral %.15g", x, df, ncp, got, want)
				}
			}
		}
	}
}

func TestNoncentralTCDFEdges(t *testing.T) {
	central := studentT(7.5).CDF(1.3)
	if got := NoncentralTCDF(1.3, 7.5, 0); got != central {
		t.Errorf("NoncentralTCDF(1.3, 7.5, 0) = %v, want the central %v", got, central)
	}
	if got := NoncentralTCDF(math.Inf(1), 5, 1); got != 1 {
		t.Errorf("NoncentralTCDF(+Inf, 5, 1) = %v, want 1", got)
	}
	if got := NoncentralTCDF(-3, 5, 50); got != 0 {
		t.Errorf("NoncentralTCDF(-3, 5, 50) = %v, want 0", got)
	}
	if got := NoncentralTCDF(1, -1, 1); !math.IsNaN(got) {
		t.Errorf("NoncentralTCDF(1, -1, 1) = %v, want NaN", got)
	}
	// R switches to the normal approximation above df = 4e5; the two
	// branches must meet there.
	below, above := NoncentralTCDF(2.5, 4e5, 2.8), NoncentralTCDF(2.5, 4e5+1e-6, 2.8)
	if math.Abs(below-above) > 1e-6 {
		t.Errorf("NoncentralTCDF(2.5, 4e5±, 2.8) = %v and %v, want continuity", below, above)
	}
}
