package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/internal/pgtest"
)

// openWithConn opens a fresh database and holds one of its connections,
// both closed when the test ends.
func openWithConn(t *testing.T) (*DB, *pgxpool.Conn) {
	t.Helper()
	ctx := context.Background()
	db, err := Open(ctx, pgtest.NewDatabase(t), Options{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Release)
	return db, conn
}

// TestFoldProbesByIndex plans foldNew for a group of 200 exposures and 200
// links against tables of 20,000 rows each, with fresh statistics: each
// NOT EXISTS must stay one index probe per row of the group, never a scan
// of the table (as a join, PostgreSQL hashes the whole table at this
// size, so that a group's cost grows with what is stored). Both plans are
// checked: the one made for the group's arguments, and the generic one
// that a connection keeps once it has run the prepared statement five
// times (made without them: the planner cannot see how many rows the
// arrays hold).
func TestFoldProbesByIndex(t *testing.T) {
	ctx := context.Background()
	db, conn := openWithConn(t)
	if _, err := db.pool.Exec(ctx, `
		INSERT INTO exposures (experiment, unit_id, unit_type, variant, first_ts)
		SELECT 'e', 'c-' || n, 'customer', 'control', now() - interval '1 day' FROM generate_series(1, 20000) n;
		INSERT INTO aliases (unit_type, unit_id, customer_id, ts)
		SELECT 'device', 'd-' || n, 'c-' || n, now() - interval '1 day' FROM generate_series(1, 20000) n;
		ANALYZE exposures, aliases`); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	var events []flywheel.Event
	for i := range 200 {
		unit := fmt.Sprintf("c-%d", i*97)
		events = append(events,
			flywheel.Event{ID: uuid.New(), Type: flywheel.EventExposure, UnitType: "customer", UnitID: unit,
				Timestamp: now, ReceivedAt: now, Experiment: "e", Variant: "control"},
			flywheel.Event{ID: uuid.New(), Type: flywheel.EventIdentify, UnitType: "device", UnitID: fmt.Sprintf("d-%d", i*89),
				Timestamp: now, ReceivedAt: now, CustomerID: unit})
	}
	accepted := make([]int, len(events))
	for i := range accepted {
		accepted[i] = i
	}
	explain := func(sql string, args *wireParams) []byte {
		t.Helper()
		var plan []byte
		var values [][]byte
		var formats []int16
		if args != nil {
			values, formats = args.values, args.formats
		}
		rr := conn.Conn().PgConn().ExecParams(ctx, sql, values, nil, formats, nil)
		for rr.NextRow() {
			plan = append(plan, rr.Values()[0]...)
		}
		if _, err := rr.Close(); err != nil {
			t.Fatal(err)
		}
		return plan
	}
	checkProbes(t, "custom plan", explain("EXPLAIN (FORMAT JSON) "+foldNew, foldArgs(events, accepted)))

	// The generic plan: the arguments play no part in it.
	if _, err := conn.Exec(ctx, "PREPARE fold_generic AS "+foldNew); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "SET plan_cache_mode = force_generic_plan"); err != nil {
		t.Fatal(err)
	}
	nulls := strings.Repeat("NULL, ", 17) + "NULL"
	checkProbes(t, "generic plan", explain("EXPLAIN (FORMAT JSON) EXECUTE fold_generic("+nulls+")", nil))
}

// checkProbes fails the test unless the JSON plan reads exposures and
// aliases by index probes only.
func checkProbes(t *testing.T, label string, plan []byte) {
	t.Helper()
	var tree []map[string]any
	if err := json.Unmarshal(plan, &tree); err != nil {
		t.Fatalf("%s: %v", label, err)
	}
	probes := map[string]int{}
	failed := false
	var walk func(n map[string]any)
	walk = func(n map[string]any) {
		if rel, _ := n["Relation Name"].(string); rel == "exposures" || rel == "aliases" {
			switch typ, _ := n["Node Type"].(string); typ {
			case "Index Scan", "Index Only Scan":
				probes[rel]++
			case "ModifyTable":
			default:
				t.Errorf("%s: %s read by %s, want index probes", label, rel, typ)
				failed = true
			}
		}
		sub, _ := n["Plans"].([]any)
		for _, s := range sub {
			if m, ok := s.(map[string]any); ok {
				walk(m)
			}
		}
	}
	walk(tree[0]["Plan"].(map[string]any))
	if probes["exposures"] == 0 || probes["aliases"] == 0 {
		t.Errorf("%s: index probes %v, want exposures and aliases probed", label, probes)
		failed = true
	}
	if failed {
		t.Logf("%s:\n%s", label, strings.TrimSpace(string(plan)))
	}
}
