package analysis

import (
	"time"

	"github.com/flywheel-oss/flywheel"
)

// Day is the cumulative sufficient statistics of one metric from the start
// of the experiment to the end of one day: one row per variant, as in
// Input.Stats (Metric and Segment are not read).
type Day struct {
	Date  time.Time
	Stats []MetricStats
}

// Series is the document of GET /v1/experiments/{key}/results/timeseries:
// the cumulative estimate and interval of one metric at the end of each day.
type Series struct {
	Experiment string              `json:"experiment"`
	Metric     string              `json:"metric"`
	Type       flywheel.MetricType `json:"type"`
	Direction  flywheel.Direction  `json:"direction"`
	Analysis   flywheel.Analysis   `json:"analysis"`
	Alpha      Float               `json:"alpha"`
	// Freshness: computed_at, as_of, lag_seconds, pending_events, as in
	// Results.
	Freshness
	Points []Point `json:"points"`
}

// Point is one day of a Series. Variants are as in Results (control
// first, carrying only its size, mean and standard deviation).
type Point struct {
	Date     string          `json:"date"` // YYYY-MM-DD, in Date's location
	Variants []VariantResult `json:"variants"`
}

// Timeseries computes the cumulative results of metric m in experiment e
// for each day, in the order given. For a fixed-horizon experiment the
// daily intervals and p-values are the fixed-horizon ones: they are not
// safe to stop on, which is what the sequential analysis is for. For a
// sequential experiment each day is one look of the mSPRT, replayed from
// the first day (τ² from the first day with data), so the intervals are
// confidence sequences and the p-values never increase; the series can
// differ slightly from the live results when the server recomputes more
// often than daily. p_value_adjusted corrects over the variants of m only.
func Timeseries(e flywheel.Experiment, m flywheel.Metric, days []Day, fresh Freshness, opts Options) Series {
	opts = opts.withDefaults()
	out := Series{
		Freshness:  fresh,
		Experiment: e.Key,
		Metric:     m.Key,
		Type:       m.Type,
		Direction:  m.Direction,
		Analysis:   e.Analysis,
		Alpha:      Float(opts.Alpha),
		Points:     make([]Point, 0, len(days)),
	}
	if out.Direction == "" {
		out.Direction = flywheel.DirectionIncrease
	}
	an := &analyzer{
		opts:       opts,
		variants:   e.Variants,
		sequential: e.Analysis == flywheel.AnalysisSequential,
		srmOK:      true,
		states:     map[stateKey]SequentialState{},
	}
	for _, d := range days {
		rows := map[string]MetricStats{}
		for _, r := range d.Stats {
			if prev, ok := rows[r.Variant]; ok {
				r = prev.merge(r)
			}
			rows[r.Variant] = r
		}
		an.newStates = nil
		res := an.metric(m, RolePrimary, rows)
		adjust([]MetricResult{res}, opts.Adjustment, opts.Alpha)
		for _, s := range an.newStates {
			an.states[stateKey{s.Metric, s.Variant}] = s
		}
		out.Points = append(out.Points, Point{Date: d.Date.Format(time.DateOnly), Variants: res.Variants})
	}
	return out
}
