package analysis

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/stats"
)

// UpliftPolicy is the targeting advice of an uplift document, one rule per
// variant against control.
type UpliftPolicy struct {
	// Method names the estimator (see the README, "Uplift: who responds").
	Method string `json:"method"`
	Folds  int    `json:"folds"`
	// Per is the number of units the gains are stated for (1,000).
	Per      int          `json:"per"`
	Summary  string       `json:"summary"`
	Variants []UpliftRule `json:"variants"`
}

// UpliftRule is the policy of one variant. Its segments are the
// combinations of the values of every attribute of by. The gains are in
// the metric's unit per Per units, signed so that a positive gain is good
// (for a metric whose direction is decrease, a fall of the metric). They
// are cross-fitted: each fold's segments are chosen on the other folds and
// evaluated on it, never on the data that chose them.
type UpliftRule struct {
	Variant string `json:"variant"`
	// Decision is "target" (send to SendTo: it beats sending to all and to
	// none), "all" (no segment beats sending to all, which beats none),
	// "none" (sending to all is worse than sending to none) or
	// "inconclusive".
	Decision string `json:"decision"`
	// SendTo are the segments chosen on all the data: those whose
	// estimated effect is good (segments with fewer than min_units per arm
	// follow the sign of the overall effect).
	SendTo []map[string]string `json:"send_to"`
	// Segments is the number of combinations seen; Share the fraction of
	// the units of control and the variant that fall in SendTo.
	Segments   int      `json:"segments"`
	Share      Float    `json:"share"`
	GainVsAll  Estimate `json:"gain_vs_all"`
	GainVsNone Estimate `json:"gain_vs_none"`
	// AllVsNone is the gain of sending to all vs. to none: the overall
	// effect (Welch), per Per units.
	AllVsNone Estimate `json:"all_vs_none"`
	Summary   string   `json:"summary"`
}

// arms is the control and variant sums of one policy cell.
type arms struct{ c, t stats.Summary }

// cellKey joins a combination of values (attribute values never hold the
// unit separator).
func cellKey(values []string) string { return strings.Join(values, "\x1f") }

// policy computes the rule of every variant.
func policy(in UpliftInput, variants []string, opts UpliftOptions) UpliftPolicy {
	out := UpliftPolicy{Method: "cross-fitted policy value (Imai & Li 2023), " + fmt.Sprint(UpliftFolds) + " folds by MD5 of the unit id",
		Folds: UpliftFolds, Per: UpliftPer, Variants: []UpliftRule{}}
	sign := 1.0
	if in.Metric.Direction == flywheel.DirectionDecrease {
		sign = -1
	}
	var summaries []string
	for _, v := range variants[1:] {
		r := rule(in, variants[0], v, sign, opts)
		out.Variants = append(out.Variants, r)
		summaries = append(summaries, r.Summary)
	}
	out.Summary = strings.Join(summaries, " ")
	return out
}

// rule learns and evaluates the policy of variant v against control.
func rule(in UpliftInput, control, v string, sign float64, opts UpliftOptions) UpliftRule {
	var folds [UpliftFolds]map[string]arms
	total := map[string]arms{}
	values := map[string][]string{}
	for k := range folds {
		folds[k] = map[string]arms{}
	}
	for _, c := range in.Cells {
		if (c.Variant != control && c.Variant != v) || c.Fold < 0 || c.Fold >= UpliftFolds {
			continue
		}
		key := cellKey(c.Values)
		values[key] = c.Values
		for _, m := range []map[string]arms{folds[c.Fold], total} {
			a := m[key]
			if c.Variant == control {
				a.c = a.c.Merge(cellSummary(c))
			} else {
				a.t = a.t.Merge(cellSummary(c))
			}
			m[key] = a
		}
	}
	r := ruleOf(v, in, total, values, sign, opts)
	// Cross-fitting: choose on the other folds, evaluate on fold k.
	var gNone, gAll, vNone, vAll, weight [UpliftFolds]float64
	var n float64
	for k := range folds {
		train := map[string]arms{}
		for j := range folds {
			if j == k {
				continue
			}
			for key, a := range folds[j] {
				t := train[key]
				t.c, t.t = t.c.Merge(a.c), t.t.Merge(a.t)
				train[key] = t
			}
		}
		treat := choose(train, sign, opts.MinUnits)
		for key := range folds[k] {
			if _, ok := treat[key]; !ok {
				// A segment unseen in training follows the overall effect.
				treat[key] = treat[pooledKey]
			}
		}
		gNone[k], vNone[k], gAll[k], vAll[k], weight[k] = evaluate(folds[k], treat, sign)
		n += weight[k]
	}
	z := stats.ZQuantile(opts.Alpha)
	r.GainVsNone = crossFit(gNone[:], vNone[:], weight[:], n, z)
	r.GainVsAll = crossFit(gAll[:], vAll[:], weight[:], n, z)
	decide(&r, in.Metric.Key)
	return r
}

// ruleOf is the rule chosen on all the data (its SendTo, Share, Segments
// and AllVsNone); the gains are filled by cross-fitting.
func ruleOf(v string, in UpliftInput, total map[string]arms, values map[string][]string, sign float64, opts UpliftOptions) UpliftRule {
	r := UpliftRule{Variant: v, SendTo: []map[string]string{}, Segments: len(total)}
	treat := choose(total, sign, opts.MinUnits)
	keys := make([]string, 0, len(total))
	var ctl, trt stats.Summary
	var in1, n float64
	for key, a := range total {
		keys = append(keys, key)
		ctl, trt = ctl.Merge(a.c), trt.Merge(a.t)
		n += float64(a.c.N + a.t.N)
		if treat[key] {
			in1 += float64(a.c.N + a.t.N)
		}
	}
	slices.SortFunc(keys, func(a, b string) int {
		va, vb := values[a], values[b]
		for i := range min(len(va), len(vb)) {
			if c := compareValues(va[i], vb[i]); c != 0 {
				return c
			}
		}
		return len(va) - len(vb)
	})
	for _, key := range keys {
		if !treat[key] {
			continue
		}
		seg := map[string]string{}
		for i, attr := range in.By {
			if i < len(values[key]) {
				seg[attr] = values[key][i]
			}
		}
		r.SendTo = append(r.SendTo, seg)
	}
	r.Share = nan()
	if n > 0 {
		r.Share = Float(in1 / n)
	}
	w := stats.Welch(ctl.Moments(), trt.Moments(), opts.Alpha)
	r.AllVsNone = scaled(w.Diff.Value, w.Diff.CI.Lower, w.Diff.CI.Upper, sign)
	return r
}

// pooledKey holds, in a choice, the decision for a segment not seen: the
// sign of the effect over all cells (no cell key holds "\x00").
const pooledKey = "\x00"

// choose decides, for each cell, whether the variant is sent there: when
// its estimated effect is good; a cell with fewer than minUnits units in
// an arm follows the sign of the effect over all cells (as does pooledKey).
func choose(cells map[string]arms, sign float64, minUnits int64) map[string]bool {
	var c, t stats.Summary
	for _, a := range cells {
		c, t = c.Merge(a.c), t.Merge(a.t)
	}
	pooled := sign*(t.Mean()-c.Mean()) > 0
	out := make(map[string]bool, len(cells)+1)
	out[pooledKey] = pooled
	for key, a := range cells {
		if a.c.N < minUnits || a.t.N < minUnits {
			out[key] = pooled
			continue
		}
		out[key] = sign*(a.t.Mean()-a.c.Mean()) > 0
	}
	return out
}

// evaluate estimates, on one held-out fold, the gain per unit of sending
// to the treated cells vs. to none (Σ_c w_c·d_c over treated cells) and
// vs. to all (−Σ_c w_c·d_c over the others), with w_c the cell's share of
// the fold's units and d_c its difference in means (signed), and their
// variances: Σ w_c²·(s_t²/n_t + s_c²/n_c) plus the sampling variance of the
// cells' shares, Σ w_c·(a_c − gain)²/n. Cells missing an arm (or with a
// single unit in one) contribute no gain. n is the fold's units.
func evaluate(fold map[string]arms, treat map[string]bool, sign float64) (gNone, vNone, gAll, vAll, n float64) {
	for _, a := range fold {
		n += float64(a.c.N + a.t.N)
	}
	if n == 0 {
		return math.NaN(), math.NaN(), math.NaN(), math.NaN(), 0
	}
	type term struct{ w, none, all float64 }
	var terms []term
	for key, a := range fold {
		w := float64(a.c.N+a.t.N) / n
		if a.c.N < 2 || a.t.N < 2 {
			terms = append(terms, term{w: w})
			continue
		}
		d := sign * (a.t.Mean() - a.c.Mean())
		vd := a.c.Var()/float64(a.c.N) + a.t.Var()/float64(a.t.N)
		if treat[key] {
			gNone += w * d
			vNone += w * w * vd
			terms = append(terms, term{w: w, none: d})
		} else {
			gAll -= w * d
			vAll += w * w * vd
			terms = append(terms, term{w: w, all: -d})
		}
	}
	for _, t := range terms {
		vNone += t.w * (t.none - gNone) * (t.none - gNone) / n
		vAll += t.w * (t.all - gAll) * (t.all - gAll) / n
	}
	return gNone, vNone, gAll, vAll, n
}

// crossFit combines the fold estimates g (variances v, units w of n) into
// one estimate and a normal interval: the units-weighted mean, with Imai
// & Li's (2023, Theorem 3) variance of the cross-fitting estimator,
// mean(v) − (K−1)/K·S², S² the sample variance of the fold estimates (the
// part of the folds' spread due to the held-out noise is not counted
// twice), floored at mean(v)/K, its value when the chosen segments are the
// same in every fold.
func crossFit(g, v, w []float64, n, z float64) Estimate {
	k := 0
	var est, mv, mg float64
	for i := range g {
		if w[i] == 0 || math.IsNaN(g[i]) {
			continue
		}
		est += w[i] / n * g[i]
		mv += v[i]
		mg += g[i]
		k++
	}
	if k < 2 {
		return undefinedEstimate()
	}
	mv /= float64(k)
	mg /= float64(k)
	s2 := 0.0
	for i := range g {
		if w[i] == 0 || math.IsNaN(g[i]) {
			continue
		}
		s2 += (g[i] - mg) * (g[i] - mg)
	}
	s2 /= float64(k - 1)
	variance := math.Max(mv-float64(k-1)/float64(k)*s2, mv/float64(k))
	se := math.Sqrt(variance)
	return Estimate{Estimate: Float(est * UpliftPer), CI: [2]Float{Float((est - z*se) * UpliftPer), Float((est + z*se) * UpliftPer)}}
}

// scaled is a difference (and interval) per UpliftPer units, signed so
// that positive is good.
func scaled(v, lo, hi, sign float64) Estimate {
	if sign < 0 {
		v, lo, hi = -v, -hi, -lo
	}
	return Estimate{Estimate: Float(v * UpliftPer), CI: [2]Float{Float(lo * UpliftPer), Float(hi * UpliftPer)}}
}

// decide sets the decision and the sentence of a rule.
func decide(r *UpliftRule, metric string) {
	beatsAll := r.GainVsAll.Defined() && r.GainVsAll.CI[0] > 0
	beatsNone := r.GainVsNone.Defined() && r.GainVsNone.CI[0] > 0
	partial := len(r.SendTo) > 0 && len(r.SendTo) < r.Segments
	unit := metric + " per 1,000 units"
	switch {
	case partial && beatsAll && beatsNone:
		r.Decision = "target"
		r.Summary = fmt.Sprintf("Send %s to %d of %d segments (%s of units): expected gain %s %s (%s) vs. sending to all, and %s (%s) vs. sending to none.",
			r.Variant, len(r.SendTo), r.Segments, percent(float64(r.Share)), num(r.GainVsAll.Estimate), unit, interval(r.GainVsAll),
			num(r.GainVsNone.Estimate), interval(r.GainVsNone))
		return
	case r.AllVsNone.Defined() && r.AllVsNone.CI[0] > 0:
		r.Decision = "all"
		targeting := fmt.Sprintf("targeting vs. all: %s %s, %s", num(r.GainVsAll.Estimate), unit, interval(r.GainVsAll))
		if r.GainVsAll.Estimate == 0 && r.GainVsAll.CI[0] == 0 && r.GainVsAll.CI[1] == 0 {
			targeting = "every segment's estimated effect is good in every fold"
		}
		r.Summary = fmt.Sprintf("No segment beats sending %s to all (%s); sending to all gains %s %s (%s) vs. sending to none.",
			r.Variant, targeting, num(r.AllVsNone.Estimate), unit, interval(r.AllVsNone))
	case r.AllVsNone.Defined() && r.AllVsNone.CI[1] < 0:
		r.Decision = "none"
		r.Summary = fmt.Sprintf("No segment beats sending %s to all, and sending to all loses %s %s (%s) vs. sending to none: send it to no one.",
			r.Variant, num(-r.AllVsNone.Estimate), unit, interval(Estimate{Estimate: -r.AllVsNone.Estimate, CI: [2]Float{-r.AllVsNone.CI[1], -r.AllVsNone.CI[0]}}))
	case !r.AllVsNone.CI[0].Defined() || !r.AllVsNone.CI[1].Defined():
		r.Decision = "inconclusive"
		r.Summary = fmt.Sprintf("No segment beats sending %s to all, and there are not enough units to compare sending to all with sending to none.", r.Variant)
	default:
		r.Decision = "inconclusive"
		r.Summary = fmt.Sprintf("No segment beats sending %s to all, and sending to all is not clearly better than sending to none (%s %s, %s).",
			r.Variant, num(r.AllVsNone.Estimate), unit, interval(r.AllVsNone))
	}
}

// num writes a number with about three significant digits.
func num(f Float) string {
	x := float64(f)
	switch a := math.Abs(x); {
	case !f.Defined():
		return "n/a"
	case a >= 100:
		return fmt.Sprintf("%.0f", x)
	case a >= 10:
		return fmt.Sprintf("%.1f", x)
	case a >= 1:
		return fmt.Sprintf("%.2f", x)
	default:
		return fmt.Sprintf("%.3g", x)
	}
}

func interval(e Estimate) string { return num(e.CI[0]) + " to " + num(e.CI[1]) }
