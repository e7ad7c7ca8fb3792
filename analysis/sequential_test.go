package analysis

import (
	"fmt"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/stats"
)

// sequentialInput is a sequential experiment on one mean metric.
func sequentialInput(control, treatment MetricStats, states []SequentialState) Input {
	return Input{
		Experiment: flywheel.Experiment{
			Key:      "seq",
			Status:   flywheel.StatusRunning,
			Analysis: flywheel.AnalysisSequential,
			Variants: []flywheel.Variant{{Key: "control", Weight: 0.5}, {Key: "treatment", Weight: 0.5}},
			Metrics:  flywheel.MetricRefs{Primary: []string{"m"}},
		},
		Metrics:    []flywheel.Metric{{Key: "m", Type: flywheel.MetricMean, Direction: flywheel.DirectionIncrease}},
		ComputedAt: time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC),
		Arms:       []ArmCounts{{Variant: "control", Units: control.N}, {Variant: "treatment", Units: treatment.N}},
		Stats:      []MetricStats{control, treatment},
		Sequential: states,
	}
}

// TestSequentialReference replays stats-cases/sequential.json as the
// server would: one Analyze per look on the cumulative sums, passing back
// the state Analyze returned. The p-value of each look must be the
// reference always-valid p-value.
func TestSequentialReference(t *testing.T) {
	ref := readJSON(t, filepath.Join(casesDir, "sequential.json"))
	seqs, _ := ref["sequences"].([]any)
	if len(seqs) < 3 {
		t.Fatalf("sequential.json has %d sequences", len(seqs))
	}
	c := &checker{t: t}
	for _, s := range seqs {
		seq := s.(map[string]any)
		id := seq["id"].(string)
		tau2, alpha := seq["tau2"].(float64), seq["alpha"].(float64)
		// The server fixed τ² at the first look; here it comes from the file.
		states := []SequentialState{{Metric: "m", Variant: "treatment", Tau2: tau2, Alpha: alpha}}
		prevP := 1.0
		for _, l := range seq["looks"].([]any) {
			look := l.(map[string]any)
			num := func(k string) float64 { return look[k].(float64) }
			name := fmt.Sprintf("%s look %v", id, look["look"])
			ctl := meanRow("m", "control", int64(num("n_control")), num("mean_control"), num("var_control"), 0, 0, 0)
			trt := meanRow("m", "treatment", int64(num("n_variant")), num("mean_variant"), num("var_variant"), 0, 0, 0)
			r := Analyze(sequentialInput(ctl, trt, states), Options{Alpha: alpha})
			v := r.Metrics[0].Variants[1]
			c.numValue(name+" p", float64(v.PValue), wantNumber(t, look["p_always_valid"]), 1e-6, 1e-12)
			c.numValue(name+" diff", float64(v.Diff.Estimate), wantNumber(t, look["diff"]), 1e-6, 1e-12)
			if v.CUPED != nil {
				t.Errorf("%s: a sequential result has a cuped block", name)
			}
			reject := look["reject_at_alpha"].(bool)
			if v.Significant != reject {
				t.Errorf("%s: significant = %v, want %v", name, v.Significant, reject)
			}
			lo, hi := float64(v.Diff.CI[0]), float64(v.Diff.CI[1])
			if excludes := lo > 0 || hi < 0; excludes != reject {
				t.Errorf("%s: confidence sequence [%v, %v] excludes 0 = %v, want %v", name, lo, hi, excludes, reject)
			}
			if float64(v.PValue) > prevP {
				t.Errorf("%s: p rose from %v to %v", name, prevP, v.PValue)
			}
			prevP = float64(v.PValue)
			if len(r.Sequential) != 1 || r.Sequential[0].Tau2 != tau2 {
				t.Fatalf("%s: states to store = %+v, want one with τ² %v", name, r.Sequential, tau2)
			}
			states = r.Sequential
		}
	}
}

func TestSequentialTau2IsFixed(t *testing.T) {
	ctl := meanRow("m", "control", 1000, 10, 100, 0, 0, 0)
	trt := meanRow("m", "treatment", 1000, 10.5, 110, 0, 0, 0)
	r := Analyze(sequentialInput(ctl, trt, nil), Options{})
	if len(r.Sequential) != 1 {
		t.Fatalf("states = %+v, want one", r.Sequential)
	}
	st := r.Sequential[0]
	if want := math.Pow(DefaultRelativeMDE*10, 2); math.Abs(st.Tau2-want) > 1e-12 || st.Alpha != DefaultAlpha || st.State.Index != 1 {
		t.Errorf("first state = %+v, want τ² %v, alpha 0.05, index 1", st, want)
	}
	want := stats.MSPRT([]stats.Look{{Control: ctl.summary(flywheel.MetricMean).Moments(), Variant: trt.summary(flywheel.MetricMean).Moments()}}, st.Tau2, 0.05)[0]
	if got := float64(r.Metrics[0].Variants[1].PValue); math.Abs(got-want.P) > 1e-12 {
		t.Errorf("p = %v, want %v", got, want.P)
	}

	// The control mean doubles at the next look: τ² stays.
	ctl2 := meanRow("m", "control", 2000, 20, 100, 0, 0, 0)
	trt2 := meanRow("m", "treatment", 2000, 21, 110, 0, 0, 0)
	r2 := Analyze(sequentialInput(ctl2, trt2, r.Sequential), Options{})
	if len(r2.Sequential) != 1 || r2.Sequential[0].Tau2 != st.Tau2 || r2.Sequential[0].State.Index != 2 {
		t.Errorf("second state = %+v, want τ² %v at index 2", r2.Sequential, st.Tau2)
	}

	// Another alpha reads the stored p-value but stores nothing.
	r3 := Analyze(sequentialInput(ctl2, trt2, r.Sequential), Options{Alpha: 0.1})
	if len(r3.Sequential) != 0 {
		t.Errorf("states at another alpha = %+v, want none", r3.Sequential)
	}
	if p, stored := float64(r3.Metrics[0].Variants[1].PValue), r.Sequential[0].State.P; p > stored {
		t.Errorf("p at alpha 0.1 = %v, above the stored %v", p, stored)
	}
}

func TestSequentialNoData(t *testing.T) {
	r := Analyze(sequentialInput(MetricStats{Metric: "m", Variant: "control"}, MetricStats{Metric: "m", Variant: "treatment"}, nil), Options{})
	if len(r.Sequential) != 0 {
		t.Errorf("states without data = %+v, want none (τ² is not known yet)", r.Sequential)
	}
	if p := r.Metrics[0].Variants[1].PValue; p.Defined() {
		t.Errorf("p without data = %v, want undefined", p)
	}
}
