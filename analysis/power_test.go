package analysis

import (
	"errors"
	"math"
	"path/filepath"
	"slices"
	"testing"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/stats"
)

func ptr(v float64) *float64 { return &v }

// TestPowerReference answers every question of stats-cases/power.json,
// and the reverse question (the MDE of the answer's sample size).
func TestPowerReference(t *testing.T) {
	cases := readJSON(t, filepath.Join(casesDir, "power.json"))
	c := &checker{t: t}
	for _, kind := range []string{"proportions", "means"} {
		list, _ := cases[kind].([]any)
		if len(list) < 5 {
			t.Fatalf("power.json has %d %s cases", len(list), kind)
		}
		for _, item := range list {
			w := item.(map[string]any)
			id := w["id"].(string)
			req := PowerRequest{
				Alpha:       w["alpha"].(float64),
				Power:       w["power"].(float64),
				RelativeMDE: ptr(w["relative_mde"].(float64)),
			}
			if kind == "proportions" {
				req.Type, req.BaselineRate = flywheel.MetricConversion, w["baseline_rate"].(float64)
			} else {
				req.Type, req.BaselineMean, req.SD = flywheel.MetricMean, w["baseline_mean"].(float64), w["sd"].(float64)
			}
			ans, err := Power(req)
			if err != nil {
				t.Fatalf("%s: Power(%+v): %v", id, req, err)
			}
			c.numValue(id+" units_per_arm", float64(ans.UnitsPerArm), wantNumber(t, w["n_per_arm"]), 1e-6, 1e-12)
			c.int(id+" ceiling", ans.UnitsPerArmCeiling, w["n_per_arm_ceiling"])
			c.int(id+" total", ans.TotalUnits, 2*int64(w["n_per_arm_ceiling"].(float64)))

			// The MDE of that many units is the MDE asked for (upward).
			mde := *req.RelativeMDE
			if mde < 0 {
				continue
			}
			back := req
			back.RelativeMDE, back.UnitsPerArm = nil, ptr(float64(ans.UnitsPerArm))
			ans2, err := Power(back)
			if err != nil {
				t.Fatalf("%s: Power(%+v): %v", id, back, err)
			}
			c.numValue(id+" relative_mde", float64(ans2.RelativeMDE), mde, 1e-6, 1e-12)
		}
	}
}

func TestPowerMatchesStats(t *testing.T) {
	tests := []struct {
		name string
		req  PowerRequest
		want func() (n, mde float64)
	}{
		{
			name: "conversion, defaults",
			req:  PowerRequest{Type: flywheel.MetricConversion, BaselineRate: 0.1, RelativeMDE: ptr(0.05)},
			want: func() (float64, float64) {
				base, mde := 0.1, 0.05
				return stats.SampleSizeProportions(base, base*(1+mde), 0.05, 0.8), mde
			},
		},
		{
			name: "conversion, three variants plan at alpha/2",
			req:  PowerRequest{Type: flywheel.MetricConversion, BaselineRate: 0.1, RelativeMDE: ptr(0.05), Variants: 3},
			want: func() (float64, float64) {
				base, mde := 0.1, 0.05
				return stats.SampleSizeProportions(base, base*(1+mde), 0.025, 0.8), mde
			},
		},
		{
			name: "mean",
			req:  PowerRequest{Type: flywheel.MetricMean, BaselineMean: 50, SD: 120, RelativeMDE: ptr(0.05), Power: 0.9},
			want: func() (float64, float64) { return stats.SampleSizeMeans(2.5, 120, 0.05, 0.9), 0.05 },
		},
		{
			name: "conversion MDE",
			req:  PowerRequest{Type: flywheel.MetricConversion, BaselineRate: 0.1, UnitsPerArm: ptr(20000)},
			want: func() (float64, float64) { return 20000, stats.MDEProportions(20000, 0.1, 0.05, 0.8) / 0.1 },
		},
		{
			name: "mean MDE",
			req:  PowerRequest{Type: flywheel.MetricMean, BaselineMean: 50, SD: 120, UnitsPerArm: ptr(10000), Alpha: 0.01},
			want: func() (float64, float64) { return 10000, stats.MDEMeans(10000, 120, 0.01, 0.8) / 50 },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ans, err := Power(tt.req)
			if err != nil {
				t.Fatal(err)
			}
			n, mde := tt.want()
			if float64(ans.UnitsPerArm) != n || math.Abs(float64(ans.RelativeMDE)-mde) > 1e-12 {
				t.Errorf("Power() = n %v, mde %v; want %v, %v", ans.UnitsPerArm, ans.RelativeMDE, n, mde)
			}
			if want := int64(math.Ceil(n)) * int64(ans.Variants); ans.TotalUnits != want {
				t.Errorf("total = %d, want %d", ans.TotalUnits, want)
			}
		})
	}
}

func TestPowerValidation(t *testing.T) {
	tests := []struct {
		name   string
		req    PowerRequest
		fields []string
	}{
		{"no type", PowerRequest{BaselineRate: 0.1, RelativeMDE: ptr(0.05)}, []string{"type"}},
		{"ratio type", PowerRequest{Type: flywheel.MetricRatio, RelativeMDE: ptr(0.05)}, []string{"type"}},
		{"rate above 1", PowerRequest{Type: flywheel.MetricConversion, BaselineRate: 1.2, RelativeMDE: ptr(0.05)}, []string{"baseline_rate", "relative_mde"}},
		{"no rate", PowerRequest{Type: flywheel.MetricConversion, RelativeMDE: ptr(0.05)}, []string{"baseline_rate"}},
		{"no sd", PowerRequest{Type: flywheel.MetricMean, BaselineMean: 5, RelativeMDE: ptr(0.05)}, []string{"sd"}},
		{"mean 0 with a relative mde", PowerRequest{Type: flywheel.MetricMean, SD: 3, RelativeMDE: ptr(0.05)}, []string{"baseline_mean"}},
		{"neither question", PowerRequest{Type: flywheel.MetricConversion, BaselineRate: 0.1}, []string{"relative_mde"}},
		{"both questions", PowerRequest{Type: flywheel.MetricConversion, BaselineRate: 0.1, RelativeMDE: ptr(0.05), UnitsPerArm: ptr(1000)}, []string{"units_per_arm"}},
		{"zero mde", PowerRequest{Type: flywheel.MetricConversion, BaselineRate: 0.1, RelativeMDE: ptr(0)}, []string{"relative_mde"}},
		{"mde past 1", PowerRequest{Type: flywheel.MetricConversion, BaselineRate: 0.6, RelativeMDE: ptr(0.8)}, []string{"relative_mde"}},
		{"one unit", PowerRequest{Type: flywheel.MetricConversion, BaselineRate: 0.1, UnitsPerArm: ptr(1)}, []string{"units_per_arm"}},
		{"bad alpha and power", PowerRequest{Type: flywheel.MetricConversion, BaselineRate: 0.1, RelativeMDE: ptr(0.05), Alpha: 1.5, Power: -1}, []string{"alpha", "power"}},
		{"one variant", PowerRequest{Type: flywheel.MetricConversion, BaselineRate: 0.1, RelativeMDE: ptr(0.05), Variants: 1}, []string{"variants"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Power(tt.req)
			var fe *flywheel.Error
			if !errors.As(err, &fe) || fe.Code != flywheel.CodeInvalidArgument {
				t.Fatalf("Power(%+v) error = %v, want invalid_argument", tt.req, err)
			}
			got := []string{fe.Field}
			if len(fe.Details) > 0 {
				got = nil
				for _, d := range fe.Details {
					got = append(got, d.Field)
				}
			}
			if !slices.Equal(got, tt.fields) {
				t.Errorf("Power(%+v) fields = %v, want %v (%v)", tt.req, got, tt.fields, err)
			}
		})
	}
}

func TestValidateOptions(t *testing.T) {
	e := sampleInput().Experiment
	tests := []struct {
		name  string
		opts  Options
		field string
	}{
		{"defaults", Options{}, ""},
		{"all set", Options{Alpha: 0.1, MetricFilter: "refund", Segment: "device", Adjustment: AdjustBH, RelativeMDE: 0.02, Power: 0.9}, ""},
		{"alpha", Options{Alpha: 0.7}, "alpha"},
		{"metric", Options{MetricFilter: "nope"}, "metric"},
		{"adjustment", Options{Adjustment: "bonferroni"}, "adjustment"},
		{"power", Options{Power: 1}, "power"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateOptions(e, tt.opts)
			if tt.field == "" {
				if err != nil {
					t.Errorf("ValidateOptions(%+v) = %v, want nil", tt.opts, err)
				}
				return
			}
			var fe *flywheel.Error
			if !errors.As(err, &fe) || fe.Field != tt.field {
				t.Errorf("ValidateOptions(%+v) = %v, want field %q", tt.opts, err, tt.field)
			}
		})
	}
}
