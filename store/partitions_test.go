package store

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// TestVisibleEventsEnd follows the bound a cycle puts on its history's
// event lookups: the end of the latest daily partition with an event its
// snapshot sees, +infinity once the default partition holds one, and
// -infinity while no partition does.
func TestVisibleEventsEnd(t *testing.T) {
	ctx := context.Background()
	db, conn := openWithConn(t)
	day := time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)
	if _, err := db.EnsurePartitions(ctx, day, 2, 3); err != nil {
		t.Fatal(err)
	}
	n := 0
	insert := func(ts time.Time) {
		t.Helper()
		n++
		if _, err := db.pool.Exec(ctx, `INSERT INTO events (unit_type, unit_id, id, type, ts, received_at, event)
			VALUES ('customer', 'c1', gen_random_uuid(), 'track', $1, $1, 'purchase')`, ts); err != nil {
			t.Fatalf("event %d: %v", n, err)
		}
	}
	// end reads the bound in a repeatable-read transaction, as a cycle
	// does; during, if set, runs after its snapshot is taken.
	end := func(during func()) pgtype.Timestamptz {
		t.Helper()
		var got pgtype.Timestamptz
		err := pgx.BeginTxFunc(ctx, conn, pgx.TxOptions{IsoLevel: pgx.RepeatableRead}, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT 1`); err != nil { // the snapshot
				return err
			}
			if during != nil {
				during()
			}
			var err error
			got, err = visibleEventsEnd(ctx, tx)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	at := func(tm time.Time) pgtype.Timestamptz { return pgtype.Timestamptz{Time: tm, Valid: true} }
	same := func(a, b pgtype.Timestamptz) bool {
		return a.Valid == b.Valid && a.InfinityModifier == b.InfinityModifier && a.Time.Equal(b.Time)
	}
	for _, step := range []struct {
		name   string
		before func()
		during func()
		want   pgtype.Timestamptz
	}{
		{"no event", nil, nil, pgtype.Timestamptz{InfinityModifier: pgtype.NegativeInfinity, Valid: true}},
		{"an event on the first day", func() { insert(day.Add(-47 * time.Hour)) }, nil, at(day.Add(-24 * time.Hour))},
		{"an event today", func() { insert(day.Add(10 * time.Hour)) }, nil, at(day.Add(24 * time.Hour))},
		{"an event after the snapshot", nil, func() { insert(day.Add(50 * time.Hour)) }, at(day.Add(24 * time.Hour))},
		{"that event seen", nil, nil, at(day.Add(72 * time.Hour))},
		{"an event in the default partition", func() { insert(day.AddDate(-1, 0, 0)) }, nil, pgtype.Timestamptz{InfinityModifier: pgtype.Infinity, Valid: true}},
	} {
		if step.before != nil {
			step.before()
		}
		if got := end(step.during); !same(got, step.want) {
			t.Errorf("%s: end %v (%v), want %v (%v)", step.name, got.Time, got.InfinityModifier, step.want.Time, step.want.InfinityModifier)
		}
	}
}
