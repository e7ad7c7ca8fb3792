package api_test

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flywheel-oss/flywheel/internal/statscases"
)

// refNumber is a number of expected.json with its tolerance.
type refNumber struct {
	Value  *float64 `json:"value"`
	RelTol float64  `json:"rel_tol"`
	AbsTol float64  `json:"abs_tol"`
}

// UnmarshalJSON also takes a plain number (the counts of expected.json),
// which must then match exactly.
func (r *refNumber) UnmarshalJSON(b []byte) error {
	var n float64
	if json.Unmarshal(b, &n) == nil {
		*r = refNumber{Value: &n}
		return nil
	}
	type plain refNumber
	return json.Unmarshal(b, (*plain)(r))
}

func (r refNumber) check(t *testing.T, name string, got any) {
	t.Helper()
	g, ok := got.(float64)
	if r.Value == nil {
		if got != nil {
			t.Errorf("%s = %v, want null", name, got)
		}
		return
	}
	if !ok {
		t.Errorf("%s = %v (%T), want %v", name, got, got, *r.Value)
		return
	}
	if tol := math.Max(r.AbsTol, r.RelTol*math.Abs(*r.Value)); math.Abs(g-*r.Value) > tol {
		t.Errorf("%s = %.12g, want %.12g (±%.3g)", name, g, *r.Value, tol)
	}
}

// path walks a decoded JSON document: keys for objects, ints for arrays.
func path(v any, steps ...any) any {
	for _, s := range steps {
		switch k := s.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			a, _ := v.([]any)
			if k >= len(a) {
				return nil
			}
			v = a[k]
		}
	}
	return v
}

// TestResultsEndToEnd posts a reference case's units as events (exposure,
// in-window conversions and revenue, pre-period revenue for CUPED) through
// POST /v1/events, then checks GET .../results against the numbers R
// computed for the case.
func TestResultsEndToEnd(t *testing.T) {
	for _, id := range []string{"ab_small_300", "unequal_80_20_10k"} {
		t.Run(id, func(t *testing.T) { checkReferenceCase(t, id) })
	}
}

func checkReferenceCase(t *testing.T, caseID string) {
	dir := filepath.Join(statscases.Root, caseID)
	var want referenceCase
	raw, err := os.ReadFile(filepath.Join(dir, "expected.json"))
	if err != nil {
		t.Fatalf("reference case: %v", err)
	}
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	_, units := statscases.Read(t, dir)

	a := newTestAPI(t)
	a.createMetric("order", "conversion")
	a.must(201, "POST", "/v1/metrics", map[string]any{"key": "revenue", "event": "revenue", "type": "mean", "window_hours": 168})
	var variants []any
	for _, v := range want.Variants {
		variants = append(variants, map[string]any{"key": v, "weight": want.ConfiguredWeights[v]})
	}
	a.must(201, "POST", "/v1/experiments", map[string]any{"key": "ref", "unit_type": "customer", "variants": variants,
		"metrics": map[string]any{"primary": []string{"order", "revenue"}}})
	a.must(200, "POST", "/v1/experiments/ref/start", nil)

	exposed := time.Now().UTC().Add(-3 * time.Hour).Truncate(time.Second)
	ts := func(d time.Duration) string { return exposed.Add(d).Format(time.RFC3339) }
	var events []map[string]any
	flush := func() {
		if len(events) == 0 {
			return
		}
		if ans := a.postEvents(a.sdk, map[string]any{"events": events}); ans.Accepted != len(events) {
			t.Fatalf("posted %d events: %+v", len(events), ans)
		}
		events = events[:0]
	}
	for _, u := range units {
		unit := u.ID
		events = append(events, map[string]any{"id": newID(t), "type": "exposure", "experiment": "ref", "variant": u.Variant,
			"unit_type": "customer", "unit_id": unit, "timestamp": ts(0)})
		if u.Converted {
			events = append(events, map[string]any{"id": newID(t), "type": "track", "event": "order", "unit_type": "customer", "unit_id": unit, "timestamp": ts(time.Hour)})
		}
		for _, p := range []struct {
			value float64
			at    time.Duration
		}{{u.Revenue, time.Hour}, {u.PreRevenue, -7 * 24 * time.Hour}} { // in the window, and in the CUPED period
			if p.value != 0 {
				events = append(events, map[string]any{"id": newID(t), "type": "track", "event": "revenue", "value": p.value, "unit_type": "customer", "unit_id": unit, "timestamp": ts(p.at)})
			}
		}
		if len(events) > 9000 {
			flush()
		}
	}
	flush()

	// First recomputed from raw events, then from the aggregates: both
	// must give R's numbers.
	for _, source := range []string{"recomputed", "aggregated"} {
		if source == "aggregated" {
			a.t = t
			a.settle("ref", "device")
		}
		t.Run(source, func(t *testing.T) { checkReferenceResults(t, a, want, len(units)) })
	}
}

// referenceCase is what expected.json of a stats case holds.
type referenceCase struct {
	Variants          []string
	ConfiguredWeights map[string]float64 `json:"configured_weights"`
	Comparisons       []struct {
		Variant    string
		Conversion map[string]refNumber
		Revenue    map[string]refNumber
		Cuped      map[string]refNumber
		Bayesian   map[string]json.RawMessage
	}
	SRM map[string]json.RawMessage `json:"srm"`
}

func checkReferenceResults(t *testing.T, a *testAPI, want referenceCase, units int) {
	a.t = t
	doc := a.must(200, "GET", "/v1/experiments/ref/results", nil)
	if got := doc["units"]; got != float64(units) {
		t.Fatalf("units = %v, want %d", got, units)
	}
	var srmP refNumber
	if err := json.Unmarshal(want.SRM["p_value"], &srmP); err != nil {
		t.Fatal(err)
	}
	srmP.check(t, "health.srm.p_value", path(doc, "health", "srm", "p_value"))
	for ci, cmp := range want.Comparisons {
		vi := ci + 1 // the control is variants[0]
		conv := path(doc, "metrics", 0, "variants", vi)
		rev := path(doc, "metrics", 1, "variants", vi)
		if path(conv, "variant") != cmp.Variant || path(doc, "metrics", 0, "metric") != "order" {
			t.Fatalf("metrics[0].variants[%d] = %v, want %s of order", vi, path(conv, "variant"), cmp.Variant)
		}
		name := func(m, f string) string { return fmt.Sprintf("%s.%s.%s", cmp.Variant, m, f) }
		cmp.Conversion["abs_diff"].check(t, name("order", "diff"), path(conv, "diff", "estimate"))
		cmp.Conversion["abs_diff_ci_lower"].check(t, name("order", "ci[0]"), path(conv, "diff", "ci", 0))
		cmp.Conversion["abs_diff_ci_upper"].check(t, name("order", "ci[1]"), path(conv, "diff", "ci", 1))
		cmp.Conversion["rel_lift"].check(t, name("order", "lift"), path(conv, "lift", "estimate"))
		cmp.Conversion["rel_lift_ci_lower"].check(t, name("order", "lift.ci[0]"), path(conv, "lift", "ci", 0))
		cmp.Conversion["p_value_ztest"].check(t, name("order", "p_value"), path(conv, "p_value"))
		var beats refNumber
		if err := json.Unmarshal(cmp.Bayesian["prob_variant_beats_control"], &beats); err != nil {
			t.Fatal(err)
		}
		beats.check(t, name("order", "chance_to_win"), path(conv, "chance_to_win"))

		cmp.Revenue["abs_diff"].check(t, name("revenue", "diff"), path(rev, "diff", "estimate"))
		cmp.Revenue["ci_lower"].check(t, name("revenue", "ci[0]"), path(rev, "diff", "ci", 0))
		cmp.Revenue["ci_upper"].check(t, name("revenue", "ci[1]"), path(rev, "diff", "ci", 1))
		cmp.Revenue["p_value"].check(t, name("revenue", "p_value"), path(rev, "p_value"))
		cmp.Revenue["rel_lift_ci_upper"].check(t, name("revenue", "lift.ci[1]"), path(rev, "lift", "ci", 1))
		cmp.Cuped["theta"].check(t, name("revenue", "cuped.theta"), path(rev, "cuped", "theta"))
		cmp.Cuped["abs_diff"].check(t, name("revenue", "cuped.diff"), path(rev, "cuped", "diff", "estimate"))
		cmp.Cuped["ci_lower"].check(t, name("revenue", "cuped.ci[0]"), path(rev, "cuped", "diff", "ci", 0))
		cmp.Cuped["p_value"].check(t, name("revenue", "cuped.p_value"), path(rev, "cuped", "p_value"))
		cmp.Cuped["variance_reduction_of_diff"].check(t, name("revenue", "cuped.variance_reduction"), path(rev, "cuped", "variance_reduction"))
	}
	if s, _ := path(doc, "metrics", 0, "summary").(string); s == "" {
		t.Errorf("no summary line for the primary metric: %v", path(doc, "metrics", 0))
	}
	// A segment breakdown answers, flagged exploratory.
	if r := a.do("GET", "/v1/experiments/ref/results?segment=device&metric=order", a.admin, nil); r.Status != 200 {
		t.Errorf("segment results = %d: %.300s", r.Status, r.Body)
	}
}

// TestResultsCrossoverAndExclusions checks the trust inputs of a device
// experiment: a customer whose two devices saw different variants is a
// crossover, a device exposed to two variants is excluded, an overridden
// device is not analysed, and an opted-out device leaves the results.
func TestResultsCrossoverAndExclusions(t *testing.T) {
	a := newTestAPI(t)
	a.createMetric("purchase", "conversion")
	b := experimentBody("dev")
	b["unit_type"], b["targeting"], b["overrides"] = "device", nil, map[string]any{"d-qa": "green"}
	a.must(201, "POST", "/v1/experiments", b)
	a.must(200, "POST", "/v1/experiments/dev/start", nil)
	exp := func(unit, variant string) map[string]any {
		return map[string]any{"id": newID(t), "type": "exposure", "experiment": "dev", "variant": variant, "unit_type": "device", "unit_id": unit}
	}
	link := func(unit, customer string) map[string]any {
		return map[string]any{"id": newID(t), "type": "identify", "unit_type": "device", "unit_id": unit, "customer_id": customer}
	}
	a.postEvents(a.sdk, map[string]any{"events": []map[string]any{
		exp("d-1", "control"), exp("d-2", "green"), link("d-1", "c-1"), link("d-2", "c-1"), // c-1 crossed over
		exp("d-3", "control"), exp("d-4", "control"), link("d-3", "c-2"), link("d-4", "c-2"), // c-2 did not
		exp("d-5", "control"), exp("d-5", "green"), // exposed to both: excluded
		exp("d-qa", "green"), // overridden: excluded
		exp("d-6", "green"),
		map[string]any{"id": newID(t), "type": "track", "event": "purchase", "unit_type": "device", "unit_id": "d-2"},
	}})
	a.must(200, "PUT", "/v1/units/device/d-6/consent", map[string]any{"analytics": false})
	for _, source := range []string{"recomputed", "aggregated"} {
		if source == "aggregated" {
			a.t = t
			a.settle("dev")
		}
		t.Run(source, func(t *testing.T) { a.t = t; checkDeviceResults(t, a) })
	}
}

func checkDeviceResults(t *testing.T, a *testAPI) {
	doc := a.must(200, "GET", "/v1/experiments/dev/results", nil)
	h := doc["health"].(map[string]any)
	if h["crossover_share"] != 0.5 || h["multiple_exposures"] != 1.0 || h["overridden"] != 1.0 {
		t.Errorf("health = %v, want crossover 0.5, 1 multiple exposure, 1 overridden", h)
	}
	if doc["units"] != 4.0 {
		t.Errorf("units = %v, want 4 (d-1..d-4)", doc["units"])
	}
	if got := path(doc, "metrics", 0, "variants", 1, "mean"); got != 1.0 {
		t.Errorf("green purchase rate = %v, want 1 (d-2 bought)", got)
	}
}

// TestResultsIdentity checks that, in a customer experiment, events sent
// under a linked id count for the customer whether the link arrived before
// or after them, through a chain of links, and only once per customer.
func TestResultsIdentity(t *testing.T) {
	a := newTestAPI(t)
	a.must(201, "POST", "/v1/metrics", map[string]any{"key": "spend", "event": "purchase", "type": "mean"})
	a.must(201, "POST", "/v1/experiments", map[string]any{"key": "id-exp", "unit_type": "customer",
		"variants": []any{map[string]any{"key": "control", "weight": 0.5}, map[string]any{"key": "b", "weight": 0.5}},
		"metrics":  map[string]any{"primary": []string{"spend"}}})
	a.must(200, "POST", "/v1/experiments/id-exp/start", nil)
	at := func(d time.Duration) string { return time.Now().UTC().Add(d).Format(time.RFC3339) }
	ev := func(fields ...any) map[string]any {
		m := map[string]any{"id": newID(t)}
		for i := 0; i+1 < len(fields); i += 2 {
			m[fields[i].(string)] = fields[i+1]
		}
		return m
	}
	post := func(evs ...map[string]any) {
		if ans := a.postEvents(a.sdk, map[string]any{"events": evs}); ans.Accepted != len(evs) {
			t.Fatalf("posted %d: %+v", len(evs), ans)
		}
	}
	post(
		ev("type", "exposure", "experiment", "id-exp", "variant", "b", "unit_type", "customer", "unit_id", "c-main", "timestamp", at(-5*time.Hour)),
		// The link comes first, then the purchase on the phone.
		ev("type", "identify", "unit_type", "device", "unit_id", "phone", "customer_id", "c-main", "timestamp", at(-4*time.Hour)),
		ev("type", "track", "event", "purchase", "value", 10.0, "unit_type", "device", "unit_id", "phone", "timestamp", at(-3*time.Hour)),
		// The laptop buys before anything links it.
		ev("type", "track", "event", "purchase", "value", 20.0, "unit_type", "device", "unit_id", "laptop", "timestamp", at(-2*time.Hour)),
		// An old account's purchase, and an unrelated device's.
		ev("type", "track", "event", "purchase", "value", 40.0, "unit_type", "customer", "unit_id", "c-old", "timestamp", at(-2*time.Hour)),
		ev("type", "track", "event", "purchase", "value", 80.0, "unit_type", "device", "unit_id", "stranger", "timestamp", at(-2*time.Hour)),
	)
	// The first answer is checked recomputed (no aggregates yet), then from
	// the aggregates; later ones from the aggregates, which must fold in
	// the late links.
	spend := func(want float64, why string, sources ...string) {
		t.Helper()
		for _, source := range sources {
			if source == "aggregated" {
				a.settle("id-exp")
			}
			got := path(a.must(200, "GET", "/v1/experiments/id-exp/results", nil), "metrics", 0, "variants", 1, "mean")
			if got != want {
				t.Errorf("%s spend %s = %v, want %v", source, why, got, want)
			}
		}
	}
	spend(10, "before the late links (the phone's)", "recomputed", "aggregated")
	// Links that arrive after the events: the laptop to the old account,
	// and the old account merged into c-main (a chain).
	post(
		ev("type", "identify", "unit_type", "device", "unit_id", "laptop", "customer_id", "c-old", "timestamp", at(-time.Hour)),
		ev("type", "identify", "unit_type", "customer", "unit_id", "c-old", "customer_id", "c-main", "timestamp", at(-time.Hour)),
	)
	spend(70, "after the links (phone 10 + laptop 20 + old account 40, not the stranger)", "aggregated")
}

// TestResultsTimeseries checks the cumulative counts of each day, and that
// the last day agrees with the results document.
func TestResultsTimeseries(t *testing.T) {
	a := newTestAPI(t)
	a.createMetric("purchase", "conversion")
	a.must(201, "POST", "/v1/experiments", map[string]any{"key": "ts", "unit_type": "customer",
		"variants": []any{map[string]any{"key": "control", "weight": 0.5}, map[string]any{"key": "b", "weight": 0.5}},
		"metrics":  map[string]any{"primary": []string{"purchase"}}})
	a.must(200, "POST", "/v1/experiments/ts/start", nil)
	today := time.Now().UTC().Truncate(24 * time.Hour)
	at := func(day int) string { return today.AddDate(0, 0, day).Add(time.Minute).Format(time.RFC3339) }
	expose := func(unit, variant string, day int) map[string]any {
		return map[string]any{"id": newID(t), "type": "exposure", "experiment": "ts", "variant": variant, "unit_type": "customer", "unit_id": unit, "timestamp": at(day)}
	}
	buy := func(unit string, day int) map[string]any {
		return map[string]any{"id": newID(t), "type": "track", "event": "purchase", "unit_type": "customer", "unit_id": unit, "timestamp": at(day)}
	}
	a.postEvents(a.sdk, map[string]any{"events": []map[string]any{
		expose("u1", "control", -2), expose("u2", "b", -2), buy("u2", -2),
		expose("u3", "control", -1), expose("u4", "b", -1), buy("u1", -1),
		expose("u5", "b", 0), buy("u4", 0),
	}})
	// Recomputed from raw events, then read from the per-day aggregates.
	for _, source := range []string{"recomputed", "aggregated"} {
		if source == "aggregated" {
			a.settle("ts")
		}
		doc := a.must(200, "GET", "/v1/experiments/ts/results/timeseries", nil)
		points, _ := doc["points"].([]any)
		if doc["metric"] != "purchase" || len(points) != 3 {
			t.Fatalf("%s: timeseries = %v, want 3 days of purchase", source, doc)
		}
		// units and conversions of control and b, cumulative per day
		want := [][4]float64{{1, 0, 1, 1}, {2, 1, 2, 1}, {2, 1, 3, 2}}
		for i, w := range want {
			p := points[i]
			if date := path(p, "date"); date != today.AddDate(0, 0, i-2).Format("2006-01-02") {
				t.Errorf("%s: point %d date = %v", source, i, date)
			}
			for j := range 2 {
				units, _ := path(p, "variants", j, "units").(float64)
				mean, _ := path(p, "variants", j, "mean").(float64)
				if units != w[2*j] || math.Round(mean*units) != w[2*j+1] {
					t.Errorf("%s: day %d %v: %v units, rate %v; want %v units, %v conversions", source, i-2, path(p, "variants", j, "variant"), units, mean, w[2*j], w[2*j+1])
				}
			}
		}
		res := a.must(200, "GET", "/v1/experiments/ts/results", nil)
		if got, want := path(points[2], "variants", 1, "diff", "estimate"), path(res, "metrics", 0, "variants", 1, "diff", "estimate"); got != want {
			t.Errorf("%s: last day's diff = %v, results say %v", source, got, want)
		}
	}
	if r := a.do("GET", "/v1/experiments/ts/results/timeseries?metric=nope", a.admin, nil); r.Status != 400 && r.Status != 404 {
		t.Errorf("unknown metric = %d, want 400 or 404", r.Status)
	}
}

// TestResultsFreshness: results and timeseries say how complete they are:
// pending_events > 0 with a positive fractional lag_seconds and as_of
// before computed_at while acknowledged events wait for the aggregator,
// then 0, 0 and as_of = computed_at after a cycle, with numbers equal to a
// recomputation (settle checks that).
func TestResultsFreshness(t *testing.T) {
	a := newTestAPI(t)
	a.createMetric("purchase", "conversion")
	b := experimentBody("fresh")
	b["targeting"], b["overrides"] = nil, map[string]any{}
	a.must(201, "POST", "/v1/experiments", b)
	a.must(200, "POST", "/v1/experiments/fresh/start", nil)
	send := func(ids ...string) {
		var evs []map[string]any
		for _, id := range ids {
			evs = append(evs,
				map[string]any{"id": newID(t), "type": "exposure", "experiment": "fresh", "variant": "green", "unit_type": "customer", "unit_id": id},
				map[string]any{"id": newID(t), "type": "track", "event": "purchase", "unit_type": "customer", "unit_id": id})
		}
		if ans := a.postEvents(a.sdk, map[string]any{"events": evs}); ans.Accepted != len(evs) {
			t.Fatalf("accepted %d of %d", ans.Accepted, len(evs))
		}
	}
	type fresh struct {
		ComputedAt    time.Time `json:"computed_at"`
		AsOf          time.Time `json:"as_of"`
		LagSeconds    float64   `json:"lag_seconds"`
		PendingEvents int64     `json:"pending_events"`
		Units         int64
	}
	read := func(path string) fresh {
		t.Helper()
		r := a.do("GET", path, a.admin, nil)
		var f fresh
		if err := json.Unmarshal(r.Body, &f); err != nil || r.Status != 200 {
			t.Fatalf("GET %s = %d %s", path, r.Status, r.Body)
		}
		return f
	}
	const results, series = "/v1/experiments/fresh/results", "/v1/experiments/fresh/results/timeseries?metric=purchase"

	send("c-1", "c-2")
	// Recomputed from raw events (aggregates not built yet): complete.
	if f := read(results); f.PendingEvents != 0 || f.LagSeconds != 0 || !f.AsOf.Equal(f.ComputedAt) || f.Units != 2 {
		t.Errorf("recomputed = %+v, want complete, 2 units", f)
	}
	a.settle("fresh")
	send("c-3", "c-4", "c-5")
	for _, path := range []string{results, series} {
		f := read(path)
		if f.PendingEvents != 6 || f.LagSeconds <= 0 || !f.AsOf.Before(f.ComputedAt) {
			t.Errorf("%s with 6 events waiting = %+v, want 6 pending, lag > 0, as_of before computed_at", path, f)
		}
		if d := f.ComputedAt.Sub(f.AsOf).Seconds(); math.Abs(d-f.LagSeconds) > 1e-3 {
			t.Errorf("%s: lag_seconds %v, computed_at - as_of %v", path, f.LagSeconds, d)
		}
	}
	if f := read(results); f.Units != 2 {
		t.Errorf("units before the cycle = %d, want the 2 counted", f.Units)
	}
	a.settle("fresh")
	for _, path := range []string{results, series} {
		if f := read(path); f.PendingEvents != 0 || f.LagSeconds != 0 || !f.AsOf.Equal(f.ComputedAt) {
			t.Errorf("%s after a cycle = %+v, want complete", path, f)
		}
	}
	if f := read(results); f.Units != 5 {
		t.Errorf("units after the cycle = %d, want 5", f.Units)
	}
}

// TestExposureAttributesEndpoint lists what an experiment's results can be
// broken down by: the attributes of its units' first exposures, most
// common first, without the names ?segment= cannot take, and the answer
// can be given to ?segment= as is.
func TestExposureAttributesEndpoint(t *testing.T) {
	a := newTestAPI(t)
	a.createMetric("purchase", "conversion")
	a.must(201, "POST", "/v1/experiments", experimentBody("attrs"))
	a.must(200, "POST", "/v1/experiments/attrs/start", nil)
	ts := time.Now().UTC().Add(-time.Hour).Format(time.RFC3339)
	var events []map[string]any
	for i := range 10 {
		attrs := map[string]any{"plan": "free", "age": 30}
		switch {
		case i >= 5 && i < 8:
			attrs = map[string]any{"plan": "pro"}
		case i == 8:
			attrs = map[string]any{"plan": "pro", "bad key": 1}
		case i == 9:
			attrs = nil
		}
		e := map[string]any{"id": newID(t), "type": "exposure", "experiment": "attrs", "variant": "control",
			"unit_type": "customer", "unit_id": fmt.Sprintf("c-%d", i), "timestamp": ts}
		if attrs != nil {
			e["attributes"] = attrs
		}
		events = append(events, e)
	}
	if ans := a.postEvents(a.sdk, map[string]any{"events": events}); ans.Accepted != len(events) {
		t.Fatalf("accepted %d of %d exposures: %+v", ans.Accepted, len(events), ans)
	}
	r := a.do("GET", "/v1/experiments/attrs/attributes", a.viewer, nil)
	if r.Status != 200 {
		t.Fatalf("GET attributes = %d: %s", r.Status, r.Body)
	}
	want := `{"experiment":"attrs","sampled_units":10,"attributes":[{"name":"plan","units":9},{"name":"age","units":5}]}`
	if string(r.Body) != want {
		t.Errorf("GET attributes = %s, want %s", r.Body, want)
	}
	if r := a.do("GET", "/v1/experiments/attrs/results?segment=plan", a.viewer, nil); r.Status != 200 || !strings.Contains(string(r.Body), `"pro"`) {
		t.Errorf("GET results?segment=plan = %d: %.300s, want a pro segment", r.Status, r.Body)
	}
	if r := a.do("GET", "/v1/experiments/none/attributes", a.viewer, nil); r.Status != 404 {
		t.Errorf("GET attributes of an unknown experiment = %d, want 404", r.Status)
	}
}
