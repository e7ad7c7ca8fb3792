package api_test

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"testing"
	"time"
)

// TestUpliftEndpoint sends a three-arm experiment's exposures (a string
// attribute, a numeric one with many values and some units without it, a
// unit exposed to two variants) and purchases (some capped, some after the
// window, some before the exposure), and checks that every segment effect
// of GET /uplift is the direct computation from those events (the metric's
// window and cap, quintile buckets as percentile_disc), that the answer is
// what the OpenAPI document describes, and that bad parameters are 400s
// naming the parameter.
func TestUpliftEndpoint(t *testing.T) {
	a := newTestAPI(t)
	c := newOAPICheck(t, a)
	a.must(201, "POST", "/v1/metrics", map[string]any{"key": "spend", "event": "purchase", "type": "mean", "window_hours": 48, "cap": map[string]any{"value": 100}})
	a.must(201, "POST", "/v1/metrics", map[string]any{"key": "aov", "type": "ratio", "numerator": "purchase", "denominator": "order"})
	variants := []string{"control", "a", "b"}
	a.must(201, "POST", "/v1/experiments", map[string]any{"key": "up", "unit_type": "customer",
		"variants": []any{map[string]any{"key": "control", "weight": 0.4}, map[string]any{"key": "a", "weight": 0.3}, map[string]any{"key": "b", "weight": 0.3}},
		"metrics":  map[string]any{"primary": []string{"spend"}, "secondary": []string{"aov"}}})
	a.must(200, "POST", "/v1/experiments/up/start", nil)

	t0 := time.Now().UTC().Add(-96 * time.Hour).Truncate(time.Second)
	at := func(d time.Duration) string { return t0.Add(d).Format(time.RFC3339) }
	type unit struct {
		variant, plan string
		age           float64 // NaN: no age attribute
		y             float64 // the metric's value: in-window spend, capped at 100
	}
	var units []unit
	var events []map[string]any
	for i := range 300 {
		u := unit{variant: variants[i%3], plan: []string{"free", "pro"}[(i/3)%2], age: float64(18 + (i*7)%53)}
		attrs := map[string]any{"plan": u.plan, "age": u.age}
		if i%10 == 0 {
			u.age = math.NaN()
			delete(attrs, "age")
		}
		id := fmt.Sprintf("u-%03d", i)
		events = append(events, map[string]any{"id": newID(t), "type": "exposure", "experiment": "up", "variant": u.variant,
			"unit_type": "customer", "unit_id": id, "timestamp": at(0), "attributes": attrs})
		spend := 20 + float64((i*13)%17)
		if u.variant == "a" && u.plan == "pro" {
			spend += 15
		}
		if u.variant == "b" {
			spend -= 5
		}
		if i%11 == 0 {
			spend += 120 // capped at 100
		}
		events = append(events, map[string]any{"id": newID(t), "type": "track", "event": "purchase", "value": spend,
			"unit_type": "customer", "unit_id": id, "timestamp": at(time.Hour)})
		if i%7 == 0 { // after the 48 h window, and before the exposure: not counted
			events = append(events, map[string]any{"id": newID(t), "type": "track", "event": "purchase", "value": 40.0,
				"unit_type": "customer", "unit_id": id, "timestamp": at(72 * time.Hour)})
			events = append(events, map[string]any{"id": newID(t), "type": "track", "event": "purchase", "value": 40.0,
				"unit_type": "customer", "unit_id": id, "timestamp": at(-2 * time.Hour)})
		}
		u.y = min(spend, 100)
		units = append(units, u)
	}
	// A unit exposed to two variants is not analysed.
	for _, v := range []string{"control", "a"} {
		events = append(events, map[string]any{"id": newID(t), "type": "exposure", "experiment": "up", "variant": v,
			"unit_type": "customer", "unit_id": "twice", "timestamp": at(0), "attributes": map[string]any{"plan": "odd"}})
	}
	for chunk := range slices.Chunk(events, 500) {
		a.postEvents(a.sdk, map[string]any{"events": chunk})
	}

	// The quintile buckets of age, as percentile_disc: the value at rank ⌈p·n⌉.
	var ages []float64
	for _, u := range units {
		if !math.IsNaN(u.age) {
			ages = append(ages, u.age)
		}
	}
	slices.Sort(ages)
	edges := []float64{ages[0]}
	for _, p := range []float64{0.2, 0.4, 0.6, 0.8} {
		if c := ages[int(math.Ceil(p*float64(len(ages))))-1]; c > edges[len(edges)-1] {
			edges = append(edges, c)
		}
	}
	edges = append(edges, ages[len(ages)-1])
	ageOf := func(u unit) string {
		if math.IsNaN(u.age) {
			return "(none)"
		}
		g := func(f float64) string { return strconv.FormatFloat(f, 'g', 6, 64) }
		for i := 1; i < len(edges)-1; i++ {
			if u.age < edges[i] {
				return "[" + g(edges[i-1]) + ", " + g(edges[i]) + ")"
			}
		}
		return "[" + g(edges[len(edges)-2]) + ", " + g(edges[len(edges)-1]) + "]"
	}
	direct := func(attr, value, variant string) (effect float64, nc, nt int64) {
		var sc, st float64
		for _, u := range units {
			v := u.plan
			if attr == "age" {
				v = ageOf(u)
			}
			if v != value {
				continue
			}
			switch u.variant {
			case "control":
				sc += u.y
				nc++
			case variant:
				st += u.y
				nt++
			}
		}
		return st/float64(nt) - sc/float64(nc), nc, nt
	}

	r := c.do(a, call{method: "GET", path: "/v1/experiments/up/uplift?by=plan,age&min_units=5", key: a.viewer, want: 200})
	var doc struct {
		Metric   string
		By       []string
		Units    int64
		Segments []struct {
			Attribute, Value, Variant string
			Units                     int64
			ControlUnits              int64 `json:"control_units"`
			VariantUnits              int64 `json:"variant_units"`
			Effect                    float64
			CI                        []*float64
			PAdjusted                 *float64 `json:"p_adjusted"`
			TooSmall                  bool     `json:"too_small"`
		}
		Interaction []struct{ Attribute, Variant string }
		Policy      struct {
			Variants []struct{ Variant, Decision, Summary string }
		}
	}
	if err := json.Unmarshal(r.Body, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Metric != "spend" || !slices.Equal(doc.By, []string{"plan", "age"}) || doc.Units != 300 {
		t.Errorf("metric %q by %v units %d, want spend by [plan age] over 300 units (not the unit exposed twice)", doc.Metric, doc.By, doc.Units)
	}
	wantRows := 2 * 2 // plan values × variants
	wantRows += 2 * (len(edges) - 1 + 1)
	if len(doc.Segments) != wantRows {
		t.Errorf("%d segment rows, want %d: %s", len(doc.Segments), wantRows, r.Body)
	}
	for _, s := range doc.Segments {
		effect, nc, nt := direct(s.Attribute, s.Value, s.Variant)
		if s.ControlUnits != nc || s.VariantUnits != nt || s.Units != nc+nt || math.Abs(s.Effect-effect) > 1e-9 {
			t.Errorf("%s=%s %s: effect %v over %d+%d units, direct computation %v over %d+%d", s.Attribute, s.Value, s.Variant, s.Effect, s.ControlUnits, s.VariantUnits, effect, nc, nt)
		}
		if s.TooSmall || s.CI[0] == nil || s.CI[1] == nil || s.PAdjusted == nil || !(*s.CI[0] <= s.Effect && s.Effect <= *s.CI[1]) {
			t.Errorf("%s=%s %s: ci %v p_adjusted %v too_small %v, want an interval around %v", s.Attribute, s.Value, s.Variant, s.CI, s.PAdjusted, s.TooSmall, s.Effect)
		}
	}
	if len(doc.Interaction) != 4 || len(doc.Policy.Variants) != 2 || doc.Policy.Variants[0].Variant != "a" || doc.Policy.Variants[0].Summary == "" {
		t.Errorf("interaction %v, policy %v: want 2 attributes × 2 variants and a rule for a and b", doc.Interaction, doc.Policy)
	}

	// A large min_units: every segment too small, no interval.
	r = c.do(a, call{method: "GET", path: "/v1/experiments/up/uplift?by=plan&min_units=1000", key: a.admin, want: 200})
	if err := json.Unmarshal(r.Body, &doc); err != nil {
		t.Fatal(err)
	}
	for _, s := range doc.Segments {
		if !s.TooSmall || s.CI[0] != nil || s.PAdjusted != nil {
			t.Errorf("min_units=1000: %s=%s %s too_small %v ci %v, want flagged with no interval", s.Attribute, s.Value, s.Variant, s.TooSmall, s.CI)
		}
	}
	// Without by: the experiment's attributes, alphabetically.
	r = c.do(a, call{method: "GET", path: "/v1/experiments/up/uplift", key: a.admin, want: 200})
	if err := json.Unmarshal(r.Body, &doc); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(doc.By, []string{"age", "plan"}) {
		t.Errorf("by omitted: by = %v, want [age plan]", doc.By)
	}

	for _, tt := range []struct{ query, field string }{
		{"by=plan,plan", "by"},
		{"by=nothere", "by"},
		{"by=a,b,c,d,e", "by"},
		{"by=pl%20an", "by"},
		{"metric=nope", "metric"},
		{"metric=aov", "metric"},
		{"min_units=1", "min_units"},
		{"min_units=x", "min_units"},
		{"alpha=0.9", "alpha"},
	} {
		r := a.do("GET", "/v1/experiments/up/uplift?"+tt.query, a.admin, nil)
		var e struct{ Error struct{ Code, Field string } }
		_ = json.Unmarshal(r.Body, &e)
		if r.Status != 400 || e.Error.Field != tt.field {
			t.Errorf("?%s = %d %s, want 400 naming %s", tt.query, r.Status, r.Body, tt.field)
		}
	}
}
