package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flywheel-oss/flywheel/analysis"
	"github.com/flywheel-oss/flywheel/api"
	"github.com/flywheel-oss/flywheel/ingest"
	"github.com/flywheel-oss/flywheel/live"
	"github.com/flywheel-oss/flywheel/store"
)

// assignOne assigns one customer to one experiment, logging the exposure
// when log is set, and returns the variant ("" when not enrolled).
func (a *testAPI) assignOne(exp, unit string, log bool) string {
	a.t.Helper()
	r := a.do("POST", "/v1/assign", a.sdk, map[string]any{"unit_type": "customer", "unit_id": unit, "experiments": []any{exp}, "log_exposure": log})
	if r.Status != http.StatusOK {
		a.t.Fatalf("assign %s: %d %s", unit, r.Status, r.Body)
	}
	var ans struct {
		Assignments []struct {
			Variant *string `json:"variant"`
		} `json:"assignments"`
	}
	if err := json.Unmarshal(r.Body, &ans); err != nil || len(ans.Assignments) != 1 {
		a.t.Fatalf("assign %s: %s", unit, r.Body)
	}
	if ans.Assignments[0].Variant == nil {
		return ""
	}
	return *ans.Assignments[0].Variant
}

func (a *testAPI) weights(exp string) map[string]float64 {
	a.t.Helper()
	e := a.must(http.StatusOK, "GET", "/v1/experiments/"+exp, nil)
	w := map[string]float64{}
	for _, v := range e["variants"].([]any) {
		m := v.(map[string]any)
		w[m["key"].(string)] = m["weight"].(float64)
	}
	return w
}

// TestBanditLifecycle runs a bandit end to end on a real database: units
// enrol at the initial weights, the variant converts far better, the
// update is held until the burn-in has passed, then moves the weights to
// 0.05/0.95 (the floor) in a new epoch with an audit row; it runs once per
// period even when two servers try at once; enrolled units keep their
// arm; new units follow the new weights; the results are
// epoch-stratified.
func TestBanditLifecycle(t *testing.T) {
	a := newTestAPI(t)
	ctx := context.Background()
	a.createMetric("purchase", "conversion")
	a.must(http.StatusCreated, "POST", "/v1/experiments", map[string]any{
		"key": "bb", "unit_type": "customer", "allocation": "bandit",
		"bandit":   map[string]any{"floor": 0.05, "period": "1h", "burn_in": "1h"},
		"variants": []any{map[string]any{"key": "a", "weight": 0.5}, map[string]any{"key": "b", "weight": 0.5}},
		"metrics":  map[string]any{"primary": []any{"purchase"}},
	})
	a.must(http.StatusOK, "POST", "/v1/experiments/bb/start", nil)
	start := time.Now().UTC()

	first := map[string]string{}
	var events []map[string]any
	for i := range 400 {
		u := fmt.Sprintf("c-%d", i)
		v := a.assignOne("bb", u, true)
		first[u] = v
		if v == "b" || (v == "a" && i%10 == 0) { // b converts 100 %, a 10 %
			events = append(events, map[string]any{"id": newID(t), "type": "track", "event": "purchase", "unit_type": "customer", "unit_id": u, "timestamp": time.Now().UTC().Format(time.RFC3339Nano)})
		}
	}
	a.postEvents(a.sdk, map[string]any{"events": events})
	a.settle("bb")

	// Within the burn-in: epoch 0 is written, the weights do not move.
	if n, err := a.app.UpdateBandits(ctx, start.Add(30*time.Minute)); err != nil || n != 0 {
		t.Fatalf("UpdateBandits in the burn-in = %d, %v; want 0", n, err)
	}
	eps := a.must(http.StatusOK, "GET", "/v1/experiments/bb/epochs", nil)["epochs"].([]any)
	if len(eps) != 1 || eps[0].(map[string]any)["epoch"].(float64) != 0 {
		t.Fatalf("epochs after the burn-in cycle = %v, want epoch 0 only", eps)
	}
	rev := a.must(http.StatusOK, "GET", "/v1/experiments/bb", nil)["revision"].(float64)

	// Past the burn-in, two servers at once: one update.
	at := start.Add(2 * time.Hour)
	var wg sync.WaitGroup
	counts := make([]int, 2)
	for i := range counts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := a.app.UpdateBandits(ctx, at)
			if err != nil {
				t.Errorf("UpdateBandits: %v", err)
			}
			counts[i] = n
		}()
	}
	wg.Wait()
	if counts[0]+counts[1] != 1 {
		t.Fatalf("two concurrent update cycles updated %v, want 1 in all", counts)
	}
	w := a.weights("bb")
	if w["a"] < 0.05-1e-9 || w["a"] > 0.051 || w["b"] < 0.949 {
		t.Fatalf("weights after the update = %v, want a at the floor 0.05 and b 0.95", w)
	}
	e := a.must(http.StatusOK, "GET", "/v1/experiments/bb", nil)
	if e["revision"].(float64) <= rev {
		t.Errorf("revision %v after the update, want > %v (the SDKs must fetch the weights)", e["revision"], rev)
	}
	eps = a.must(http.StatusOK, "GET", "/v1/experiments/bb/epochs", nil)["epochs"].([]any)
	if len(eps) != 2 {
		t.Fatalf("epochs = %v, want 2", eps)
	}
	ep1 := eps[1].(map[string]any)
	post := ep1["posterior"].(map[string]any)
	if pb := post["b"].(map[string]any)["prob_best"].(float64); pb < 0.99 {
		t.Errorf("P(b best) = %v, want ≥ 0.99", pb)
	}
	if ep1["revision"].(float64) != e["revision"].(float64) {
		t.Errorf("epoch 1 revision %v, experiment revision %v: want equal", ep1["revision"], e["revision"])
	}
	hist := a.must(http.StatusOK, "GET", "/v1/experiments/bb/history", nil)["items"].([]any)
	last := hist[len(hist)-1].(map[string]any)
	if last["action"] != "bandit_update" || last["actor"] != "bandit" {
		t.Errorf("last history entry = %v, want a bandit_update by bandit", last)
	}
	if _, ok := last["changes"].(map[string]any)["variants"]; !ok {
		t.Errorf("bandit_update changes = %v, want the variants' weights", last["changes"])
	}

	// Within the period: nothing.
	if n, _ := a.app.UpdateBandits(ctx, at.Add(30*time.Minute)); n != 0 {
		t.Errorf("UpdateBandits within the period updated %d, want 0", n)
	}

	// Enrolled units keep their arm, though bucketing at 0.05/0.95 would
	// move about 90 % of the a units to b.
	moved, aUnits := 0, 0
	for u, v := range first {
		if v == "a" {
			aUnits++
		}
		if got := a.assignOne("bb", u, false); got != v {
			moved++
		}
	}
	if aUnits < 100 || moved != 0 {
		t.Errorf("%d of %d enrolled units changed arm (%d were in a), want none", moved, len(first), aUnits)
	}
	// New units follow the new weights.
	inB := 0
	for i := range 200 {
		if a.assignOne("bb", fmt.Sprintf("new-%d", i), false) == "b" {
			inB++
		}
	}
	if inB < 170 {
		t.Errorf("%d of 200 new units in b, want about 190 (weight 0.95)", inB)
	}

	res := a.must(http.StatusOK, "GET", "/v1/experiments/bb/results", nil)
	if res["estimator"] != "epoch-stratified" {
		t.Errorf("estimator = %v, want epoch-stratified", res["estimator"])
	}
}

func TestBanditDefinitionRefusals(t *testing.T) {
	a := newTestAPI(t)
	a.createMetric("purchase", "conversion")
	a.must(http.StatusCreated, "POST", "/v1/metrics", map[string]any{"key": "aov", "type": "ratio", "numerator": "purchase", "denominator": "order"})
	base := func() map[string]any {
		return map[string]any{"key": "bx", "unit_type": "customer", "allocation": "bandit",
			"variants": []any{map[string]any{"key": "a", "weight": 0.5}, map[string]any{"key": "b", "weight": 0.5}},
			"metrics":  map[string]any{"primary": []any{"purchase"}}}
	}
	tests := []struct {
		name  string
		edit  func(b map[string]any)
		field string
	}{
		{"floor × arms above 1", func(b map[string]any) { b["bandit"] = map[string]any{"floor": 0.7} }, "bandit.floor"},
		{"bad period", func(b map[string]any) { b["bandit"] = map[string]any{"period": "soon"} }, "bandit.period"},
		{"bad burn-in", func(b map[string]any) { b["bandit"] = map[string]any{"burn_in": "-2h"} }, "bandit.burn_in"},
		{"no primary metric", func(b map[string]any) { b["metrics"] = map[string]any{"primary": []any{}} }, "metrics.primary"},
		{"ratio primary metric", func(b map[string]any) { b["metrics"] = map[string]any{"primary": []any{"aov"}} }, "metrics.primary[0]"},
		{"sequential", func(b map[string]any) { b["analysis"] = "sequential" }, "analysis"},
		{"settings on a fixed experiment", func(b map[string]any) { b["allocation"] = "fixed"; b["bandit"] = map[string]any{"floor": 0.1} }, "bandit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := base()
			tt.edit(b)
			r := a.do("POST", "/v1/experiments", a.admin, b)
			if r.Status != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %s", r.Status, r.Body)
			}
			if _, field, _ := r.errorOf(t); field != tt.field {
				t.Errorf("field = %q, want %q: %s", field, tt.field, r.Body)
			}
		})
	}
	if r := a.do("GET", "/v1/experiments/bx", a.admin, nil); r.Status != http.StatusNotFound {
		t.Errorf("a refused definition was stored: %d", r.Status)
	}
	// A draft patched to a bandit on a ratio metric is refused too.
	a.must(http.StatusCreated, "POST", "/v1/experiments", map[string]any{"key": "fx", "unit_type": "customer",
		"variants": []any{map[string]any{"key": "a", "weight": 0.5}, map[string]any{"key": "b", "weight": 0.5}},
		"metrics":  map[string]any{"primary": []any{"aov"}}})
	r := a.do("PATCH", "/v1/experiments/fx", a.admin, map[string]any{"allocation": "bandit"})
	if _, field, _ := r.errorOf(t); r.Status != http.StatusBadRequest || field != "metrics.primary[0]" {
		t.Errorf("PATCH to a bandit on a ratio metric = %d %s, want 400 at metrics.primary[0]", r.Status, r.Body)
	}
}

// TestBanditEpochCells checks the SQL side of the stratified estimate: a
// unit belongs to the epoch of its first exposure, and a unit exposed to
// two arms is analysed in its first (intention to treat), while a fixed
// experiment's results leave it out.
func TestBanditEpochCells(t *testing.T) {
	a := newTestAPI(t)
	ctx := context.Background()
	a.createMetric("purchase", "conversion")
	a.must(http.StatusCreated, "POST", "/v1/experiments", map[string]any{
		"key": "bc", "unit_type": "customer", "allocation": "bandit",
		"bandit":   map[string]any{"floor": 0.1, "period": "1h", "burn_in": "0s"},
		"variants": []any{map[string]any{"key": "a", "weight": 0.5}, map[string]any{"key": "b", "weight": 0.5}},
		"metrics":  map[string]any{"primary": []any{"purchase"}},
	})
	a.must(http.StatusOK, "POST", "/v1/experiments/bc/start", nil)
	t0 := time.Now().UTC()
	exposure := func(unit, variant string, at time.Time) map[string]any {
		return map[string]any{"id": newID(t), "type": "exposure", "experiment": "bc", "variant": variant, "unit_type": "customer", "unit_id": unit, "timestamp": at.Format(time.RFC3339Nano)}
	}
	purchase := func(unit string, at time.Time) map[string]any {
		return map[string]any{"id": newID(t), "type": "track", "event": "purchase", "unit_type": "customer", "unit_id": unit, "timestamp": at.Format(time.RFC3339Nano)}
	}
	// Epoch 0: 10 units in a (2 convert), 10 in b (5 convert), and "both",
	// first in a.
	var events []map[string]any
	for i := range 10 {
		events = append(events, exposure(fmt.Sprintf("a0-%d", i), "a", t0), exposure(fmt.Sprintf("b0-%d", i), "b", t0))
		if i < 2 {
			events = append(events, purchase(fmt.Sprintf("a0-%d", i), t0.Add(time.Minute)))
		}
		if i < 5 {
			events = append(events, purchase(fmt.Sprintf("b0-%d", i), t0.Add(time.Minute)))
		}
	}
	events = append(events, exposure("both", "a", t0), purchase("both", t0.Add(time.Minute)))
	a.postEvents(a.sdk, map[string]any{"events": events})
	a.settle("bc")
	if n, err := a.app.UpdateBandits(ctx, t0.Add(time.Hour)); err != nil || n != 1 {
		t.Fatalf("UpdateBandits = %d, %v; want 1", n, err)
	}
	// Epoch 1 (from t0 + 1 h): 3 units in a, 7 in b, none converts; "both"
	// is now exposed to b too.
	events = nil
	for i := range 10 {
		v := "b"
		if i < 3 {
			v = "a"
		}
		events = append(events, exposure(fmt.Sprintf("e1-%d", i), v, t0.Add(2*time.Hour)))
	}
	events = append(events, exposure("both", "b", t0.Add(2*time.Hour)))
	a.postEvents(a.sdk, map[string]any{"events": events})
	a.settle("bc")

	e, err := a.db.FindExperimentByKey(ctx, "bc")
	if err != nil {
		t.Fatal(err)
	}
	metrics, err := a.db.FindMetricsByKeys(ctx, e.Metrics.Keys())
	if err != nil {
		t.Fatal(err)
	}
	in, err := a.db.ResultInput(ctx, e, metrics, analysis.Query{Now: time.Now().UTC()})
	if err != nil {
		t.Fatal(err)
	}
	if !in.EpochStatsRead || len(in.BanditEpochs) != 2 {
		t.Fatalf("epoch stats read %v, epochs %v; want both epochs", in.EpochStatsRead, in.BanditEpochs)
	}
	type cell struct {
		epoch   int
		variant string
	}
	got := map[cell][2]float64{}
	for _, c := range in.EpochStats {
		got[cell{c.Epoch, c.Variant}] = [2]float64{float64(c.N), c.Sum}
	}
	want := map[cell][2]float64{
		{0, "a"}: {11, 3}, // "both" counts in its first arm, with its purchase
		{0, "b"}: {10, 5},
		{1, "a"}: {3, 0},
		{1, "b"}: {7, 0},
	}
	if len(got) != len(want) {
		t.Errorf("cells = %v, want %v", got, want)
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("epoch %d, %s: units and conversions %v, want %v", k.epoch, k.variant, got[k], w)
		}
	}
	res := a.must(http.StatusOK, "GET", "/v1/experiments/bc/results", nil)
	if res["units"].(float64) != 31 {
		t.Errorf("units = %v, want 31 (\"both\" included)", res["units"])
	}
	if h := res["health"].(map[string]any); h["multiple_exposures"].(float64) != 1 {
		t.Errorf("multiple_exposures = %v, want 1", h["multiple_exposures"])
	}
	m := res["metrics"].([]any)[0].(map[string]any)
	vs := m["variants"].([]any)
	// Stratified means: a = (21·3/11 + 10·0)/31, b = (21·5/10 + 10·0)/31.
	wantA, wantB := (21*3.0/11)/31, (21*5.0/10)/31
	if ga, gb := vs[0].(map[string]any)["mean"].(float64), vs[1].(map[string]any)["mean"].(float64); math.Abs(ga-wantA) > 1e-12 || math.Abs(gb-wantB) > 1e-12 {
		t.Errorf("stratified means a %v, b %v; want %v, %v", ga, gb, wantA, wantB)
	}
	if units := vs[0].(map[string]any)["units"].(float64); units != 14 {
		t.Errorf("a's units = %v, want 14 (\"both\" included)", units)
	}
}

// TestBanditUpdateWaits: no update while the primary metric's aggregates
// are not built (the weights would come from no data), and none once the
// experiment is stopped.
func TestBanditUpdateWaits(t *testing.T) {
	a := newTestAPI(t)
	ctx := context.Background()
	a.createMetric("purchase", "conversion")
	a.must(http.StatusCreated, "POST", "/v1/experiments", map[string]any{
		"key": "bw", "unit_type": "customer", "allocation": "bandit",
		"bandit":   map[string]any{"period": "1m", "burn_in": "0s"},
		"variants": []any{map[string]any{"key": "a", "weight": 0.5}, map[string]any{"key": "b", "weight": 0.5}},
		"metrics":  map[string]any{"primary": []any{"purchase"}},
	})
	a.must(http.StatusOK, "POST", "/v1/experiments/bw/start", nil)
	now := time.Now().UTC()
	if n, err := a.app.UpdateBandits(ctx, now.Add(time.Hour)); err != nil || n != 0 {
		t.Errorf("UpdateBandits before aggregation = %d, %v; want 0", n, err)
	}
	a.settle("bw")
	if n, err := a.app.UpdateBandits(ctx, now.Add(time.Hour)); err != nil || n != 1 {
		t.Errorf("UpdateBandits after aggregation = %d, %v; want 1", n, err)
	}
	if w := a.weights("bw"); math.Abs(w["a"]-0.5) > 0.05 {
		t.Errorf("weights with no data = %v, want about equal", w)
	}
	a.must(http.StatusOK, "POST", "/v1/experiments/bw/stop", nil)
	if n, err := a.app.UpdateBandits(ctx, now.Add(3*time.Hour)); err != nil || n != 0 {
		t.Errorf("UpdateBandits after the stop = %d, %v; want 0", n, err)
	}
	eps := a.must(http.StatusOK, "GET", "/v1/experiments/bw/epochs", nil)["epochs"].([]any)
	if len(eps) != 2 {
		t.Errorf("epochs = %d, want 2 (0 and the one update)", len(eps))
	}
}

// TestBanditWithAudience: a bandit whose targeting references a saved
// audience updates its weights like any other (the update checks the new
// weights, not the whole definition again).
func TestBanditWithAudience(t *testing.T) {
	a := newTestAPI(t)
	ctx := context.Background()
	a.createMetric("purchase", "conversion")
	a.must(http.StatusCreated, "POST", "/v1/audiences", map[string]any{"key": "fr", "name": "France", "condition": map[string]any{"country": "FR"}})
	a.must(http.StatusCreated, "POST", "/v1/experiments", map[string]any{
		"key": "ba", "unit_type": "customer", "allocation": "bandit", "targeting": map[string]any{"$audience": "fr"},
		"bandit":   map[string]any{"burn_in": "0s"},
		"variants": []any{map[string]any{"key": "a", "weight": 0.5}, map[string]any{"key": "b", "weight": 0.5}},
		"metrics":  map[string]any{"primary": []any{"purchase"}},
	})
	a.must(http.StatusOK, "POST", "/v1/experiments/ba/start", nil)
	a.settle("ba")
	if n, err := a.app.UpdateBandits(ctx, time.Now().Add(time.Hour)); err != nil || n != 1 {
		t.Errorf("UpdateBandits = %d, %v; want 1", n, err)
	}
}

// TestBanditCellsMatchPooled: within one epoch, the epoch cells of a
// metric are the pooled statistics the fixed analysis reads, caps
// included (a fixed cap and a percentile cap).
func TestBanditCellsMatchPooled(t *testing.T) {
	a := newTestAPI(t)
	ctx := context.Background()
	a.must(http.StatusCreated, "POST", "/v1/metrics", map[string]any{"key": "revenue", "event": "purchase", "type": "mean", "cap": map[string]any{"percentile": 0.9}})
	a.must(http.StatusCreated, "POST", "/v1/metrics", map[string]any{"key": "spend", "event": "purchase", "type": "mean", "cap": map[string]any{"value": 50}})
	a.must(http.StatusCreated, "POST", "/v1/metrics", map[string]any{"key": "orders", "event": "purchase", "type": "count"})
	a.must(http.StatusCreated, "POST", "/v1/experiments", map[string]any{
		"key": "bp", "unit_type": "customer", "allocation": "bandit",
		"variants": []any{map[string]any{"key": "a", "weight": 0.5}, map[string]any{"key": "b", "weight": 0.5}},
		"metrics":  map[string]any{"primary": []any{"revenue"}, "secondary": []any{"spend", "orders"}},
	})
	a.must(http.StatusOK, "POST", "/v1/experiments/bp/start", nil)
	now := time.Now().UTC()
	var events []map[string]any
	for i := range 60 {
		u := fmt.Sprintf("c-%d", i)
		events = append(events, map[string]any{"id": newID(t), "type": "exposure", "experiment": "bp", "variant": []string{"a", "b"}[i%2], "unit_type": "customer", "unit_id": u, "timestamp": now.Format(time.RFC3339Nano)})
		for j := range i % 4 {
			events = append(events, map[string]any{"id": newID(t), "type": "track", "event": "purchase", "value": float64(i*7%90 + j), "unit_type": "customer", "unit_id": u, "timestamp": now.Add(time.Minute).Format(time.RFC3339Nano)})
		}
	}
	a.postEvents(a.sdk, map[string]any{"events": events})
	a.settle("bp")
	if _, err := a.app.UpdateBandits(ctx, now); err != nil { // writes epoch 0; the burn-in holds the rest
		t.Fatal(err)
	}
	e, err := a.db.FindExperimentByKey(ctx, "bp")
	if err != nil {
		t.Fatal(err)
	}
	metrics, err := a.db.FindMetricsByKeys(ctx, e.Metrics.Keys())
	if err != nil {
		t.Fatal(err)
	}
	in, err := a.db.ResultInput(ctx, e, metrics, analysis.Query{Now: time.Now().UTC()})
	if err != nil {
		t.Fatal(err)
	}
	if len(in.BanditEpochs) != 1 {
		t.Fatalf("epochs = %v, want epoch 0", in.BanditEpochs)
	}
	cells := map[string]analysis.EpochStats{}
	for _, c := range in.EpochStats {
		if c.Epoch != 0 {
			t.Errorf("cell %+v outside epoch 0", c)
		}
		cells[c.Metric+"/"+c.Variant] = c
	}
	if len(in.Stats) != 6 {
		t.Fatalf("pooled stats = %d rows, want 3 metrics × 2 variants", len(in.Stats))
	}
	for _, s := range in.Stats {
		c := cells[s.Metric+"/"+s.Variant]
		if c.N != s.N || math.Abs(c.Sum-s.Sum) > 1e-9*math.Max(1, math.Abs(s.Sum)) || math.Abs(c.SumSq-s.SumSq) > 1e-9*math.Max(1, s.SumSq) {
			t.Errorf("%s/%s: epoch cell N %d Σy %v Σy² %v, pooled N %d Σy %v Σy² %v", s.Metric, s.Variant, c.N, c.Sum, c.SumSq, s.N, s.Sum, s.SumSq)
		}
	}
}

// failingExposures is the store with the sticky-arm lookup failing, as
// when the database is away.
type failingExposures struct{ *store.DB }

func (failingExposures) ExposedVariant(context.Context, string, string) (string, bool, error) {
	return "", false, errors.New("connection refused")
}

// TestBanditStickyLookupFails: when the sticky-arm lookup fails, POST
// /v1/assign still answers, with the arm of the current weights.
func TestBanditStickyLookupFails(t *testing.T) {
	a := newTestAPI(t)
	ctx := context.Background()
	a.createMetric("purchase", "conversion")
	a.must(http.StatusCreated, "POST", "/v1/experiments", map[string]any{
		"key": "bf", "unit_type": "customer", "allocation": "bandit",
		"variants": []any{map[string]any{"key": "a", "weight": 0.5}, map[string]any{"key": "b", "weight": 0.5}},
		"metrics":  map[string]any{"primary": []any{"purchase"}},
	})
	a.must(http.StatusOK, "POST", "/v1/experiments/bf/start", nil)
	reg := live.New(a.db)
	if err := reg.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	srv := httptest.NewServer(api.NewServer(api.Deps{Store: failingExposures{a.db}, Live: reg, Units: a.db,
		Validator: &ingest.Validator{IDs: ingest.NewPseudonymizer("")}, OptOuts: ingest.NewOptOuts(a.db),
		Logger: slog.New(slog.NewJSONHandler(&logs, nil))}))
	t.Cleanup(srv.Close)
	r := a.doURL(srv.URL, "POST", "/v1/assign", a.sdk, map[string]any{"unit_type": "customer", "unit_id": "c-1", "experiments": []any{"bf"}})
	if r.Status != http.StatusOK || !strings.Contains(string(r.Body), `"enrolled":true`) {
		t.Fatalf("assign with the lookup failing = %d %s, want 200 and enrolled", r.Status, r.Body)
	}
	if !strings.Contains(logs.String(), "bandit sticky arm lookup failed") {
		t.Errorf("logs = %s, want the failed lookup logged", logs.String())
	}
}

// TestBanditStickyTraffic: with traffic 0.5, the update moves the
// variants' bucket ranges; every unit with a recorded exposure stays
// enrolled in its arm, through POST /v1/assign.
func TestBanditStickyTraffic(t *testing.T) {
	a := newTestAPI(t)
	ctx := context.Background()
	a.createMetric("purchase", "conversion")
	a.must(http.StatusCreated, "POST", "/v1/experiments", map[string]any{
		"key": "bt", "unit_type": "customer", "allocation": "bandit", "traffic": 0.5,
		"bandit":   map[string]any{"floor": 0.05, "burn_in": "0s"},
		"variants": []any{map[string]any{"key": "a", "weight": 0.5}, map[string]any{"key": "b", "weight": 0.5}},
		"metrics":  map[string]any{"primary": []any{"purchase"}},
	})
	a.must(http.StatusOK, "POST", "/v1/experiments/bt/start", nil)
	first := map[string]string{}
	var events []map[string]any
	for i := range 300 {
		u := fmt.Sprintf("c-%d", i)
		if v := a.assignOne("bt", u, true); v != "" {
			first[u] = v
			if v == "b" {
				events = append(events, map[string]any{"id": newID(t), "type": "track", "event": "purchase", "unit_type": "customer", "unit_id": u, "timestamp": time.Now().UTC().Format(time.RFC3339Nano)})
			}
		}
	}
	a.postEvents(a.sdk, map[string]any{"events": events})
	a.settle("bt")
	if n, err := a.app.UpdateBandits(ctx, time.Now().Add(time.Hour)); err != nil || n != 1 {
		t.Fatalf("UpdateBandits = %d, %v; want 1", n, err)
	}
	if w := a.weights("bt"); w["b"] < 0.9 {
		t.Fatalf("weights %v, want b at 0.95", w)
	}
	changed := 0
	for u, v := range first {
		if got := a.assignOne("bt", u, false); got != v {
			changed++
		}
	}
	if len(first) < 100 || changed != 0 {
		t.Errorf("%d of %d enrolled units changed arm or left, want none", changed, len(first))
	}
}
