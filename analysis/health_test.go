package analysis

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestHealthyHasNoWarnings(t *testing.T) {
	r := Analyze(healthyInput(), Options{})
	if len(r.Health.Warnings) != 0 {
		t.Errorf("warnings = %q, want none", r.Health.Warnings)
	}
	if !r.Health.SRM.OK || r.Units != 200_100 {
		t.Errorf("srm ok = %v, units = %d; want true, 200100", r.Health.SRM.OK, r.Units)
	}
	if r.Health.Failed == nil || len(r.Health.Failed) != 0 {
		t.Errorf("failed = %#v, want an empty list", r.Health.Failed)
	}
}

// TestSRMCase runs the reference case whose traffic split 51.5/48.5: the
// check fails, loudly, and every summary says so.
func TestSRMCase(t *testing.T) {
	dir := filepath.Join(casesDir, "srm_mismatch_40k")
	in := caseInput(t, dir, readJSON(t, filepath.Join(dir, "expected.json")))
	r := Analyze(in, Options{})
	if r.Health.SRM.OK {
		t.Fatalf("srm ok = true with p = %v, want false", r.Health.SRM.PValue)
	}
	if len(r.Health.Warnings) == 0 || !strings.HasPrefix(r.Health.Warnings[0], "sample ratio mismatch: ") ||
		!strings.HasSuffix(r.Health.Warnings[0], "do not trust these results") {
		t.Errorf("first warning = %q, want the sample ratio mismatch", r.Health.Warnings)
	}
	want := "sample ratio mismatch: observed control 20656, treatment 19344 units against configured weights 50.0%/50.0% (p = 5.4e-11 < 0.001); assignment or exposure logging is broken, do not trust these results"
	if r.Health.Warnings[0] != want {
		t.Errorf("warning = %q, want %q", r.Health.Warnings[0], want)
	}
	if len(r.Health.Failed) == 0 || r.Health.Failed[0] != "srm" {
		t.Errorf("failed = %q, want srm first", r.Health.Failed)
	}
	for _, m := range r.Metrics {
		if !strings.HasSuffix(m.Summary, "(sample ratio mismatch: do not trust)") {
			t.Errorf("%s summary = %q, want the SRM caveat", m.Metric, m.Summary)
		}
	}
}

func TestHealthWarnings(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Input)
		// want is the one warning expected (exactly), or a substring of it
		// when contains is set.
		want     string
		contains bool
		// failed is the trust check it fails (Health.Failed), "" for a note.
		failed string
	}{
		{
			name:   "small and empty arms",
			failed: "too_few_units",
			change: func(in *Input) {
				in.Arms = []ArmCounts{{Variant: "control", Units: 40}}
				in.Stats = []MetricStats{convRow("purchase", "control", 40, 4)}
			},
			want: "too few units: no units in green; control has 40 (at least 100 per arm are needed); results are unreliable",
		},
		{
			name:   "small arms",
			failed: "too_few_units",
			change: func(in *Input) {
				in.Arms = []ArmCounts{{Variant: "control", Units: 60}, {Variant: "green", Units: 55}}
				in.Stats = []MetricStats{convRow("purchase", "control", 60, 6), convRow("purchase", "green", 55, 6)}
			},
			want: "too few units: control has 60, green has 55 (at least 100 per arm are needed); results are unreliable",
		},
		{
			name: "maturing units",
			change: func(in *Input) {
				in.Stats[0].Maturing, in.Stats[1].Maturing = 700, 500
			},
			want: "1200 units have not completed the 168 h window; results for long windows may change (purchase)",
		},
		{
			name:   "pre-exposure imbalance",
			failed: "pre_exposure_imbalance",
			change: func(in *Input) {
				in.Stats[0].SumX, in.Stats[0].SumXSq = 9_000, 9_000 // 9.0% converted before
				in.Stats[1].SumX, in.Stats[1].SumXSq = 10_000, 10_000
			},
			want:     "pre-exposure imbalance on purchase: arms differed before the experiment started (green vs control, p = ",
			contains: true,
		},
		{
			name:   "multiple exposures",
			failed: "multiple_exposures",
			change: func(in *Input) {
				in.MultipleExposures = 4_100
			},
			want: "multiple exposures: 4100 units (2.0%) were exposed to more than one variant and are excluded; check that exposures carry the assigned variant",
		},
		{
			name:   "crossover",
			failed: "crossover",
			change: func(in *Input) {
				in.Crossover = Crossover{Customers: 50_000, Mixed: 1_500}
			},
			want: "crossover: 1500 of 50000 customers (3.0%) had devices in different variants; device-level results are diluted",
		},
		{
			name:   "opt-outs",
			failed: "opt_outs_differ",
			change: func(in *Input) {
				in.Arms[0].OptedOut, in.Arms[1].OptedOut = 1_000, 1_400
			},
			want:     "opt-outs differ between arms: green 1.4% vs control 1.0% (p = ",
			contains: true,
		},
		{
			name: "sample size",
			change: func(in *Input) {
				in.Arms = []ArmCounts{{Variant: "control", Units: 20_000}, {Variant: "green", Units: 20_000}}
				in.Stats = []MetricStats{convRow("purchase", "control", 20_000, 2_000), convRow("purchase", "green", 20_000, 2_050)}
			},
			want: "purchase: about 57763 units per arm are needed to detect a 5% relative change with 80% power (the smallest arm has 20000); a non-significant result is not evidence of no effect",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := healthyInput()
			tt.change(&in)
			w := Analyze(in, Options{}).Health.Warnings
			found := slices.ContainsFunc(w, func(s string) bool {
				return s == tt.want || tt.contains && strings.HasPrefix(s, tt.want)
			})
			if !found {
				t.Errorf("warnings = %q, want %q", w, tt.want)
			}
			if got := Analyze(in, Options{}).Health.Failed; tt.failed == "" && len(got) > 0 || tt.failed != "" && !slices.Contains(got, tt.failed) {
				t.Errorf("failed = %q, want %q", got, tt.failed)
			}
		})
	}
}

// TestNoFalseAlarms keeps the checks quiet below their thresholds.
func TestNoFalseAlarms(t *testing.T) {
	in := healthyInput()
	in.MultipleExposures = 1_000                            // 0.5%
	in.Crossover = Crossover{Customers: 50_000, Mixed: 400} // 0.8%
	in.Arms[0].OptedOut, in.Arms[1].OptedOut = 1_000, 1_020 // same rate
	in.Stats[0].SumX, in.Stats[0].SumXSq = 9_000, 9_000     // 9.0% before
	in.Stats[1].SumX, in.Stats[1].SumXSq = 9_050, 9_050     // 9.04% before
	in.Stats[0].Maturing, in.Stats[1].Maturing = 0, 0
	if w := Analyze(in, Options{}).Health.Warnings; len(w) != 0 {
		t.Errorf("warnings = %q, want none", w)
	}
}

func TestSegments(t *testing.T) {
	r := Analyze(sampleInput(), Options{Segment: "device"})
	if len(r.Segments) != 2 {
		t.Fatalf("segments = %v, want mobile and desktop", r.Segments)
	}
	for value, s := range r.Segments {
		if !s.Exploratory || s.Segment != "device" || s.Value != value {
			t.Errorf("segment %q = %+v, want exploratory device=%s", value, s, value)
		}
		if len(s.Warnings) == 0 || !strings.Contains(s.Warnings[0], "not corrected for the 2 segment values") {
			t.Errorf("segment %q warnings = %q, want the exploratory caveat", value, s.Warnings)
		}
		if len(s.Metrics) != 1 || s.Metrics[0].Metric != "purchase" {
			t.Errorf("segment %q metrics = %v, want purchase only", value, s.Metrics)
		}
	}
	if got := r.Segments["mobile"].Units; got != 12000 {
		t.Errorf("mobile units = %d, want 12000", got)
	}
	if r := Analyze(sampleInput(), Options{}); len(r.Segments) != 0 {
		t.Errorf("segments without Options.Segment = %v, want none", r.Segments)
	}
}

func TestMetricFilterChangesNoNumber(t *testing.T) {
	all := Analyze(sampleInput(), Options{})
	for _, m := range all.Metrics {
		one := Analyze(sampleInput(), Options{MetricFilter: m.Metric})
		if len(one.Metrics) != 1 || one.Metrics[0].Metric != m.Metric {
			t.Fatalf("MetricFilter %q gives %d metrics", m.Metric, len(one.Metrics))
		}
		got, want := one.Metrics[0].Variants[1], m.Variants[1]
		if got.PValueAdjusted != want.PValueAdjusted || got.PValue != want.PValue {
			t.Errorf("%s: filtered p = %v/%v, unfiltered %v/%v", m.Metric, got.PValue, got.PValueAdjusted, want.PValue, want.PValueAdjusted)
		}
	}
}

// TestDecreaseDirection checks that chance_to_win and expected_loss are
// about the variant being lower for a metric that should decrease.
func TestDecreaseDirection(t *testing.T) {
	r := Analyze(sampleInput(), Options{})
	var refund MetricResult
	for _, m := range r.Metrics {
		if m.Metric == "refund" {
			refund = m
		}
	}
	g := refund.Variants[1]
	if !(g.Diff.Estimate < 0) || !(g.ChanceToWin > 0.9) {
		t.Errorf("refund went down (diff %v) but chance_to_win = %v, want > 0.9", g.Diff.Estimate, g.ChanceToWin)
	}
	if !(g.ExpectedLoss < 0.0001) {
		t.Errorf("expected_loss of shipping a lower refund rate = %v, want tiny", g.ExpectedLoss)
	}
}

func TestUnknownMetricAndVariant(t *testing.T) {
	in := healthyInput()
	in.Experiment.Metrics.Guardrails = []string{"missing"}
	in.Arms = append(in.Arms, ArmCounts{Variant: "ghost", Units: 3})
	w := Analyze(in, Options{}).Health.Warnings
	for _, want := range []string{
		"metric missing has no definition and was skipped",
		"units were counted in variant ghost, which the experiment does not have; they are ignored",
	} {
		if !slices.Contains(w, want) {
			t.Errorf("warnings = %q, want %q", w, want)
		}
	}
}
