package analysis

import (
	"math"
	"slices"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/stats"
)

// The estimators a results document names.
const (
	// EstimatorPooled compares the arms' means over all their units: valid
	// when the weights never changed.
	EstimatorPooled = "pooled"
	// EstimatorEpochStratified compares the arms within each weight epoch
	// of a bandit and combines the epochs by their sizes
	// (stats.EpochStratified).
	EstimatorEpochStratified = stats.EstimatorEpochStratified
)

// epochCells indexes a bandit's per-epoch statistics: metric → epoch →
// variant.
type epochCells map[string]map[int]map[string]EpochStats

func newEpochCells(rows []EpochStats) epochCells {
	c := epochCells{}
	for _, r := range rows {
		if c[r.Metric] == nil {
			c[r.Metric] = map[int]map[string]EpochStats{}
		}
		if c[r.Metric][r.Epoch] == nil {
			c[r.Metric][r.Epoch] = map[string]EpochStats{}
		}
		c[r.Metric][r.Epoch][r.Variant] = r
	}
	return c
}

func (r EpochStats) summary() stats.Summary {
	return stats.Summary{N: r.N, Sum: r.Sum, SumSq: r.SumSq}
}

// epochs returns the metric's epochs in order, with each epoch's size over
// every variant.
func (c epochCells) epochs(metric string) (keys []int, size map[int]int64) {
	size = map[int]int64{}
	for k, vs := range c[metric] {
		keys = append(keys, k)
		for _, r := range vs {
			size[k] += r.N
		}
	}
	slices.Sort(keys)
	return keys, size
}

// strata returns the strata of one comparison.
func (c epochCells) strata(metric, control, variant string) []stats.Stratum {
	keys, size := c.epochs(metric)
	out := make([]stats.Stratum, 0, len(keys))
	for _, k := range keys {
		out = append(out, stats.Stratum{
			Control: c[metric][k][control].summary(),
			Variant: c[metric][k][variant].summary(),
			Units:   size[k],
		})
	}
	return out
}

// armMean returns an arm's epoch-stratified mean, Σ w_k·ȳ_k over the
// epochs in which it has units, w_k ∝ the epoch's size; NaN with none.
func (c epochCells) armMean(metric, variant string) float64 {
	keys, size := c.epochs(metric)
	var sum, total float64
	for _, k := range keys {
		r := c[metric][k][variant]
		if r.N == 0 {
			continue
		}
		sum += float64(size[k]) * r.Sum / float64(r.N)
		total += float64(size[k])
	}
	if total == 0 {
		return math.NaN()
	}
	return sum / total
}

// compareStratified fills a bandit comparison from the epoch-stratified
// estimate: difference, lift, p-value, and the chance to win and expected
// loss of the normal posterior N(diff, SE²) of the difference under a flat
// prior (the Beta posteriors of the pooled arms would inherit their bias).
func (an *analyzer) compareStratified(def flywheel.Metric, dir flywheel.Direction, control, variant string) *Comparison {
	r := stats.EpochStratified(an.cells.strata(def.Key, control, variant), isProportion(def.Type), an.opts.Alpha)
	b := stats.NormalBayes(r.Diff.Value, r.Diff.SE, an.opts.Alpha)
	ctw, lossV, lossC := b.ChanceToWin, b.LossVariant, b.LossControl
	c := &Comparison{
		Diff:           fromStats(r.Diff),
		Lift:           fromStats(r.Lift),
		PValue:         Float(r.P),
		PValueAdjusted: nan(),
		ChanceToWin:    Float(ctw),
		ExpectedLoss:   Float(lossV),
	}
	if dir == flywheel.DirectionDecrease {
		c.ChanceToWin, c.ExpectedLoss = Float(1-ctw), Float(lossC)
	}
	return c
}

// banditSRM returns the variants with the weights a bandit's arms should
// have overall, Σ_k n_k·w_k / Σ_k n_k over its epochs, and the units
// observed per variant, both from the epoch sizes of the first metric with
// epoch statistics (the units the stratified estimate uses, those exposed
// to several arms included). Without them: the variants and nil.
func banditSRM(variants []flywheel.Variant, in Input, c epochCells, roles []flywheel.MetricRole) ([]flywheel.Variant, []int64) {
	if len(in.BanditEpochs) == 0 {
		return variants, nil
	}
	weights := map[int]map[string]float64{}
	for _, ep := range in.BanditEpochs {
		weights[ep.Epoch] = ep.Weights
	}
	for _, mr := range roles {
		keys, size := c.epochs(mr.Key)
		if len(keys) == 0 {
			continue
		}
		out := slices.Clone(variants)
		observed := make([]int64, len(variants))
		var total float64
		for i := range out {
			out[i].Weight = 0
		}
		for _, k := range keys {
			w, ok := weights[k]
			if !ok {
				return variants, nil
			}
			total += float64(size[k])
			for i := range out {
				out[i].Weight += float64(size[k]) * w[out[i].Key]
				observed[i] += c[mr.Key][k][out[i].Key].N
			}
		}
		if total == 0 {
			return variants, nil
		}
		for i := range out {
			out[i].Weight /= total
		}
		return out, observed
	}
	return variants, nil
}

// armUnits returns an arm's units over every epoch of a metric.
func (c epochCells) armUnits(metric, variant string) int64 {
	var n int64
	for _, vs := range c[metric] {
		n += vs[variant].N
	}
	return n
}
