package stats

import (
	"fmt"
	"math"
	"path/filepath"
	"testing"
)

// TestSequentialCases checks every look of every sequence of
// sequential.json.
func TestSequentialCases(t *testing.T) {
	tree := readTree(t, filepath.Join(sharedCases, "sequential.json"))
	seqs, ok := tree["sequences"].([]any)
	if !ok || len(seqs) == 0 {
		t.Fatal("sequential.json has no sequences")
	}
	got := results{}
	for i, s := range seqs {
		s := s.(map[string]any)
		p := fmt.Sprintf("sequences/%d/", i)
		tau2, alpha := number(t, p+"tau2", s["tau2"]), number(t, p+"alpha", s["alpha"])
		// MSPRT tests H0: difference = 0; the file must not ask for
		// another null.
		got.set(p+"theta0", "MSPRT null difference", 0.0)

		var looks []Look
		for j, l := range s["looks"].([]any) {
			l := l.(map[string]any)
			in := func(key string) float64 { return number(t, fmt.Sprintf("%slooks/%d/%s", p, j, key), l[key]) }
			looks = append(looks, Look{
				Control: Moments{N: int64(in("n_control")), Mean: in("mean_control"), Var: in("var_control")},
				Variant: Moments{N: int64(in("n_variant")), Mean: in("mean_variant"), Var: in("var_variant")},
			})
		}
		for j, r := range MSPRT(looks, tau2, alpha) {
			lp := fmt.Sprintf("%slooks/%d/", p, j)
			expr := fmt.Sprintf("MSPRT(%s looks, %v, %v)[%d]", s["id"], tau2, alpha, j)
			setAll(got, lp, expr, map[string]any{
				"look": int64(r.Index), "diff": r.Diff, "V": r.V, "log_lambda": r.LogLambda,
				"lambda": r.Lambda, "p_always_valid": r.P, "reject_at_alpha": r.Reject,
			})
		}
	}
	skip := func(path string) bool {
		switch path {
		case "description", "formula", "tolerance_rule":
			return true
		}
		// Inputs, read above.
		return skipKeys("id", "description", "tau2", "alpha", "n_control", "n_variant",
			"mean_control", "mean_variant", "var_control", "var_variant")(path)
	}
	if n := checkTree(t, tree, got, skip); n < 150 {
		t.Errorf("checked only %d values of sequential.json", n)
	}
}

// TestMSPRTInvariants checks, on a drifting sequence of looks, that the
// always-valid p-value never increases, that the confidence sequence only
// shrinks, and that it excludes 0 exactly when the test rejects.
func TestMSPRTInvariants(t *testing.T) {
	var looks []Look
	for k := 1; k <= 30; k++ {
		n := int64(1000 * k)
		wobble := 0.02 * math.Sin(float64(k))
		looks = append(looks, Look{
			Control: Moments{N: n, Mean: 1, Var: 4},
			Variant: Moments{N: n, Mean: 1 + 0.05 + wobble, Var: 4.2},
		})
	}
	res := MSPRT(looks, 0.01, 0.05)
	prev := LookResult{P: 1, CI: Interval{math.Inf(-1), math.Inf(1)}}
	rejected := false
	for i, r := range res {
		if r.P > prev.P || r.P < 0 || r.P > 1 {
			t.Errorf("look %d: P = %v after %v, want within [0, previous]", i+1, r.P, prev.P)
		}
		if r.CI.Lower < prev.CI.Lower || r.CI.Upper > prev.CI.Upper {
			t.Errorf("look %d: CI = %v grew from %v", i+1, r.CI, prev.CI)
		}
		if r.Reject != !r.CI.Contains(0) {
			t.Errorf("look %d: Reject = %v but CI = %v", i+1, r.Reject, r.CI)
		}
		rejected = rejected || r.Reject
		prev = r
	}
	if !rejected {
		t.Errorf("MSPRT never rejected a 0.05 effect with SE 0.01 at 30 looks; final P = %v", prev.P)
	}

	// An undefined look (one unit) leaves the state alone.
	next := prev.Next(Look{Control: Moments{N: 1, Mean: 0, Var: math.NaN()}, Variant: Moments{N: 1, Mean: 9, Var: math.NaN()}}, 0.01, 0.05)
	if next.P != prev.P || next.CI != prev.CI || next.Index != prev.Index+1 {
		t.Errorf("Next(undefined look) = P %v CI %v index %d, want P %v CI %v index %d", next.P, next.CI, next.Index, prev.P, prev.CI, prev.Index+1)
	}
}
