package store_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/store"
)

// TestLinkFilter checks the filter of linked ids alone: every id added is
// held (a missing one would lose its events' root), and ids never added
// mostly are not, at its capacity (twice the ids it was sized for).
func TestLinkFilter(t *testing.T) {
	f := store.NewLinkFilterForTest(50_000)
	for i := range 100_000 {
		f.Add("device", fmt.Sprintf("d-%d", i))
	}
	for i := range 100_000 {
		if !f.May("device", fmt.Sprintf("d-%d", i)) {
			t.Fatalf("d-%d was added and is not held", i)
		}
	}
	false1 := 0
	for i := range 100_000 {
		if f.May("device", fmt.Sprintf("x-%d", i)) {
			false1++
		}
		if f.May("customer", fmt.Sprintf("d-%d", i)) { // the same id, another type
			false1++
		}
	}
	if false1 > 2_000 { // 1 % of 200,000; the filter is sized for about 0.1 %
		t.Errorf("%d of 200,000 ids never added are held", false1)
	}
}

// TestAggregateLinkFilter follows devices linked to a customer, and a
// customer merged into it, while the cycles resolve track owners through
// the filter of linked ids: a link taken by this process's cycle, and one
// taken by another process's cycle (this process must read the links
// again). After each step the aggregates must equal a recomputation, and
// the filter must skip ids never linked.
func TestAggregateLinkFilter(t *testing.T) {
	dbs := twoProcesses(t)
	createAggMetrics(t, dbs[0])
	createAggExperiments(t, dbs[0], "")
	r := rand.New(rand.NewPCG(17, 18))
	hour := 10
	buy := func(unitType, unit string) flywheel.Event {
		e := track(unit, "purchase", aggBase.Add(time.Duration(hour)*time.Hour))
		e.UnitType, e.Value = unitType, aggF(float64(hour))
		hour++
		return e
	}
	step := func(db *store.DB, label string, events ...flywheel.Event) {
		t.Helper()
		mustWrite(t, db, events...)
		aggregateAll(t, db)
		verifyAggregates(t, db, r, label, "agg-cust", "agg-dev")
	}
	step(dbs[0], "exposed", exposure("customer", "lc1", "agg-cust", "treatment", aggBase.Add(time.Hour), ""),
		exposure("customer", "lc2", "agg-cust", "control", aggBase.Add(time.Hour), ""),
		exposure("customer", "lc3", "agg-cust", "control", aggBase.Add(time.Hour), ""))
	step(dbs[0], "tracks before any link", buy("device", "ld1"), buy("device", "ld2"), buy("customer", "lc3"))
	if store.LinkFilterMayForTest(dbs[0], "customer", "lc3") || store.LinkFilterMayForTest(dbs[0], "device", "ld1") {
		t.Error("the filter holds ids with no link: it looks every id up, and the test does not test it")
	}
	// This process's cycle takes the link: ld1's tracks go to lc1.
	step(dbs[0], "ld1 linked here", identify("device", "ld1", "lc1", aggBase.Add(2*time.Hour)))
	step(dbs[0], "ld1's tracks, linked here", buy("device", "ld1"), buy("device", "ld1"))
	// The other process's cycle takes the link: this one's filter lacks
	// ld2 until it reads the links again.
	step(dbs[1], "ld2 linked by the other process", identify("device", "ld2", "lc1", aggBase.Add(3*time.Hour)))
	step(dbs[0], "ld2's tracks, linked by the other process", buy("device", "ld2"), buy("customer", "lc3"))
	// A customer merged into another: lc2's tracks go to lc1 now, and
	// a device linked to lc2 follows.
	step(dbs[0], "ld3 linked to lc2", identify("device", "ld3", "lc2", aggBase.Add(4*time.Hour)), buy("device", "ld3"))
	step(dbs[0], "lc2 merged into lc1", identify("customer", "lc2", "lc1", aggBase.Add(5*time.Hour)))
	step(dbs[0], "tracks after the merge", buy("customer", "lc2"), buy("device", "ld3"), buy("device", "ld1"))
	step(dbs[1], "the other process's tracks", buy("customer", "lc2"), buy("device", "ld2"))
	step(dbs[0], "this process's again", buy("device", "ld3"), buy("device", "ld2"), buy("customer", "lc3"))
	for _, id := range [][2]string{{"device", "ld1"}, {"device", "ld2"}, {"device", "ld3"}, {"customer", "lc2"}} {
		if !store.LinkFilterMayForTest(dbs[0], id[0], id[1]) {
			t.Errorf("the filter does not hold %s %s, which has a link", id[0], id[1])
		}
	}
	if store.LinkFilterMayForTest(dbs[0], "customer", "lc3") {
		t.Error("the filter holds customer lc3, never linked")
	}
	// lc1 owns the purchases of ld1, ld2, ld3 and lc2 since their links.
	var n float64
	if err := dbs[0].Pool().QueryRow(context.Background(), `SELECT y FROM agg_units
		WHERE experiment = 'agg-cust' AND metric = 'revenue' AND unit_id = 'lc1'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Error("lc1's revenue is 0: the linked ids' purchases are not its")
	}
}
