package stats

import (
	"math"
	"slices"
	"testing"
)

func TestPercentile(t *testing.T) {
	values := []float64{10, 1, 4, 3, 2}
	tests := []struct {
		q, want float64
	}{
		// Sorted 1 2 3 4 10, h = 4q; R quantile(type = 7) gives the same.
		{0, 1}, {0.5, 3}, {0.9, 4 + 0.6*6}, {0.99, 4 + 0.96*6}, {1, 10}, {0.125, 1.5},
	}
	for _, tt := range tests {
		if got := Percentile(values, tt.q); math.Abs(got-tt.want) > 1e-12 {
			t.Errorf("Percentile(%v, %v) = %v, want %v", values, tt.q, got, tt.want)
		}
	}
	if !slices.Equal(values, []float64{10, 1, 4, 3, 2}) {
		t.Errorf("Percentile modified its input: %v", values)
	}
	for _, bad := range []struct {
		values []float64
		q      float64
	}{{nil, 0.5}, {values, -0.1}, {values, 1.1}, {values, math.NaN()}, {[]float64{1, math.NaN()}, 0.5}} {
		if got := Percentile(bad.values, bad.q); !math.IsNaN(got) {
			t.Errorf("Percentile(%v, %v) = %v, want NaN", bad.values, bad.q, got)
		}
	}
	if got := Percentile([]float64{7}, 0.99); got != 7 {
		t.Errorf("Percentile([7], 0.99) = %v, want 7", got)
	}
}

func TestCap(t *testing.T) {
	tests := []struct{ v, limit, want float64 }{
		{5, 10, 5}, {10, 10, 10}, {12.5, 10, 10}, {-3, 10, -3}, {1e9, math.NaN(), 1e9},
	}
	for _, tt := range tests {
		if got := Cap(tt.v, tt.limit); got != tt.want {
			t.Errorf("Cap(%v, %v) = %v, want %v", tt.v, tt.limit, got, tt.want)
		}
	}
}
