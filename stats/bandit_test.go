package stats

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestThompsonProbabilities(t *testing.T) {
	conv := func(n int64, x float64) Summary { return Summary{N: n, Sum: x, SumSq: x} }
	norm := func(n int64, mean, sd float64) Summary {
		// n units with mean and sample sd: Σy = n·mean, Σy² = (n−1)sd² + n·mean².
		return Summary{N: n, Sum: float64(n) * mean, SumSq: float64(n-1)*sd*sd + float64(n)*mean*mean}
	}
	tests := []struct {
		name   string
		arms   []Summary
		binary bool
		want   []float64 // each within 0.02 (10,000 draws: MC SE ≤ 0.005)
	}{
		{"no data is a coin toss", []Summary{{}, {}}, true, []float64{0.5, 0.5}},
		{"equal data, three arms", []Summary{conv(1000, 100), conv(1000, 100), conv(1000, 100)}, true, []float64{1.0 / 3, 1.0 / 3, 1.0 / 3}},
		{"clear winner", []Summary{conv(10000, 1000), conv(10000, 1300)}, true, []float64{0, 1}},
		// P(B > A) for Beta(101, 901) vs Beta(121, 881): about 0.91 (normal approximation: z = 0.02/0.0141).
		{"likely winner", []Summary{conv(1000, 100), conv(1000, 120)}, true, []float64{0.08, 0.92}},
		{"means: clear winner", []Summary{norm(500, 10, 2), norm(500, 11, 2)}, false, []float64{0, 1}},
		{"means: one arm without variance yet", []Summary{norm(500, 10, 2), {N: 1, Sum: 12, SumSq: 144}}, false, []float64{0.5, 0.5}},
		{"means: equal", []Summary{norm(500, 10, 2), norm(500, 10, 2)}, false, []float64{0.5, 0.5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, arms := ThompsonProbabilities(tt.arms, tt.binary, 10000, rand.NewPCG(1, 2))
			if len(p) != len(tt.want) || len(arms) != len(tt.want) {
				t.Fatalf("ThompsonProbabilities = %v (%d summaries), want %d arms", p, len(arms), len(tt.want))
			}
			sum := 0.0
			for i := range p {
				sum += p[i]
				if math.Abs(p[i]-tt.want[i]) > 0.02 {
					t.Errorf("P(arm %d best) = %.4f, want %.4f ± 0.02", i, p[i], tt.want[i])
				}
				if arms[i].ProbBest != p[i] || arms[i].N != tt.arms[i].N {
					t.Errorf("summary[%d] = %+v, want ProbBest %v and N %d", i, arms[i], p[i], tt.arms[i].N)
				}
			}
			if math.Abs(sum-1) > 1e-12 {
				t.Errorf("probabilities sum to %v, want 1", sum)
			}
		})
	}
}

func TestThompsonProbabilitiesReproducible(t *testing.T) {
	arms := []Summary{{N: 300, Sum: 30, SumSq: 30}, {N: 310, Sum: 35, SumSq: 35}, {N: 290, Sum: 33, SumSq: 33}}
	a, _ := ThompsonProbabilities(arms, true, 2000, rand.NewPCG(7, 7))
	b, _ := ThompsonProbabilities(arms, true, 2000, rand.NewPCG(7, 7))
	c, _ := ThompsonProbabilities(arms, true, 2000, rand.NewPCG(8, 8))
	for i := range a {
		if a[i] != b[i] {
			t.Errorf("same seed: P[%d] = %v then %v, want equal", i, a[i], b[i])
		}
	}
	if a[0] == c[0] && a[1] == c[1] {
		t.Errorf("different seeds gave the same probabilities %v: is the source used?", a)
	}
	if p, s := ThompsonProbabilities(arms[:1], true, 100, rand.NewPCG(1, 1)); p != nil || s != nil {
		t.Errorf("one arm: got %v, want nil", p)
	}
	if p, _ := ThompsonProbabilities(arms, true, 0, rand.NewPCG(1, 1)); p != nil {
		t.Errorf("0 draws: got %v, want nil", p)
	}
}

func TestFloorWeights(t *testing.T) {
	tests := []struct {
		name  string
		p     []float64
		floor float64
		want  []float64 // nil = refused
	}{
		{"winner keeps the floor for the others", []float64{0, 1}, 0.05, []float64{0.05, 0.95}},
		{"three arms", []float64{0.2, 0.3, 0.5}, 0.1, []float64{0.1 + 0.7*0.2, 0.1 + 0.7*0.3, 0.1 + 0.7*0.5}},
		{"floor 0 is Thompson itself", []float64{0.25, 0.75}, 0, []float64{0.25, 0.75}},
		{"floor 1/k is the fixed split", []float64{0, 0, 1}, 1.0 / 3, []float64{1.0 / 3, 1.0 / 3, 1.0 / 3}},
		{"floor above 1/k", []float64{0.5, 0.5}, 0.6, nil},
		{"negative floor", []float64{0.5, 0.5}, -0.1, nil},
		{"NaN floor", []float64{0.5, 0.5}, math.NaN(), nil},
		{"probabilities not summing to 1", []float64{0.5, 0.6}, 0.1, nil},
		{"negative probability", []float64{-0.5, 1.5}, 0.1, nil},
		{"no arms", nil, 0.1, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := FloorWeights(tt.p, tt.floor)
			if tt.want == nil {
				if w != nil {
					t.Fatalf("FloorWeights(%v, %v) = %v, want nil", tt.p, tt.floor, w)
				}
				return
			}
			if len(w) != len(tt.want) {
				t.Fatalf("FloorWeights(%v, %v) = %v, want %v", tt.p, tt.floor, w, tt.want)
			}
			sum := 0.0
			for i := range w {
				sum += w[i]
				if math.Abs(w[i]-tt.want[i]) > 1e-12 || w[i] < tt.floor-1e-12 {
					t.Errorf("weight[%d] = %v, want %v", i, w[i], tt.want[i])
				}
			}
			if math.Abs(sum-1) > 1e-12 {
				t.Errorf("weights sum to %v, want 1", sum)
			}
		})
	}
}

func TestEpochStratified(t *testing.T) {
	conv := func(n int64, x float64) Summary { return Summary{N: n, Sum: x, SumSq: x} }
	t.Run("one stratum is the unpooled two-proportion test", func(t *testing.T) {
		s := []Stratum{{Control: conv(1000, 100), Variant: conv(1200, 150)}}
		got := EpochStratified(s, true, 0.05)
		want := ProportionTest(Proportion{1000, 100}, Proportion{1200, 150}, 0.05)
		if !close(got.Diff.Value, want.Diff.Value) || !close(got.Diff.SE, want.Diff.SE) || !close(got.P, want.P) || !close(got.NullSE, want.PooledSE) {
			t.Errorf("EpochStratified = %+v, want Diff %+v, P %v", got, want.Diff, want.P)
		}
		if !close(got.Lift.Value, want.Lift.Value) {
			t.Errorf("Lift = %v, want %v", got.Lift.Value, want.Lift.Value)
		}
	})
	t.Run("Simpson: pooled says the variant wins, every epoch says no difference", func(t *testing.T) {
		// Epoch 1: base 10 %, 900 control and 100 variant. Epoch 2: base
		// 30 %, 100 control and 900 variant. Within each epoch the arms
		// convert equally; pooled, the variant converts at 28 % against 12 %.
		s := []Stratum{
			{Control: conv(900, 90), Variant: conv(100, 10)},
			{Control: conv(100, 30), Variant: conv(900, 270)},
		}
		got := EpochStratified(s, true, 0.05)
		if got.Diff.Value != 0 || got.Control != 0.2 || got.Variant != 0.2 || got.Strata != 2 {
			t.Errorf("EpochStratified = %+v, want Diff 0 and both means 0.2 over 2 strata", got)
		}
		pooled := ProportionTest(Proportion{1000, 120}, Proportion{1000, 280}, 0.05)
		if pooled.Diff.Value < 0.15 || pooled.P > 1e-6 {
			t.Errorf("pooled test = %+v, want a large, significant (wrong) difference", pooled.Diff)
		}
		// Var = Σ w²(p(1−p)/n_c + p(1−p)/n_t), w = 1/2.
		se := math.Sqrt(0.25*(0.09/900+0.09/100) + 0.25*(0.21/100+0.21/900))
		if !close(got.Diff.SE, se) {
			t.Errorf("SE = %v, want %v", got.Diff.SE, se)
		}
	})
	t.Run("weights follow the epoch sizes", func(t *testing.T) {
		s := []Stratum{
			{Control: conv(100, 10), Variant: conv(100, 20), Units: 300}, // diff 0.10
			{Control: conv(100, 10), Variant: conv(100, 10), Units: 100}, // diff 0
		}
		if got := EpochStratified(s, true, 0.05); !close(got.Diff.Value, 0.075) {
			t.Errorf("Diff = %v, want 0.75·0.10 + 0.25·0", got.Diff.Value)
		}
	})
	t.Run("means and a dropped stratum", func(t *testing.T) {
		m := func(n int64, mean, sd float64) Summary {
			return Summary{N: n, Sum: float64(n) * mean, SumSq: float64(n-1)*sd*sd + float64(n)*mean*mean}
		}
		s := []Stratum{
			{Control: m(50, 10, 2), Variant: m(50, 11, 3)},
			{Control: m(40, 20, 2), Variant: m(1, 25, 0)}, // one variant unit: no variance
		}
		got := EpochStratified(s, false, 0.05)
		want := Welch(s[0].Control.Moments(), s[0].Variant.Moments(), 0.05)
		if got.Strata != 1 || got.DroppedUnits != 41 || !close(got.Diff.Value, want.Diff.Value) || !close(got.Diff.SE, want.Diff.SE) {
			t.Errorf("EpochStratified = %+v, want the first stratum's Welch diff %+v and 41 dropped units", got, want.Diff)
		}
	})
	t.Run("no usable stratum", func(t *testing.T) {
		got := EpochStratified([]Stratum{{Control: conv(10, 1)}}, true, 0.05)
		if !math.IsNaN(got.Diff.Value) || !math.IsNaN(got.P) || got.DroppedUnits != 10 {
			t.Errorf("EpochStratified = %+v, want NaN and 10 dropped units", got)
		}
	})
	t.Run("swapping the arms flips the sign", func(t *testing.T) {
		s := []Stratum{{Control: conv(500, 50), Variant: conv(400, 60)}, {Control: conv(300, 60), Variant: conv(600, 100)}}
		sw := []Stratum{{Control: s[0].Variant, Variant: s[0].Control}, {Control: s[1].Variant, Variant: s[1].Control}}
		a, b := EpochStratified(s, true, 0.05), EpochStratified(sw, true, 0.05)
		if !close(a.Diff.Value, -b.Diff.Value) || !close(a.P, b.P) || !close(a.Diff.SE, b.Diff.SE) {
			t.Errorf("swapped: %+v vs %+v", a.Diff, b.Diff)
		}
	})
}

func close(a, b float64) bool { return math.Abs(a-b) <= 1e-12*math.Max(1, math.Abs(b)) }
