package stats

import (
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// armRows simulates n units of one arm: a covariate x and an outcome y
// that depends on it.
func armRows(rng *rand.Rand, n int, lift float64) (y, x []float64) {
	for range n {
		xi := 10 * rng.ExpFloat64()
		y = append(y, 2+lift+0.6*xi+5*rng.NormFloat64())
		x = append(x, xi)
	}
	return y, x
}

// TestANCOVAAgainstOLS fits the dummy-coded design matrix by QR on unit
// rows with gonum/mat, classical standard errors from σ̂²(XᵀX)⁻¹, and
// compares with the sufficient-statistics ANCOVA.
func TestANCOVAAgainstOLS(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 8))
	sizes, lifts := []int{300, 200, 250}, []float64{0, 1.5, -0.7}
	var ys, xs [][]float64
	var sums []Summary
	total := 0
	for a := range sizes {
		y, x := armRows(rng, sizes[a], lifts[a])
		var s Summary
		for i := range y {
			s.Add(y[i], x[i])
		}
		ys, xs, sums = append(ys, y), append(xs, x), append(sums, s)
		total += sizes[a]
	}

	k := len(sizes) + 1 // intercept, two dummies, x
	design := mat.NewDense(total, k, nil)
	outcome := mat.NewVecDense(total, nil)
	row := 0
	for a := range sizes {
		for i := range ys[a] {
			design.Set(row, 0, 1)
			if a > 0 {
				design.Set(row, a, 1)
			}
			design.Set(row, k-1, xs[a][i])
			outcome.SetVec(row, ys[a][i])
			row++
		}
	}
	var beta mat.VecDense
	if err := beta.SolveVec(design, outcome); err != nil {
		t.Fatal(err)
	}
	var fitted, resid mat.VecDense
	fitted.MulVec(design, &beta)
	resid.SubVec(outcome, &fitted)
	df := total - k
	sigma2 := mat.Dot(&resid, &resid) / float64(df)
	var xtx, inv mat.Dense
	xtx.Mul(design.T(), design)
	if err := inv.Inverse(&xtx); err != nil {
		t.Fatal(err)
	}

	got := ANCOVA(sums, 0.05)
	if got.DF != int64(df) {
		t.Errorf("ANCOVA(...).DF = %d, want %d", got.DF, df)
	}
	if want := beta.AtVec(k - 1); math.Abs(got.Slope-want) > 1e-9*math.Abs(want) {
		t.Errorf("ANCOVA(...).Slope = %.15g, want %.15g", got.Slope, want)
	}
	for a := 1; a < len(sizes); a++ {
		e := got.Effects[a-1]
		coef, se := beta.AtVec(a), math.Sqrt(sigma2*inv.At(a, a))
		if math.Abs(e.Diff.Value-coef) > 1e-9*math.Abs(coef) {
			t.Errorf("ANCOVA(...).Effects[%d].Diff.Value = %.15g, want %.15g", a-1, e.Diff.Value, coef)
		}
		if math.Abs(e.Diff.SE-se) > 1e-9*se {
			t.Errorf("ANCOVA(...).Effects[%d].Diff.SE = %.15g, want %.15g", a-1, e.Diff.SE, se)
		}
		if want := tP(coef/se, float64(df)); math.Abs(e.P-want) > 1e-9 {
			t.Errorf("ANCOVA(...).Effects[%d].P = %v, want %v", a-1, e.P, want)
		}
	}
}

// TestANCOVAConstantCovariate: without covariate variance the slope is not
// identified; R lm drops the column, leaving the difference of means on
// N − arms degrees of freedom.
func TestANCOVAConstantCovariate(t *testing.T) {
	var c, v Summary
	for i, y := range []float64{1, 2, 3, 4} {
		c.Add(y, 7)
		v.Add(y+float64(i%2)+1, 7)
	}
	got := ANCOVA([]Summary{c, v}, 0.05)
	if !math.IsNaN(got.Slope) || got.DF != 6 {
		t.Errorf("ANCOVA(constant x) = Slope %v DF %d, want NaN and 6", got.Slope, got.DF)
	}
	if want := v.Mean() - c.Mean(); got.Effects[0].Diff.Value != want {
		t.Errorf("ANCOVA(constant x).Effects[0].Diff.Value = %v, want %v", got.Effects[0].Diff.Value, want)
	}
}
