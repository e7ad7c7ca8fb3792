package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/flywheel-oss/flywheel/analysis"
	"github.com/flywheel-oss/flywheel/assign"
)

// heldOut reports whether holdout key at fraction holds unit id out, from
// the contract alone.
func heldOut(key, id string, fraction float64) bool {
	return assign.Bucket("holdout:"+key+":"+id) < int(math.Floor(10000*fraction+1e-6))
}

// firstID returns the first "prefix-N" that holdout key at fraction holds
// out (want true) or not.
func firstID(key, prefix string, fraction float64, want bool) string {
	for i := 0; ; i++ {
		if id := fmt.Sprintf("%s-%d", prefix, i); heldOut(key, id, fraction) == want {
			return id
		}
	}
}

func holdoutBody(key string, experiments, layers []string) map[string]any {
	return map[string]any{"key": key, "name": "Q1 program", "unit_type": "customer", "fraction": 0.05,
		"experiments": experiments, "layers": layers, "metrics": map[string]any{"primary": []string{"purchase"}}}
}

// TestHoldoutBadInput: each faulty definition is a 400 naming the field,
// and changes nothing (no holdout, no revision move).
func TestHoldoutBadInput(t *testing.T) {
	a := newTestAPI(t)
	a.createMetric("purchase", "conversion")
	exp := experimentBody("checkout")
	delete(exp, "targeting")
	a.must(http.StatusCreated, "POST", "/v1/experiments", exp)
	rev := func() string { return a.do("GET", "/v1/sdk/config", a.sdk, nil).Header.Get("ETag") }
	before := rev()
	with := func(field string, v any) map[string]any {
		b := holdoutBody("q1", []string{"checkout"}, nil)
		if v == nil {
			delete(b, field)
		} else {
			b[field] = v
		}
		return b
	}
	tests := []struct {
		name  string
		body  any
		field string
	}{
		{"fraction above 0.1", with("fraction", 0.2), "fraction"},
		{"fraction 0", with("fraction", 0), "fraction"},
		{"negative fraction", with("fraction", -0.01), "fraction"},
		{"fraction not a number", with("fraction", "5%"), "fraction"},
		{"bad key", with("key", "Q1 program"), "key"},
		{"no name", with("name", ""), "name"},
		{"bad unit type", with("unit_type", "Customer"), "unit_type"},
		{"unknown experiment", with("experiments", []string{"checkout", "nope"}), "experiments[1]"},
		{"experiment listed twice", with("experiments", []string{"checkout", "checkout"}), "experiments[1]"},
		{"bad layer", with("layers", []string{"Home Page"}), "layers[0]"},
		{"covers nothing", with("experiments", []string{}), "experiments"},
		{"unknown metric", with("metrics", map[string]any{"primary": []string{"ltv"}}), "metrics.primary[0]"},
		{"unknown field", with("traffic", 1), "traffic"},
		{"not an object", "[1]", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := a.do("POST", "/v1/holdouts", a.admin, tt.body)
			code, field, msg := r.errorOf(t)
			if r.Status != http.StatusBadRequest || code != "invalid_argument" || field != tt.field {
				t.Errorf("POST /v1/holdouts = %d %s at %q (%s), want 400 at %q", r.Status, code, field, msg, tt.field)
			}
		})
	}
	if list := a.must(http.StatusOK, "GET", "/v1/holdouts?status=all", nil); len(list["items"].([]any)) != 0 {
		t.Errorf("holdouts after bad input = %v, want none", list["items"])
	}
	if after := rev(); after != before {
		t.Errorf("config revision moved from %s to %s on bad input", before, after)
	}
	if r := a.do("GET", "/v1/holdouts/q1", a.admin, nil); r.Status != http.StatusNotFound {
		t.Errorf("GET unknown holdout = %d, want 404", r.Status)
	}
}

// TestHoldoutLifecycle: create, start, assignment in the server (held-out
// units get the control, reason holdout, on experiments listed and in
// covered layers, and a device through its customer id), the SDK config,
// ramps, refused changes, the audit log, stop releasing the units, and
// archive.
func TestHoldoutLifecycle(t *testing.T) {
	a := newTestAPI(t)
	a.createMetric("purchase", "conversion")
	for _, key := range []string{"checkout", "uncovered"} {
		exp := experimentBody(key)
		delete(exp, "targeting")
		a.must(http.StatusCreated, "POST", "/v1/experiments", exp)
		a.must(http.StatusOK, "POST", "/v1/experiments/"+key+"/start", nil)
	}
	hero := experimentBody("hero")
	delete(hero, "targeting")
	delete(hero, "overrides")
	hero["unit_type"], hero["layer"] = "device", "home"
	a.must(http.StatusCreated, "POST", "/v1/experiments", hero)
	a.must(http.StatusOK, "POST", "/v1/experiments/hero/start", nil)

	created := a.must(http.StatusCreated, "POST", "/v1/holdouts", holdoutBody("q1", []string{"checkout"}, []string{"home"}))
	if created["status"] != "draft" || created["fraction"] != 0.05 {
		t.Fatalf("created = %v", created)
	}
	if r := a.do("POST", "/v1/holdouts", a.admin, holdoutBody("q1", []string{"checkout"}, nil)); r.Status != http.StatusConflict {
		t.Errorf("a second q1 = %d, want 409", r.Status)
	}
	held, kept := firstID("q1", "c", 0.05, true), firstID("q1", "c", 0.05, false)
	assignOne := func(body map[string]any) map[string]any {
		t.Helper()
		r := a.must(http.StatusOK, "POST", "/v1/assign", body)
		return r["assignments"].([]any)[0].(map[string]any)
	}
	customer := func(id, exp string) map[string]any {
		return assignOne(map[string]any{"unit_type": "customer", "unit_id": id, "experiments": []string{exp}})
	}
	if got := customer(held, "checkout"); got["reason"] != "bucket" {
		t.Errorf("draft holdout: %s in checkout = %v, want enrolled", held, got)
	}
	a.must(http.StatusOK, "POST", "/v1/holdouts/q1/start", nil)

	wantHeld := func(stage string, got map[string]any, control string) {
		t.Helper()
		if got["reason"] != "holdout" || got["enrolled"] != false || got["variant"] != control || got["holdout"] != "q1" {
			t.Errorf("%s: %v, want held out by q1 with variant %s", stage, got, control)
		}
	}
	wantHeld("held-out customer in a listed experiment", customer(held, "checkout"), "control")
	if got := customer(held, "uncovered"); got["reason"] != "bucket" {
		t.Errorf("held-out customer in an uncovered experiment = %v, want enrolled", got)
	}
	if got := customer(kept, "checkout"); got["reason"] != "bucket" {
		t.Errorf("kept customer = %v, want enrolled", got)
	}
	if got := customer("qa-customer-1", "checkout"); got["reason"] != "override" {
		t.Errorf("overridden customer = %v, want the override", got)
	}
	device := map[string]any{"unit_type": "device", "unit_id": "d-1", "experiments": []string{"hero"}, "ids": map[string]string{"customer": held}}
	wantHeld("a held-out customer's device in a covered layer", assignOne(device), "control")
	delete(device, "ids")
	if got := assignOne(device); got["reason"] != "bucket" {
		t.Errorf("anonymous device = %v, want enrolled", got)
	}
	for _, bad := range []map[string]any{
		{"unit_type": "device", "unit_id": "d-1", "ids": map[string]string{"Customer": "x"}},
		{"unit_type": "device", "unit_id": "d-1", "ids": map[string]string{"customer": ""}},
		{"unit_type": "device", "unit_id": "d-1", "ids": map[string]string{"device": "d-2"}},
	} {
		if r := a.do("POST", "/v1/assign", a.sdk, bad); r.Status != http.StatusBadRequest {
			t.Errorf("POST /v1/assign %v = %d, want 400", bad["ids"], r.Status)
		}
	}

	// The SDK config carries the running holdout.
	var cfg struct {
		Holdouts []assign.Holdout `json:"holdouts"`
	}
	a.getJSON(a.sdk, "/v1/sdk/config", &cfg)
	if len(cfg.Holdouts) != 1 || cfg.Holdouts[0].Key != "q1" || cfg.Holdouts[0].Fraction != 0.05 || !cfg.Holdouts[0].Running {
		t.Errorf("sdk config holdouts = %+v", cfg.Holdouts)
	}

	// Ramps: up is allowed and keeps everyone held out; down is refused.
	if r := a.do("PATCH", "/v1/holdouts/q1", a.admin, map[string]any{"fraction": 0.02}); r.Status != http.StatusConflict {
		t.Errorf("lowering a running holdout's fraction = %d, want 409", r.Status)
	}
	if r := a.do("PATCH", "/v1/holdouts/q1", a.admin, map[string]any{"unit_type": "device"}); r.Status != http.StatusConflict {
		t.Errorf("changing a running holdout's unit type = %d, want 409", r.Status)
	}
	if r := a.do("PATCH", "/v1/holdouts/q1", a.admin, map[string]any{"fraction": 0.5}); r.Status != http.StatusBadRequest {
		t.Errorf("raising a fraction past 0.1 = %d, want 400", r.Status)
	}
	a.must(http.StatusOK, "PATCH", "/v1/holdouts/q1", map[string]any{"fraction": 0.1})
	wantHeld("after the ramp to 10%", customer(held, "checkout"), "control")
	more := firstID("q1", "c", 0.1, true)
	for i := 0; heldOut("q1", more, 0.05); i++ {
		more = firstID("q1", fmt.Sprintf("c%d", i), 0.1, true)
	}
	wantHeld("a unit the ramp added", customer(more, "checkout"), "control")

	// Stopping releases the units.
	if r := a.do("POST", "/v1/holdouts/q1/archive", a.admin, nil); r.Status != http.StatusConflict {
		t.Errorf("archiving a running holdout = %d, want 409", r.Status)
	}
	a.must(http.StatusOK, "POST", "/v1/holdouts/q1/stop", nil)
	if got := customer(held, "checkout"); got["reason"] != "bucket" {
		t.Errorf("after stop: %v, want enrolled", got)
	}
	cfg.Holdouts = nil
	a.getJSON(a.sdk, "/v1/sdk/config", &cfg)
	if len(cfg.Holdouts) != 0 {
		t.Errorf("sdk config after stop has holdouts %+v", cfg.Holdouts)
	}
	if r := a.do("POST", "/v1/holdouts/q1/start", a.admin, nil); r.Status != http.StatusConflict {
		t.Errorf("restarting a stopped holdout = %d, want 409", r.Status)
	}

	hist := a.must(http.StatusOK, "GET", "/v1/holdouts/q1/history", nil)
	var actions []string
	for _, e := range hist["items"].([]any) {
		actions = append(actions, e.(map[string]any)["action"].(string))
	}
	if want := []string{"create", "start", "update", "stop"}; !slices.Equal(actions, want) {
		t.Errorf("history actions = %v, want %v", actions, want)
	}
	page := a.must(http.StatusOK, "GET", "/v1/holdouts/q1/history?limit=2", nil)
	if len(page["items"].([]any)) != 2 || page["next_cursor"] == nil {
		t.Errorf("history page of 2 = %v", page)
	}
	a.must(http.StatusOK, "POST", "/v1/holdouts/q1/archive", nil)
	if list := a.must(http.StatusOK, "GET", "/v1/holdouts", nil); len(list["items"].([]any)) != 0 {
		t.Errorf("list after archive = %v, want none", list["items"])
	}
	if list := a.must(http.StatusOK, "GET", "/v1/holdouts?status=archived", nil); len(list["items"].([]any)) != 1 {
		t.Errorf("archived list = %v, want q1", list["items"])
	}
	if r := a.do("PATCH", "/v1/holdouts/q1", a.admin, map[string]any{"name": "x"}); r.Status != http.StatusConflict {
		t.Errorf("patching an archived holdout = %d, want 409", r.Status)
	}
	if r := a.do("POST", "/v1/holdouts", a.viewer, holdoutBody("q2", []string{"checkout"}, nil)); r.Status != http.StatusForbidden {
		t.Errorf("viewer creating a holdout = %d, want 403", r.Status)
	}
	if r := a.do("GET", "/v1/holdouts/q1", a.viewer, nil); r.Status != http.StatusOK {
		t.Errorf("viewer reading a holdout = %d, want 200", r.Status)
	}
}

// TestHoldoutResults: units assigned through POST /v1/assign (with
// log_exposure) are recorded in the holdout's arms, and the results
// compare them with the experiments' statistics: counts, conversion
// rates, SRM against the fraction; recomputed from raw events, then from
// the aggregates, which must equal a full recomputation.
func TestHoldoutResults(t *testing.T) {
	a := newTestAPI(t)
	a.createMetric("purchase", "conversion")
	for _, key := range []string{"checkout", "banner"} {
		exp := experimentBody(key)
		delete(exp, "targeting")
		delete(exp, "overrides")
		if key == "banner" {
			exp["traffic"] = 0.5
		}
		a.must(http.StatusCreated, "POST", "/v1/experiments", exp)
		a.must(http.StatusOK, "POST", "/v1/experiments/"+key+"/start", nil)
	}
	a.must(http.StatusCreated, "POST", "/v1/metrics", map[string]any{"key": "spend", "event": "purchase", "type": "mean"})
	body := holdoutBody("prog", []string{"checkout", "banner"}, nil)
	body["fraction"] = 0.1
	body["metrics"] = map[string]any{"primary": []string{"purchase"}, "secondary": []string{"spend"}}
	a.must(http.StatusCreated, "POST", "/v1/holdouts", body)
	a.must(http.StatusOK, "POST", "/v1/holdouts/prog/start", nil)

	const n = 600
	units := map[string]int{}
	conversions := map[string]int{}
	var events []map[string]any
	ts := time.Now().UTC().Add(time.Minute).Format(time.RFC3339)
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("u-%d", i)
		r := a.must(http.StatusOK, "POST", "/v1/assign", map[string]any{"unit_type": "customer", "unit_id": id, "log_exposure": true})
		arm := "exposed"
		for _, x := range r["assignments"].([]any) {
			if x.(map[string]any)["reason"] == "holdout" {
				arm = "holdout"
			}
		}
		if (arm == "holdout") != heldOut("prog", id, 0.1) {
			t.Fatalf("%s: arm %s, contract says held out = %v", id, arm, heldOut("prog", id, 0.1))
		}
		units[arm]++
		// Half the units bought before (CUPED's covariate), then held-out
		// units convert 1 in 4, exposed ones 1 in 3.
		if i%2 == 0 {
			events = append(events, map[string]any{"id": newID(t), "type": "track", "event": "purchase", "unit_type": "customer", "unit_id": id,
				"value": 10.0, "timestamp": time.Now().UTC().Add(-2 * time.Hour).Format(time.RFC3339)})
		}
		if (arm == "holdout" && i%4 == 0) || (arm == "exposed" && i%3 == 0) {
			conversions[arm]++
			events = append(events, map[string]any{"id": newID(t), "type": "track", "event": "purchase", "value": 10.0, "unit_type": "customer", "unit_id": id, "timestamp": ts})
		}
	}
	if ans := a.postEvents(a.sdk, map[string]any{"events": events}); ans.Accepted != len(events) {
		t.Fatalf("posted %d events: %+v", len(events), ans)
	}
	check := func(source string) {
		t.Helper()
		res := a.must(http.StatusOK, "GET", "/v1/holdouts/prog/results", nil)
		if res["holdout"] != "prog" || res["experiment"] != "holdout:prog" || path(res, "units") != float64(n) {
			t.Errorf("%s: results head = holdout %v, experiment %v, units %v; want prog, holdout:prog, %d", source, res["holdout"], res["experiment"], path(res, "units"), n)
		}
		for i, arm := range []string{"holdout", "exposed"} {
			v := path(res, "metrics", 0, "variants", i).(map[string]any)
			if v["variant"] != arm || v["units"] != float64(units[arm]) {
				t.Errorf("%s: arm %d = %v %v units, want %s %d", source, i, v["variant"], v["units"], arm, units[arm])
			}
			if want := float64(conversions[arm]) / float64(units[arm]); math.Abs(v["mean"].(float64)-want) > 1e-12 {
				t.Errorf("%s: %s conversion = %v, want %v", source, arm, v["mean"], want)
			}
		}
		if exp := path(res, "health", "srm", "expected"); fmt.Sprint(exp) != "[0.1 0.9]" {
			t.Errorf("%s: srm expected = %v, want [0.1 0.9]", source, exp)
		}
		if ok := path(res, "health", "srm", "ok"); ok != true {
			t.Errorf("%s: srm = %v, want ok", source, path(res, "health", "srm"))
		}
		if path(res, "metrics", 0, "variants", 1, "p_value") == nil {
			t.Errorf("%s: exposed arm has no p_value", source)
		}
		// CUPED (mean and count metrics), on the pre-period purchases.
		if path(res, "metrics", 1, "metric") != "spend" || path(res, "metrics", 1, "variants", 1, "cuped", "p_value") == nil {
			t.Errorf("%s: spend's exposed arm has no CUPED estimate: %v", source, path(res, "metrics", 1))
		}
	}
	if units["holdout"] < 30 || units["exposed"] < 400 {
		t.Fatalf("arms %v: too few units for the test", units)
	}
	check("recomputed")
	ctx := context.Background()
	if err := a.app.Aggregate(ctx); err != nil {
		t.Fatal(err)
	}
	h, err := a.db.FindHoldoutByKey(ctx, "prog")
	if err != nil {
		t.Fatal(err)
	}
	metrics, err := a.db.FindMetricsByKeys(ctx, h.Metrics.Keys())
	if err != nil {
		t.Fatal(err)
	}
	// Every metric, spend too: a mean metric on the same event, with
	// pre-period events arriving after more queued groups than one cycle
	// takes (TestAggregateBacklogCountsTracksOnce).
	if err := a.db.VerifyAggregates(ctx, h.Analyzed(), metrics, analysis.Query{Now: time.Now().UTC().Add(time.Hour)}); err != nil {
		t.Errorf("holdout aggregates differ from a full recomputation: %v", err)
	}
	check("aggregated")
	ts2 := a.must(http.StatusOK, "GET", "/v1/holdouts/prog/results/timeseries", nil)
	if ts2 == nil {
		t.Errorf("no timeseries")
	}
	if r := a.do("GET", "/v1/holdouts/nope/results", a.viewer, nil); r.Status != http.StatusNotFound {
		t.Errorf("results of an unknown holdout = %d, want 404", r.Status)
	}
	if r := a.do("GET", "/v1/holdouts/prog/results?alpha=2", a.viewer, nil); r.Status != http.StatusBadRequest {
		t.Errorf("results with alpha=2 = %d, want 400", r.Status)
	}
}

// getJSON decodes the 200 answer of a GET into v.
func (a *testAPI) getJSON(key, path string, v any) {
	a.t.Helper()
	r := a.do("GET", path, key, nil)
	if r.Status != http.StatusOK {
		a.t.Fatalf("GET %s = %d: %s", path, r.Status, r.Body)
	}
	if err := json.Unmarshal(r.Body, v); err != nil {
		a.t.Fatalf("GET %s: %v", path, err)
	}
}

// TestHoldoutExposureEvents: POST /v1/events takes exposures to a
// holdout's arms under "holdout:" + key, and rejects, event by event, a
// variant that is no arm, another unit type, an unknown holdout and, once
// archived, the holdout itself.
func TestHoldoutExposureEvents(t *testing.T) {
	a := newTestAPI(t)
	a.createMetric("purchase", "conversion")
	exp := experimentBody("checkout")
	delete(exp, "targeting")
	a.must(http.StatusCreated, "POST", "/v1/experiments", exp)
	a.must(http.StatusCreated, "POST", "/v1/holdouts", holdoutBody("prog", []string{"checkout"}, nil))
	ev := func(experiment, variant, unitType string) map[string]any {
		return map[string]any{"id": newID(t), "type": "exposure", "experiment": experiment, "variant": variant, "unit_type": unitType, "unit_id": "c-1"}
	}
	ans := a.postEvents(a.sdk, map[string]any{"events": []any{
		ev("holdout:prog", "holdout", "customer"),
		ev("holdout:prog", "control", "customer"),
		ev("holdout:prog", "exposed", "device"),
		ev("holdout:nope", "holdout", "customer"),
		ev("holdout:prog", "exposed", "customer"),
	}})
	if ans.Accepted != 2 || len(ans.Rejected) != 3 {
		t.Fatalf("answer %+v: want 2 accepted (both arms) and 3 rejected", ans)
	}
	for i, want := range []struct {
		index int
		field string
	}{{1, "variant"}, {2, "unit_type"}, {3, "experiment"}} {
		if r := ans.Rejected[i]; r.Index != want.index || r.Error.Field != want.field {
			t.Errorf("rejection %d = %+v, want index %d at %s", i, r, want.index, want.field)
		}
	}
	a.must(http.StatusOK, "POST", "/v1/holdouts/prog/archive", nil)
	if ans := a.postEvents(a.sdk, map[string]any{"events": []any{ev("holdout:prog", "holdout", "customer")}}); ans.Accepted != 0 || len(ans.Rejected) != 1 {
		t.Errorf("an exposure to an archived holdout: %+v, want it rejected", ans)
	}
}
