package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/store"
)

// holdAggLock takes the aggregation lock on a connection of its own, as a
// long aggregation cycle (the first build of a large experiment) does, and
// returns the function that releases it.
func holdAggLock(t *testing.T, db *store.DB) (release func()) {
	t.Helper()
	conn, err := db.Pool().Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(context.Background(), `SELECT pg_advisory_lock($1)`, store.AggregationLock); err != nil {
		t.Fatal(err)
	}
	released := false
	release = func() {
		if released {
			return
		}
		released = true
		if _, err := conn.Exec(context.Background(), `SELECT pg_advisory_unlock($1)`, store.AggregationLock); err != nil {
			t.Error(err)
		}
		conn.Release()
	}
	t.Cleanup(release)
	return release
}

// TestErasureDuringALongCycle: an erasure that cannot start within its
// wait (an aggregation cycle holds the lock) stays pending, erases nothing
// in part, and is carried out in full by RunPendingErasures once the cycle
// ends; the request then holds the counts and no id.
func TestErasureDuringALongCycle(t *testing.T) {
	db := newDB(t)
	ctx := context.Background()
	mustWrite(t, db,
		identify("device", "phone-e", "cust-e", t0),
		track("cust-e", "purchase", t0.Add(time.Minute)),
		exposure("customer", "cust-e", "checkout", "green", t0.Add(2*time.Minute), ""),
	)
	before := tableCounts(t, db)
	u := flywheel.UnitRef{UnitType: "customer", UnitID: "cust-e"}

	release := holdAggLock(t, db)
	st, err := db.RequestErasure(ctx, u, "alice", 200*time.Millisecond)
	if err != nil {
		t.Fatalf("RequestErasure while a cycle runs: %v", err)
	}
	if st.Status != flywheel.ErasurePending || st.Erased != nil || st.ID == "" {
		t.Fatalf("RequestErasure while a cycle runs = %+v, want pending with an id", st)
	}
	// A second request for the same unit (a retried click) queues too.
	st2, err := db.RequestErasure(ctx, u, "alice", 50*time.Millisecond)
	if err != nil || st2.Status != flywheel.ErasurePending {
		t.Fatalf("second RequestErasure = %+v, %v; want pending", st2, err)
	}
	if after := tableCounts(t, db); after["events"] != before["events"] || after["aliases"] != before["aliases"] {
		t.Errorf("a pending erasure changed data: %v -> %v", before, after)
	}
	if got, err := db.FindErasure(ctx, st.ID); err != nil || got.Status != flywheel.ErasurePending {
		t.Errorf("FindErasure(pending) = %+v, %v", got, err)
	}

	// The background loop waits for the cycle, then erases.
	type result struct {
		n   int
		err error
	}
	ran := make(chan result, 1)
	go func() {
		n, err := db.RunPendingErasures(ctx)
		ran <- result{n, err}
	}()
	select {
	case r := <-ran:
		t.Fatalf("RunPendingErasures returned while the cycle held the lock: %+v", r)
	case <-time.After(300 * time.Millisecond):
	}
	release()
	r := <-ran
	if r.err != nil || r.n != 2 {
		t.Fatalf("RunPendingErasures = %d, %v; want both requests done", r.n, r.err)
	}
	got, err := db.FindErasure(ctx, st.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := flywheel.Erasure{Units: 2, Events: 3, EventIDs: 3, Exposures: 1, Aliases: 1}
	if got.Status != flywheel.ErasureDone || got.DoneAt == nil || got.Erased == nil || *got.Erased != want {
		t.Errorf("FindErasure(done) = %+v (erased %+v), want done with %+v", got, got.Erased, want)
	}
	if again, err := db.FindErasure(ctx, st2.ID); err != nil || again.Erased == nil || *again.Erased != (flywheel.Erasure{Units: 1}) {
		t.Errorf("the repeated request = %+v, %v; want done, nothing left to erase", again, err)
	}
	if c := tableCounts(t, db); c["events"]+c["aliases"]+c["exposures"] != 0 {
		t.Errorf("rows left after the erasure: %v", c)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM erasure_requests WHERE unit_id IS NOT NULL OR erased::text ~ 'cust-e|phone-e'`); n != 0 {
		t.Errorf("%d done erasure requests still hold an id", n)
	}
	if _, err := db.FindErasure(ctx, "0190c1f2-7d3a-7c4e-9a1b-2f3e4d5c6b7a"); flywheel.ErrorCode(err) != flywheel.CodeNotFound {
		t.Errorf("FindErasure(unknown) = %v, want not found", err)
	}
	if _, err := db.FindErasure(ctx, "not-a-uuid"); flywheel.ErrorCode(err) != flywheel.CodeNotFound {
		t.Errorf("FindErasure(not a uuid) = %v, want not found", err)
	}
}
