package flywheel_test

import (
	"errors"
	"testing"

	"github.com/flywheel-oss/flywheel"
)

func banditExperiment() *flywheel.Experiment {
	e := validExperiment()
	e.Allocation = flywheel.AllocationBandit
	e.Normalize()
	return e
}

func TestBanditDefaults(t *testing.T) {
	e := banditExperiment()
	if e.Bandit == nil || *e.Bandit.Floor != 0.05 || e.Bandit.Period != "1h" || e.Bandit.BurnIn != "24h" {
		t.Fatalf("Normalize bandit = %+v, want floor 0.05, period 1h, burn_in 24h", e.Bandit)
	}
	if err := e.Validate(nil); err != nil {
		t.Fatalf("Validate(default bandit) = %v, want nil", err)
	}
	// 25 arms cannot all keep 5 %: the default floor becomes 1/arms.
	f := validExperiment()
	f.Variants = nil
	for i := range 25 {
		f.Variants = append(f.Variants, flywheel.Variant{Key: string(rune('a' + i)), Weight: 0.04})
	}
	f.Allocation = flywheel.AllocationBandit
	f.Normalize()
	if *f.Bandit.Floor != 0.04 {
		t.Errorf("default floor with 25 arms = %v, want 0.04", *f.Bandit.Floor)
	}
	if g := validExperiment(); g.Allocation != flywheel.AllocationFixed || g.Bandit != nil {
		t.Errorf("default allocation = %q with %+v, want fixed and no bandit", g.Allocation, g.Bandit)
	}
}

func TestBanditValidate(t *testing.T) {
	floor := func(v float64) *float64 { return &v }
	tests := []struct {
		name  string
		edit  func(e *flywheel.Experiment)
		field string // "" = valid
	}{
		{"valid", func(e *flywheel.Experiment) {}, ""},
		{"floor at 1/arms", func(e *flywheel.Experiment) { e.Bandit.Floor = floor(0.5) }, ""},
		{"unknown allocation", func(e *flywheel.Experiment) { e.Allocation = "greedy" }, "allocation"},
		{"settings without a bandit", func(e *flywheel.Experiment) { e.Allocation = flywheel.AllocationFixed }, "bandit"},
		{"floor × arms above 1", func(e *flywheel.Experiment) { e.Bandit.Floor = floor(0.6) }, "bandit.floor"},
		{"floor 0", func(e *flywheel.Experiment) { e.Bandit.Floor = floor(0) }, "bandit.floor"},
		{"negative floor", func(e *flywheel.Experiment) { e.Bandit.Floor = floor(-0.1) }, "bandit.floor"},
		{"period not a duration", func(e *flywheel.Experiment) { e.Bandit.Period = "hourly" }, "bandit.period"},
		{"period too short", func(e *flywheel.Experiment) { e.Bandit.Period = "10s" }, "bandit.period"},
		{"period too long", func(e *flywheel.Experiment) { e.Bandit.Period = "200h" }, "bandit.period"},
		{"negative burn-in", func(e *flywheel.Experiment) { e.Bandit.BurnIn = "-1h" }, "bandit.burn_in"},
		{"no burn-in is allowed", func(e *flywheel.Experiment) { e.Bandit.BurnIn = "0s" }, ""},
		{"no primary metric", func(e *flywheel.Experiment) { e.Metrics.Primary = []string{} }, "metrics.primary"},
		{"two primary metrics", func(e *flywheel.Experiment) { e.Metrics.Primary = []string{"purchase", "signup"} }, "metrics.primary"},
		{"sequential analysis", func(e *flywheel.Experiment) { e.Analysis = flywheel.AnalysisSequential }, "analysis"},
		{"overrides", func(e *flywheel.Experiment) { e.Overrides = map[string]string{"u1": "green"} }, "overrides"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := banditExperiment()
			tt.edit(e)
			err := e.Validate(nil)
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate = nil, want a problem at %q", tt.field)
			}
			var fe *flywheel.Error
			if !errors.As(err, &fe) {
				t.Fatalf("Validate = %v, not a *flywheel.Error", err)
			}
			found := fe.Field == tt.field
			for _, d := range fe.Details {
				found = found || d.Field == tt.field
			}
			if !found {
				t.Errorf("Validate = %v (details %v), want a problem at %q", err, fe.Details, tt.field)
			}
		})
	}
}

func TestBanditMetricKind(t *testing.T) {
	types := map[string]flywheel.MetricType{"purchase": flywheel.MetricConversion, "aov": flywheel.MetricRatio, "revenue": flywheel.MetricMean}
	lookup := func(k string) (flywheel.MetricType, bool) { t, ok := types[k]; return t, ok }
	for key, wantErr := range map[string]bool{"purchase": false, "revenue": false, "aov": true} {
		e := banditExperiment()
		e.Metrics.Primary = []string{key}
		err := e.ValidateBanditMetric(lookup)
		if (err != nil) != wantErr {
			t.Errorf("ValidateBanditMetric(%s) = %v, want error %v", key, err, wantErr)
		}
		if err != nil && fieldOf(t, err) != "metrics.primary[0]" {
			t.Errorf("field = %q, want metrics.primary[0]", fieldOf(t, err))
		}
	}
	fixed := validExperiment()
	fixed.Metrics.Primary = []string{"aov"}
	if err := fixed.ValidateBanditMetric(lookup); err != nil {
		t.Errorf("fixed experiment: %v, want nil", err)
	}
}

func TestBanditPatch(t *testing.T) {
	e := banditExperiment()
	e.Status = flywheel.StatusRunning
	p := flywheel.ExperimentPatch{Metrics: &flywheel.MetricRefs{Primary: []string{"signup"}}}
	if err := p.Apply(e); flywheel.ErrorCode(err) != flywheel.CodeConflict || e.Metrics.Primary[0] != "purchase" {
		t.Errorf("changing a running bandit's primary metric: %v (primary now %v), want a conflict and no change", err, e.Metrics.Primary)
	}
	period := "2h"
	p = flywheel.ExperimentPatch{Bandit: &flywheel.BanditSettings{Period: period}}
	if err := p.Apply(e); flywheel.ErrorCode(err) != flywheel.CodeConflict {
		t.Errorf("changing a running bandit's settings: %v, want a conflict", err)
	}
	d := validExperiment()
	alloc := flywheel.AllocationBandit
	p = flywheel.ExperimentPatch{Allocation: &alloc}
	if err := p.Apply(d); err != nil || d.Bandit == nil || d.Validate(nil) != nil {
		t.Errorf("draft to bandit: %v, bandit %+v", err, d.Bandit)
	}
	fixed := flywheel.AllocationFixed
	p = flywheel.ExperimentPatch{Allocation: &fixed}
	if err := p.Apply(d); err != nil || d.Bandit != nil {
		t.Errorf("draft back to fixed: %v, bandit %+v, want none", err, d.Bandit)
	}
}

// FuzzBanditSettings: any settings either validate, and then obey every
// bound the documentation states, or are refused at a bandit field;
// nothing panics.
func FuzzBanditSettings(f *testing.F) {
	f.Add(0.05, "1h", "24h", 2)
	f.Add(0.5, "1m", "0s", 2)
	f.Add(0.0, "", "", 20)
	f.Add(-1.0, "1h30m", "-5m", 3)
	f.Add(0.34, "168h0m1s", "2160h", 3)
	f.Fuzz(func(t *testing.T, floor float64, period, burnIn string, arms int) {
		if arms < 2 || arms > 20 {
			return
		}
		e := validExperiment()
		e.Variants = nil
		for i := range arms {
			e.Variants = append(e.Variants, flywheel.Variant{Key: string(rune('a' + i)), Weight: 1 / float64(arms)})
		}
		e.Allocation = flywheel.AllocationBandit
		e.Bandit = &flywheel.BanditSettings{Floor: &floor, Period: period, BurnIn: burnIn}
		e.Normalize()
		err := e.Validate(nil)
		if err != nil {
			var fe *flywheel.Error
			if !errors.As(err, &fe) {
				t.Fatalf("Validate = %v, not a *flywheel.Error", err)
			}
			for _, d := range append([]flywheel.Error{*fe}, fe.Details...) {
				switch d.Field {
				case "bandit.floor", "bandit.period", "bandit.burn_in", "variants":
				default:
					t.Errorf("problem at %q (%s), want a bandit field", d.Field, d.Message)
				}
			}
			return
		}
		p, b := e.Bandit.Durations()
		f := *e.Bandit.Floor
		if !(f > 0) || f*float64(arms) > 1+1e-12 || p < flywheel.MinBanditPeriod || p > flywheel.MaxBanditPeriod || b < 0 || b > flywheel.MaxBanditBurnIn {
			t.Errorf("accepted floor %v × %d arms, period %v, burn-in %v", f, arms, p, b)
		}
	})
}
