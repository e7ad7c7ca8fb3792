package analysis

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/stats"
)

// The limits and defaults of an uplift analysis (GET
// /v1/experiments/{key}/uplift).
const (
	// UpliftFolds is K of the K-fold cross-fitting of the targeting policy.
	UpliftFolds = 5
	// MaxUpliftAttributes bounds by=: the policy's segments are the
	// combinations of every attribute's values, which thin out fast.
	MaxUpliftAttributes = 4
	// MaxUpliftValues bounds the distinct values of one attribute ("(none)"
	// included) once numeric attributes are bucketed.
	MaxUpliftValues = 20
	// UpliftNumericBuckets is the number of quantile buckets of a numeric
	// attribute with more than MaxUpliftNumericValues distinct values.
	UpliftNumericBuckets   = 5
	MaxUpliftNumericValues = 10
	// DefaultUpliftMinUnits is the fewest units per arm a segment needs for
	// an effect with an interval (and a policy cell for its own decision).
	DefaultUpliftMinUnits = 100
	// UpliftPer is the number of units a policy's gain is stated for.
	UpliftPer = 1000
)

// UpliftCell is the sufficient statistics of one metric for the units of
// one variant, one fold and one combination of attribute values.
type UpliftCell struct {
	Variant string
	Fold    int      // in [0, UpliftFolds): store.UpliftFold of the unit id
	Values  []string // one per attribute of UpliftInput.By, in order
	N       int64
	Sum     float64 // Σy (y capped as the metric says)
	SumSq   float64 // Σy²
}

// UpliftInput is what the database aggregates for an uplift analysis.
type UpliftInput struct {
	Experiment flywheel.Experiment
	Metric     flywheel.Metric
	// By are the exposure attributes, in the order asked.
	By    []string
	Cells []UpliftCell
	// Maturing counts the units whose metric window has not passed yet.
	Maturing int64
	// Notes say how numeric attributes were bucketed.
	Notes      []string
	ComputedAt time.Time
}

// UpliftOptions are the knobs of an uplift analysis.
type UpliftOptions struct {
	// Alpha is the significance level, in (0, 0.5]; 0 means DefaultAlpha.
	Alpha float64
	// MinUnits is the fewest units per arm of a segment; 0 means
	// DefaultUpliftMinUnits.
	MinUnits int64
}

// Uplift is the document of GET /v1/experiments/{key}/uplift: who responds
// to each variant, and whom to send it to.
type Uplift struct {
	Experiment string   `json:"experiment"`
	Metric     string   `json:"metric"`
	By         []string `json:"by"`
	Type       string   `json:"type"`
	Direction  string   `json:"direction"`
	Alpha      Float    `json:"alpha"`
	// Adjustment is "holm": p_adjusted are Holm's over every segment ×
	// variant comparison with an effect; Intervals is "bonferroni": each
	// ci is at level 1 − alpha/m for those m comparisons, so they hold
	// simultaneously (and exclude 0 only where Holm also rejects).
	Adjustment  string              `json:"adjustment"`
	Intervals   string              `json:"intervals"`
	Comparisons int                 `json:"comparisons"`
	MinUnits    int64               `json:"min_units"`
	Units       int64               `json:"units"`
	Segments    []UpliftSegment     `json:"segments"`
	Interaction []UpliftInteraction `json:"interaction"`
	Policy      UpliftPolicy        `json:"policy"`
	Warnings    []string            `json:"warnings"`
	ComputedAt  time.Time           `json:"computed_at"`
}

// UpliftSegment is the effect of one variant among the units with one value
// of one attribute: the variant's mean minus control's, in the metric's
// unit (a difference of rates for conversion metrics), Welch's test.
type UpliftSegment struct {
	Attribute    string   `json:"attribute"`
	Value        string   `json:"value"`
	Variant      string   `json:"variant"`
	Units        int64    `json:"units"`
	ControlUnits int64    `json:"control_units"`
	VariantUnits int64    `json:"variant_units"`
	ControlMean  Float    `json:"control_mean"`
	VariantMean  Float    `json:"variant_mean"`
	Effect       Float    `json:"effect"`
	CI           [2]Float `json:"ci"`
	P            Float    `json:"p"`
	PAdjusted    Float    `json:"p_adjusted"`
	// TooSmall: an arm has fewer than MinUnits units; no interval, no p.
	TooSmall bool `json:"too_small"`

	ctl, trt stats.Moments
	se       float64 // for the interaction test
}

// UpliftInteraction is the heterogeneity test of one attribute for one
// variant: does the effect differ at all between its values? Cochran's Q
// over the values with an effect (not too small). PAdjusted is Holm's over
// the document's interaction tests (every attribute × variant): the test
// rejects when it is below alpha.
type UpliftInteraction struct {
	Attribute string `json:"attribute"`
	Variant   string `json:"variant"`
	Values    int    `json:"values"`
	Q         Float  `json:"q"`
	DF        int    `json:"df"`
	P         Float  `json:"p"`
	PAdjusted Float  `json:"p_adjusted"`
}

// AnalyzeUplift computes the uplift document of in (pure).
func AnalyzeUplift(in UpliftInput, opts UpliftOptions) Uplift {
	if !(opts.Alpha > 0 && opts.Alpha <= 0.5) {
		opts.Alpha = DefaultAlpha
	}
	if opts.MinUnits < 2 {
		opts.MinUnits = DefaultUpliftMinUnits
	}
	variants := variantKeys(in.Experiment)
	out := Uplift{
		Experiment: in.Experiment.Key, Metric: in.Metric.Key, By: in.By, Type: string(in.Metric.Type), Direction: string(in.Metric.Direction),
		Alpha: Float(opts.Alpha), Adjustment: "holm", Intervals: "bonferroni", MinUnits: opts.MinUnits,
		Segments: []UpliftSegment{}, Interaction: []UpliftInteraction{}, ComputedAt: in.ComputedAt,
		Warnings: append([]string{"Segment effects are exploratory: they hold for attributes fixed before the first exposure, not for attributes the variant could change."}, in.Notes...),
	}
	if out.Direction == "" {
		out.Direction = string(flywheel.DirectionIncrease)
	}
	for _, c := range in.Cells {
		if slices.Contains(variants, c.Variant) {
			out.Units += c.N
		}
	}
	if in.Maturing > 0 {
		out.Warnings = append(out.Warnings, pluralUnits(in.Maturing)+" have not completed the metric's window yet; their values so far are counted.")
	}
	if len(variants) < 2 {
		return out
	}
	for i, attr := range in.By {
		out.Segments = append(out.Segments, segmentEffects(in, i, attr, variants, opts.MinUnits)...)
	}
	adjustSegments(out.Segments, opts.Alpha, &out.Comparisons)
	for _, attr := range in.By {
		for _, v := range variants[1:] {
			out.Interaction = append(out.Interaction, interaction(out.Segments, attr, v))
		}
	}
	p := make([]float64, len(out.Interaction))
	for i, it := range out.Interaction {
		p[i] = float64(it.P)
	}
	for i, adj := range stats.Holm(p) {
		out.Interaction[i].PAdjusted = Float(adj)
	}
	out.Policy = policy(in, variants, opts)
	return out
}

// variantKeys lists the experiment's variant keys, control first.
func variantKeys(e flywheel.Experiment) []string {
	out := make([]string, len(e.Variants))
	for i, v := range e.Variants {
		out[i] = v.Key
	}
	return out
}

// segmentEffects computes the effect of every variant for every value of
// the attribute at position i of By, over all folds.
func segmentEffects(in UpliftInput, i int, attr string, variants []string, minUnits int64) []UpliftSegment {
	sums := map[string]map[string]stats.Summary{} // value -> variant -> sums
	for _, c := range in.Cells {
		if i >= len(c.Values) {
			continue
		}
		v := c.Values[i]
		if sums[v] == nil {
			sums[v] = map[string]stats.Summary{}
		}
		sums[v][c.Variant] = sums[v][c.Variant].Merge(cellSummary(c))
	}
	values := make([]string, 0, len(sums))
	for v := range sums {
		values = append(values, v)
	}
	slices.SortFunc(values, compareValues)
	var out []UpliftSegment
	for _, value := range values {
		ctl := sums[value][variants[0]]
		for _, v := range variants[1:] {
			trt := sums[value][v]
			s := UpliftSegment{Attribute: attr, Value: value, Variant: v, Units: ctl.N + trt.N, ControlUnits: ctl.N, VariantUnits: trt.N,
				ControlMean: Float(ctl.Mean()), VariantMean: Float(trt.Mean()), CI: [2]Float{nan(), nan()}, P: nan(), PAdjusted: nan(), se: math.NaN()}
			s.Effect = s.VariantMean - s.ControlMean
			s.ctl, s.trt = ctl.Moments(), trt.Moments()
			if ctl.N < minUnits || trt.N < minUnits {
				s.TooSmall = true
			}
			out = append(out, s)
		}
	}
	return out
}

// adjustSegments fills p, p_adjusted (Holm) and the Bonferroni intervals of
// the segments that are not too small; m is their number.
func adjustSegments(segs []UpliftSegment, alpha float64, m *int) {
	var idx []int
	for i := range segs {
		if !segs[i].TooSmall {
			idx = append(idx, i)
		}
	}
	*m = len(idx)
	if len(idx) == 0 {
		return
	}
	level := alpha / float64(len(idx))
	p := make([]float64, len(idx))
	for j, i := range idx {
		s := &segs[i]
		r := stats.Welch(s.ctl, s.trt, level)
		s.CI = [2]Float{Float(r.Diff.CI.Lower), Float(r.Diff.CI.Upper)}
		s.P = Float(r.P)
		s.se = r.Diff.SE
		p[j] = r.P
	}
	for j, adj := range stats.Holm(p) {
		segs[idx[j]].PAdjusted = Float(adj)
	}
}

// interaction tests whether the variant's effect differs between the
// values of the attribute.
func interaction(segs []UpliftSegment, attr, variant string) UpliftInteraction {
	var d, se []float64
	for _, s := range segs {
		if s.Attribute == attr && s.Variant == variant && !s.TooSmall {
			d = append(d, float64(s.Effect))
			se = append(se, s.se)
		}
	}
	h := stats.CochranQ(d, se)
	return UpliftInteraction{Attribute: attr, Variant: variant, Values: len(d), Q: Float(h.Q), DF: h.DF, P: Float(h.P)}
}

// cellSummary is the stats.Summary of a cell (no covariate).
func cellSummary(c UpliftCell) stats.Summary {
	return stats.Summary{N: c.N, Sum: c.Sum, SumSq: c.SumSq}
}

// compareValues orders attribute values: "(none)" last, numeric bucket
// labels and numbers by their number, the rest as strings.
func compareValues(a, b string) int {
	if (a == NoneValue) != (b == NoneValue) {
		if a == NoneValue {
			return 1
		}
		return -1
	}
	fa, oka := leadingNumber(a)
	fb, okb := leadingNumber(b)
	switch {
	case oka && okb && fa < fb:
		return -1
	case oka && okb && fa > fb:
		return 1
	}
	return strings.Compare(a, b)
}

// NoneValue is the value of units whose exposure lacks the attribute.
const NoneValue = "(none)"

// leadingNumber reads the number a value starts with (after a "[" of a
// bucket label).
func leadingNumber(s string) (float64, bool) {
	if len(s) > 0 && s[0] == '[' {
		s = s[1:]
	}
	end := 0
	for end < len(s) && (s[end] == '-' || s[end] == '.' || s[end] == 'e' || s[end] == '+' || (s[end] >= '0' && s[end] <= '9')) {
		end++
	}
	f, err := strconv.ParseFloat(s[:end], 64)
	return f, err == nil
}

// pluralUnits says "1 unit" or "n units".
func pluralUnits(n int64) string {
	if n == 1 {
		return "1 unit"
	}
	return strconv.FormatInt(n, 10) + " units"
}
