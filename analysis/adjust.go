package analysis

import (
	"github.com/flywheel-oss/flywheel/stats"
)

// adjust fills PValueAdjusted and Significant of every comparison. Each
// role is one family: all its metrics × all non-control variants, in
// metric then variant order. The CUPED p-values are corrected in the same
// family, each in place of its comparison's raw p-value.
func adjust(metrics []MetricResult, method Adjustment, alpha float64) {
	for _, role := range []string{RolePrimary, RoleGuardrail, RoleSecondary} {
		var family []*Comparison
		for i := range metrics {
			if metrics[i].Role != role {
				continue
			}
			for _, v := range metrics[i].Variants {
				if v.Comparison != nil {
					family = append(family, v.Comparison)
				}
			}
		}
		if len(family) == 0 {
			continue
		}
		raw := make([]float64, len(family))
		withCUPED := make([]float64, len(family))
		for i, c := range family {
			raw[i] = float64(c.PValue)
			withCUPED[i] = raw[i]
			if c.CUPED != nil {
				withCUPED[i] = float64(c.CUPED.PValue)
			}
		}
		adj, adjCUPED := correct(raw, method), correct(withCUPED, method)
		for i, c := range family {
			c.PValueAdjusted = Float(adj[i])
			c.Significant = adj[i] < alpha
			if c.CUPED != nil {
				c.CUPED.PValueAdjusted = Float(adjCUPED[i])
			}
		}
	}
}

// correct applies the correction; NaN p-values stay NaN and do not count.
func correct(p []float64, method Adjustment) []float64 {
	switch method {
	case AdjustBH:
		return stats.BenjaminiHochberg(p)
	case AdjustNone:
		return append([]float64(nil), p...)
	}
	return stats.Holm(p)
}
