package analysis

import (
	"slices"

	"github.com/flywheel-oss/flywheel"
)

// The roles of metrics in an experiment, as flywheel.MetricRefs.All names
// them; each is one family for the multiple-comparison correction.
const (
	RolePrimary   = "primary"
	RoleGuardrail = "guardrail"
	RoleSecondary = "secondary"
)

// Analyze computes the results document of one experiment from its
// sufficient statistics. It never fails: what cannot be computed is NaN
// (null in JSON) and what should not be trusted is in Health.Warnings.
// Invalid options fall back to their defaults; check them first with
// ValidateOptions.
func Analyze(in Input, opts Options) Results {
	opts = opts.withDefaults()
	e := in.Experiment
	res := Results{
		Experiment: e.Key,
		Status:     e.Status,
		Analysis:   e.Analysis,
		Freshness:  in.Freshness,
		Alpha:      Float(opts.Alpha),
		Adjustment: opts.Adjustment,
		Metrics:    []MetricResult{},
		Segments:   map[string]SegmentResult{},
	}

	// Input.Freshness may be left zero by callers that computed from raw
	// events: complete at ComputedAt.
	if res.ComputedAt.IsZero() {
		res.ComputedAt = in.ComputedAt
	}
	if res.AsOf.IsZero() {
		res.AsOf = res.ComputedAt
	}
	defs := map[string]flywheel.Metric{}
	for _, m := range in.Metrics {
		defs[m.Key] = m
	}
	var warnings []string
	var roles []flywheel.MetricRole
	for _, mr := range e.Metrics.All() {
		if _, ok := defs[mr.Key]; !ok {
			warnings = append(warnings, "metric "+mr.Key+" has no definition and was skipped")
			continue
		}
		roles = append(roles, mr)
	}

	arms, optedOut, unknown := armCounts(e.Variants, in.Arms, "")
	for _, a := range arms {
		res.Units += a
	}
	res.Estimator = EstimatorPooled
	var cells epochCells
	srmVariants, srmArms := e.Variants, arms
	if e.Allocation == flywheel.AllocationBandit {
		if in.EpochStatsRead {
			res.Estimator = EstimatorEpochStratified
			cells = newEpochCells(in.EpochStats)
			var observed []int64
			if srmVariants, observed = banditSRM(e.Variants, in, cells, roles); observed != nil {
				// The units the stratified estimate analyses: those
				// exposed to several arms too, in their first.
				srmArms, res.Units = observed, 0
				for _, n := range observed {
					res.Units += n
				}
			}
		} else {
			warnings = append(warnings, "bandit: the epoch-stratified estimate needs the results aggregates, which are not built yet: "+
				"these numbers pool the weight epochs and may be biased (Simpson's paradox); retry in a minute")
		}
	}
	srm := srmCheck(srmArms, srmVariants)

	an := &analyzer{
		opts:       opts,
		variants:   e.Variants,
		sequential: e.Analysis == flywheel.AnalysisSequential,
		srmOK:      srm.OK,
		states:     map[stateKey]SequentialState{},
		cells:      cells,
		srmSplit:   srmVariants,
	}
	for _, s := range in.Sequential {
		an.states[stateKey{s.Metric, s.Variant}] = s
	}
	rows := groupRows(in.Stats, "")
	all := an.metrics(roles, defs, rows)
	res.Metrics = filterMetrics(all, opts.MetricFilter)
	if an.sequential {
		res.Sequential = an.newStates
		if res.Sequential == nil {
			res.Sequential = []SequentialState{}
		}
	}

	res.Health = Health{
		SRM:               srm,
		MultipleExposures: in.MultipleExposures,
		Overridden:        in.Overridden,
		OptedOut:          optedOut,
		CrossoverShare:    nan(),
	}
	if c := in.Crossover; c.Customers > 0 {
		res.Health.CrossoverShare = Float(float64(c.Mixed) / float64(c.Customers))
	}
	res.Health.Warnings, res.Health.Failed = healthWarnings(in, e.Variants, arms, optedOut, srm, all, roles, defs, rows)
	res.Health.Warnings = append(res.Health.Warnings, warnings...)
	for _, v := range unknown {
		res.Health.Warnings = append(res.Health.Warnings,
			"units were counted in variant "+v+", which the experiment does not have; they are ignored")
	}

	if opts.Segment != "" {
		res.Segments = an.segments(in, roles, defs, opts.Segment)
		if len(res.Segments) > 0 {
			res.Health.Warnings = append(res.Health.Warnings, segmentWarning(opts.Segment, len(res.Segments)))
			if cells != nil {
				res.Health.Warnings = append(res.Health.Warnings, "bandit: segment results pool the weight epochs (they are not stratified) and may be biased if the base rate drifted")
			}
		}
	}
	return res
}

// stateKey identifies one comparison of a sequential experiment.
type stateKey struct{ metric, variant string }

// analyzer holds what the analysis of one set of arms (the whole
// experiment, or one segment) shares.
type analyzer struct {
	opts       Options
	variants   []flywheel.Variant
	sequential bool
	srmOK      bool
	// segment is set within a segment: metrics without segment rows are
	// left out, and so is the sample-size check.
	segment bool
	// states are the stored sequential states; nil in segments, which use
	// a single look. newStates collects the states to store.
	states    map[stateKey]SequentialState
	newStates []SequentialState
	// cells are a bandit's per-epoch statistics (nil otherwise, and in
	// segments): its comparisons are epoch-stratified.
	cells epochCells
	// srmSplit are the variants with the weights the SRM check expects:
	// for a bandit, the split its epochs imply.
	srmSplit []flywheel.Variant
}

// metrics analyses every metric (in a segment, every metric with rows),
// then corrects the p-values per role and
// writes the summaries.
func (an *analyzer) metrics(roles []flywheel.MetricRole, defs map[string]flywheel.Metric,
	rows map[string]map[string]MetricStats) []MetricResult {
	out := make([]MetricResult, 0, len(roles))
	primaries := 0
	for _, r := range roles {
		if r.Role == RolePrimary {
			primaries++
		}
	}
	for _, r := range roles {
		if an.segment && len(rows[r.Key]) == 0 {
			continue // not aggregated by segment
		}
		m := an.metric(defs[r.Key], r.Role, rows[r.Key])
		if r.Role == RolePrimary && !an.segment {
			m.SampleSize = an.sampleSize(defs[r.Key], m, primaries)
		}
		out = append(out, m)
	}
	adjust(out, an.opts.Adjustment, an.opts.Alpha)
	for i := range out {
		out[i].Summary = summarize(out[i], an.opts.Alpha, an.sequential, an.srmOK)
	}
	return out
}

// filterMetrics keeps the metric named by filter ("" keeps all).
func filterMetrics(all []MetricResult, filter string) []MetricResult {
	if filter == "" {
		return all
	}
	out := []MetricResult{}
	for _, m := range all {
		if m.Metric == filter {
			out = append(out, m)
		}
	}
	return out
}

// armCounts returns the units and opted-out units per variant, in variant
// order, of the rows with the given segment value, and the variant keys of
// rows that match no variant.
func armCounts(variants []flywheel.Variant, rows []ArmCounts, segment string) (units, optedOut []int64, unknown []string) {
	units = make([]int64, len(variants))
	optedOut = make([]int64, len(variants))
	for _, r := range rows {
		if r.Segment != segment {
			continue
		}
		i := slices.IndexFunc(variants, func(v flywheel.Variant) bool { return v.Key == r.Variant })
		if i < 0 {
			if !slices.Contains(unknown, r.Variant) {
				unknown = append(unknown, r.Variant)
			}
			continue
		}
		units[i] += r.Units
		optedOut[i] += r.OptedOut
	}
	return units, optedOut, unknown
}

// groupRows indexes the rows with the given segment value by metric and
// variant; a repeated (metric, variant) row is added to the first.
func groupRows(rows []MetricStats, segment string) map[string]map[string]MetricStats {
	out := map[string]map[string]MetricStats{}
	for _, r := range rows {
		if r.Segment != segment {
			continue
		}
		byVariant := out[r.Metric]
		if byVariant == nil {
			byVariant = map[string]MetricStats{}
			out[r.Metric] = byVariant
		}
		if prev, ok := byVariant[r.Variant]; ok {
			r = prev.merge(r)
		}
		byVariant[r.Variant] = r
	}
	return out
}

// merge adds the sums of o to r.
func (r MetricStats) merge(o MetricStats) MetricStats {
	r.N += o.N
	r.Conversions += o.Conversions
	r.Sum += o.Sum
	r.SumSq += o.SumSq
	r.SumX += o.SumX
	r.SumXSq += o.SumXSq
	r.SumXY += o.SumXY
	r.SumNum += o.SumNum
	r.SumDen += o.SumDen
	r.SumNumSq += o.SumNumSq
	r.SumDenSq += o.SumDenSq
	r.SumNumDen += o.SumNumDen
	r.Maturing += o.Maturing
	return r
}
