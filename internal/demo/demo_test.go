package demo_test

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/flywheel-oss/flywheel/internal/app"
	"github.com/flywheel-oss/flywheel/internal/apptest"
	"github.com/flywheel-oss/flywheel/internal/demo"
)

func appConfig() app.Config { return app.Config{} }

// results is the part of a results document these tests read.
type results struct {
	Units         int64 `json:"units"`
	PendingEvents int64 `json:"pending_events"`
	Health        struct {
		SRM struct {
			OK       bool    `json:"ok"`
			PValue   float64 `json:"p_value"`
			Observed []int64 `json:"observed"`
		} `json:"srm"`
		CrossoverShare *float64 `json:"crossover_share"`
		Warnings       []string `json:"warnings"`
	} `json:"health"`
	Metrics []struct {
		Metric   string `json:"metric"`
		Role     string `json:"role"`
		Summary  string `json:"summary"`
		Variants []struct {
			Variant string  `json:"variant"`
			Units   int64   `json:"units"`
			Mean    float64 `json:"mean"`
		} `json:"variants"`
	} `json:"metrics"`
}

// TestShopAndSRM seeds the synthetic scenarios and checks that the server
// counts exactly what the demo's journey made: in checkout-button and
// free-shipping each customer's purchases, made on devices linked to the
// customer by identify events (so none would count without the links), in
// srm-demo the exposures that were not lost, with the trust checks failing
// on the sample ratio mismatch. Then it runs the demo again: nothing new is
// stored and the results do not move.
func TestShopAndSRM(t *testing.T) {
	srv := apptest.Start(t, appConfig())
	ctx := context.Background()
	var out bytes.Buffer
	opts := demo.Options{URL: srv.URL, Key: apptest.AdminKey, Only: []string{"shop", "srm-demo"}, Out: &out}
	rep, err := demo.Run(ctx, opts)
	t.Logf("demo output:\n%s", out.String())
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if rep.Pending != 0 {
		logAggregation(t, srv.DatabaseURL)
	}
	if rep.Pending != 0 || rep.Accepted != rep.Events || rep.Duplicates != 0 {
		t.Fatalf("first run: pending %d, events %d, accepted %d, duplicates %d; want 0 pending, every event accepted",
			rep.Pending, rep.Events, rep.Accepted, rep.Duplicates)
	}
	if want := []string{"checkout-button", "free-shipping", "srm-demo"}; strings.Join(rep.Experiments, ",") != strings.Join(want, ",") {
		t.Fatalf("experiments = %v, want %v", rep.Experiments, want)
	}

	before := map[string]results{}
	for _, key := range rep.Experiments {
		var res results
		getJSON(t, srv, "/v1/experiments/"+key+"/results", &res)
		before[key] = res
		expected := rep.Expected[key]
		var units int64
		for _, arm := range expected {
			units += arm.Units
		}
		if res.Units != units || units == 0 {
			t.Errorf("%s: units = %d, want %d (the demo's exposures)", key, res.Units, units)
		}
		for _, m := range res.Metrics {
			for _, v := range m.Variants {
				want := expected[v.Variant]
				if v.Units != want.Units {
					t.Errorf("%s %s %s: units = %d, want %d", key, m.Metric, v.Variant, v.Units, want.Units)
				}
				var mean float64
				switch m.Metric {
				case "purchase", "signup":
					mean = float64(want.Conversions) / float64(want.Units)
				case "revenue":
					mean = want.Revenue / float64(want.Units)
				default:
					t.Fatalf("%s: unexpected metric %s", key, m.Metric)
				}
				if mean == 0 || math.Abs(v.Mean-mean) > 1e-9*mean {
					t.Errorf("%s %s %s: mean = %v, want %v (the demo's journey)", key, m.Metric, v.Variant, v.Mean, mean)
				}
			}
		}
	}
	for _, key := range []string{"checkout-button", "free-shipping"} {
		res := before[key]
		if !res.Health.SRM.OK {
			t.Errorf("%s: srm ok false (p %v), want a healthy experiment", key, res.Health.SRM.PValue)
		}
		for _, w := range res.Health.Warnings {
			if !strings.Contains(w, "units per arm are needed") {
				t.Errorf("%s: warning %q, want none but the sample-size note", key, w)
			}
		}
	}
	srm := before["srm-demo"]
	if srm.Health.SRM.OK || !(srm.Health.SRM.PValue < 0.001) {
		t.Errorf("srm-demo: srm ok %v, p %v; want the check to fail (p < 0.001)", srm.Health.SRM.OK, srm.Health.SRM.PValue)
	}
	if len(srm.Health.Warnings) == 0 || !strings.HasPrefix(srm.Health.Warnings[0], "sample ratio mismatch") {
		t.Errorf("srm-demo: warnings %q, want the sample ratio mismatch first", srm.Health.Warnings)
	}
	if len(srm.Metrics) != 1 || !strings.Contains(srm.Metrics[0].Summary, "sample ratio mismatch: do not trust") {
		t.Errorf("srm-demo: metrics %+v, want a summary that says not to trust it", srm.Metrics)
	}

	// Again: everything exists, every event is a duplicate, nothing moves.
	out.Reset()
	again, err := demo.Run(ctx, opts)
	t.Logf("second run:\n%s", out.String())
	if err != nil {
		t.Fatalf("second Run: %v", err)
	}
	if again.Events != rep.Events || again.Accepted != 0 || again.Duplicates != rep.Events {
		t.Errorf("second run: events %d, accepted %d, duplicates %d; want %d events, all duplicates",
			again.Events, again.Accepted, again.Duplicates, rep.Events)
	}
	for _, want := range []string{
		"metric purchase: already exists",
		"experiment checkout-button: already exists and is running",
		"experiment srm-demo: already exists and is running",
		"): 0 new, " + count(rep.Events) + " already stored",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("second run's output lacks %q", want)
		}
	}
	for _, key := range again.Experiments {
		var res results
		getJSON(t, srv, "/v1/experiments/"+key+"/results", &res)
		if res.Units != before[key].Units || res.Health.SRM.PValue != before[key].Health.SRM.PValue {
			t.Errorf("%s after a second run: units %d, srm p %v; want %d, %v as before",
				key, res.Units, res.Health.SRM.PValue, before[key].Units, before[key].Health.SRM.PValue)
		}
	}
}

// count formats n as the demo does: 64,000.
func count(n int) string {
	d := strconv.Itoa(n)
	var b strings.Builder
	for i := range d {
		if i > 0 && (len(d)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteByte(d[i])
	}
	return b.String()
}

// TestRunErrors checks that bad input gets an error that says what is
// wrong and what to do: a malformed URL, a server that is down, something
// that is not flywheel, an unknown key, a key that is not an admin key, an
// unknown scenario.
func TestRunErrors(t *testing.T) {
	srv := apptest.Start(t, appConfig())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + ln.Addr().String()
	ln.Close() // nothing listens there any more
	notFlywheel := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(notFlywheel.Close)

	for _, c := range []struct {
		name, url, key string
		only           []string
		want           []string
	}{
		{"no scheme", "127.0.0.1:8080", apptest.AdminKey, nil, []string{`"127.0.0.1:8080"`, "http://"}},
		{"other scheme", "ftp://127.0.0.1:8080", apptest.AdminKey, nil, []string{"want http:// or https://"}},
		{"no host", "http://", apptest.AdminKey, nil, []string{"has no host"}},
		{"no key", srv.URL, "", nil, []string{"admin API key is required"}},
		{"server down", down, apptest.AdminKey, nil, []string{"cannot reach flywheel at " + down, "connection refused", "is the server running?"}},
		{"not flywheel", notFlywheel.URL, apptest.AdminKey, nil, []string{"does not answer as a flywheel server", "404"}},
		{"unknown key", srv.URL, "fw_admin_no_such_key_0123456789", nil, []string{"does not know this key (401)", "--key"}},
		{"sdk key", srv.URL, apptest.SDKKey, nil, []string{"(403)", "scope admin"}},
		{"unknown scenario", srv.URL, apptest.AdminKey, []string{"shop", "nope"}, []string{`unknown demo scenario "nope"`, "hillstrom-email, shop, srm-demo"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := demo.Run(context.Background(), demo.Options{URL: c.url, Key: c.key, Only: c.only})
			if err == nil {
				t.Fatal("Run succeeded, want an error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Run: %v\nwant it to say %q", err, w)
				}
			}
		})
	}
	// None of them created anything.
	var list struct {
		Items []any `json:"items"`
	}
	getJSON(t, srv, "/v1/experiments?status=all", &list)
	if list.Items == nil || len(list.Items) != 0 {
		t.Errorf("experiments after failed runs = %v, want an empty list", list.Items)
	}
}

// logAggregation logs what the server's database shows of an aggregation
// that has not caught up: its sessions and the locks they wait for, the
// queue, each definition's folded cycle, the staged cycles, and the units
// stored against those exposed. TestShopAndSRM has failed under CI's load
// with results stuck and no warning in the server's log; this is what the
// next such failure should say.
func logAggregation(t *testing.T, url string) {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Logf("aggregation state: %v", err)
		return
	}
	defer c.Close(ctx)
	for _, q := range []string{
		`SELECT pid, state, wait_event_type, wait_event, now() - xact_start AS in_transaction, left(query, 300)
		 FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`,
		`SELECT pid, locktype, relation::regclass::text, mode FROM pg_locks WHERE NOT granted`,
		`SELECT count(*) AS rows, sum(events) AS events, now() - min(at) AS oldest FROM agg_queue`,
		`SELECT experiment, metric, folded_cycle, epoch FROM agg_defs ORDER BY 1, 2`,
		`SELECT cycle, events, at FROM agg_staged_cycles ORDER BY cycle`,
		`SELECT experiment, count(*) AS units FROM agg_units WHERE metric = '' GROUP BY 1 ORDER BY 1`,
		`SELECT experiment, count(*) AS exposed FROM exposures GROUP BY 1 ORDER BY 1`,
	} {
		rows, err := c.Query(ctx, q)
		if err != nil {
			t.Logf("%s: %v", q, err)
			continue
		}
		var lines []string
		for rows.Next() {
			vals, err := rows.Values()
			if err != nil {
				break
			}
			lines = append(lines, fmt.Sprint(vals))
		}
		if err := rows.Err(); err != nil {
			lines = append(lines, err.Error())
		}
		rows.Close()
		names := make([]string, 0, len(rows.FieldDescriptions()))
		for _, f := range rows.FieldDescriptions() {
			names = append(names, f.Name)
		}
		t.Logf("%s:\n  %s", strings.Join(names, " "), strings.Join(lines, "\n  "))
	}
}
