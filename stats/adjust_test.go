package stats

import (
	"math"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// TestAdjust pins Holm and BH on hand-worked examples (README §3.7): an
// unsorted input with a tie and a NaN, which R p.adjust drops from m.
func TestAdjust(t *testing.T) {
	nan := math.NaN()
	tests := []struct {
		name     string
		p        []float64
		holm, bh []float64
	}{
		{
			name: "unsorted with tie and NaN",
			p:    []float64{0.04, 0.001, nan, 0.03, 0.2, 0.03},
			// m = 5; sorted 0.001, 0.03, 0.03, 0.04, 0.2.
			// Holm: 5·0.001, 4·0.03, max(3·0.03, ·), max(2·0.04, ·), 1·0.2.
			holm: []float64{0.12, 0.005, nan, 0.12, 0.2, 0.12},
			// BH from the top: 0.2, 5/4·0.04, 5/3·0.03, min(5/2·0.03, ·), 5·0.001.
			bh: []float64{0.05, 0.005, nan, 0.05, 0.2, 0.05},
		},
		{
			name: "capped at 1",
			p:    []float64{0.6, 0.9},
			holm: []float64{1, 1},
			bh:   []float64{0.9, 0.9},
		},
		{name: "single", p: []float64{0.03}, holm: []float64{0.03}, bh: []float64{0.03}},
		{name: "empty", p: []float64{}, holm: []float64{}, bh: []float64{}},
	}
	approx := cmp.Options{cmpopts.EquateApprox(0, 1e-15), cmpopts.EquateNaNs()}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := append([]float64(nil), tt.p...)
			if got := Holm(tt.p); !cmp.Equal(got, tt.holm, approx) {
				t.Errorf("Holm(%v) = %v, want %v", tt.p, got, tt.holm)
			}
			if got := BenjaminiHochberg(tt.p); !cmp.Equal(got, tt.bh, approx) {
				t.Errorf("BenjaminiHochberg(%v) = %v, want %v", tt.p, got, tt.bh)
			}
			if !cmp.Equal(in, tt.p, cmpopts.EquateNaNs(), cmpopts.EquateEmpty()) {
				t.Errorf("input modified: %v, was %v", tt.p, in)
			}
		})
	}
}
