package flywheel_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/flywheel-oss/flywheel"
)

func validExperiment() *flywheel.Experiment {
	e := &flywheel.Experiment{
		Key: "checkout", UnitType: "customer", Traffic: 1, Status: flywheel.StatusDraft,
		Variants: []flywheel.Variant{{Key: "control", Weight: 0.5}, {Key: "green", Weight: 0.5}},
		Metrics:  flywheel.MetricRefs{Primary: []string{"purchase"}},
	}
	e.Normalize()
	return e
}

func fieldOf(t *testing.T, err error) string {
	t.Helper()
	var fe *flywheel.Error
	if !errors.As(err, &fe) {
		t.Fatalf("error %v is not a *flywheel.Error", err)
	}
	return fe.Field
}

func TestExperimentValidate(t *testing.T) {
	known := func(k string) bool { return k == "purchase" }
	tests := []struct {
		name  string
		edit  func(e *flywheel.Experiment)
		field string // "" = valid
	}{
		{"valid", func(e *flywheel.Experiment) {}, ""},
		{"weights within 1e-9", func(e *flywheel.Experiment) {
			e.Variants = []flywheel.Variant{{Key: "a", Weight: 1.0 / 3}, {Key: "b", Weight: 1.0 / 3}, {Key: "c", Weight: 1.0 / 3}}
		}, ""},
		{"key", func(e *flywheel.Experiment) { e.Key = "-bad" }, "key"},
		{"unit type", func(e *flywheel.Experiment) { e.UnitType = "Customer" }, "unit_type"},
		{"one variant", func(e *flywheel.Experiment) { e.Variants = e.Variants[:1] }, "variants"},
		{"duplicate variant", func(e *flywheel.Experiment) { e.Variants[1].Key = "control" }, "variants[1].key"},
		{"weight zero", func(e *flywheel.Experiment) { e.Variants[1].Weight = 0; e.Variants[0].Weight = 1 }, "variants[1].weight"},
		{"weights sum", func(e *flywheel.Experiment) { e.Variants[1].Weight = 0.6 }, "variants"},
		{"traffic", func(e *flywheel.Experiment) { e.Traffic = -0.1 }, "traffic"},
		{"range without layer", func(e *flywheel.Experiment) { e.LayerRange = &flywheel.LayerRange{From: 0, To: 10} }, "layer_range"},
		{"empty range", func(e *flywheel.Experiment) { e.Layer = "l"; e.LayerRange = &flywheel.LayerRange{From: 10, To: 10} }, "layer_range"},
		{"bad condition", func(e *flywheel.Experiment) { e.Targeting = json.RawMessage(`{"a":{"$nope":1}}`) }, "targeting.a.$nope"},
		{"override variant", func(e *flywheel.Experiment) { e.Overrides = map[string]string{"u": "blue"} }, "overrides.u"},
		{"unknown metric", func(e *flywheel.Experiment) { e.Metrics.Guardrails = []string{"refund"} }, "metrics.guardrails[0]"},
		{"metric twice", func(e *flywheel.Experiment) { e.Metrics.Primary = []string{"purchase", "purchase"} }, "metrics.primary[1]"},
		{"analysis", func(e *flywheel.Experiment) { e.Analysis = "bayes" }, "analysis"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := validExperiment()
			tt.edit(e)
			err := e.Validate(known)
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want an error on %q", tt.field)
			}
			if got := fieldOf(t, err); got != tt.field {
				t.Errorf("Validate() field = %q, want %q (%v)", got, tt.field, err)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	e := validExperiment()
	e.Key, e.Traffic, e.Analysis = "BAD", 2, "x"
	var fe *flywheel.Error
	if err := e.Validate(nil); !errors.As(err, &fe) || len(fe.Details) != 3 {
		t.Fatalf("Validate() = %v, want 3 problems in Details", err)
	}
}

func TestPatchWhileRunning(t *testing.T) {
	traffic, name, unit := 0.3, "renamed", "device"
	tests := []struct {
		name     string
		status   flywheel.Status
		patch    flywheel.ExperimentPatch
		conflict string // "" = allowed; else the field reported
	}{
		{"draft changes anything", flywheel.StatusDraft, flywheel.ExperimentPatch{UnitType: &unit}, ""},
		{"running traffic", flywheel.StatusRunning, flywheel.ExperimentPatch{Traffic: &traffic, Name: &name}, ""},
		{"running unit type", flywheel.StatusRunning, flywheel.ExperimentPatch{UnitType: &unit}, "unit_type"},
		{"running targeting", flywheel.StatusRunning, flywheel.ExperimentPatch{Targeting: json.RawMessage(`{"a":1}`)}, "targeting"},
		{"running same value", flywheel.StatusRunning, flywheel.ExperimentPatch{Targeting: json.RawMessage(`null`)}, ""},
		{"stopped traffic", flywheel.StatusStopped, flywheel.ExperimentPatch{Traffic: &traffic}, "traffic"},
		{"archived name", flywheel.StatusArchived, flywheel.ExperimentPatch{Name: &name}, "name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := validExperiment()
			e.Status = tt.status
			before := *e
			err := tt.patch.Apply(e)
			if tt.conflict == "" {
				if err != nil {
					t.Fatalf("Apply() = %v, want nil", err)
				}
				return
			}
			if flywheel.ErrorCode(err) != flywheel.CodeConflict || fieldOf(t, err) != tt.conflict {
				t.Fatalf("Apply() = %v, want a conflict on %q", err, tt.conflict)
			}
			if len(flywheel.DiffExperiments(&before, e)) != 0 {
				t.Errorf("a refused patch changed the experiment: %v", flywheel.DiffExperiments(&before, e))
			}
		})
	}
}

func TestTransitions(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	e := validExperiment()
	steps := []struct {
		name string
		do   func(time.Time) error
		ok   bool
	}{
		{"stop a draft", e.Stop, false},
		{"start", e.Start, true},
		{"start again", e.Start, false},
		{"archive running", e.Archive, false},
		{"stop", e.Stop, true},
		{"restart", e.Start, false},
		{"archive", e.Archive, true},
	}
	for _, s := range steps {
		err := s.do(now)
		if (err == nil) != s.ok {
			t.Fatalf("%s: err = %v, want ok = %v", s.name, err, s.ok)
		}
		if err != nil && flywheel.ErrorCode(err) != flywheel.CodeConflict {
			t.Errorf("%s: code = %s, want conflict", s.name, flywheel.ErrorCode(err))
		}
	}
	if e.Status != flywheel.StatusArchived || e.StartedAt == nil || e.StoppedAt == nil || e.ArchivedAt == nil {
		t.Errorf("after the lifecycle: %+v", e)
	}
}

func TestDiffExperiments(t *testing.T) {
	a := validExperiment()
	b := validExperiment()
	b.Traffic, b.Revision, b.UpdatedAt = 0.5, 9, time.Now()
	b.Targeting = json.RawMessage(`{ "a" : 1 }`)
	a.Targeting = json.RawMessage(`{"a":1}`)
	d := flywheel.DiffExperiments(a, b)
	if len(d) != 1 || d["traffic"].From == nil {
		t.Errorf("DiffExperiments = %v, want only traffic (spacing and bookkeeping are not changes)", d)
	}
}

func TestMetricValidate(t *testing.T) {
	pct, bad := 0.99, 1.5
	tests := []struct {
		name  string
		m     flywheel.Metric
		field string
	}{
		{"conversion", flywheel.Metric{Key: "p", Type: flywheel.MetricConversion, Event: "purchase"}, ""},
		{"ratio", flywheel.Metric{Key: "r", Type: flywheel.MetricRatio, Numerator: "a", Denominator: "b"}, ""},
		{"mean with cap", flywheel.Metric{Key: "m", Type: flywheel.MetricMean, Event: "e", Cap: &flywheel.Cap{Percentile: &pct}}, ""},
		{"type", flywheel.Metric{Key: "x", Type: "sum", Event: "e"}, "type"},
		{"event", flywheel.Metric{Key: "x", Type: flywheel.MetricCount}, "event"},
		{"retention window", flywheel.Metric{Key: "x", Type: flywheel.MetricRetention, Event: "e", FromHours: 5, ToHours: 5}, "to_hours"},
		{"ratio parts on mean", flywheel.Metric{Key: "x", Type: flywheel.MetricMean, Event: "e", Numerator: "a"}, "numerator"},
		{"percentile", flywheel.Metric{Key: "x", Type: flywheel.MetricMean, Event: "e", Cap: &flywheel.Cap{Percentile: &bad}}, "cap.percentile"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := tt.m
			m.Normalize()
			err := m.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				// CUPEDHours 0 stays 0 (CUPED off); the API's create handler
				// applies DefaultCUPEDHours (api tests).
				if m.CUPEDHours != 0 || m.Direction != flywheel.DirectionIncrease {
					t.Errorf("after Normalize: cuped_hours %d, direction %s; want 0, increase", m.CUPEDHours, m.Direction)
				}
				return
			}
			if got := fieldOf(t, err); got != tt.field {
				t.Errorf("Validate() field = %q, want %q (%v)", got, tt.field, err)
			}
		})
	}
}

func TestErrorCode(t *testing.T) {
	if flywheel.ErrorCode(nil) != "" || flywheel.ErrorCode(errors.New("x")) != flywheel.CodeInternal {
		t.Error("ErrorCode of nil or a plain error")
	}
	wrapped := errors.Join(errors.New("ctx"), flywheel.Errorf(flywheel.CodeUnavailable, "db"))
	if flywheel.ErrorCode(wrapped) != flywheel.CodeUnavailable || !flywheel.Retryable(wrapped) {
		t.Errorf("ErrorCode(wrapped) = %s, want unavailable and retryable", flywheel.ErrorCode(wrapped))
	}
}
