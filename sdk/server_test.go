package sdk_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/flywheel-oss/flywheel/internal/app"
	"github.com/flywheel-oss/flywheel/internal/apptest"
	"github.com/flywheel-oss/flywheel/internal/pgtest"
	"github.com/flywheel-oss/flywheel/sdk"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// admin is srv.Admin: a request with the admin key that must answer want.
func admin(t testing.TB, srv *apptest.Server, want int, method, path string, body any) []byte {
	t.Helper()
	return srv.Admin(t, want, method, path, body)
}

// groundTruth is what the server recorded for an experiment, unit by unit;
// sqlTruth reads its tables. TestAgainstServer also checks the aggregate
// through GET /v1/experiments/{key}/results.
type groundTruth interface {
	// exposures returns each exposed unit's variant; it fails the test for
	// a unit exposed more than once or to two variants.
	exposures(t testing.TB, experiment string) map[string]string
	// conversions returns, per unit, how many times it did event.
	conversions(t testing.TB, event string) map[string]int
}

// sqlTruth reads the server's PostgreSQL tables.
type sqlTruth struct{ databaseURL string }

var _ groundTruth = sqlTruth{}

func (s sqlTruth) query(t testing.TB, q string, args []any, scan func(pgx.Rows) error) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, s.databaseURL)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, q, args...)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			t.Fatalf("%s: scan: %v", q, err)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func (s sqlTruth) exposures(t testing.TB, experiment string) map[string]string {
	t.Helper()
	out := map[string]string{}
	s.query(t, `SELECT unit_id, variant, multiple FROM exposures WHERE experiment = $1`, []any{experiment}, func(r pgx.Rows) error {
		var unit, variant string
		var multiple bool
		if err := r.Scan(&unit, &variant, &multiple); err != nil {
			return err
		}
		if multiple {
			t.Errorf("unit %s: exposed to two variants; want one", unit)
		}
		out[unit] = variant
		return nil
	})
	// Every exposure event is stored once.
	s.query(t, `SELECT count(*), count(DISTINCT id), count(DISTINCT unit_id) FROM events WHERE type = 'exposure' AND experiment = $1`, []any{experiment}, func(r pgx.Rows) error {
		var events, ids, units int
		if err := r.Scan(&events, &ids, &units); err != nil {
			return err
		}
		if events != len(out) || ids != events || units != events {
			t.Errorf("exposure events: %d rows, %d ids, %d units; want %d of each", events, ids, units, len(out))
		}
		return nil
	})
	return out
}

func (s sqlTruth) conversions(t testing.TB, event string) map[string]int {
	t.Helper()
	out := map[string]int{}
	s.query(t, `SELECT unit_id, count(*), count(DISTINCT id) FROM events WHERE type = 'track' AND event = $1 GROUP BY unit_id`, []any{event}, func(r pgx.Rows) error {
		var unit string
		var n, ids int
		if err := r.Scan(&unit, &n, &ids); err != nil {
			return err
		}
		if ids != n {
			t.Errorf("unit %s: %d track rows with %d distinct ids", unit, n, ids)
		}
		out[unit] = n
		return nil
	})
	return out
}

// TestAgainstServer drives the real server: define a metric and an
// experiment through the admin API, assign 10,000 customers through the
// SDK (exposure logging on), track a conversion for a deterministic subset,
// close, and check that the server recorded exactly the exposures and
// conversions the SDK produced.
func TestAgainstServer(t *testing.T) {
	srv := apptest.Start(t, app.Config{})
	admin(t, srv, 201, "POST", "/v1/metrics", map[string]any{
		"key": "purchase", "event": "purchase", "type": "conversion", "window_hours": 168,
	})
	const key = "checkout-button"
	admin(t, srv, 201, "POST", "/v1/experiments", map[string]any{
		"key": key, "name": "Green checkout button", "hypothesis": "A green button raises purchases",
		"unit_type": "customer",
		"variants": []any{
			map[string]any{"key": "control", "weight": 0.5},
			map[string]any{"key": "green", "weight": 0.5, "payload": map[string]any{"color": "#0a0"}},
		},
		"traffic":   0.8,
		"targeting": map[string]any{"country": map[string]any{"$in": []any{"FR", "BE"}}},
		"overrides": map[string]any{"c-00007": "green"},
		"metrics":   map[string]any{"primary": []any{"purchase"}},
		"analysis":  "fixed",
	})
	admin(t, srv, 200, "POST", "/v1/experiments/"+key+"/start", nil)

	ctx := context.Background()
	c, err := sdk.New(ctx, sdk.Config{URL: srv.URL, Key: apptest.SDKKey},
		sdk.WithBufferSize(50000), sdk.WithBatchSize(1000), sdk.WithFlushInterval(20*time.Millisecond),
		sdk.WithStartupTimeout(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.EnsureLoaded(ctx); err != nil {
		t.Fatal(err)
	}

	const units = 10000
	enrolled := map[string]string{} // unit id -> variant the SDK returned
	converted := map[string]int{}
	reasons := map[sdk.Reason]int{}
	identified := 0
	for i := range units {
		country := []string{"FR", "BE", "US"}[i%3]
		u := sdk.Unit{CustomerID: fmt.Sprintf("c-%05d", i), Attributes: map[string]any{"country": country}}
		a := c.Assign(ctx, u, key)
		reasons[a.Reason]++
		if again := c.Assign(ctx, u, key); again.Variant != a.Variant {
			t.Fatalf("unit %s: %q then %q", u.CustomerID, a.Variant, again.Variant)
		}
		if a.Enrolled {
			enrolled[u.CustomerID] = a.Variant
		}
		if i%1000 == 0 { // a few devices signed in as these customers
			if err := c.Identify(ctx, fmt.Sprintf("d-%05d", i), u.CustomerID); err != nil {
				t.Fatal(err)
			}
			identified++
		}
		if i%7 == 0 { // the conversions: every seventh unit, enrolled or not
			if err := c.Track(ctx, u, "purchase", float64(i%100), map[string]any{"currency": "EUR"}); err != nil {
				t.Fatal(err)
			}
			converted[u.CustomerID]++
		}
	}
	if reasons[sdk.ReasonOverride] != 1 || reasons[sdk.ReasonTargeting] == 0 || reasons[sdk.ReasonTraffic] == 0 || reasons[sdk.ReasonBucket] == 0 {
		t.Errorf("reasons %v, want one override and some targeting, traffic and bucket", reasons)
	}
	closeCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := c.Close(closeCtx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s := c.Stats()
	checkBalance(t, s)
	want := uint64(len(enrolled) + len(converted) + identified)
	if s.Queued != want || s.Sent != want || s.Exposures != uint64(len(enrolled)) || s.Rejected != 0 || s.Dropped != 0 || s.Duplicates != 0 {
		t.Errorf("stats %+v: want %d exposures and %d tracks sent, none rejected, dropped or duplicated", s, len(enrolled), len(converted))
	}

	var truth groundTruth = sqlTruth{srv.DatabaseURL}
	exposed := truth.exposures(t, key)
	if len(exposed) != len(enrolled) {
		t.Errorf("the server has %d exposed units, the SDK enrolled %d", len(exposed), len(enrolled))
	}
	for unit, v := range enrolled {
		if exposed[unit] != v {
			t.Fatalf("unit %s: exposed to %q on the server, assigned %q by the SDK", unit, exposed[unit], v)
		}
	}
	got := truth.conversions(t, "purchase")
	if len(got) != len(converted) {
		t.Errorf("the server has conversions for %d units, the SDK tracked %d", len(got), len(converted))
	}
	for unit, n := range converted {
		if got[unit] != n {
			t.Fatalf("unit %s: %d conversions on the server, %d tracked", unit, got[unit], n)
		}
	}
	truth.(sqlTruth).query(t, `SELECT count(*) FROM aliases WHERE unit_type = 'device'`, nil, func(r pgx.Rows) error {
		var n int
		if err := r.Scan(&n); err != nil {
			return err
		}
		if n != identified {
			t.Errorf("%d device aliases on the server, want %d", n, identified)
		}
		return nil
	})

	// The results endpoint counts exactly those units and conversions: every
	// enrolled unit but the overridden one (overrides are not analysed).
	wantUnits, wantConv := map[string]int{}, map[string]int{}
	for unit, v := range enrolled {
		if unit == "c-00007" {
			continue
		}
		wantUnits[v]++
		if converted[unit] > 0 {
			wantConv[v]++
		}
	}
	var res struct {
		Units   int
		Health  struct{ Overridden int }
		Metrics []struct {
			Metric   string
			Variants []struct {
				Variant string
				Units   int
				Mean    float64
			}
		}
	}
	// Fold every acknowledged event into the results aggregates, as the
	// background aggregator does within a second.
	if err := srv.App.Aggregate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(admin(t, srv, 200, "GET", "/v1/experiments/"+key+"/results", nil), &res); err != nil {
		t.Fatal(err)
	}
	if res.Units != len(enrolled)-1 || res.Health.Overridden != 1 || len(res.Metrics) != 1 {
		t.Fatalf("results: %d units, %d overridden, %d metrics; want %d, 1, 1", res.Units, res.Health.Overridden, len(res.Metrics), len(enrolled)-1)
	}
	for _, v := range res.Metrics[0].Variants {
		if v.Units != wantUnits[v.Variant] || int(math.Round(v.Mean*float64(v.Units))) != wantConv[v.Variant] {
			t.Errorf("results %s: %d units, rate %v; want %d units, %d conversions", v.Variant, v.Units, v.Mean, wantUnits[v.Variant], wantConv[v.Variant])
		}
	}
	t.Logf("%d units, %d enrolled (%v), %d conversions", units, len(enrolled), reasons, len(converted))
}

// serverAssign asks the server to assign a customer to the experiments.
func serverAssign(t testing.TB, srv *apptest.Server, id string, experiments ...string) []map[string]any {
	t.Helper()
	raw, _ := json.Marshal(map[string]any{"unit_type": "customer", "unit_id": id, "experiments": experiments})
	req, err := http.NewRequest("POST", srv.URL+"/v1/assign", bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+apptest.SDKKey)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out struct{ Assignments []map[string]any }
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil || res.StatusCode != 200 {
		t.Fatalf("POST /v1/assign = %d, %v", res.StatusCode, err)
	}
	return out.Assignments
}

// TestSDKAndServerAgree: the SDK's local decision equals the server's for
// the cases that do not come from the config's own rules: a unit that opted
// out on the server (before and after it is erased, and after it opts back
// in), and experiments that are unknown, drafts or archived.
func TestSDKAndServerAgree(t *testing.T) {
	srv := apptest.Start(t, app.Config{AggregateEvery: -1})
	for _, key := range []string{"running", "draft", "archived"} {
		admin(t, srv, 201, "POST", "/v1/experiments", map[string]any{
			"key": key, "unit_type": "customer",
			"variants": []any{map[string]any{"key": "control", "weight": 0.5}, map[string]any{"key": "b", "weight": 0.5}},
		})
	}
	admin(t, srv, 200, "POST", "/v1/experiments/running/start", nil)
	admin(t, srv, 200, "POST", "/v1/experiments/archived/archive", nil)
	admin(t, srv, 200, "PUT", "/v1/units/customer/c-out/consent", map[string]any{"analytics": false})

	ctx := context.Background()
	c, err := sdk.New(ctx, sdk.Config{URL: srv.URL, Key: apptest.SDKKey}, sdk.WithStartupTimeout(30*time.Second), sdk.WithPollInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if err := c.EnsureLoaded(ctx); err != nil {
		t.Fatal(err)
	}
	experiments := []string{"running", "draft", "archived", "no-such-experiment"}
	agree := func(stage, id string, want map[string]sdk.Reason) {
		t.Helper()
		server := serverAssign(t, srv, id, experiments...)
		for i, key := range experiments {
			local := c.Assign(ctx, sdk.Unit{CustomerID: id}, key)
			if string(local.Reason) != server[i]["reason"] || local.Enrolled != server[i]["enrolled"] {
				t.Errorf("%s: %s in %s: SDK %s/%v, server %v/%v", stage, id, key, local.Reason, local.Enrolled, server[i]["reason"], server[i]["enrolled"])
			}
			if local.Enrolled && local.Variant != server[i]["variant"] {
				t.Errorf("%s: %s in %s: SDK variant %s, server %v", stage, id, key, local.Variant, server[i]["variant"])
			}
			if w, ok := want[key]; ok && local.Reason != w {
				t.Errorf("%s: %s in %s: reason %s, want %s", stage, id, key, local.Reason, w)
			}
		}
	}
	notRunning := map[string]sdk.Reason{"draft": sdk.ReasonNotRunning, "archived": sdk.ReasonNotRunning, "no-such-experiment": sdk.ReasonNotRunning}
	agree("opted out", "c-out", map[string]sdk.Reason{"running": sdk.ReasonOptedOut})
	agree("consenting", "c-in", notRunning)
	if err := c.Track(ctx, sdk.Unit{CustomerID: "c-out"}, "purchase", 1, nil); err != nil {
		t.Fatal(err)
	}
	if q := c.Stats().Queued; q != 1 { // c-in's exposure only
		t.Errorf("queued %d events, want 1: the opted-out unit's track must not be sent", q)
	}

	admin(t, srv, 200, "DELETE", "/v1/units/customer/c-out", nil)
	if err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	agree("erased while opted out", "c-out", map[string]sdk.Reason{"running": sdk.ReasonOptedOut})

	admin(t, srv, 200, "PUT", "/v1/units/customer/c-out/consent", map[string]any{"analytics": true})
	if err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	agree("opted back in", "c-out", map[string]sdk.Reason{"running": sdk.ReasonBucket})
}
