package stats

import (
	"math"
	"math/rand/v2"
	"testing"
)

// sessionRows simulates n units of a ratio metric: den sessions (at least
// one) and num revenue, correlated with den.
func sessionRows(rng *rand.Rand, n int, spend float64) (num, den []float64) {
	for range n {
		d := 1 + math.Floor(rng.ExpFloat64()*3)
		x := 0.0
		if rng.Float64() < 0.3 {
			x = spend * d * rng.ExpFloat64()
		}
		num, den = append(num, x), append(den, d)
	}
	return num, den
}

// bruteRatioVar computes the delta-method variance from unit rows by
// linearisation, two-pass: R = Σnum/Σden, l_i = (num_i − R·den_i)/d̄, and
// Var(R) ≈ var(l)/n. It shares no code with RatioSummary.
func bruteRatioVar(num, den []float64) (ratio, variance float64) {
	var sn, sd float64
	for i := range num {
		sn += num[i]
		sd += den[i]
	}
	n := float64(len(num))
	ratio, dbar := sn/sd, sd/n
	l := make([]float64, len(num))
	var lbar float64
	for i := range num {
		l[i] = (num[i] - ratio*den[i]) / dbar
		lbar += l[i] / n
	}
	var ss float64
	for _, v := range l {
		ss += (v - lbar) * (v - lbar)
	}
	return ratio, ss / (n - 1) / n
}

func TestRatioAgainstRows(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	for _, n := range []int{2, 10, 1000, 50000} {
		num, den := sessionRows(rng, n, 20)
		var s RatioSummary
		for i := range num {
			s.Add(num[i], den[i])
		}
		ratio, variance := bruteRatioVar(num, den)
		if got := s.Ratio(); math.Abs(got-ratio) > 1e-12*ratio {
			t.Errorf("n=%d: Ratio() = %v, want %v", n, got, ratio)
		}
		if got := s.VarRatio(); math.Abs(got-variance) > 1e-9*variance {
			t.Errorf("n=%d: VarRatio() = %v, want %v", n, got, variance)
		}
	}
}

// TestRatioAA checks the calibration of RatioTest: in A/A experiments its
// 95% interval misses the true difference 0 about 5% of the time.
func TestRatioAA(t *testing.T) {
	rng := rand.New(rand.NewPCG(2024, 3))
	const sims = 1000
	rejected := 0
	for range sims {
		var arms [2]RatioSummary
		for a := range arms {
			num, den := sessionRows(rng, 1000, 20)
			for i := range num {
				arms[a].Add(num[i], den[i])
			}
		}
		r := RatioTest(arms[0], arms[1], 0.05)
		if r.P <= 0.05 {
			rejected++
		}
		if r.Diff.CI.Contains(0) == (r.P <= 0.05) && math.Abs(r.P-0.05) > 1e-9 {
			t.Fatalf("RatioTest: CI %v and P %v disagree", r.Diff.CI, r.P)
		}
	}
	if rate := float64(rejected) / sims; rate < 0.03 || rate > 0.07 {
		t.Errorf("RatioTest A/A false-positive rate = %v, want 0.05 ± 0.02", rate)
	}
}

func TestRatioLift(t *testing.T) {
	c := RatioSummary{N: 3, SumNum: 6, SumDen: 3, SumNumSq: 14, SumDenSq: 3, SumNumDen: 6}
	v := RatioSummary{N: 3, SumNum: 9, SumDen: 3, SumNumSq: 29, SumDenSq: 3, SumNumDen: 9}
	r := RatioTest(c, v, 0.05)
	// Den is 1 for every unit, so the ratio is a mean: 2 and 3, with
	// variances of the mean 1/3 and 1/3 (num = 1,2,3 and 2,3,4).
	if r.Control != 2 || r.Variant != 3 || math.Abs(r.Diff.SE-math.Sqrt(2.0/3)) > 1e-12 {
		t.Errorf("RatioTest(...) = %+v, want ratios 2 and 3 with SE √(2/3)", r)
	}
	if want := 0.5; math.Abs(r.Lift.Value-want) > 1e-12 {
		t.Errorf("RatioTest(...).Lift.Value = %v, want %v", r.Lift.Value, want)
	}
	if z := (RatioSummary{N: 5}).Ratio(); !math.IsNaN(z) {
		t.Errorf("RatioSummary{zero denominators}.Ratio() = %v, want NaN", z)
	}
}
