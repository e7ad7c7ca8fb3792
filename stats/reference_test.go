package stats

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/flywheel-oss/flywheel/internal/statscases"
)

// caseArm is the sufficient statistics of one arm of a reference case:
// converted as the conversion metric, revenue as the metric and
// pre_revenue as its CUPED covariate.
type caseArm struct {
	conv Proportion
	rev  Summary
}

// TestReferenceCases checks every number of every stats-cases/<case>/
// expected.json against the package, computing from per-arm sufficient
// statistics of units.csv exactly as the server will.
func TestReferenceCases(t *testing.T) {
	for _, dir := range caseDirs(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			want := readTree(t, filepath.Join(dir, "expected.json"))
			got := computeCase(t, dir, want)
			n := checkTree(t, want, got, skipCaseInputs)
			if n < 100 {
				t.Errorf("checked only %d reference leaves; the walk is broken", n)
			}
		})
	}
}

// skipCaseInputs skips the parts of expected.json that are not results:
// the inputs the test reads (alpha, confidence level, weights, arm names),
// free text, and R's Monte Carlo estimates, which are information only
// (README §3.6: compare against value, not the Monte Carlo estimate).
func skipCaseInputs(path string) bool {
	switch path {
	case "case_id", "description", "tolerance_rule", "control", "variants",
		"configured_weights", "alpha", "confidence_level", "multiple_comparisons/family":
		return true
	}
	return filepath.Base(path) == "monte_carlo"
}

func computeCase(t *testing.T, dir string, want map[string]any) results {
	t.Helper()
	var names []string
	for _, v := range want["variants"].([]any) {
		names = append(names, v.(string))
	}
	if len(names) < 2 || names[0] != "control" || want["control"] != "control" {
		t.Fatalf("variants = %v, control = %v: want control first", names, want["control"])
	}
	alpha := number(t, "alpha", want["alpha"])
	if cl := number(t, "confidence_level", want["confidence_level"]); math.Abs(cl-(1-alpha)) > 1e-12 {
		t.Fatalf("confidence_level %v is not 1 − alpha (%v)", cl, alpha)
	}
	weightTree := want["configured_weights"].(map[string]any)
	weights := make([]float64, len(names))
	for i, name := range names {
		weights[i] = number(t, "configured_weights/"+name, weightTree[name])
	}

	data, err := os.ReadFile(filepath.Join(dir, "units.csv"))
	if err != nil {
		t.Fatal(err)
	}
	arms := readUnits(t, data, names)

	r := results{}
	sum := md5.Sum(data)
	r.set("units_csv_md5", "md5(units.csv)", hex.EncodeToString(sum[:]))
	r.set("z_quantile_975", "ZQuantile(alpha)", ZQuantile(alpha))

	var total int64
	observed := make([]int64, len(names))
	summaries := make([]Summary, len(names))
	for i := range names {
		total += arms[i].rev.N
		observed[i] = arms[i].rev.N
		summaries[i] = arms[i].rev
	}
	r.set("n_units", "Σ N", total)

	cuped := FitCUPED(summaries...)
	for i, name := range names {
		a, p := arms[i], "arms/"+name+"/"
		adj := cuped.Adjust(a.rev)
		r.set(p+"n", "Summary.N", a.rev.N)
		r.set(p+"conversions", "Proportion.Conversions", a.conv.Conversions)
		r.set(p+"conversion_rate", "Proportion.Rate()", a.conv.Rate())
		r.set(p+"revenue_sum", "Summary.Sum", a.rev.Sum)
		r.set(p+"revenue_mean", "Summary.Mean()", a.rev.Mean())
		r.set(p+"revenue_var", "Summary.Var()", a.rev.Var())
		r.set(p+"pre_revenue_mean", "Summary.MeanX()", a.rev.MeanX())
		r.set(p+"pre_revenue_var", "Summary.VarX()", a.rev.VarX())
		r.set(p+"cuped_adjusted_mean", "CUPED.Adjust().Mean", adj.Mean)
		r.set(p+"cuped_adjusted_var", "CUPED.Adjust().Var", adj.Var)
	}

	srm := SRM(observed, weights)
	for i, name := range names {
		r.set("srm/observed/"+name, "SRM().Observed", srm.Observed[i])
		r.set("srm/expected_counts/"+name, "SRM().Expected", srm.Expected[i])
	}
	r.set("srm/chisq_statistic", "SRM().ChiSq", srm.ChiSq)
	r.set("srm/df", "SRM().DF", int64(srm.DF))
	r.set("srm/p_value", "SRM().P", srm.P)

	r.set("cuped_pooled/theta", "FitCUPED().Theta", cuped.Theta)
	r.set("cuped_pooled/pre_revenue_mean_pooled", "FitCUPED().MeanX", cuped.MeanX)
	r.set("cuped_pooled/revenue_var_pooled", "FitCUPED().VarY", cuped.VarY)
	r.set("cuped_pooled/adjusted_revenue_var_pooled", "FitCUPED().VarAdjusted", cuped.VarAdjusted)
	r.set("cuped_pooled/variance_reduction_pooled", "FitCUPED().VarianceReduction", cuped.VarianceReduction)

	ancova := ANCOVA(summaries, alpha)
	families := map[string][]float64{}
	for i, name := range names[1:] {
		c, v := arms[0], arms[i+1]
		p := fmt.Sprintf("comparisons/%d/", i)
		r.set(p+"variant", "variants[i+1]", name)
		r.set(p+"control", "variants[0]", names[0])
		args := fmt.Sprintf("(control, %s)", name)

		prop := ProportionTest(c.conv, v.conv, alpha)
		f := "ProportionTest" + args
		setAll(r, p+"conversion/", f, map[string]any{
			"n_control":            prop.Control.N,
			"n_variant":            prop.Variant.N,
			"conversions_control":  prop.Control.Conversions,
			"conversions_variant":  prop.Variant.Conversions,
			"rate_control":         prop.Control.Rate(),
			"rate_variant":         prop.Variant.Rate(),
			"pooled_rate":          prop.PooledRate,
			"pooled_se":            prop.PooledSE,
			"z":                    prop.Z,
			"p_value_ztest":        prop.P,
			"chisq_statistic":      prop.ChiSq,
			"p_value_chisq":        prop.PChiSq,
			"abs_diff":             prop.Diff.Value,
			"abs_diff_se_unpooled": prop.Diff.SE,
			"abs_diff_ci_lower":    prop.Diff.CI.Lower,
			"abs_diff_ci_upper":    prop.Diff.CI.Upper,
			"rel_lift":             prop.Lift.Value,
			"rel_lift_se":          prop.Lift.SE,
			"rel_lift_ci_lower":    prop.Lift.CI.Lower,
			"rel_lift_ci_upper":    prop.Lift.CI.Upper,
		})

		welch := Welch(c.rev.Moments(), v.rev.Moments(), alpha)
		revenue := meanFields(welch)
		revenue["mean_control"], revenue["mean_variant"] = welch.Control.Mean, welch.Variant.Mean
		revenue["var_control"], revenue["var_variant"] = welch.Control.Var, welch.Variant.Var
		revenue["rel_lift"], revenue["rel_lift_se"] = welch.Lift.Value, welch.Lift.SE
		revenue["rel_lift_ci_lower"], revenue["rel_lift_ci_upper"] = welch.Lift.CI.Lower, welch.Lift.CI.Upper
		setAll(r, p+"revenue/", "Welch"+args, revenue)

		cr := cuped.Compare(c.rev, v.rev, alpha)
		adjusted := meanFields(cr.MeanResult)
		adjusted["adjusted_mean_control"], adjusted["adjusted_mean_variant"] = cr.Control.Mean, cr.Variant.Mean
		adjusted["adjusted_var_control"], adjusted["adjusted_var_variant"] = cr.Control.Var, cr.Variant.Var
		adjusted["theta"], adjusted["variance_reduction_of_diff"] = cr.Theta, cr.VarianceReduction
		setAll(r, p+"cuped/", "CUPED.Compare"+args, adjusted)

		e := ancova.Effects[i]
		setAll(r, p+"ancova/", "ANCOVA(arms).Effects["+strconv.Itoa(i)+"]", map[string]any{
			"coef": e.Diff.Value, "se": e.Diff.SE, "t": e.T, "p_value": e.P,
			"df_residual": ancova.DF, "pre_revenue_coef": ancova.Slope,
		})

		bayes := BayesProportions(c.conv, v.conv, alpha)
		prior := BetaPosterior(Proportion{})
		pc, pv := BetaPosterior(c.conv), BetaPosterior(v.conv)
		bf := map[string]any{
			"prior/alpha":             int64(prior.Alpha),
			"prior/beta":              int64(prior.Beta),
			"posterior_control/alpha": int64(pc.Alpha),
			"posterior_control/beta":  int64(pc.Beta),
			"posterior_variant/alpha": int64(pv.Alpha),
			"posterior_variant/beta":  int64(pv.Beta),
		}
		for _, prefix := range []string{"", "crosscheck_exact_sum/"} {
			bf[prefix+"prob_variant_beats_control"] = bayes.ChanceToWin
			bf[prefix+"expected_loss_choose_variant"] = bayes.LossVariant
			bf[prefix+"expected_loss_choose_control"] = bayes.LossControl
		}
		setAll(r, p+"bayesian/", "BayesProportions"+args, bf)

		families["conversion"] = append(families["conversion"], prop.P)
		families["revenue"] = append(families["revenue"], welch.P)
		families["cuped"] = append(families["cuped"], cr.P)
	}

	if len(names) > 2 {
		sources := map[string]string{
			"conversion": "conversion.p_value_ztest", "revenue": "revenue.p_value", "cuped": "cuped.p_value",
		}
		for fam, ps := range families {
			p := "multiple_comparisons/" + fam + "/"
			r.set("multiple_comparisons/p_value_source/"+fam, "p-values fed to Holm and BH", sources[fam])
			holm, bh := Holm(ps), BenjaminiHochberg(ps)
			for i, name := range names[1:] {
				r.set(p+"raw/"+name, "raw p", ps[i])
				r.set(p+"holm/"+name, "Holm(p)", holm[i])
				r.set(p+"bh/"+name, "BenjaminiHochberg(p)", bh[i])
			}
		}
	}
	return r
}

// meanFields returns the Welch fields shared by revenue and cuped.
func meanFields(m MeanResult) map[string]any {
	return map[string]any{
		"n_control": m.Control.N, "n_variant": m.Variant.N,
		"abs_diff": m.Diff.Value, "se": m.Diff.SE, "t": m.T, "df": m.DF, "p_value": m.P,
		"t_quantile_975": m.TQuantile, "ci_lower": m.Diff.CI.Lower, "ci_upper": m.Diff.CI.Upper,
	}
}

func setAll(r results, prefix, expr string, fields map[string]any) {
	for k, v := range fields {
		r.set(prefix+k, expr+"."+k, v)
	}
}

// readUnits folds units.csv into per-arm sufficient statistics, in the
// order of names.
func readUnits(t *testing.T, data []byte, names []string) []caseArm {
	t.Helper()
	arms := make([]caseArm, len(names))
	for _, u := range statscases.Parse(t, data) {
		i := slices.Index(names, u.Variant)
		if i < 0 {
			t.Fatalf("unit %s: arm %q is not in variants %v", u.ID, u.Variant, names)
		}
		arms[i].conv.N++
		if u.Converted {
			arms[i].conv.Conversions++
		}
		arms[i].rev.Add(u.Revenue, u.PreRevenue)
	}
	return arms
}
