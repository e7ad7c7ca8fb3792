package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/flywheel-oss/flywheel"
)

// TestListenConfig: a committed change is announced with its revision; a
// write that fails (and rolls back) announces nothing.
func TestListenConfig(t *testing.T) {
	db := newDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // guards a hung test only
	defer cancel()
	mk := func(key string) error {
		e := &flywheel.Experiment{Key: key, UnitType: "customer", Status: flywheel.StatusDraft, Traffic: 1,
			Variants: []flywheel.Variant{{Key: "a", Weight: 0.5}, {Key: "b", Weight: 0.5}}}
		e.Normalize()
		_, err := db.CreateExperiment(ctx, e, 0, "test")
		return err
	}
	if err := mk("first"); err != nil {
		t.Fatal(err)
	}
	before, err := db.ConfigRevision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ready, revs := make(chan struct{}), make(chan int64, 10)
	lctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- db.ListenConfig(lctx, func() { close(ready) }, func(rev int64) { revs <- rev }) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("ListenConfig: %v", err)
	}
	if err := mk("first"); flywheel.ErrorCode(err) != flywheel.CodeConflict {
		t.Fatalf("duplicate create = %v, want a conflict", err)
	}
	if err := mk("second"); err != nil {
		t.Fatal(err)
	}
	if got := <-revs; got != before+1 {
		t.Errorf("first announced revision = %d, want %d (the refused write announces nothing)", got, before+1)
	}
	stop()
	if err := <-done; err != context.Canceled {
		t.Errorf("ListenConfig after cancel = %v, want context.Canceled", err)
	}
}
