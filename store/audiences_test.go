package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/assign"
)

// TestAudienceArchiveRacesReference runs, many times over, an archive of
// an audience concurrently with the creation of an experiment that
// references it: one of them must lose, so that no live experiment ever
// references an archived audience (whose condition would then change
// under it with no way to edit it).
func TestAudienceArchiveRacesReference(t *testing.T) {
	db := newDB(t)
	ctx := context.Background()
	for i := range 20 {
		key := fmt.Sprintf("aud-%d", i)
		if _, err := db.CreateAudience(ctx, &flywheel.Audience{Key: key, Name: "A", Condition: json.RawMessage(`{"country": "FR"}`)}, "test"); err != nil {
			t.Fatalf("CreateAudience: %v", err)
		}
		e := &flywheel.Experiment{Key: fmt.Sprintf("exp-%d", i), UnitType: "customer", Status: flywheel.StatusDraft, Traffic: 1,
			Variants:  []flywheel.Variant{{Key: "a", Weight: 0.5}, {Key: "b", Weight: 0.5}},
			Targeting: json.RawMessage(`{"$audience": "` + key + `"}`)}
		e.Normalize()
		var wg sync.WaitGroup
		var archiveErr, createErr error
		wg.Add(2)
		go func() { defer wg.Done(); _, archiveErr = db.ArchiveAudience(ctx, key, "test") }()
		go func() { defer wg.Done(); _, createErr = db.CreateExperiment(ctx, e, 0, "test") }()
		wg.Wait()
		if (archiveErr == nil) == (createErr == nil) {
			t.Fatalf("round %d: archive = %v, create = %v: want exactly one to succeed", i, archiveErr, createErr)
		}
		for _, err := range []error{archiveErr, createErr} {
			if err != nil {
				if c := flywheel.ErrorCode(err); c != flywheel.CodeConflict && c != flywheel.CodeInvalidArgument {
					t.Fatalf("round %d: refused with %v, want a conflict or invalid argument", i, err)
				}
			}
		}
	}
}

func TestUpdateAudienceNamesAffectedExperiments(t *testing.T) {
	db := newDB(t)
	ctx := context.Background()
	for _, a := range []flywheel.Audience{
		{Key: "base", Name: "Base", Condition: json.RawMessage(`{"ltv": {"$gte": 500}}`)},
		{Key: "outer", Name: "Outer", Condition: json.RawMessage(`{"$audience": "base", "country": "FR"}`)},
	} {
		if _, err := db.CreateAudience(ctx, &a, "test"); err != nil {
			t.Fatalf("CreateAudience(%s): %v", a.Key, err)
		}
	}
	mk := func(key, targeting string, start bool) {
		t.Helper()
		e := &flywheel.Experiment{Key: key, UnitType: "customer", Status: flywheel.StatusDraft, Traffic: 1,
			Variants: []flywheel.Variant{{Key: "a", Weight: 0.5}, {Key: "b", Weight: 0.5}}, Targeting: json.RawMessage(targeting)}
		e.Normalize()
		if _, err := db.CreateExperiment(ctx, e, 0, "test"); err != nil {
			t.Fatalf("CreateExperiment(%s): %v", key, err)
		}
		if start {
			if _, err := db.UpdateExperiment(ctx, key, "start", "test", func(e *flywheel.Experiment) error { e.Status = flywheel.StatusRunning; return nil }); err != nil {
				t.Fatal(err)
			}
		}
	}
	mk("direct", `{"$audience": "base"}`, true)
	mk("nested", `{"$or": [{"$audience": "outer"}, {"beta": true}]}`, true)
	mk("draft", `{"$audience": "base"}`, false)
	mk("other", `{"country": "DE"}`, true)
	rev, err := db.ConfigRevision(ctx)
	if err != nil {
		t.Fatal(err)
	}

	ch, err := db.UpdateAudience(ctx, "base", flywheel.AudiencePatch{Condition: json.RawMessage(`{"ltv": {"$gte": 400}}`)}, "test")
	if err != nil {
		t.Fatalf("UpdateAudience: %v", err)
	}
	if got := fmt.Sprint(ch.AffectedExperiments); got != "[direct nested]" {
		t.Errorf("AffectedExperiments = %s, want [direct nested]", got)
	}
	if after, _ := db.ConfigRevision(ctx); after <= rev {
		t.Errorf("ConfigRevision = %d after the change, want > %d", after, rev)
	}
	auds, err := db.AllAudiences(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := assign.ParseConditionWith(json.RawMessage(`{"$audience": "outer"}`), auds); err != nil {
		t.Errorf("stored audiences do not compile: %v", err)
	}

	// A cycle is refused and changes nothing.
	_, err = db.UpdateAudience(ctx, "base", flywheel.AudiencePatch{Condition: json.RawMessage(`{"$audience": "outer"}`)}, "test")
	var fe *flywheel.Error
	if !errors.As(err, &fe) || fe.Code != flywheel.CodeInvalidArgument || fe.Field != "condition.$audience" {
		t.Fatalf("UpdateAudience with a cycle = %v, want invalid_argument at condition.$audience", err)
	}
	got, err := db.FindAudienceByKey(ctx, "base")
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal(got.Condition, &v); err != nil || v["ltv"] == nil {
		t.Errorf("base after a refused change = %s, want the ltv condition", got.Condition)
	}
	h, err := db.AudienceHistory(ctx, "base", 0, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Items) != 2 || fmt.Sprint(h.Items[1].AffectedExperiments) != "[direct nested]" {
		t.Errorf("history = %+v, want create and one update naming direct and nested", h.Items)
	}

	// Creating an audience, or archiving an unused one, changes nothing an
	// SDK reads: the revision (and so every SDK's config) stays.
	rev, err = db.ConfigRevision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.CreateAudience(ctx, &flywheel.Audience{Key: "spare", Name: "Spare", Condition: json.RawMessage(`{}`)}, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ArchiveAudience(ctx, "spare", "test"); err != nil {
		t.Fatal(err)
	}
	if after, _ := db.ConfigRevision(ctx); after != rev {
		t.Errorf("ConfigRevision = %d after creating and archiving an unused audience, want %d", after, rev)
	}
}
