package api_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/flywheel-oss/flywheel/analysis"
)

// TestAggregateBacklogCountsTracksOnce: when the queue holds more rows
// than one cycle takes (store.MaxQueueRows; here 600 assignments logged one
// by one, then a group of tracks), the rows left for later are visible to
// the cycle, and so are their events. A unit recomputed from its history
// must not count those tracks, since the cycle that takes their row adds
// them as deltas: a mean metric once summed them twice (found by the
// holdout work: sums about 2x a recomputation).
func TestAggregateBacklogCountsTracksOnce(t *testing.T) {
	a := newTestAPI(t)
	a.createMetric("purchase", "conversion")
	a.must(http.StatusCreated, "POST", "/v1/metrics", map[string]any{"key": "spend", "event": "purchase", "type": "mean"})
	exp := experimentBody("checkout")
	delete(exp, "targeting")
	delete(exp, "overrides")
	exp["metrics"] = map[string]any{"primary": []string{"purchase"}, "secondary": []string{"spend"}}
	a.must(http.StatusCreated, "POST", "/v1/experiments", exp)
	a.must(http.StatusOK, "POST", "/v1/experiments/checkout/start", nil)
	exp["key"] = "banner"
	exp["traffic"] = 0.5
	a.must(http.StatusCreated, "POST", "/v1/experiments", exp)
	a.must(http.StatusOK, "POST", "/v1/experiments/banner/start", nil)
	var events []map[string]any
	ts := time.Now().UTC().Add(time.Minute).Format(time.RFC3339)
	for i := range 600 {
		id := fmt.Sprintf("u-%d", i)
		a.must(http.StatusOK, "POST", "/v1/assign", map[string]any{"unit_type": "customer", "unit_id": id, "log_exposure": true})
		if i%2 == 0 {
			events = append(events, map[string]any{"id": newID(t), "type": "track", "event": "purchase", "unit_type": "customer", "unit_id": id,
				"value": 10.0, "timestamp": time.Now().UTC().Add(-2 * time.Hour).Format(time.RFC3339)})
		}
		if i%4 == 0 {
			events = append(events, map[string]any{"id": newID(t), "type": "track", "event": "purchase", "value": 10.0, "unit_type": "customer", "unit_id": id, "timestamp": ts})
		}
	}
	// Before exposure (the CUPED pre-period) and in the window.
	a.postEvents(a.sdk, map[string]any{"events": events})
	ctx := context.Background()
	if err := a.app.Aggregate(ctx); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"checkout", "banner"} {
		e, _ := a.db.FindExperimentByKey(ctx, k)
		metrics, _ := a.db.FindMetricsByKeys(ctx, e.Metrics.Keys())
		if err := a.db.VerifyAggregates(ctx, e, metrics, analysis.Query{Now: time.Now().UTC().Add(time.Hour)}); err != nil {
			t.Errorf("experiment %s aggregates differ: %v", k, err)
		}
	}
}
