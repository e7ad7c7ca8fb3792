package analysis

import (
	"math"
	"slices"

	"github.com/flywheel-oss/flywheel"
)

// Defaults of Options and of PowerRequest.
const (
	DefaultAlpha       = 0.05
	DefaultRelativeMDE = 0.05
	DefaultPower       = 0.8
	// SRMThreshold is the p-value below which the sample ratio mismatch
	// check fails. It is far below any alpha on purpose: the check runs on
	// every recompute of every experiment, and a real mismatch (a broken
	// assignment or exposure log) gives p-values like 1e-10, not 0.01.
	SRMThreshold = 0.001
)

// Adjustment is a multiple-comparison correction of p-values.
type Adjustment string

// The corrections.
const (
	// AdjustHolm controls the family-wise error rate (Holm step-down).
	AdjustHolm Adjustment = "holm"
	// AdjustBH controls the false discovery rate (Benjamini–Hochberg).
	AdjustBH Adjustment = "bh"
	// AdjustNone reports the raw p-values.
	AdjustNone Adjustment = "none"
)

// Options are the reader's choices for one results document.
type Options struct {
	// Alpha is the significance level, in (0, 0.5]; 0 means DefaultAlpha.
	// Intervals are at confidence 1 − Alpha.
	Alpha float64
	// MetricFilter keeps only this metric in Results.Metrics and in the
	// segments ("" = every metric). It changes no number.
	MetricFilter string
	// Segment is the attribute whose values Input.SegmentArms and
	// Input.SegmentStats break the results down by ("" = no segments).
	Segment string
	// Adjustment is the multiple-comparison correction; "" means Holm.
	Adjustment Adjustment
	// RelativeMDE is the relative change the sample-size check plans for,
	// and sets τ² of a new sequential test; 0 means DefaultRelativeMDE.
	RelativeMDE float64
	// Power is the power the sample-size check plans for; 0 means
	// DefaultPower.
	Power float64
}

// withDefaults fills zero (or invalid) options with their defaults, so that
// Analyze always has something sound to work with; ValidateOptions reports
// invalid ones to the caller first.
func (o Options) withDefaults() Options {
	if !(o.Alpha > 0 && o.Alpha <= 0.5) {
		o.Alpha = DefaultAlpha
	}
	if o.Adjustment != AdjustBH && o.Adjustment != AdjustNone {
		o.Adjustment = AdjustHolm
	}
	if !(o.RelativeMDE > 0) || math.IsInf(o.RelativeMDE, 0) {
		o.RelativeMDE = DefaultRelativeMDE
	}
	if !(o.Power > 0 && o.Power < 1) {
		o.Power = DefaultPower
	}
	return o
}

// ValidateOptions checks o for experiment e, reporting every problem as an
// invalid_argument *flywheel.Error with the query parameter at fault
// (alpha, metric, adjustment, relative_mde, power). Zero values are valid:
// they mean the defaults.
func ValidateOptions(e flywheel.Experiment, o Options) error {
	var p flywheel.Problems
	if o.Alpha != 0 && !(o.Alpha > 0 && o.Alpha <= 0.5) {
		p.Add("alpha", "alpha must be in (0, 0.5]")
	}
	if o.MetricFilter != "" && !slices.ContainsFunc(e.Metrics.All(), func(m flywheel.MetricRole) bool {
		return m.Key == o.MetricFilter
	}) {
		p.Add("metric", "experiment %q has no metric %q", e.Key, o.MetricFilter)
	}
	switch o.Adjustment {
	case "", AdjustHolm, AdjustBH, AdjustNone:
	default:
		p.Add("adjustment", "adjustment must be holm, bh or none")
	}
	if o.RelativeMDE != 0 && !(o.RelativeMDE > 0 && !math.IsInf(o.RelativeMDE, 0)) {
		p.Add("relative_mde", "relative_mde must be a positive number")
	}
	if o.Power != 0 && !(o.Power > 0 && o.Power < 1) {
		p.Add("power", "power must be in (0, 1)")
	}
	return p.Err()
}
