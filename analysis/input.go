package analysis

import (
	"time"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/stats"
)

// Input is everything Analyze needs about one experiment: its definition,
// the definitions of its metrics, and the rows of two aggregate queries
// (exposures per arm, metric sums per metric and arm), each optionally
// broken down by the value of one segment attribute.
type Input struct {
	Experiment flywheel.Experiment
	// Metrics are the definitions of the metrics the experiment names (in
	// any order; others are ignored). A named metric without a definition
	// is skipped with a warning.
	Metrics []flywheel.Metric

	// ComputedAt is when the statistics were aggregated, and Freshness how
	// complete they were then (zero: complete at ComputedAt).
	ComputedAt time.Time
	Freshness  Freshness

	// Arms is the exposure aggregate, one row per variant
	// (GROUP BY variant); a variant without a row has no units.
	Arms []ArmCounts
	// MultipleExposures counts units exposed to more than one variant of
	// the experiment; they are excluded from every arm and every metric.
	MultipleExposures int64
	// Overridden counts units whose variant came from an override; they
	// are excluded from analysis.
	Overridden int64
	// Crossover is for experiments on devices whose events link to
	// customers; leave it zero otherwise.
	Crossover Crossover

	// Stats is the metric aggregate, one row per metric and variant
	// (GROUP BY metric, variant), Segment empty.
	Stats []MetricStats

	// SegmentArms and SegmentStats are the same two aggregates grouped also
	// by the value of the attribute Options.Segment (given at exposure), in
	// MetricStats.Segment and ArmCounts.Segment. They are read only when
	// Options.Segment is set.
	SegmentArms  []ArmCounts
	SegmentStats []MetricStats

	// Sequential is the stored mSPRT state of each (metric, variant) of a
	// sequential experiment from the previous recompute; empty at the first.
	Sequential []SequentialState

	// BanditEpochs are a bandit experiment's weight epochs, oldest first,
	// and EpochStats its analysed units per metric, epoch and variant;
	// EpochStatsRead says they were read (the results stratify by epoch).
	// Fixed experiments leave them empty.
	BanditEpochs   []flywheel.BanditEpoch
	EpochStats     []EpochStats
	EpochStatsRead bool
}

// ArmCounts is one row of the exposure aggregate: the units of one variant
// (and one segment value).
type ArmCounts struct {
	Variant string
	Segment string // the segment value; "" in Input.Arms
	// Units are the analysed units: first exposed to exactly this variant,
	// not overridden, not opted out. The SRM test reads them.
	Units int64
	// OptedOut are units assigned to this variant that opted out of
	// analytics and were removed.
	OptedOut int64
}

// Crossover counts, for an experiment on devices, the customers linked to
// its enrolled devices (Customers) and those of them whose devices were in
// different variants (Mixed).
type Crossover struct {
	Customers int64
	Mixed     int64
}

// MetricStats is one row of the metric aggregate: the sufficient statistics
// of one metric over the analysed units of one variant (and one segment
// value), exactly what one SQL GROUP BY returns. y is the unit's value of
// the metric in its window after first exposure, after the metric's cap; x
// is the same metric over Metric.CUPEDHours before first exposure. Units
// without events count with y = 0 (and x = 0).
//
//	conversion, retention: N, Conversions (units with y = 1); SumX, SumXSq
//	                       with x ∈ {0, 1} if measured (balance check only)
//	mean, count:           N, Sum = Σy, SumSq = Σy², SumX = Σx, SumXSq = Σx²,
//	                       SumXY = Σxy (x sums 0 when not measured: no CUPED)
//	ratio:                 N, SumNum, SumDen, SumNumSq, SumDenSq, SumNumDen
//
// Fields that do not belong to the metric's type are ignored.
type MetricStats struct {
	Metric  string
	Variant string
	Segment string // the segment value; "" in Input.Stats

	N           int64
	Conversions int64

	Sum   float64
	SumSq float64

	SumX   float64
	SumXSq float64
	SumXY  float64

	SumNum    float64
	SumDen    float64
	SumNumSq  float64
	SumDenSq  float64
	SumNumDen float64

	// Maturing counts the units of N whose window had not fully passed at
	// ComputedAt (first exposure + window > ComputedAt); 0 for a window of
	// 0 (no end). Read only in Input.Stats.
	Maturing int64
}

// SequentialState is the mSPRT state of one comparison (metric, variant vs
// control) of a sequential experiment, which the server stores after each
// recompute and passes back in Input.Sequential. Tau2 and Alpha are fixed
// at the first look; a state whose Alpha differs from the request's is used
// for its p-value only. State's interval bounds may be ±Inf: keep them in
// float8 columns, which hold ±Inf and NaN (JSON cannot).
type SequentialState struct {
	Metric  string
	Variant string
	Tau2    float64
	Alpha   float64
	State   stats.LookResult
}

// proportion returns the conversion statistics of a row.
func (r MetricStats) proportion() stats.Proportion {
	return stats.Proportion{N: r.N, Conversions: r.Conversions}
}

// summary returns the mean statistics of a row; a conversion row becomes
// the summary of its 0/1 values.
func (r MetricStats) summary(t flywheel.MetricType) stats.Summary {
	s := stats.Summary{N: r.N, Sum: r.Sum, SumSq: r.SumSq, SumX: r.SumX, SumXSq: r.SumXSq, SumXY: r.SumXY}
	if isProportion(t) {
		c := float64(r.Conversions)
		s.Sum, s.SumSq = c, c
	}
	return s
}

// ratio returns the ratio statistics of a row.
func (r MetricStats) ratio() stats.RatioSummary {
	return stats.RatioSummary{N: r.N, SumNum: r.SumNum, SumDen: r.SumDen,
		SumNumSq: r.SumNumSq, SumDenSq: r.SumDenSq, SumNumDen: r.SumNumDen}
}

// moments returns the size, mean and per-unit sample variance of a row in
// the metric's own terms. For a ratio the variance is n·Var(R), the
// per-unit variance of the linearised values, so that variance/n is the
// delta-method variance of the ratio.
func (r MetricStats) moments(t flywheel.MetricType) stats.Moments {
	if t == flywheel.MetricRatio {
		rs := r.ratio()
		return stats.Moments{N: r.N, Mean: rs.Ratio(), Var: rs.VarRatio() * float64(r.N)}
	}
	return r.summary(t).Moments()
}

// covariate returns the size, mean and variance of x.
func (r MetricStats) covariate() stats.Moments {
	s := stats.Summary{N: r.N, SumX: r.SumX, SumXSq: r.SumXSq}
	return stats.Moments{N: r.N, Mean: s.MeanX(), Var: s.VarX()}
}

func isProportion(t flywheel.MetricType) bool {
	return t == flywheel.MetricConversion || t == flywheel.MetricRetention
}

// EpochStats is the sufficient statistics of one metric over the analysed
// units of one variant that were first exposed in one weight epoch of a
// bandit: units, Σy and Σy² (for conversions y is 0 or 1).
type EpochStats struct {
	Metric  string
	Epoch   int
	Variant string
	N       int64
	Sum     float64
	SumSq   float64
}
