package stats

import (
	"math"
	"math/rand/v2"
	"testing"
)

// randomArm draws the summaries of one arm with sizes from tiny to large
// and the edge cases of README §6 mixed in: no conversions, every unit
// converted, constant (zero-variance) values.
func randomArm(rng *rand.Rand) (Proportion, Summary) {
	n := int64(2 + rng.IntN(5000))
	var conv int64
	switch rng.IntN(6) {
	case 0: // no conversions
	case 1:
		conv = n
	default:
		conv = rng.Int64N(n + 1)
	}
	var s Summary
	constant := rng.IntN(5) == 0
	scale := math.Exp(rng.Float64()*8 - 2)
	for range min(n, 200) {
		y := 0.0
		if !constant {
			y = scale * rng.ExpFloat64()
		}
		s.Add(y, scale*rng.ExpFloat64()+0.5*y)
	}
	return Proportion{N: n, Conversions: conv}, s
}

// inUnit reports whether p is a probability or NaN (undefined).
func inUnit(p float64) bool { return math.IsNaN(p) || (p >= 0 && p <= 1) }

// same reports whether a and b agree to rel 1e-9 (abs 1e-12), NaN = NaN.
func same(a, b float64) bool {
	if math.IsNaN(a) || math.IsNaN(b) {
		return math.IsNaN(a) && math.IsNaN(b)
	}
	return math.Abs(a-b) <= math.Max(1e-12, 1e-9*math.Abs(b))
}

// TestPValueRangeAndSwap checks on random arms that every p-value lies in
// [0, 1], and that swapping control and variant flips the sign of the
// difference and keeps the p-value (and swaps the Bayesian quantities).
func TestPValueRangeAndSwap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 3000 {
		pa, sa := randomArm(rng)
		pb, sb := randomArm(rng)

		ab, ba := ProportionTest(pa, pb, 0.05), ProportionTest(pb, pa, 0.05)
		if !inUnit(ab.P) || !inUnit(ab.PChiSq) {
			t.Fatalf("#%d ProportionTest(%v, %v).P = %v, PChiSq = %v, want in [0, 1]", i, pa, pb, ab.P, ab.PChiSq)
		}
		if !same(ab.Diff.Value, -ba.Diff.Value) || !same(ab.Z, -ba.Z) || !same(ab.P, ba.P) || !same(ab.ChiSq, ba.ChiSq) {
			t.Fatalf("#%d ProportionTest swapped: diff %v/%v z %v/%v p %v/%v", i, ab.Diff.Value, ba.Diff.Value, ab.Z, ba.Z, ab.P, ba.P)
		}
		if pa.Conversions+pb.Conversions > 0 && pa.Conversions+pb.Conversions < pa.N+pb.N {
			if !same(ab.ChiSq, ab.Z*ab.Z) || !same(ab.PChiSq, ab.P) {
				t.Fatalf("#%d ProportionTest(%v, %v): ChiSq %v vs Z² %v, PChiSq %v vs P %v", i, pa, pb, ab.ChiSq, ab.Z*ab.Z, ab.PChiSq, ab.P)
			}
		}

		w, wr := Welch(sa.Moments(), sb.Moments(), 0.05), Welch(sb.Moments(), sa.Moments(), 0.05)
		if !inUnit(w.P) {
			t.Fatalf("#%d Welch(%v, %v).P = %v, want in [0, 1]", i, sa.Moments(), sb.Moments(), w.P)
		}
		if !same(w.Diff.Value, -wr.Diff.Value) || !same(w.P, wr.P) || !same(w.DF, wr.DF) {
			t.Fatalf("#%d Welch swapped: diff %v/%v p %v/%v", i, w.Diff.Value, wr.Diff.Value, w.P, wr.P)
		}

		fit := FitCUPED(sa, sb)
		c, cr := fit.Compare(sa, sb, 0.05), fit.Compare(sb, sa, 0.05)
		if !inUnit(c.P) || !same(c.Diff.Value, -cr.Diff.Value) || !same(c.P, cr.P) {
			t.Fatalf("#%d CUPED.Compare: p %v/%v diff %v/%v", i, c.P, cr.P, c.Diff.Value, cr.Diff.Value)
		}

		an, anr := ANCOVA([]Summary{sa, sb}, 0.05), ANCOVA([]Summary{sb, sa}, 0.05)
		e, er := an.Effects[0], anr.Effects[0]
		if !inUnit(e.P) || !same(e.Diff.Value, -er.Diff.Value) || !same(e.P, er.P) {
			t.Fatalf("#%d ANCOVA: p %v/%v coef %v/%v", i, e.P, er.P, e.Diff.Value, er.Diff.Value)
		}

		if i%10 == 0 { // the exact Bayesian sums are the slow part
			b, br := BayesProportions(pa, pb, 0.05), BayesProportions(pb, pa, 0.05)
			// The exact sums carry ~1e-12 relative rounding from log-Beta
			// (README tolerance: 1e-9), so 1 − P is compared loosely.
			if !inUnit(b.ChanceToWin) || math.Abs(b.ChanceToWin-(1-br.ChanceToWin)) > 1e-10 ||
				!same(b.LossVariant, br.LossControl) || !same(b.LossControl, br.LossVariant) {
				t.Fatalf("#%d BayesProportions(%v, %v) = %+v, swapped %+v", i, pa, pb, b, br)
			}
			mc, mt := BetaPosterior(pa).Mean(), BetaPosterior(pb).Mean()
			if got := b.LossVariant - b.LossControl; math.Abs(got-(mc-mt)) > 1e-11 {
				t.Fatalf("#%d BayesProportions(%v, %v): LossVariant − LossControl = %v, want m_c − m_t = %v (%+v)", i, pa, pb, got, mc-mt, b)
			}
		}
	}
}

// TestUndefined pins the NaN conventions of README §3.1, §3.2 and §6.
func TestUndefined(t *testing.T) {
	zeroControl := ProportionTest(Proportion{N: 100}, Proportion{N: 100, Conversions: 5}, 0.05)
	if !math.IsNaN(zeroControl.Lift.Value) || !math.IsNaN(zeroControl.Lift.SE) || !math.IsNaN(zeroControl.Lift.CI.Lower) {
		t.Errorf("ProportionTest(control rate 0).Lift = %+v, want NaN", zeroControl.Lift)
	}
	if math.IsNaN(zeroControl.P) || math.IsNaN(zeroControl.Diff.CI.Upper) {
		t.Errorf("ProportionTest(control rate 0): P = %v, CI = %v, want defined", zeroControl.P, zeroControl.Diff.CI)
	}
	zeroVariant := ProportionTest(Proportion{N: 100, Conversions: 5}, Proportion{N: 100}, 0.05)
	if l := zeroVariant.Lift; l.Value != -1 || l.SE != 0 || l.CI != (Interval{-1, -1}) {
		t.Errorf("ProportionTest(variant rate 0).Lift = %+v, want -1 with SE 0 and CI [-1, -1]", l)
	}
	none := ProportionTest(Proportion{N: 100}, Proportion{N: 100}, 0.05)
	if !math.IsNaN(none.Z) || !math.IsNaN(none.P) || !math.IsNaN(none.ChiSq) || !math.IsNaN(none.PChiSq) {
		t.Errorf("ProportionTest(no conversions) = %+v, want NaN statistics", none)
	}

	w := Welch(Moments{N: 50, Mean: 0, Var: 0}, Moments{N: 30, Mean: 2, Var: 4}, 0.05)
	if !math.IsNaN(w.Lift.Value) || !math.IsNaN(w.Lift.CI.Upper) {
		t.Errorf("Welch(control mean 0).Lift = %+v, want NaN", w.Lift)
	}
	if w.DF != 29 {
		t.Errorf("Welch(control variance 0).DF = %v, want n_variant − 1 = 29", w.DF)
	}
	flat := Welch(Moments{N: 50, Mean: 1, Var: 0}, Moments{N: 30, Mean: 1, Var: 0}, 0.05)
	if !math.IsNaN(flat.T) || !math.IsNaN(flat.DF) || !math.IsNaN(flat.P) {
		t.Errorf("Welch(both variances 0) = T %v DF %v P %v, want NaN", flat.T, flat.DF, flat.P)
	}

	var empty Summary
	if !math.IsNaN(empty.Mean()) || !math.IsNaN(empty.Var()) {
		t.Errorf("Summary{}.Mean() = %v, Var() = %v, want NaN", empty.Mean(), empty.Var())
	}

	srm := SRM([]int64{500, 500}, []float64{1, 1})
	if srm.ChiSq != 0 || srm.P != 1 {
		t.Errorf("SRM(exact split) = ChiSq %v P %v, want 0 and 1", srm.ChiSq, srm.P)
	}
	if bad := SRM([]int64{500, 500}, []float64{1}); !math.IsNaN(bad.P) {
		t.Errorf("SRM(mismatched weights).P = %v, want NaN", bad.P)
	}
}
