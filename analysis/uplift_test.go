package analysis

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/flywheel-oss/flywheel"
)

// TestAnalyzeUpliftHandWorked checks one segment's effect and interval by
// hand: free has control 1, 2, 3, 4 and treatment 2, 3, 4, 5, so the effect
// is 1 with s² = 5/3 in both arms, SE = √(2·5/12) and Welch's DF = 6; it is
// the only comparison (pro is too small at min_units 4), so the interval
// is at 95% with t₆ = 2.446912. pro has no interval, and the interaction
// test of plan has a single value: no p.
func TestAnalyzeUpliftHandWorked(t *testing.T) {
	in := UpliftInput{Experiment: simExperiment(), Metric: flywheel.Metric{Key: "spend", Type: flywheel.MetricMean}, By: []string{"plan"},
		Cells: []UpliftCell{
			{Variant: "control", Fold: 0, Values: []string{"free"}, N: 2, Sum: 3, SumSq: 5},
			{Variant: "control", Fold: 3, Values: []string{"free"}, N: 2, Sum: 7, SumSq: 25},
			{Variant: "treatment", Fold: 1, Values: []string{"free"}, N: 4, Sum: 14, SumSq: 54},
			{Variant: "control", Fold: 2, Values: []string{"pro"}, N: 3, Sum: 3, SumSq: 9},
			{Variant: "treatment", Fold: 2, Values: []string{"pro"}, N: 9, Sum: 18, SumSq: 50},
		}}
	u := AnalyzeUplift(in, UpliftOptions{MinUnits: 4})
	if u.Comparisons != 1 || len(u.Segments) != 2 || u.Units != 20 || u.Type != "mean" || u.Direction != "increase" {
		t.Fatalf("comparisons %d, %d segments, %d units, type %q, direction %q; want 1, 2, 20, mean, increase", u.Comparisons, len(u.Segments), u.Units, u.Type, u.Direction)
	}
	free, pro := u.Segments[0], u.Segments[1]
	half := 2.446911851144969 * math.Sqrt(2*5.0/3/4)
	if free.Value != "free" || free.Effect != 1 || free.TooSmall || math.Abs(float64(free.CI[0])-(1-half)) > 1e-9 || math.Abs(float64(free.CI[1])-(1+half)) > 1e-9 ||
		free.P != free.PAdjusted || !(free.P > 0.31 && free.P < 0.32) {
		t.Errorf("free = %+v, want effect 1, ci 1 ∓ %v, p ≈ 0.315 unadjusted", free, half)
	}
	if pro.Value != "pro" || !pro.TooSmall || pro.Effect != 1 || pro.CI[0].Defined() || pro.P.Defined() || pro.ControlUnits != 3 || pro.VariantUnits != 9 {
		t.Errorf("pro = %+v, want too small with effect 1 and no interval", pro)
	}
	if len(u.Interaction) != 1 || u.Interaction[0].Values != 1 || u.Interaction[0].P.Defined() {
		t.Errorf("interaction = %+v, want one test over one value, without p", u.Interaction)
	}
	raw, err := json.Marshal(u)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"ci":[null,null],"p":null,"p_adjusted":null,"too_small":true`, `"adjustment":"holm"`, `"intervals":"bonferroni"`, `"p":null,"p_adjusted":null}`} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("JSON lacks %s: %s", want, raw)
		}
	}
}

// TestUpliftPolicyDirection: for a metric whose direction is decrease, the
// policy sends the variant where it lowers the metric, and states gains as
// reductions (positive = good).
func TestUpliftPolicyDirection(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	in := simNormal(rng, heterogeneous, 400, 10, 2)
	in.Metric.Direction = flywheel.DirectionDecrease
	r := AnalyzeUplift(in, UpliftOptions{}).Policy.Variants[0]
	var got []string
	for _, s := range r.SendTo {
		got = append(got, s["channel"]+"/"+s["newbie"])
	}
	slices.Sort(got)
	if want := []string{"multi/1", "phone/0", "phone/1"}; !slices.Equal(got, want) || r.Decision != "target" {
		t.Errorf("send_to %v, decision %s; want %v (where the effect is negative), target", got, r.Decision, want)
	}
	if !(r.GainVsNone.Estimate > 0 && r.GainVsAll.Estimate > 0 && r.AllVsNone.Estimate < 0) {
		t.Errorf("gains vs none %v, vs all %v, all vs none %v: want the first two positive (reductions) and sending to all bad", r.GainVsNone, r.GainVsAll, r.AllVsNone)
	}
}

// TestUpliftThreeArms: one rule and one interaction test per variant
// against control, and a variant with no units gets no intervals.
func TestUpliftThreeArms(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	in := simNormal(rng, heterogeneous, 400, 10, 2)
	in.Experiment.Variants = append(in.Experiment.Variants, flywheel.Variant{Key: "empty", Weight: 0.1})
	u := AnalyzeUplift(in, UpliftOptions{})
	if len(u.Policy.Variants) != 2 || u.Policy.Variants[1].Variant != "empty" || len(u.Interaction) != 4 {
		t.Fatalf("rules %+v, interaction %+v: want treatment and empty, 2 attributes × 2 variants", u.Policy.Variants, u.Interaction)
	}
	empty := u.Policy.Variants[1]
	if empty.Decision != "inconclusive" || empty.AllVsNone.Defined() && empty.AllVsNone.CI[0].Defined() {
		t.Errorf("the empty variant's rule = %+v, want inconclusive without an interval", empty)
	}
	for _, s := range u.Segments {
		if s.Variant == "empty" && (!s.TooSmall || s.VariantUnits != 0) {
			t.Errorf("segment %+v of the empty variant, want too small", s)
		}
	}
	if !strings.Contains(u.Policy.Summary, "Send treatment to 3 of 6 segments") || !strings.Contains(u.Policy.Summary, "No segment beats sending empty to all, and there are not enough units to compare sending to all with sending to none.") {
		t.Errorf("summary %q", u.Policy.Summary)
	}
}

// TestCompareValues orders values as the segment table shows them.
func TestCompareValues(t *testing.T) {
	got := []string{"(none)", "[20, 30)", "b", "[3, 20)", "10", "9", "a", "[-5, 3)"}
	slices.SortFunc(got, compareValues)
	want := []string{"[-5, 3)", "[3, 20)", "9", "10", "[20, 30)", "a", "b", "(none)"}
	if !slices.Equal(got, want) {
		t.Errorf("sorted = %q, want %q", got, want)
	}
}

// TestParseUpliftBy checks by= parsing and its errors, which name by.
func TestParseUpliftBy(t *testing.T) {
	tests := []struct {
		raw  string
		want []string
		err  string
	}{
		{"", nil, ""},
		{"channel", []string{"channel"}, ""},
		{"channel, newbie ,zip_code,a.b-c", []string{"channel", "newbie", "zip_code", "a.b-c"}, ""},
		{"a,b,c,d,e", nil, "at most 4"},
		{"a,,b", nil, "not an exposure attribute"},
		{"a b", nil, "not an exposure attribute"},
		{"a,a", nil, "twice"},
		{strings.Repeat("x", 65), nil, "not an exposure attribute"},
	}
	for _, tt := range tests {
		got, err := ParseUpliftBy(tt.raw)
		if tt.err == "" {
			if err != nil || !slices.Equal(got, tt.want) {
				t.Errorf("ParseUpliftBy(%q) = %q, %v; want %q", tt.raw, got, err, tt.want)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.Contains(err.Error(), "by") {
			t.Errorf("ParseUpliftBy(%q) error = %v, want one naming by and saying %q", tt.raw, err, tt.err)
		}
	}
}

// FuzzParseUpliftBy: any input is accepted or refused with an error; an
// accepted one has 0 to 4 distinct valid names that survive a round trip.
func FuzzParseUpliftBy(f *testing.F) {
	for _, s := range []string{"", "channel", "a,b", "a, b", "a,,b", "a,a", "ü", "a,b,c,d,e"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got, err := ParseUpliftBy(raw)
		if err != nil {
			return
		}
		if len(got) > MaxUpliftAttributes {
			t.Fatalf("ParseUpliftBy(%q) = %d names", raw, len(got))
		}
		for i, name := range got {
			if !ValidAttribute(name) || slices.Contains(got[:i], name) {
				t.Fatalf("ParseUpliftBy(%q) = %q: %q is invalid or repeated", raw, got, name)
			}
		}
		again, err := ParseUpliftBy(strings.Join(got, ","))
		if err != nil || !slices.Equal(again, got) {
			t.Fatalf("round trip of %q: %q, %v", got, again, err)
		}
	})
}
