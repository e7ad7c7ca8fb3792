package web_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/google/uuid"

	"github.com/flywheel-oss/flywheel/internal/app"
	"github.com/flywheel-oss/flywheel/internal/apptest"
)

// TestUIBandit: the experiment page of a bandit shows its settings, its
// current weights and its weight epochs with the posterior of each update.
func TestUIBandit(t *testing.T) {
	srv := apptest.Start(t, app.Config{AggregateEvery: -1, BanditEvery: -1})
	ctx := context.Background()
	srv.Admin(t, 201, "POST", "/v1/metrics", map[string]any{"key": "purchase", "event": "purchase", "type": "conversion"})
	srv.Admin(t, 201, "POST", "/v1/experiments", map[string]any{
		"key": "hero", "unit_type": "customer", "allocation": "bandit",
		"bandit":   map[string]any{"floor": 0.1, "period": "1h", "burn_in": "0s"},
		"variants": []any{map[string]any{"key": "a", "weight": 0.5}, map[string]any{"key": "b", "weight": 0.5}},
		"metrics":  map[string]any{"primary": []any{"purchase"}},
	})
	srv.Admin(t, 200, "POST", "/v1/experiments/hero/start", nil)
	now := time.Now().UTC()
	var events []map[string]any
	for i := range 200 {
		u := fmt.Sprintf("c-%d", i)
		v := []string{"a", "b"}[i%2]
		events = append(events, map[string]any{"id": uuid.NewString(), "type": "exposure", "experiment": "hero", "variant": v, "unit_type": "customer", "unit_id": u, "timestamp": now.Format(time.RFC3339Nano)})
		if v == "b" {
			events = append(events, map[string]any{"id": uuid.NewString(), "type": "track", "event": "purchase", "unit_type": "customer", "unit_id": u, "timestamp": now.Add(time.Second).Format(time.RFC3339Nano)})
		}
	}
	srv.Admin(t, 200, "POST", "/v1/events", map[string]any{"events": events})
	if err := srv.App.Aggregate(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := srv.App.UpdateBandits(ctx, now.Add(time.Minute)); err != nil || n != 1 {
		t.Fatalf("UpdateBandits = %d, %v; want 1 update", n, err)
	}

	b := newTab(t, srv.URL)
	b.do(chromedp.Navigate(srv.URL + "/"))
	b.fill("API key", apptest.AdminKey)
	b.press("Sign in")
	b.waitFor("the experiments list", `document.querySelector('main h1')?.textContent === 'Experiments'`)
	b.open("#/experiments/hero")
	b.waitFor("the epochs table", `document.querySelector('table.epochs tbody tr:nth-child(2)') !== null`)
	text := eval[string](b, "document.querySelector('section.bandit').innerText")
	for _, want := range []string{"Thompson sampling on purchase", "every 1h", "at least 10", "Current weights: a 10", "b 90", "epoch-stratified"} {
		if !strings.Contains(text, want) {
			t.Errorf("bandit section = %q, want it to show %q", text, want)
		}
	}
	rows := eval[[]string](b, "[...document.querySelectorAll('table.epochs tbody tr')].map((tr) => tr.innerText)")
	if len(rows) != 2 || !strings.Contains(rows[0], "50") || !strings.Contains(rows[1], "90") || !strings.Contains(rows[1], "200") {
		t.Errorf("epoch rows = %q, want epoch 0 at 50 %% and epoch 1 at 90 %% for b over 200 units", rows)
	}
	b.waitFor("the results", `document.querySelector('.overview') !== null`)
	if got := eval[string](b, "document.querySelector('.overview').innerText"); !strings.Contains(got, "Epoch-stratified") || !strings.Contains(got, "weight epochs imply") {
		t.Errorf("results overview = %q, want it to say the comparison is epoch-stratified", got)
	}
	b.shot("bandit")
	b.noErrors()
}
