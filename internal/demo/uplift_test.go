package demo_test

import (
	"math"
	"math/big"
	"slices"
	"testing"

	"github.com/flywheel-oss/flywheel/internal/apptest"
	"github.com/flywheel-oss/flywheel/internal/demo"
)

// hillstromUpliftBy are the segments of the uplift analysis on the e-mail
// test (issue 16): channel, zip code, newbie and the history bucket.
var hillstromUpliftBy = []string{"channel", "zip_code", "newbie", "history_segment"}

// checkHillstromUplift reads GET /uplift of hillstrom-email for metric
// (spend or visit) by hillstromUpliftBy and checks every segment effect,
// and its units, against a direct computation from the CSV rows (exact
// sums, to 1e-9 relative), and the shape of the rest.
func checkHillstromUplift(t *testing.T, srv *apptest.Server, rows []demo.HillstromRow, metric string) {
	var got struct {
		Metric   string
		By       []string
		Units    int64
		Segments []struct {
			Attribute, Value, Variant string
			ControlUnits              int64 `json:"control_units"`
			VariantUnits              int64 `json:"variant_units"`
			Effect                    float64
			CI                        []*float64
			TooSmall                  bool `json:"too_small"`
		}
		Interaction []struct {
			Attribute, Variant string
			P                  *float64
		}
		Policy struct {
			Variants []struct {
				Variant, Decision, Summary string
				SendTo                     []map[string]string `json:"send_to"`
			}
		}
	}
	getJSON(t, srv, "/v1/experiments/hillstrom-email/uplift?metric="+metric+"&by=channel,zip_code,newbie,history_segment", &got)
	if got.Metric != metric || !slices.Equal(got.By, hillstromUpliftBy) || got.Units != demo.HillstromRows {
		t.Fatalf("metric %q by %v units %d, want %s by %v over %d units", got.Metric, got.By, got.Units, metric, hillstromUpliftBy, demo.HillstromRows)
	}
	y := func(r demo.HillstromRow) float64 {
		if metric == "visit" {
			return b2f(r.Visit)
		}
		return r.Spend
	}
	type key struct{ attribute, value, variant string }
	type sums struct {
		n   int64
		sum big.Rat
	}
	direct := map[key]*sums{}
	for _, r := range rows {
		for _, a := range hillstromUpliftBy {
			k := key{a, segmentValue(r, a), r.Arm()}
			s := direct[k]
			if s == nil {
				s = &sums{}
				direct[k] = s
			}
			s.n++
			s.sum.Add(&s.sum, rat(y(r)))
		}
	}
	mean := func(s *sums) float64 {
		v, _ := new(big.Rat).Quo(&s.sum, new(big.Rat).SetInt64(s.n)).Float64()
		return v
	}
	want := 0
	for k := range direct {
		if k.variant != "control" {
			want++
		}
	}
	if len(got.Segments) != want {
		t.Errorf("%d segment rows, want %d (every attribute value × mens, womens)", len(got.Segments), want)
	}
	var worst float64
	for _, s := range got.Segments {
		c, v := direct[key{s.Attribute, s.Value, "control"}], direct[key{s.Attribute, s.Value, s.Variant}]
		if c == nil || v == nil {
			t.Errorf("segment %s=%s %s is not in the file", s.Attribute, s.Value, s.Variant)
			continue
		}
		effect := mean(v) - mean(c)
		rel := math.Abs(s.Effect-effect) / math.Max(1e-12, math.Abs(effect))
		worst = max(worst, rel)
		if s.ControlUnits != c.n || s.VariantUnits != v.n || rel > 1e-9 {
			t.Errorf("%s=%s %s: effect %v over %d+%d units, the rows say %v over %d+%d", s.Attribute, s.Value, s.Variant, s.Effect, s.ControlUnits, s.VariantUnits, effect, c.n, v.n)
		}
		if !s.TooSmall && (s.CI[0] == nil || s.CI[1] == nil || *s.CI[0] > s.Effect || s.Effect > *s.CI[1]) {
			t.Errorf("%s=%s %s: ci %v does not hold effect %v", s.Attribute, s.Value, s.Variant, s.CI, s.Effect)
		}
	}
	t.Logf("largest relative difference of an effect: %.3g", worst)
	if len(got.Interaction) != 2*len(hillstromUpliftBy) || len(got.Policy.Variants) != 2 {
		t.Errorf("interaction %v, policy %v: want 4 attributes × 2 variants and a rule for mens and womens", got.Interaction, got.Policy)
	}
	for _, r := range got.Policy.Variants {
		t.Logf("%s: %s", r.Variant, r.Summary)
	}
}
