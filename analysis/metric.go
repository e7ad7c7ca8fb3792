package analysis

import (
	"math"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/stats"
)

// metric analyses one metric over the arms, before the multiple-comparison
// correction: PValueAdjusted and Significant are filled by adjust.
func (an *analyzer) metric(def flywheel.Metric, role string, rows map[string]MetricStats) MetricResult {
	dir := def.Direction
	if dir == "" {
		dir = flywheel.DirectionIncrease
	}
	res := MetricResult{
		Metric:    def.Key,
		Type:      def.Type,
		Role:      role,
		Direction: dir,
		Variants:  make([]VariantResult, 0, len(an.variants)),
	}
	if len(an.variants) == 0 {
		return res
	}
	arms := make([]MetricStats, len(an.variants))
	for i, v := range an.variants {
		arms[i] = rows[v.Key] // zero row: no units
		arms[i].Variant = v.Key
	}

	var cuped *stats.CUPED
	stratified := an.cells != nil && def.Type != flywheel.MetricRatio
	if (def.Type == flywheel.MetricMean || def.Type == flywheel.MetricCount) && !an.sequential && !stratified {
		summaries := make([]stats.Summary, len(arms))
		var pooled stats.Summary
		for i, a := range arms {
			summaries[i] = a.summary(def.Type)
			pooled = pooled.Merge(summaries[i])
		}
		if pooled.VarX() > 0 {
			c := stats.FitCUPED(summaries...)
			cuped = &c
		}
	}

	control := arms[0]
	for i, a := range arms {
		mo := a.moments(def.Type)
		vr := VariantResult{Variant: a.Variant, Units: a.N, Mean: Float(mo.Mean), StdDev: Float(math.Sqrt(mo.Var)), Maturing: a.Maturing}
		if stratified {
			vr.Mean = Float(an.cells.armMean(def.Key, a.Variant))
			vr.Units = an.cells.armUnits(def.Key, a.Variant)
		}
		switch {
		case i > 0 && stratified:
			vr.Comparison = an.compareStratified(def, dir, control.Variant, a.Variant)
		case i > 0:
			vr.Comparison = an.compare(def, dir, control, a, cuped)
		}
		res.Variants = append(res.Variants, vr)
	}
	return res
}

// compare compares one arm with the control.
func (an *analyzer) compare(def flywheel.Metric, dir flywheel.Direction, control, variant MetricStats, cuped *stats.CUPED) *Comparison {
	alpha := an.opts.Alpha
	var diff, lift stats.Estimate
	var p float64
	var bayes stats.BayesResult
	switch def.Type {
	case flywheel.MetricConversion, flywheel.MetricRetention:
		r := stats.ProportionTest(control.proportion(), variant.proportion(), alpha)
		diff, lift, p = r.Diff, r.Lift, r.P
		if control.N > 0 && variant.N > 0 {
			bayes = stats.BayesProportions(control.proportion(), variant.proportion(), alpha)
		} else {
			bayes = undefinedBayes()
		}
	case flywheel.MetricRatio:
		r := stats.RatioTest(control.ratio(), variant.ratio(), alpha)
		diff, lift, p = r.Diff, r.Lift, r.P
		bayes = stats.BayesMeans(control.moments(def.Type), variant.moments(def.Type), alpha)
	default: // mean, count
		r := stats.Welch(control.moments(def.Type), variant.moments(def.Type), alpha)
		diff, lift, p = r.Diff, r.Lift, r.P
		bayes = stats.BayesMeans(control.moments(def.Type), variant.moments(def.Type), alpha)
	}

	c := &Comparison{
		Diff:           fromStats(diff),
		Lift:           fromStats(lift),
		PValue:         Float(p),
		PValueAdjusted: nan(),
		ChanceToWin:    Float(bayes.ChanceToWin),
		ExpectedLoss:   Float(bayes.LossVariant),
	}
	if dir == flywheel.DirectionDecrease {
		// Better is lower: the chance the variant is lower, and the
		// expected rise (harm) if it is shipped.
		c.ChanceToWin = Float(1 - bayes.ChanceToWin)
		c.ExpectedLoss = Float(bayes.LossControl)
	}

	if an.sequential {
		an.sequentialTest(def, control, variant, c)
	}
	if cuped != nil {
		r := cuped.Compare(control.summary(def.Type), variant.summary(def.Type), alpha)
		c.CUPED = &CUPEDBlock{
			Theta:             Float(r.Theta),
			VarianceReduction: Float(r.VarianceReduction),
			Diff:              fromStats(r.Diff),
			Lift:              fromStats(r.Lift),
			PValue:            Float(r.P),
			PValueAdjusted:    nan(),
		}
	}
	return c
}

func undefinedBayes() stats.BayesResult {
	n := math.NaN()
	return stats.BayesResult{ChanceToWin: n, LossVariant: n, LossControl: n}
}

// sampleSize is the planning check of a primary metric: units per arm to
// detect opts.RelativeMDE of the control's baseline with opts.Power, at
// alpha divided by the size of the primary family (Bonferroni, which Holm
// never exceeds), against the smallest arm of the metric. nil when the
// baseline does not allow it.
func (an *analyzer) sampleSize(def flywheel.Metric, m MetricResult, primaries int) *SampleSize {
	if len(m.Variants) < 2 || primaries < 1 {
		return nil
	}
	mde, power := an.opts.RelativeMDE, an.opts.Power
	alpha := an.opts.Alpha / float64((len(m.Variants)-1)*primaries)
	ctl := m.Variants[0]
	base, sd := float64(ctl.Mean), float64(ctl.StdDev)
	var n float64
	switch def.Type {
	case flywheel.MetricConversion, flywheel.MetricRetention:
		p2 := base * (1 + mde)
		if !(base > 0 && p2 < 1) {
			return nil
		}
		n = stats.SampleSizeProportions(base, p2, alpha, power)
	default:
		if !(sd > 0) || base == 0 || math.IsNaN(base) {
			return nil
		}
		n = stats.SampleSizeMeans(mde*math.Abs(base), sd, alpha, power)
	}
	if math.IsNaN(n) || math.IsInf(n, 0) {
		return nil
	}
	smallest := ctl.Units
	for _, v := range m.Variants {
		smallest = min(smallest, v.Units)
	}
	return &SampleSize{
		RelativeMDE: Float(mde),
		Power:       Float(power),
		Alpha:       Float(alpha),
		UnitsPerArm: Float(n),
		SmallestArm: smallest,
	}
}
