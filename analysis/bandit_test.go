package analysis

import (
	"math"
	"strings"
	"testing"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/stats"
)

// simpsonBandit is a bandit whose variant converts exactly as the control
// within each epoch (10 % in epoch 0, 30 % in epoch 1) but got most of its
// units in the better epoch 1: pooled, it converts at 28 % against 12 %.
func simpsonBandit() Input {
	in := healthyInput()
	in.Experiment.Allocation = flywheel.AllocationBandit
	in.Experiment.Variants = []flywheel.Variant{{Key: "control", Weight: 0.1}, {Key: "green", Weight: 0.9}}
	in.Arms = []ArmCounts{{Variant: "control", Units: 1000}, {Variant: "green", Units: 1000}}
	in.Stats = []MetricStats{convRow("purchase", "control", 1000, 120), convRow("purchase", "green", 1000, 280)}
	in.BanditEpochs = []flywheel.BanditEpoch{
		{Epoch: 0, Weights: map[string]float64{"control": 0.9, "green": 0.1}},
		{Epoch: 1, Weights: map[string]float64{"control": 0.1, "green": 0.9}},
	}
	in.EpochStatsRead = true
	in.EpochStats = []EpochStats{
		{Metric: "purchase", Epoch: 0, Variant: "control", N: 900, Sum: 90, SumSq: 90},
		{Metric: "purchase", Epoch: 0, Variant: "green", N: 100, Sum: 10, SumSq: 10},
		{Metric: "purchase", Epoch: 1, Variant: "control", N: 100, Sum: 30, SumSq: 30},
		{Metric: "purchase", Epoch: 1, Variant: "green", N: 900, Sum: 270, SumSq: 270},
	}
	return in
}

func TestAnalyzeBanditStratified(t *testing.T) {
	res := Analyze(simpsonBandit(), Options{})
	if res.Estimator != EstimatorEpochStratified {
		t.Fatalf("Estimator = %q, want %q", res.Estimator, EstimatorEpochStratified)
	}
	m := res.Metrics[0]
	c := m.Variants[1].Comparison
	if c == nil || math.Abs(float64(c.Diff.Estimate)) > 1e-12 || float64(c.PValue) < 0.99 {
		t.Fatalf("comparison = %+v, want diff 0 and p 1 (no difference within any epoch)", c)
	}
	for _, v := range m.Variants {
		if math.Abs(float64(v.Mean)-0.2) > 1e-12 {
			t.Errorf("%s mean = %v, want the stratified 0.2", v.Variant, v.Mean)
		}
	}
	if math.Abs(float64(c.ChanceToWin)-0.5) > 1e-9 {
		t.Errorf("ChanceToWin = %v, want 0.5", c.ChanceToWin)
	}
	// Expected arm shares: (1000·0.9 + 1000·0.1)/2000 = 0.5 each, which the
	// observed 1000/1000 matches; the current weights (0.1/0.9) would fail.
	if !res.Health.SRM.OK || float64(res.Health.SRM.Expected[0]) != 0.5 {
		t.Errorf("SRM = %+v, want expected 0.5/0.5 and OK", res.Health.SRM)
	}

	// The same input read as a fixed experiment: the pooled (wrong) answer.
	fixed := simpsonBandit()
	fixed.Experiment.Allocation = flywheel.AllocationFixed
	pooled := Analyze(fixed, Options{})
	if pooled.Estimator != EstimatorPooled || float64(pooled.Metrics[0].Variants[1].Diff.Estimate) < 0.15 {
		t.Errorf("pooled = %q, diff %v; want pooled and the Simpson difference 0.16", pooled.Estimator, pooled.Metrics[0].Variants[1].Diff.Estimate)
	}
}

func TestAnalyzeBanditMatchesStats(t *testing.T) {
	in := simpsonBandit()
	in.EpochStats[3].Sum, in.EpochStats[3].SumSq = 300, 300 // the variant gains 3.3 pp in epoch 1
	res := Analyze(in, Options{Alpha: 0.1})
	want := stats.EpochStratified([]stats.Stratum{
		{Control: stats.Summary{N: 900, Sum: 90, SumSq: 90}, Variant: stats.Summary{N: 100, Sum: 10, SumSq: 10}, Units: 1000},
		{Control: stats.Summary{N: 100, Sum: 30, SumSq: 30}, Variant: stats.Summary{N: 900, Sum: 300, SumSq: 300}, Units: 1000},
	}, true, 0.1)
	c := res.Metrics[0].Variants[1].Comparison
	if float64(c.Diff.Estimate) != want.Diff.Value || float64(c.PValue) != want.P || float64(c.Diff.CI[0]) != want.Diff.CI.Lower {
		t.Errorf("comparison = %+v, want %+v", c, want)
	}
}

func TestAnalyzeBanditWithoutAggregates(t *testing.T) {
	in := simpsonBandit()
	in.EpochStatsRead, in.EpochStats = false, nil
	res := Analyze(in, Options{})
	if res.Estimator != EstimatorPooled {
		t.Errorf("Estimator = %q, want pooled", res.Estimator)
	}
	found := false
	for _, w := range res.Health.Warnings {
		found = found || strings.Contains(w, "epoch-stratified")
	}
	if !found {
		t.Errorf("warnings %q, want one saying the stratified estimate is not available", res.Health.Warnings)
	}
}

func TestAnalyzeBanditSegments(t *testing.T) {
	in := simpsonBandit()
	in.SegmentArms = []ArmCounts{{Variant: "control", Segment: "mobile", Units: 500}, {Variant: "green", Segment: "mobile", Units: 500}}
	in.SegmentStats = []MetricStats{convRow("purchase", "control", 500, 60), convRow("purchase", "green", 500, 140)}
	for i := range in.SegmentStats {
		in.SegmentStats[i].Segment = "mobile"
	}
	res := Analyze(in, Options{Segment: "device"})
	seg, ok := res.Segments["mobile"]
	if !ok {
		t.Fatalf("segments = %v, want mobile", res.Segments)
	}
	if !seg.SRM.OK {
		t.Errorf("segment SRM = %+v, want OK against the epochs' split (0.5/0.5), not the current weights (0.1/0.9)", seg.SRM)
	}
	found := false
	for _, w := range res.Health.Warnings {
		found = found || strings.Contains(w, "segment results pool the weight epochs")
	}
	if !found {
		t.Errorf("warnings %q, want the note that bandit segments are pooled", res.Health.Warnings)
	}
}
