package analysis

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/stats"
)

// Thresholds of the health checks.
const (
	// MinUnitsPerArm is the arm size below which the normal approximations
	// behind the tests are not to be relied on.
	MinUnitsPerArm = 100
	// MaxMultipleExposureShare is the share of units exposed to more than
	// one variant above which a warning is given (they are excluded, but
	// many of them mean the variant does not reach the exposure reliably).
	MaxMultipleExposureShare = 0.01
	// MaxCrossoverShare is the share of customers whose devices saw
	// different variants above which a device experiment is diluted.
	MaxCrossoverShare = 0.01
	// BalanceAlpha is the level of the pre-exposure balance check and of the
	// opt-out check: stricter than the usual alpha, since they run on every
	// primary metric and arm and a false alarm costs trust.
	BalanceAlpha = 0.01
)

// srmCheck tests the arm sizes against the configured weights.
func srmCheck(units []int64, variants []flywheel.Variant) SRMCheck {
	weights := make([]float64, len(variants))
	var sum float64
	for i, v := range variants {
		weights[i] = v.Weight
		sum += v.Weight
	}
	r := stats.SRM(units, weights)
	expected := make([]Float, len(weights))
	for i, w := range weights {
		expected[i] = Float(w / sum)
	}
	return SRMCheck{
		PValue:   Float(r.P),
		Observed: slices.Clone(units),
		Expected: expected,
		ChiSq:    Float(r.ChiSq),
		OK:       !(r.P < SRMThreshold),
	}
}

// srmWarning is the loud warning of a failed SRM check.
func srmWarning(s SRMCheck, variants []flywheel.Variant) string {
	obs := make([]string, len(s.Observed))
	exp := make([]string, len(s.Expected))
	for i := range s.Observed {
		obs[i] = variants[i].Key + " " + strconv.FormatInt(s.Observed[i], 10)
		exp[i] = strconv.FormatFloat(100*float64(s.Expected[i]), 'f', 1, 64) + "%"
	}
	return fmt.Sprintf("sample ratio mismatch: observed %s units against configured weights %s (p = %s < %g); "+
		"assignment or exposure logging is broken, do not trust these results",
		strings.Join(obs, ", "), strings.Join(exp, "/"), formatP(float64(s.PValue)), SRMThreshold)
}

// sizeWarning reports arms with no units or fewer than MinUnitsPerArm.
func sizeWarning(units []int64, variants []flywheel.Variant) string {
	var empty, small []string
	for i, n := range units {
		switch {
		case n == 0:
			empty = append(empty, variants[i].Key)
		case n < MinUnitsPerArm:
			small = append(small, fmt.Sprintf("%s has %d", variants[i].Key, n))
		}
	}
	var parts []string
	if len(empty) > 0 {
		parts = append(parts, "no units in "+strings.Join(empty, ", "))
	}
	if len(small) > 0 {
		parts = append(parts, strings.Join(small, ", "))
	}
	if len(parts) == 0 {
		return ""
	}
	return fmt.Sprintf("too few units: %s (at least %d per arm are needed); results are unreliable",
		strings.Join(parts, "; "), MinUnitsPerArm)
}

// healthWarnings runs every experiment-level check, the most serious
// first, and returns the warnings and the names of the failed trust checks
// (a warning that starts as one of TrustChecks does).
func healthWarnings(in Input, variants []flywheel.Variant, units, optedOut []int64, srm SRMCheck,
	metrics []MetricResult, roles []flywheel.MetricRole, defs map[string]flywheel.Metric,
	rows map[string]map[string]MetricStats) (w, failed []string) {
	w, failed = []string{}, []string{}
	add := func(s string) {
		if s == "" {
			return
		}
		w = append(w, s)
		for _, c := range TrustChecks() {
			if strings.HasPrefix(s, c.Warning) && !slices.Contains(failed, c.Name) {
				failed = append(failed, c.Name)
			}
		}
	}
	if !srm.OK {
		add(srmWarning(srm, variants))
	}
	add(sizeWarning(units, variants))

	var total int64
	for _, n := range units {
		total += n
	}
	if me := in.MultipleExposures; me > 0 {
		share := float64(me) / float64(total+me)
		if share > MaxMultipleExposureShare {
			add(fmt.Sprintf("multiple exposures: %d units (%s) were exposed to more than one variant and are excluded; "+
				"check that exposures carry the assigned variant", me, percent(share)))
		}
	}
	if c := in.Crossover; c.Customers > 0 {
		share := float64(c.Mixed) / float64(c.Customers)
		if share > MaxCrossoverShare {
			add(fmt.Sprintf("crossover: %d of %d customers (%s) had devices in different variants; "+
				"device-level results are diluted", c.Mixed, c.Customers, percent(share)))
		}
	}
	for _, r := range roles {
		if r.Role == RolePrimary {
			add(balanceWarning(defs[r.Key], variants, rows[r.Key]))
		}
	}
	add(optOutWarning(variants, units, optedOut))
	w = append(w, maturingWarnings(roles, defs, rows)...)
	for _, m := range metrics {
		if m.SampleSize != nil {
			add(sampleSizeWarning(m))
		}
	}
	return w, failed
}

// balanceWarning compares the pre-exposure values (the covariate x) of each
// variant with the control's by Welch's test at BalanceAlpha.
func balanceWarning(def flywheel.Metric, variants []flywheel.Variant, rows map[string]MetricStats) string {
	if def.Type == flywheel.MetricRatio || len(variants) < 2 {
		return ""
	}
	var pooled stats.Summary
	for _, v := range variants {
		r := rows[v.Key]
		pooled = pooled.Merge(stats.Summary{N: r.N, SumX: r.SumX, SumXSq: r.SumXSq})
	}
	if !(pooled.VarX() > 0) {
		return "" // not measured
	}
	control := rows[variants[0].Key].covariate()
	var diffs []string
	for _, v := range variants[1:] {
		t := stats.Welch(control, rows[v.Key].covariate(), BalanceAlpha)
		if t.P < BalanceAlpha {
			diffs = append(diffs, fmt.Sprintf("%s vs %s, p = %s", v.Key, variants[0].Key, formatP(t.P)))
		}
	}
	if len(diffs) == 0 {
		return ""
	}
	return fmt.Sprintf("pre-exposure imbalance on %s: arms differed before the experiment started (%s); "+
		"differences may not be caused by the variants", def.Key, strings.Join(diffs, "; "))
}

// optOutWarning compares each variant's opt-out rate, opted out /
// (analysed + opted out), with the control's at BalanceAlpha.
func optOutWarning(variants []flywheel.Variant, units, optedOut []int64) string {
	if len(variants) < 2 {
		return ""
	}
	rate := func(i int) stats.Proportion {
		return stats.Proportion{N: units[i] + optedOut[i], Conversions: optedOut[i]}
	}
	var diffs []string
	for i := 1; i < len(variants); i++ {
		r := stats.ProportionTest(rate(0), rate(i), BalanceAlpha)
		if r.P < BalanceAlpha {
			diffs = append(diffs, fmt.Sprintf("%s %s vs %s %s (p = %s)", variants[i].Key, percent(rate(i).Rate()),
				variants[0].Key, percent(rate(0).Rate()), formatP(r.P)))
		}
	}
	if len(diffs) == 0 {
		return ""
	}
	return "opt-outs differ between arms: " + strings.Join(diffs, "; ") +
		"; the variant may drive units to opt out, which biases results"
}

// maturingWarnings reports, per window length, the units whose window has
// not passed: the most any metric of that window reports, since they share
// the exposures.
func maturingWarnings(roles []flywheel.MetricRole, defs map[string]flywheel.Metric, rows map[string]map[string]MetricStats) []string {
	type window struct {
		units   int64
		metrics []string
	}
	byHours := map[int]*window{}
	var hours []int
	for _, r := range roles {
		def := defs[r.Key]
		h := def.WindowHours
		if def.Type == flywheel.MetricRetention {
			h = def.ToHours
		}
		var n int64
		for _, row := range rows[r.Key] {
			n += row.Maturing
		}
		if h <= 0 || n <= 0 {
			continue
		}
		w := byHours[h]
		if w == nil {
			w = &window{}
			byHours[h] = w
			hours = append(hours, h)
		}
		w.units = max(w.units, n)
		w.metrics = append(w.metrics, r.Key)
	}
	slices.Sort(hours)
	var out []string
	for _, h := range hours {
		w := byHours[h]
		out = append(out, fmt.Sprintf("%d units have not completed the %d h window; results for long windows may change (%s)",
			w.units, h, strings.Join(w.metrics, ", ")))
	}
	return out
}

// sampleSizeWarning says how far a primary metric is from its planned size.
func sampleSizeWarning(m MetricResult) string {
	s := m.SampleSize
	need := math.Ceil(float64(s.UnitsPerArm))
	if float64(s.SmallestArm) >= need {
		return ""
	}
	return fmt.Sprintf("%s: about %.0f units per arm are needed to detect a %s relative change with %s power "+
		"(the smallest arm has %d); a non-significant result is not evidence of no effect",
		m.Metric, need, shortPercent(float64(s.RelativeMDE)), shortPercent(float64(s.Power)), s.SmallestArm)
}

// segmentWarning is the caveat of every segment breakdown.
func segmentWarning(attribute string, n int) string {
	return fmt.Sprintf("segments by %s are exploratory: their p-values are not corrected for the %d segment values looked at",
		attribute, n)
}

// percent formats a share with one decimal, e.g. 0.0123 as "1.2%".
func percent(x float64) string {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return "n/a"
	}
	s := strconv.FormatFloat(100*x, 'f', 1, 64)
	if s == "-0.0" {
		s = "0.0"
	}
	return s + "%"
}

// shortPercent formats a planning share without trailing zeros, e.g. 0.05
// as "5%" and 0.001 as "0.1%".
func shortPercent(x float64) string {
	return strconv.FormatFloat(math.Round(x*1e8)/1e6, 'f', -1, 64) + "%"
}
