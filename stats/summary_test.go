package stats

import (
	"math"
	"math/rand/v2"
	"testing"
)

// twoPass returns the mean of a and the (co)variance of a and b with the
// n−1 denominator, centred first: the textbook computation from rows.
func twoPass(a, b []float64) (meanA, cov float64) {
	n := float64(len(a))
	var ma, mb float64
	for i := range a {
		ma += a[i] / n
		mb += b[i] / n
	}
	for i := range a {
		cov += (a[i] - ma) * (b[i] - mb)
	}
	return ma, cov / (n - 1)
}

// TestSummaryAndCUPEDAgainstRows checks the moments of Summary and the CUPED
// adjustment against rows: θ from all units, Y′ = Y − θ(X − X̄) per unit,
// then the two-pass mean and variance of Y′ per arm.
func TestSummaryAndCUPEDAgainstRows(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var ys, xs [2][]float64
	var arms [2]Summary
	var allY, allX []float64
	for a, n := range []int{800, 1200} {
		ys[a], xs[a] = armRows(rng, n, float64(a))
		for i := range ys[a] {
			arms[a].Add(ys[a][i], xs[a][i])
		}
		allY, allX = append(allY, ys[a]...), append(allX, xs[a]...)
	}
	near := func(name string, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > 1e-10*math.Max(1, math.Abs(want)) {
			t.Errorf("%s = %.15g, want %.15g", name, got, want)
		}
	}
	for a := range arms {
		my, vy := twoPass(ys[a], ys[a])
		mx, vx := twoPass(xs[a], xs[a])
		_, cxy := twoPass(xs[a], ys[a])
		near("Summary.Mean()", arms[a].Mean(), my)
		near("Summary.Var()", arms[a].Var(), vy)
		near("Summary.MeanX()", arms[a].MeanX(), mx)
		near("Summary.VarX()", arms[a].VarX(), vx)
		near("Summary.CovXY()", arms[a].CovXY(), cxy)
	}

	fit := FitCUPED(arms[0], arms[1])
	xbar, varX := twoPass(allX, allX)
	_, cov := twoPass(allX, allY)
	_, varY := twoPass(allY, allY)
	theta := cov / varX
	near("FitCUPED().Theta", fit.Theta, theta)
	near("FitCUPED().MeanX", fit.MeanX, xbar)
	near("FitCUPED().VarianceReduction", fit.VarianceReduction, cov*cov/(varX*varY))
	for a := range arms {
		adj := make([]float64, len(ys[a]))
		for i := range adj {
			adj[i] = ys[a][i] - theta*(xs[a][i]-xbar)
		}
		m, v := twoPass(adj, adj)
		got := fit.Adjust(arms[a])
		near("CUPED.Adjust().Mean", got.Mean, m)
		near("CUPED.Adjust().Var", got.Var, v)
	}

	// A covariate with no variance leaves the metric unadjusted.
	var flat Summary
	flat.Add(1, 3)
	flat.Add(5, 3)
	if f := FitCUPED(flat); f.Theta != 0 || f.Adjust(flat) != flat.Moments() {
		t.Errorf("FitCUPED(constant x) = %+v, want θ = 0 and no adjustment", f)
	}
}
