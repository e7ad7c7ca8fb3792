package store_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/analysis"
)

// TestAggregateStagedOwners: a cycle stages each new track event that a
// metric reads under the units that own it (the unit itself for
// experiments on its type, and its identity root for customer
// experiments, through links and merged customers), leaves out events no
// metric reads and those of units it recomputes whole, and its folds add
// them as a recomputation would.
func TestAggregateStagedOwners(t *testing.T) {
	ctx := context.Background()
	db := newAggDB(t)
	// A ratio of an event to itself reads the event once per side: its
	// staged events must not be added twice.
	self := flywheel.Metric{Key: "self", Type: flywheel.MetricRatio, Numerator: "purchase", Denominator: "purchase", WindowHours: 72}
	self.Normalize()
	if _, err := db.CreateMetric(ctx, &self); err != nil {
		t.Fatal(err)
	}
	e := &flywheel.Experiment{Key: "agg-self", UnitType: "customer", Traffic: 1, Status: flywheel.StatusRunning,
		Variants: []flywheel.Variant{{Key: "control", Weight: 0.5}, {Key: "treatment", Weight: 0.5}},
		Metrics:  flywheel.MetricRefs{Primary: []string{"self"}}}
	e.Normalize()
	if _, err := db.CreateExperiment(ctx, e, 0, "test"); err != nil {
		t.Fatal(err)
	}
	at := aggBase.Add(time.Hour)
	ev := func(unitType, unit, name string) flywheel.Event {
		return flywheel.Event{ID: newID(), Type: flywheel.EventTrack, UnitType: unitType, UnitID: unit,
			Timestamp: at, ReceivedAt: aggBase, Name: name, Value: aggF(7)}
	}
	mustWrite(t, db,
		identify("device", "d1", "c1", aggBase.Add(-2*time.Hour)),
		identify("customer", "c1", "c2", aggBase.Add(-time.Hour)), // c1 merged into c2
		exposure("customer", "c2", "agg-cust", "control", aggBase, ""),
		exposure("customer", "c3", "agg-cust", "treatment", aggBase, ""),
		exposure("customer", "c3", "agg-self", "treatment", aggBase, ""),
		exposure("device", "d1", "agg-dev", "a", aggBase, ""),
		exposure("device", "d2", "agg-dev", "b", aggBase, ""),
	)
	aggregateAll(t, db)
	mustWrite(t, db,
		ev("device", "d1", "purchase"),   // d1's own, and its root c2's
		ev("device", "d2", "view"),       // no link: its own only
		ev("customer", "c1", "checkout"), // merged: c2's
		ev("customer", "c3", "purchase"),
		ev("customer", "c3", "signup"), // no metric reads it
		exposure("customer", "c4", "agg-cust", "control", aggBase, ""),
		ev("customer", "c4", "purchase"), // recomputed whole with its exposure
	)
	rep, err := db.Aggregate(ctx)
	if err != nil || rep.Skipped || rep.More {
		t.Fatalf("Aggregate = %+v, %v; want one cycle that takes the queue", rep, err)
	}
	if rep.Tracks != 5 {
		t.Errorf("the cycle counted %d track events that a metric reads, want 5", rep.Tracks)
	}
	rows, err := db.Pool().Query(ctx, `SELECT s.owner_type, s.event, k.owner, k.ts, k.value
		FROM agg_staged_tracks s, unnest(s.owners, s.ts, s.vals) AS k(owner, ts, value)
		WHERE s.cycle = (SELECT max(cycle) FROM agg_staged_cycles)`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var typ, event, owner string
		var ts time.Time
		var value *float64
		if err := rows.Scan(&typ, &event, &owner, &ts, &value); err != nil {
			t.Fatal(err)
		}
		if !ts.Equal(at) || value == nil || *value != 7 {
			t.Errorf("staged %s %s of %s at %v, value %v; want at %v, value 7", typ, event, owner, ts, value, at)
		}
		got = append(got, fmt.Sprintf("%s %s %s", typ, owner, event))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	want := []string{
		"customer c2 checkout",
		"customer c2 purchase",
		"customer c3 purchase",
		"device d1 purchase",
		"device d2 view",
	}
	if !slices.Equal(got, want) {
		t.Errorf("staged events:\n%q\nwant\n%q", got, want)
	}
	if n := queryInt(t, db, `SELECT events FROM agg_staged_cycles WHERE cycle = (SELECT max(cycle) FROM agg_staged_cycles)`); n != 5 {
		t.Errorf("agg_staged_cycles counts %d staged events, want 5", n)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM agg_defs WHERE metric <> '' AND folded_cycle <> (SELECT max(cycle) FROM agg_staged_cycles)`); n != 0 {
		t.Errorf("%d definitions have not folded the cycle", n)
	}
	for _, key := range []string{"agg-cust", "agg-dev", "agg-self"} {
		e, ms := aggExperiment(t, db, key)
		if err := db.VerifyAggregates(ctx, e, ms, analysis.Query{Now: aggNow}); err != nil {
			t.Errorf("%s: %v", key, err)
		}
	}
}
