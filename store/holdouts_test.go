package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/store"
)

func createTestExperiment(tb testing.TB, db *store.DB, key string) {
	tb.Helper()
	e := &flywheel.Experiment{Key: key, UnitType: "customer", Status: flywheel.StatusDraft, Traffic: 1,
		Variants: []flywheel.Variant{{Key: "a", Weight: 0.5}, {Key: "b", Weight: 0.5}}}
	e.Normalize()
	if _, err := db.CreateExperiment(context.Background(), e, 0, "test"); err != nil {
		tb.Fatalf("CreateExperiment(%s): %v", key, err)
	}
}

func anyMetric(string) bool { return true }

// TestHoldoutStore: a refused create stores nothing and leaves the
// revision; pages follow the cursor; an unchanged update writes nothing;
// a change is audited and moves the revision; an experiment listed before
// it was archived may stay listed, a new one may not; archived holdouts
// leave LiveHoldouts.
func TestHoldoutStore(t *testing.T) {
	db := newDB(t)
	ctx := context.Background()
	createTestExperiment(t, db, "e1")
	createTestExperiment(t, db, "e2")
	rev := func() int64 {
		r, err := db.ConfigRevision(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	h := func(key string, exps ...string) *flywheel.Holdout {
		return &flywheel.Holdout{Key: key, Name: "H " + key, UnitType: "customer", Fraction: 0.05, Experiments: exps}
	}

	before := rev()
	if _, err := db.CreateHoldout(ctx, h("bad", "e1", "missing"), anyMetric, "test"); flywheel.ErrorCode(err) != flywheel.CodeInvalidArgument {
		t.Fatalf("CreateHoldout listing a missing experiment = %v, want invalid_argument", err)
	}
	if r := rev(); r != before {
		t.Errorf("a refused create moved the revision from %d to %d", before, r)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM holdouts`); n != 0 {
		t.Errorf("a refused create stored %d holdouts", n)
	}

	for _, k := range []string{"h1", "h2", "h3"} {
		got, err := db.CreateHoldout(ctx, h(k, "e1"), anyMetric, "test")
		if err != nil {
			t.Fatalf("CreateHoldout(%s): %v", k, err)
		}
		if got.Status != flywheel.StatusDraft || got.Revision == 0 || got.CreatedAt.IsZero() {
			t.Errorf("created %+v: want a draft with a revision and a creation time", got)
		}
	}
	if _, err := db.CreateHoldout(ctx, h("h1", "e1"), anyMetric, "test"); flywheel.ErrorCode(err) != flywheel.CodeConflict {
		t.Errorf("a second h1 = %v, want conflict", err)
	}
	var keys []string
	cursor := ""
	for pages := 0; ; pages++ {
		page, err := db.ListHoldouts(ctx, flywheel.HoldoutFilter{Limit: 2, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range page.Items {
			keys = append(keys, x.Key)
		}
		if cursor = page.NextCursor; cursor == "" || pages > 3 {
			break
		}
	}
	if fmt.Sprint(keys) != "[h1 h2 h3]" {
		t.Errorf("pages of 2 = %v, want [h1 h2 h3]", keys)
	}
	if _, err := db.ListHoldouts(ctx, flywheel.HoldoutFilter{Cursor: "!!"}); flywheel.ErrorCode(err) != flywheel.CodeInvalidArgument {
		t.Errorf("a bad cursor = %v, want invalid_argument", err)
	}

	before = rev()
	same, err := db.UpdateHoldout(ctx, "h1", "update", "test", func(x *flywheel.Holdout) error { x.Name = "H h1"; return nil }, anyMetric)
	if err != nil || same.Name != "H h1" {
		t.Fatalf("unchanged update = %v, %v", same, err)
	}
	if r := rev(); r != before {
		t.Errorf("an unchanged update moved the revision from %d to %d", before, r)
	}
	changed, err := db.UpdateHoldout(ctx, "h1", "update", "alice", func(x *flywheel.Holdout) error {
		x.Fraction, x.Experiments = 0.08, []string{"e1", "e2"}
		return nil
	}, anyMetric)
	if err != nil {
		t.Fatal(err)
	}
	if r := rev(); r <= before || changed.Revision != r {
		t.Errorf("a change: revision %d (holdout says %d), was %d: want it moved", r, changed.Revision, before)
	}
	hist, err := db.HoldoutHistory(ctx, "h1", 10, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(hist.Items) != 2 || hist.Items[1].Actor != "alice" || hist.Items[1].Changes["fraction"].To != 0.08 || hist.Items[1].Changes["experiments"].To == nil {
		t.Errorf("history = %+v, want create then alice's change of fraction and experiments", hist.Items)
	}

	// e2 archived: h1 keeps listing it, h2 may not add it.
	if _, err := db.UpdateExperiment(ctx, "e2", "archive", "test", func(e *flywheel.Experiment) error { return e.Archive(time.Now()) }); err != nil {
		t.Fatal(err)
	}
	if _, err := db.UpdateHoldout(ctx, "h1", "update", "test", func(x *flywheel.Holdout) error { x.Name = "renamed"; return nil }, anyMetric); err != nil {
		t.Errorf("renaming a holdout that lists an experiment archived since = %v, want nil", err)
	}
	_, err = db.UpdateHoldout(ctx, "h2", "update", "test", func(x *flywheel.Holdout) error { x.Experiments = []string{"e1", "e2"}; return nil }, anyMetric)
	if fe, ok := err.(*flywheel.Error); !ok || fe.Field != "experiments[1]" {
		t.Errorf("adding an archived experiment = %v, want invalid_argument on experiments[1]", err)
	}
	if _, err := db.UpdateHoldout(ctx, "nope", "update", "test", func(*flywheel.Holdout) error { return nil }, anyMetric); flywheel.ErrorCode(err) != flywheel.CodeNotFound {
		t.Errorf("updating an unknown holdout = %v, want not_found", err)
	}

	if _, err := db.UpdateHoldout(ctx, "h3", "archive", "test", func(x *flywheel.Holdout) error { return x.Archive(time.Now()) }, anyMetric); err != nil {
		t.Fatal(err)
	}
	live, err := db.LiveHoldouts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(live) != 2 || live[0].Key != "h1" || live[1].Key != "h2" {
		t.Errorf("LiveHoldouts = %v, want h1 and h2", live)
	}
}
