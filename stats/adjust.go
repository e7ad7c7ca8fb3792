package stats

import (
	"cmp"
	"math"
	"slices"
)

// Holm returns the Holm step-down adjusted p-values of p, in the order of p,
// as R p.adjust(p, "holm"): with the m p-values sorted ascending,
// adj₍ᵢ₎ = max_{j≤i} min(1, (m−j+1)·p₍ⱼ₎). It controls the family-wise
// error rate. NaN entries stay NaN and do not count towards m, as in R.
func Holm(p []float64) []float64 {
	return adjust(p, func(sorted []float64, m int) {
		running := 0.0
		for i := range sorted {
			running = math.Max(running, math.Min(1, float64(m-i)*sorted[i]))
			sorted[i] = running
		}
	})
}

// BenjaminiHochberg returns the Benjamini–Hochberg adjusted p-values of p,
// in the order of p, as R p.adjust(p, "BH"): with the m p-values sorted
// ascending, adj₍ᵢ₎ = min_{j≥i} min(1, (m/j)·p₍ⱼ₎). It controls the false
// discovery rate. NaN entries stay NaN and do not count towards m.
func BenjaminiHochberg(p []float64) []float64 {
	return adjust(p, func(sorted []float64, m int) {
		running := 1.0
		for i := m - 1; i >= 0; i-- {
			running = math.Min(running, float64(m)/float64(i+1)*sorted[i])
			sorted[i] = running
		}
	})
}

// adjust sorts the defined p-values ascending, lets step adjust them in
// place, and maps the results back to the positions of p.
func adjust(p []float64, step func(sorted []float64, m int)) []float64 {
	out := make([]float64, len(p))
	idx := make([]int, 0, len(p))
	for i, v := range p {
		out[i] = math.NaN()
		if !math.IsNaN(v) {
			idx = append(idx, i)
		}
	}
	slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(p[a], p[b]) })
	sorted := make([]float64, len(idx))
	for k, i := range idx {
		sorted[k] = p[i]
	}
	step(sorted, len(sorted))
	for k, i := range idx {
		out[i] = sorted[k]
	}
	return out
}
