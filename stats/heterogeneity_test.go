package stats

import (
	"math"
	"testing"
)

// TestCochranQ pins Cochran's Q on hand-worked cases: χ²(1) upper tail at
// 2 is 2·(1 − Φ(√2)); χ²(2) upper tail at 2 is e⁻¹.
func TestCochranQ(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	tests := []struct {
		name      string
		d, se     []float64
		pooled, q float64
		df        int
		p         float64
	}{
		{name: "two equal weights", d: []float64{1, 3}, se: []float64{1, 1}, pooled: 2, q: 2, df: 1, p: 0.15729920705028513},
		{name: "three, middle heavier", d: []float64{0, 1, 2}, se: []float64{1, 0.5, 1}, pooled: 1, q: 2, df: 2, p: math.Exp(-1)},
		{name: "identical estimates", d: []float64{5, 5, 5}, se: []float64{1, 2, 3}, pooled: 5, q: 0, df: 2, p: 1},
		{name: "unusable skipped", d: []float64{1, nan, 3, 7, 9}, se: []float64{1, 1, 1, 0, inf}, pooled: 2, q: 2, df: 1, p: 0.15729920705028513},
		{name: "one usable", d: []float64{1, 2}, se: []float64{1, 0}, pooled: nan, q: nan, df: 0, p: nan},
		{name: "empty", pooled: nan, q: nan, df: 0, p: nan},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := CochranQ(tt.d, tt.se)
			if !closeTo(got.Pooled, tt.pooled) || !closeTo(got.Q, tt.q) || got.DF != tt.df || !closeTo(got.P, tt.p) {
				t.Errorf("CochranQ(%v, %v) = %+v, want pooled %v Q %v DF %d P %v", tt.d, tt.se, got, tt.pooled, tt.q, tt.df, tt.p)
			}
		})
	}
}

func closeTo(a, b float64) bool {
	if math.IsNaN(a) || math.IsNaN(b) {
		return math.IsNaN(a) && math.IsNaN(b)
	}
	return math.Abs(a-b) <= 1e-12*math.Max(1, math.Abs(b))
}
