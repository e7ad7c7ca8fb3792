package analysis

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/internal/statscases"
)

// casesDir is the R reference cases (internal/testdata/stats-cases).
const casesDir = statscases.Root

// TestReferenceCases runs Analyze on every stats-cases/<case>/units.csv,
// folded into the rows the SQL aggregate returns (converted as a
// conversion metric, revenue as a mean metric with pre_revenue as its CUPED
// covariate), and checks the numbers of the JSON document against
// expected.json with the files' tolerances: it proves that the right
// numbers reach the right fields.
func TestReferenceCases(t *testing.T) {
	dirs := caseDirs(t)
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			want := readJSON(t, filepath.Join(dir, "expected.json"))
			in := caseInput(t, dir, want)
			names := strs(want["variants"])
			three := len(names) > 2
			mc, _ := want["multiple_comparisons"].(map[string]any)
			c := &checker{t: t}

			for _, adj := range []Adjustment{AdjustHolm, AdjustBH} {
				doc := analyzeJSON(t, in, Options{Adjustment: adj})
				if adj == AdjustHolm {
					checkCase(c, doc, want, names)
				}
				// p_value_adjusted: the family of each metric is its k−1
				// comparisons (conversion is the only primary metric,
				// revenue the only guardrail).
				key := map[Adjustment]string{AdjustHolm: "holm", AdjustBH: "bh"}[adj]
				metrics := doc["metrics"].([]any)
				for i, name := range names[1:] {
					conv := path(metrics, 0, "variants", i+1).(map[string]any)
					rev := path(metrics, 1, "variants", i+1).(map[string]any)
					cmp := path(want, "comparisons", i).(map[string]any)
					if three {
						c.num(key+" conversion "+name, conv["p_value_adjusted"], path(mc, "conversion", key, name))
						c.num(key+" revenue "+name, rev["p_value_adjusted"], path(mc, "revenue", key, name))
						c.num(key+" cuped "+name, path(rev, "cuped", "p_value_adjusted"), path(mc, "cuped", key, name))
					} else {
						c.num(key+" conversion "+name, conv["p_value_adjusted"], path(cmp, "conversion", "p_value_ztest"))
						c.num(key+" revenue "+name, rev["p_value_adjusted"], path(cmp, "revenue", "p_value"))
						c.num(key+" cuped "+name, path(rev, "cuped", "p_value_adjusted"), path(cmp, "cuped", "p_value"))
					}
					for _, v := range []map[string]any{conv, rev} {
						if sig, p := v["significant"].(bool), v["p_value_adjusted"].(float64); sig != (p < 0.05) {
							t.Errorf("%s %s: significant = %v with p_value_adjusted %v", key, name, sig, p)
						}
					}
				}
			}
			if c.n < 30*(len(names)-1) {
				t.Errorf("checked only %d numbers; the walk is broken", c.n)
			}
		})
	}
}

// checkCase checks the fields shared by every adjustment.
func checkCase(c *checker, doc, want map[string]any, names []string) {
	c.int("units", doc["units"], want["n_units"])
	c.num("srm p_value", path(doc, "health", "srm", "p_value"), path(want, "srm", "p_value"))
	c.num("srm chi_square", path(doc, "health", "srm", "chi_square"), path(want, "srm", "chisq_statistic"))
	for i, name := range names {
		c.int("srm observed "+name, path(doc, "health", "srm", "observed", i), path(want, "srm", "observed", name))
	}
	wantSRMOK := wantNumber(c.t, path(want, "srm", "p_value")) >= SRMThreshold
	if got := path(doc, "health", "srm", "ok"); got != wantSRMOK {
		c.t.Errorf("srm ok = %v, want %v", got, wantSRMOK)
	}

	metrics := doc["metrics"].([]any)
	if len(metrics) != 2 || path(metrics, 0, "metric") != "converted" || path(metrics, 1, "metric") != "revenue" {
		c.t.Fatalf("metrics = %v, want converted, revenue", metrics)
	}
	for i, name := range names {
		arm := path(want, "arms", name).(map[string]any)
		conv := path(metrics, 0, "variants", i).(map[string]any)
		rev := path(metrics, 1, "variants", i).(map[string]any)
		c.str("variant", conv["variant"], name)
		c.int(name+" units", conv["units"], arm["n"])
		c.int(name+" revenue units", rev["units"], arm["n"])
		c.num(name+" rate", conv["mean"], arm["conversion_rate"])
		c.num(name+" revenue mean", rev["mean"], arm["revenue_mean"])
		c.numValue(name+" revenue stddev", rev["stddev"], math.Sqrt(wantNumber(c.t, arm["revenue_var"])), 1e-6, 1e-12)
		if i == 0 {
			for _, v := range []map[string]any{conv, rev} {
				if _, ok := v["maturing"]; len(v) != 5 || !ok {
					c.t.Errorf("control entry has fields %v, want variant, units, mean, stddev, maturing (no comparison)", keys(v))
				}
			}
		}
	}

	for i, name := range names[1:] {
		cmp := path(want, "comparisons", i).(map[string]any)
		conv := path(metrics, 0, "variants", i+1).(map[string]any)
		rev := path(metrics, 1, "variants", i+1).(map[string]any)
		w := cmp["conversion"].(map[string]any)
		c.num(name+" conversion diff", path(conv, "diff", "estimate"), w["abs_diff"])
		c.num(name+" conversion diff lower", path(conv, "diff", "ci", 0), w["abs_diff_ci_lower"])
		c.num(name+" conversion diff upper", path(conv, "diff", "ci", 1), w["abs_diff_ci_upper"])
		c.num(name+" conversion lift", path(conv, "lift", "estimate"), w["rel_lift"])
		c.num(name+" conversion lift lower", path(conv, "lift", "ci", 0), w["rel_lift_ci_lower"])
		c.num(name+" conversion lift upper", path(conv, "lift", "ci", 1), w["rel_lift_ci_upper"])
		c.num(name+" conversion p", conv["p_value"], w["p_value_ztest"])
		b := cmp["bayesian"].(map[string]any)
		c.num(name+" chance_to_win", conv["chance_to_win"], b["prob_variant_beats_control"])
		c.num(name+" expected_loss", conv["expected_loss"], b["expected_loss_choose_variant"])
		if _, ok := conv["cuped"]; ok {
			c.t.Errorf("%s: conversion has a cuped block without a covariate", name)
		}

		w = cmp["revenue"].(map[string]any)
		c.num(name+" revenue diff", path(rev, "diff", "estimate"), w["abs_diff"])
		c.num(name+" revenue diff lower", path(rev, "diff", "ci", 0), w["ci_lower"])
		c.num(name+" revenue diff upper", path(rev, "diff", "ci", 1), w["ci_upper"])
		c.num(name+" revenue lift", path(rev, "lift", "estimate"), w["rel_lift"])
		c.num(name+" revenue lift lower", path(rev, "lift", "ci", 0), w["rel_lift_ci_lower"])
		c.num(name+" revenue lift upper", path(rev, "lift", "ci", 1), w["rel_lift_ci_upper"])
		c.num(name+" revenue p", rev["p_value"], w["p_value"])

		w = cmp["cuped"].(map[string]any)
		cu := rev["cuped"].(map[string]any)
		c.num(name+" cuped theta", cu["theta"], w["theta"])
		c.num(name+" cuped theta pooled", cu["theta"], path(want, "cuped_pooled", "theta"))
		c.num(name+" cuped variance_reduction", cu["variance_reduction"], w["variance_reduction_of_diff"])
		c.num(name+" cuped diff", path(cu, "diff", "estimate"), w["abs_diff"])
		c.num(name+" cuped diff lower", path(cu, "diff", "ci", 0), w["ci_lower"])
		c.num(name+" cuped diff upper", path(cu, "diff", "ci", 1), w["ci_upper"])
		c.num(name+" cuped p", cu["p_value"], w["p_value"])
	}
}

// caseInput folds units.csv into the Input the database would produce.
func caseInput(t *testing.T, dir string, want map[string]any) Input {
	t.Helper()
	names := strs(want["variants"])
	if len(names) < 2 || names[0] != "control" {
		t.Fatalf("variants = %v: want control first", names)
	}
	weights := want["configured_weights"].(map[string]any)
	e := flywheel.Experiment{
		Key:      filepath.Base(dir),
		Status:   flywheel.StatusRunning,
		Analysis: flywheel.AnalysisFixed,
		Metrics:  flywheel.MetricRefs{Primary: []string{"converted"}, Guardrails: []string{"revenue"}},
	}
	for _, n := range names {
		e.Variants = append(e.Variants, flywheel.Variant{Key: n, Weight: weights[n].(float64)})
	}
	in := Input{
		Experiment: e,
		Metrics: []flywheel.Metric{
			{Key: "converted", Type: flywheel.MetricConversion, Direction: flywheel.DirectionIncrease},
			{Key: "revenue", Type: flywheel.MetricMean, Direction: flywheel.DirectionIncrease},
		},
		ComputedAt: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC),
	}

	_, units := statscases.Read(t, dir)
	conv := make([]MetricStats, len(names))
	rev := make([]MetricStats, len(names))
	arms := make([]ArmCounts, len(names))
	for i, n := range names {
		conv[i] = MetricStats{Metric: "converted", Variant: n}
		rev[i] = MetricStats{Metric: "revenue", Variant: n}
		arms[i] = ArmCounts{Variant: n}
	}
	for _, u := range units {
		i := slices.Index(names, u.Variant)
		if i < 0 {
			t.Fatalf("unit %s: arm %q is not in variants %v", u.ID, u.Variant, names)
		}
		arms[i].Units++
		conv[i].N++
		if u.Converted {
			conv[i].Conversions++
		}
		y, x := u.Revenue, u.PreRevenue
		r := &rev[i]
		r.N++
		r.Sum += y
		r.SumSq += y * y
		r.SumX += x
		r.SumXSq += x * x
		r.SumXY += x * y
	}
	in.Arms = arms
	in.Stats = append(conv, rev...)
	return in
}

func caseDirs(t *testing.T) []string {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(casesDir, "*", "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) < 8 {
		t.Fatalf("found %d reference cases in %s, want 8: the reference cases are missing", len(dirs), casesDir)
	}
	for i, d := range dirs {
		dirs[i] = filepath.Dir(d)
	}
	return dirs
}

// analyzeJSON runs Analyze and reads its JSON back as generic values, as
// a client would.
func analyzeJSON(t testing.TB, in Input, opts Options) map[string]any {
	t.Helper()
	b, err := json.Marshal(Analyze(in, opts))
	if err != nil {
		t.Fatalf("json.Marshal(Results): %v", err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

func readJSON(t testing.TB, name string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return v
}

// path walks maps by string keys and slices by int indexes; nil when a
// step is missing.
func path(v any, steps ...any) any {
	for _, s := range steps {
		switch k := s.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			a, ok := v.([]any)
			if !ok || k >= len(a) {
				return nil
			}
			v = a[k]
		}
	}
	return v
}

func strs(v any) []string {
	var out []string
	for _, s := range v.([]any) {
		out = append(out, s.(string))
	}
	return out
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// wantNumber reads a tolerance object's value, or a bare number.
func wantNumber(t testing.TB, v any) float64 {
	t.Helper()
	switch x := v.(type) {
	case float64:
		return x
	case map[string]any:
		if f, ok := x["value"].(float64); ok {
			return f
		}
	}
	t.Fatalf("not a number: %v", v)
	return 0
}

// checker compares JSON values with expected ones and counts the checks.
type checker struct {
	t *testing.T
	n int
}

// num checks got against a tolerance object {value, rel_tol, abs_tol}:
// |got − value| ≤ max(abs_tol, rel_tol·|value|).
func (c *checker) num(name string, got, want any) {
	c.t.Helper()
	w, ok := want.(map[string]any)
	if !ok {
		c.t.Errorf("%s: no expected value (%v)", name, want)
		return
	}
	if w["value"] == nil {
		c.n++
		if got != nil {
			c.t.Errorf("%s = %v, want null", name, got)
		}
		return
	}
	c.numValue(name, got, w["value"].(float64), w["rel_tol"].(float64), w["abs_tol"].(float64))
}

func (c *checker) numValue(name string, got any, want, rel, abs float64) {
	c.t.Helper()
	c.n++
	g, ok := got.(float64)
	if !ok {
		c.t.Errorf("%s = %v, want %v", name, got, want)
		return
	}
	if d := math.Abs(g - want); !(d <= math.Max(abs, rel*math.Abs(want))) {
		c.t.Errorf("%s = %.15g, want %.15g (|diff| %.3g)", name, g, want, d)
	}
}

func (c *checker) int(name string, got, want any) {
	c.t.Helper()
	c.n++
	if fmt.Sprint(got) != fmt.Sprint(want) {
		c.t.Errorf("%s = %v, want %v", name, got, want)
	}
}

func (c *checker) str(name string, got any, want string) {
	c.t.Helper()
	if got != want {
		c.t.Errorf("%s = %v, want %q", name, got, want)
	}
}
