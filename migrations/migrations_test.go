package migrations_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/flywheel-oss/flywheel/internal/app"
	"github.com/flywheel-oss/flywheel/internal/apptest"
	"github.com/flywheel-oss/flywheel/internal/pgtest"
	"github.com/flywheel-oss/flywheel/migrations"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestEveryMigrationDownAndUp fills a database through the app (metrics,
// experiments and their history, events, exposures, links, consent, an
// erasure, the results aggregates and the sequential state), then steps
// down through every migration, each Down running on the data the tables
// below it still hold: at each version it goes down, up again and down
// again. After every step the schema must be the one a fresh database has
// at that version (migrated up from empty, one step at a time), so a Down
// that leaves something behind or an Up that does not undo its Down
// fails. The newest migration's round trip must leave the results the app
// serves unchanged; at the end, migrated up again from nothing, the app
// works.
func TestEveryMigrationDownAndUp(t *testing.T) {
	ctx := context.Background()
	// The schema of each version, on a database migrated from empty.
	ref := pgtest.NewEmptyDatabase(t)
	want := map[int64][]string{0: schema(t, ref)}
	var versions []int64
	for {
		if err := migrations.UpByOne(ctx, ref); err != nil {
			if strings.Contains(err.Error(), "no next version") {
				break
			}
			t.Fatalf("up by one from version %d: %v", last(versions), err)
		}
		v := version(t, ref)
		versions = append(versions, v)
		want[v] = schema(t, ref)
	}
	if len(versions) < 2 {
		t.Fatalf("stepped through versions %v, want them all", versions)
	}

	srv := apptest.Start(t, app.Config{AggregateEvery: -1})
	url := srv.DatabaseURL
	before := fill(t, srv)
	srv.HTTP.Close()
	if err := srv.App.Close(ctx); err != nil {
		t.Fatal(err)
	}
	checkData(t, url)
	top := last(versions)
	check(t, url, want[top], "the app's database")

	for i := len(versions) - 1; i >= 0; i-- {
		v, below := versions[i], int64(0)
		if i > 0 {
			below = versions[i-1]
		}
		if err := migrations.DownByOne(ctx, url); err != nil {
			t.Fatalf("down from version %d, on data: %v", v, err)
		}
		check(t, url, want[below], fmt.Sprintf("down from %d to %d", v, below))
		if err := migrations.UpByOne(ctx, url); err != nil {
			t.Fatalf("up to version %d again, on data: %v", v, err)
		}
		check(t, url, want[v], fmt.Sprintf("down from %d and up again", v))
		if v == top {
			// A rollback of the newest migration and its return keep
			// what the app serves.
			srv := apptest.Start(t, app.Config{DatabaseURL: url, AggregateEvery: -1})
			after := results(t, srv)
			srv.HTTP.Close()
			if err := srv.App.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(before, after); diff != "" {
				t.Errorf("results after down and up of version %d differ (-before +after):\n%s", v, diff)
			}
			checkLastDay(t, url)
		}
		if err := migrations.DownByOne(ctx, url); err != nil {
			t.Fatalf("down from version %d again: %v", v, err)
		}
		check(t, url, want[below], fmt.Sprintf("down from %d, up and down again", v))
		if v == 24 {
			checkMaxDay(t, url) // 0024's Down puts every unit's last day back into agg_unit_days
		}
	}

	if err := migrations.Up(ctx, url); err != nil {
		t.Fatalf("up from nothing: %v", err)
	}
	check(t, url, want[top], "migrated up again from nothing")
	fill(t, apptest.Start(t, app.Config{DatabaseURL: url, AggregateEvery: -1}))
}

// checkLastDay fails unless every unit's day rows (agg_unit_days) are
// before the last day its unit row holds (0024), and some units have a
// last day and some a day row, so that there was something to check.
func checkLastDay(t *testing.T, url string) {
	t.Helper()
	conn := pgtest.Connect(t, url)
	defer conn.Close(context.Background())
	var rows, bad, last int64
	if err := conn.QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE a.last_day IS NOT NULL),
		    count(*) FILTER (WHERE a.last_day IS NULL OR d.day >= a.last_day),
		    (SELECT count(*) FROM agg_units WHERE last_day IS NOT NULL)
		FROM agg_unit_days d LEFT JOIN agg_units a USING (experiment, metric, unit_id)`).Scan(&rows, &bad, &last); err != nil {
		t.Fatal(err)
	}
	if rows == 0 || last == 0 || bad != 0 {
		t.Errorf("%d day rows on or after their unit's last day, or without one; %d day rows of units with a last day, %d units with a last day (want some of each, none bad)", bad, rows, last)
	}
}

// checkMaxDay fails unless every metric definition's max_day (0019, put
// back by 0024's Down) is filled in and at least the day of each of its day
// rows, and some day rows are there to check.
func checkMaxDay(t *testing.T, url string) {
	t.Helper()
	conn := pgtest.Connect(t, url)
	defer conn.Close(context.Background())
	var rows, bad int64
	if err := conn.QueryRow(context.Background(), `SELECT count(*), count(*) FILTER (WHERE d.max_day IS NULL OR u.day > d.max_day)
		FROM agg_unit_days u JOIN agg_defs d USING (experiment, metric)`).Scan(&rows, &bad); err != nil {
		t.Fatal(err)
	}
	if rows == 0 || bad != 0 {
		t.Errorf("agg_defs.max_day: %d of %d day rows after it (want some rows, none after)", bad, rows)
	}
	var unknown int64
	if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM agg_defs WHERE metric <> '' AND max_day IS NULL`).Scan(&unknown); err != nil {
		t.Fatal(err)
	}
	if unknown != 0 {
		t.Errorf("%d metric definitions have no max_day", unknown)
	}
}

func last(vs []int64) int64 {
	if len(vs) == 0 {
		return 0
	}
	return vs[len(vs)-1]
}

func version(t *testing.T, url string) int64 {
	t.Helper()
	var v int64
	conn := pgtest.Connect(t, url)
	defer conn.Close(context.Background()) // dozens of checks: more than the test cluster's connections
	if err := conn.QueryRow(context.Background(), `SELECT max(version_id) FROM goose_db_version WHERE is_applied`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// schemaQuery lists what flywheel's migrations define in the public schema,
// one line per object, sorted: relations (kind, persistence, options,
// partitioning), columns (by name: a column a Down adds back lands last,
// which flywheel, naming its columns, does not mind), constraints,
// indexes, triggers, functions and views not owned by an extension, and
// extensions. goose's table and the daily event partitions the app creates
// are left out.
const schemaQuery = `
WITH rel AS (
    SELECT c.* FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relname NOT LIKE 'goose\_db\_version%'
      AND c.relname !~ '^events_p[0-9]{8}'
      AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
)
SELECT line FROM (
    SELECT format('relation %s kind=%s persistence=%s options=%s partitioned=%s bound=%s',
        relname, relkind, relpersistence, reloptions,
        pg_get_partkeydef(oid), pg_get_expr(relpartbound, oid)) AS line
    FROM rel WHERE relkind <> 'i' AND relkind <> 'I'
    UNION ALL
    SELECT format('column %s.%s %s notnull=%s default=%s compression=%s identity=%s generated=%s collation=%s',
        r.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
        pg_get_expr(d.adbin, d.adrelid), a.attcompression, a.attidentity, a.attgenerated, a.attcollation)
    FROM rel r JOIN pg_attribute a ON a.attrelid = r.oid
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE a.attnum > 0 AND NOT a.attisdropped AND r.relkind IN ('r', 'p', 'v', 'm', 'f')
    UNION ALL
    SELECT format('constraint %s.%s %s', r.relname, c.conname, pg_get_constraintdef(c.oid))
    FROM pg_constraint c JOIN rel r ON r.oid = c.conrelid
    UNION ALL
    SELECT format('index %s', pg_get_indexdef(i.indexrelid))
    FROM pg_index i JOIN rel r ON r.oid = i.indexrelid
    UNION ALL
    SELECT format('trigger %s', pg_get_triggerdef(tg.oid))
    FROM pg_trigger tg JOIN rel r ON r.oid = tg.tgrelid WHERE NOT tg.tgisinternal
    UNION ALL
    SELECT format('function %s(%s)', p.proname, pg_get_function_identity_arguments(p.oid))
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname = 'public'
      AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
    UNION ALL
    SELECT format('view %s %s', relname, pg_get_viewdef(oid)) FROM rel WHERE relkind IN ('v', 'm')
    UNION ALL
    SELECT format('extension %s', extname) FROM pg_extension WHERE extname <> 'plpgsql'
) s ORDER BY line`

func schema(t *testing.T, url string) []string {
	t.Helper()
	conn := pgtest.Connect(t, url)
	defer conn.Close(context.Background()) // dozens of checks: more than the test cluster's connections
	rows, err := conn.Query(context.Background(), schemaQuery)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return lines
}

// check fails the test unless the database's schema is want.
func check(t *testing.T, url string, want []string, when string) {
	t.Helper()
	if diff := cmp.Diff(want, schema(t, url)); diff != "" {
		t.Fatalf("%s: the schema differs from a fresh database's at that version (-fresh +here):\n%s", when, diff)
	}
}

// checkData fails the test unless every table the migrations create (but
// the queue, which aggregation empties) holds rows: each Down then runs on
// data.
func checkData(t *testing.T, url string) {
	t.Helper()
	conn := pgtest.Connect(t, url)
	defer conn.Close(context.Background())
	for _, table := range []string{"api_keys", "metrics", "experiments", "experiment_history", "config_state",
		"events", "event_ids", "exposures", "aliases", "consent", "audit_log", "sequential_state",
		"agg_defs", "agg_units", "agg_variants", "agg_first_hours", "agg_crossover", "agg_crossover_totals", "agg_unit_days", "agg_variant_days"} {
		var n int64
		if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM `+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			t.Errorf("table %s is empty; the test wants data in every table", table)
		}
	}
}

// call is srv.Admin: a request with the admin key that must answer want.
func call(t *testing.T, srv *apptest.Server, want int, method, path string, body any) []byte {
	t.Helper()
	return srv.Admin(t, want, method, path, body)
}

// fill writes data of every kind through the app and returns the results
// it then serves.
func fill(t *testing.T, srv *apptest.Server) map[string]any {
	t.Helper()
	call(t, srv, 201, "POST", "/v1/metrics", map[string]any{"key": "purchase", "event": "purchase", "type": "conversion", "window_hours": 168})
	call(t, srv, 201, "POST", "/v1/metrics", map[string]any{"key": "revenue", "event": "purchase", "type": "mean"})
	variants := []map[string]any{{"key": "control", "weight": 0.5}, {"key": "green", "weight": 0.5}}
	call(t, srv, 201, "POST", "/v1/experiments", map[string]any{"key": "fixed", "unit_type": "customer", "variants": variants,
		"layer": "checkout", "layer_share": 0.5, "metrics": map[string]any{"primary": []string{"purchase"}, "secondary": []string{"revenue"}}})
	call(t, srv, 201, "POST", "/v1/experiments", map[string]any{"key": "sequential", "unit_type": "device", "variants": variants,
		"analysis": "sequential", "metrics": map[string]any{"primary": []string{"purchase"}}})
	for _, key := range []string{"fixed", "sequential"} {
		call(t, srv, 200, "POST", "/v1/experiments/"+key+"/start", nil)
	}
	call(t, srv, 200, "PATCH", "/v1/experiments/fixed", map[string]any{"traffic": 0.9})

	var events []map[string]any
	ev := func(m map[string]any) {
		m["id"] = uuid.Must(uuid.NewV7()).String()
		events = append(events, m)
	}
	yesterday := time.Now().UTC().Add(-26 * time.Hour).Format(time.RFC3339) // an earlier UTC day than now
	for i := range 40 {
		variant := []string{"control", "green"}[i%2]
		customer, device := fmt.Sprintf("c-%d", i), fmt.Sprintf("d-%d", i)
		exposure := map[string]any{"type": "exposure", "experiment": "fixed", "variant": variant, "unit_type": "customer", "unit_id": customer,
			"attributes": map[string]any{"device": []string{"mobile", "desktop"}[i%3%2]}}
		if i < 12 {
			// Purchases on two days: day rows as well as last days.
			exposure["timestamp"] = yesterday
			ev(map[string]any{"type": "track", "event": "purchase", "value": float64(5 + i), "unit_type": "customer", "unit_id": customer,
				"timestamp": yesterday})
		}
		ev(exposure)
		ev(map[string]any{"type": "exposure", "experiment": "sequential", "variant": variant, "unit_type": "device", "unit_id": device})
		ev(map[string]any{"type": "identify", "unit_type": "device", "unit_id": device, "customer_id": customer})
		if i%3 != 0 {
			ev(map[string]any{"type": "track", "event": "purchase", "value": float64(10 + i), "unit_type": "customer", "unit_id": customer})
			ev(map[string]any{"type": "track", "event": "purchase", "value": float64(i), "unit_type": "device", "unit_id": device})
		}
	}
	call(t, srv, 200, "POST", "/v1/events", map[string]any{"events": events})
	call(t, srv, 200, "PUT", "/v1/units/customer/c-1/consent", map[string]any{"analytics": false})
	call(t, srv, 200, "DELETE", "/v1/units/customer/c-2", nil)
	if err := srv.App.Aggregate(context.Background()); err != nil {
		t.Fatalf("aggregate: %v", err)
	}
	return results(t, srv)
}

// results returns the results documents the app serves, without the
// fields that say when they were computed.
func results(t *testing.T, srv *apptest.Server) map[string]any {
	t.Helper()
	out := map[string]any{}
	for _, path := range []string{"/v1/experiments/fixed/results", "/v1/experiments/fixed/results?segment=device",
		"/v1/experiments/sequential/results", "/v1/experiments/fixed/results/timeseries?metric=revenue"} {
		var doc map[string]any
		if err := json.Unmarshal(call(t, srv, 200, "GET", path, nil), &doc); err != nil {
			t.Fatal(err)
		}
		delete(doc, "computed_at")
		delete(doc, "as_of")
		delete(doc, "lag_seconds")
		out[path] = doc
	}
	return out
}
