package app

import (
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/analysis"
)

func banditDef(floor float64) *flywheel.Experiment {
	e := &flywheel.Experiment{Key: "hero", Allocation: flywheel.AllocationBandit, Bandit: &flywheel.BanditSettings{Floor: &floor},
		Variants: []flywheel.Variant{{Key: "a", Weight: 0.5}, {Key: "b", Weight: 0.5}, {Key: "c"}}}
	return e
}

func TestDecideBandit(t *testing.T) {
	now := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	conv := func(epoch int, v string, n int64, x float64) analysis.EpochStats {
		return analysis.EpochStats{Metric: "m", Epoch: epoch, Variant: v, N: n, Sum: x, SumSq: x}
	}
	// c converts least (5 %), b most (20 %), over two epochs summed.
	cells := []analysis.EpochStats{
		conv(0, "a", 500, 50), conv(0, "b", 500, 100), conv(0, "c", 500, 25),
		conv(1, "a", 500, 50), conv(1, "b", 500, 100), conv(1, "c", 500, 25),
		conv(1, "gone", 500, 500), // a variant the experiment no longer has: ignored
	}
	tests := []struct {
		name string
		dir  flywheel.Direction
		typ  flywheel.MetricType
		best string
	}{
		{"higher is better", flywheel.DirectionIncrease, flywheel.MetricConversion, "b"},
		{"lower is better", flywheel.DirectionDecrease, flywheel.MetricConversion, "c"},
		{"mean, lower is better", flywheel.DirectionDecrease, flywheel.MetricMean, "c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &flywheel.Metric{Key: "m", Type: tt.typ, Direction: tt.dir}
			d, err := decideBandit(banditDef(0.1), m, cells, now)
			if err != nil {
				t.Fatal(err)
			}
			sum := 0.0
			for k, w := range d.Weights {
				sum += w
				if k == tt.best && math.Abs(w-0.8) > 1e-3 {
					t.Errorf("best arm %s weight %v, want 0.8 (0.1 + 0.7·1)", k, w)
				}
				if k != tt.best && math.Abs(w-0.1) > 1e-3 {
					t.Errorf("arm %s weight %v, want the floor 0.1", k, w)
				}
			}
			if math.Abs(sum-1) > 1e-12 || len(d.Weights) != 3 {
				t.Errorf("weights %v, want three summing to 1", d.Weights)
			}
			var post map[string]map[string]any
			if err := json.Unmarshal(d.Posterior, &post); err != nil {
				t.Fatal(err)
			}
			if got := post["c"]["mean"].(float64); got != 0.05 {
				t.Errorf("c's mean in the posterior = %v, want 0.05 (its own scale)", got)
			}
			if pm := post["c"]["posterior_mean"].(float64); math.Abs(pm-0.05) > 0.002 {
				t.Errorf("c's posterior mean = %v, want about 0.05 on the metric's scale", pm)
			}
			again, _ := decideBandit(banditDef(0.1), m, cells, now)
			if string(again.Posterior) != string(d.Posterior) {
				t.Error("the same update time gave another posterior: the seed is not reproducible")
			}
		})
	}
	t.Run("no data: equal weights, nulls in the posterior", func(t *testing.T) {
		m := &flywheel.Metric{Key: "m", Type: flywheel.MetricMean}
		d, err := decideBandit(banditDef(0.1), m, nil, now)
		if err != nil {
			t.Fatal(err)
		}
		for k, w := range d.Weights {
			if math.Abs(w-1.0/3) > 1e-12 {
				t.Errorf("%s weight %v, want 1/3", k, w)
			}
		}
		var post map[string]map[string]any
		if err := json.Unmarshal(d.Posterior, &post); err != nil || post["a"]["mean"] != nil {
			t.Errorf("posterior %s (%v), want null means", d.Posterior, err)
		}
	})
}
