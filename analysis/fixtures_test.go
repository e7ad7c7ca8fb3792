package analysis

import (
	"time"

	"github.com/flywheel-oss/flywheel"
)

// convRow is a conversion row.
func convRow(metric, variant string, n, conversions int64) MetricStats {
	return MetricStats{Metric: metric, Variant: variant, N: n, Conversions: conversions}
}

// meanRow is a mean row with the sums of n values of the given mean and
// sample variance, and of a covariate with mean mx, variance vx and
// covariance cov with y.
func meanRow(metric, variant string, n int64, my, vy, mx, vx, cov float64) MetricStats {
	f := float64(n)
	return MetricStats{
		Metric: metric, Variant: variant, N: n,
		Sum: f * my, SumSq: (f-1)*vy + f*my*my,
		SumX: f * mx, SumXSq: (f-1)*vx + f*mx*mx, SumXY: (f-1)*cov + f*mx*my,
	}
}

// ratioRow is a ratio row from per-unit means, variances and covariance
// of numerator and denominator.
func ratioRow(metric, variant string, n int64, mn, md, vn, vd, cnd float64) MetricStats {
	f := float64(n)
	return MetricStats{
		Metric: metric, Variant: variant, N: n,
		SumNum: f * mn, SumDen: f * md,
		SumNumSq: (f-1)*vn + f*mn*mn, SumDenSq: (f-1)*vd + f*md*md, SumNumDen: (f-1)*cnd + f*mn*md,
	}
}

// healthyInput is a two-arm experiment on one conversion metric with
// 100,000 units per arm and nothing wrong: Analyze gives no warning.
func healthyInput() Input {
	return Input{
		Experiment: flywheel.Experiment{
			Key:      "checkout-button",
			Status:   flywheel.StatusRunning,
			Analysis: flywheel.AnalysisFixed,
			UnitType: "customer",
			Variants: []flywheel.Variant{{Key: "control", Weight: 0.5}, {Key: "green", Weight: 0.5}},
			Metrics:  flywheel.MetricRefs{Primary: []string{"purchase"}},
		},
		Metrics: []flywheel.Metric{
			{Key: "purchase", Type: flywheel.MetricConversion, WindowHours: 168, Direction: flywheel.DirectionIncrease},
		},
		ComputedAt: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC),
		Freshness:  Complete(time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)),
		Arms:       []ArmCounts{{Variant: "control", Units: 100_000}, {Variant: "green", Units: 100_100}},
		Stats: []MetricStats{
			convRow("purchase", "control", 100_000, 10_100),
			convRow("purchase", "green", 100_100, 10_400),
		},
	}
}

// sampleInput is the experiment of the golden file: a conversion primary
// metric, a conversion guardrail that should decrease, a mean metric with
// a CUPED covariate and a ratio metric, with exposures that raise
// warnings and a device breakdown.
func sampleInput() Input {
	return Input{
		Experiment: flywheel.Experiment{
			Key:      "checkout-button",
			Status:   flywheel.StatusRunning,
			Analysis: flywheel.AnalysisFixed,
			UnitType: "customer",
			Variants: []flywheel.Variant{{Key: "control", Weight: 0.5}, {Key: "green", Weight: 0.5}},
			Metrics: flywheel.MetricRefs{
				Primary:    []string{"purchase"},
				Guardrails: []string{"refund"},
				Secondary:  []string{"revenue", "order_value"},
			},
		},
		Metrics: []flywheel.Metric{
			{Key: "purchase", Type: flywheel.MetricConversion, WindowHours: 168, Direction: flywheel.DirectionIncrease},
			{Key: "refund", Type: flywheel.MetricConversion, WindowHours: 720, Direction: flywheel.DirectionDecrease},
			{Key: "revenue", Type: flywheel.MetricMean, WindowHours: 168, Direction: flywheel.DirectionIncrease},
			{Key: "order_value", Type: flywheel.MetricRatio, Direction: flywheel.DirectionIncrease},
		},
		ComputedAt:        time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC),
		Freshness:         Pending(time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC), time.Date(2026, 11, 23, 11, 59, 17, 500_000_000, time.UTC), 1234),
		Arms:              []ArmCounts{{Variant: "control", Units: 10020, OptedOut: 10}, {Variant: "green", Units: 9980, OptedOut: 12}},
		MultipleExposures: 300,
		Overridden:        2,
		Stats: []MetricStats{
			withMaturing(convRow("purchase", "control", 10020, 1012), 700),
			withMaturing(convRow("purchase", "green", 9980, 1118), 690),
			withMaturing(convRow("refund", "control", 10020, 150), 2500),
			withMaturing(convRow("refund", "green", 9980, 120), 2480),
			meanRow("revenue", "control", 10020, 5.2, 400, 5.0, 380, 190),
			meanRow("revenue", "green", 9980, 5.9, 430, 5.1, 390, 200),
			ratioRow("order_value", "control", 10020, 5.2, 0.11, 400, 0.11, 5.5),
			ratioRow("order_value", "green", 9980, 5.9, 0.12, 430, 0.12, 6.1),
		},
		SegmentArms: []ArmCounts{
			{Variant: "control", Segment: "mobile", Units: 6010}, {Variant: "green", Segment: "mobile", Units: 5990},
			{Variant: "control", Segment: "desktop", Units: 4010}, {Variant: "green", Segment: "desktop", Units: 3990},
		},
		SegmentStats: []MetricStats{
			inSegment(convRow("purchase", "control", 6010, 560), "mobile"),
			inSegment(convRow("purchase", "green", 5990, 640), "mobile"),
			inSegment(convRow("purchase", "control", 4010, 452), "desktop"),
			inSegment(convRow("purchase", "green", 3990, 478), "desktop"),
		},
	}
}

func withMaturing(r MetricStats, n int64) MetricStats {
	r.Maturing = n
	return r
}

func inSegment(r MetricStats, value string) MetricStats {
	r.Segment = value
	return r
}
