package analysis

import (
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/stats"
)

// cumulativeDays is three days of cumulative revenue sums.
func cumulativeDays() []Day {
	day := func(d int, n int64, mc, mt float64) Day {
		return Day{
			Date: time.Date(2026, 11, 20+d, 0, 0, 0, 0, time.UTC),
			Stats: []MetricStats{
				meanRow("m", "control", n, mc, 100, 0, 0, 0),
				meanRow("m", "treatment", n, mt, 110, 0, 0, 0),
			},
		}
	}
	return []Day{day(1, 1000, 10, 10.6), day(2, 2000, 10.1, 10.8), day(3, 3000, 10, 10.9)}
}

func TestTimeseriesFixed(t *testing.T) {
	days := cumulativeDays()
	in := sequentialInput(MetricStats{}, MetricStats{}, nil)
	in.Experiment.Analysis = flywheel.AnalysisFixed
	s := Timeseries(in.Experiment, in.Metrics[0], days, in.Freshness, Options{})
	if len(s.Points) != len(days) || s.Metric != "m" || s.Analysis != flywheel.AnalysisFixed {
		t.Fatalf("series = %+v", s)
	}
	for i, d := range days {
		p := s.Points[i]
		if want := d.Date.Format("2006-01-02"); p.Date != want {
			t.Errorf("point %d date = %q, want %q", i, p.Date, want)
		}
		w := stats.Welch(d.Stats[0].summary(flywheel.MetricMean).Moments(), d.Stats[1].summary(flywheel.MetricMean).Moments(), 0.05)
		g := p.Variants[1]
		if float64(g.PValue) != w.P || float64(g.Diff.Estimate) != w.Diff.Value || float64(g.Diff.CI[0]) != w.Diff.CI.Lower {
			t.Errorf("day %d: p %v diff %v ci %v; want %v %v %v", i, g.PValue, g.Diff.Estimate, g.Diff.CI, w.P, w.Diff.Value, w.Diff.CI)
		}
		if p.Variants[0].Comparison != nil || p.Variants[0].Units != d.Stats[0].N {
			t.Errorf("day %d control = %+v", i, p.Variants[0])
		}
	}
	if _, err := json.Marshal(s); err != nil {
		t.Errorf("json.Marshal(Series): %v", err)
	}
}

func TestTimeseriesSequential(t *testing.T) {
	days := cumulativeDays()
	in := sequentialInput(MetricStats{}, MetricStats{}, nil)
	s := Timeseries(in.Experiment, in.Metrics[0], days, in.Freshness, Options{})

	var looks []stats.Look
	for _, d := range days {
		looks = append(looks, stats.Look{
			Control: d.Stats[0].summary(flywheel.MetricMean).Moments(),
			Variant: d.Stats[1].summary(flywheel.MetricMean).Moments(),
		})
	}
	tau2 := Tau2(looks[0].Control, looks[0].Variant, DefaultRelativeMDE)
	want := stats.MSPRT(looks, tau2, 0.05)
	prev := 1.0
	for i, p := range s.Points {
		g := p.Variants[1]
		if math.Abs(float64(g.PValue)-want[i].P) > 1e-12 || float64(g.Diff.CI[0]) != want[i].CI.Lower || float64(g.Diff.CI[1]) != want[i].CI.Upper {
			t.Errorf("day %d: p %v ci %v, want %v %v", i, g.PValue, g.Diff.CI, want[i].P, want[i].CI)
		}
		if float64(g.PValue) > prev {
			t.Errorf("day %d: always-valid p rose from %v to %v", i, prev, g.PValue)
		}
		prev = float64(g.PValue)
	}
}
