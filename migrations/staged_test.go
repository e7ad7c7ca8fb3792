package migrations_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flywheel-oss/flywheel/internal/pgtest"
	"github.com/flywheel-oss/flywheel/migrations"
)

// stagedRow is one staged track event, as agg_staged held it before 0022.
type stagedRow struct {
	Cycle     int64
	OwnerType string
	Owner     string
	TS        time.Time
	Event     string
	Value     *float64
}

// TestStagedTracksMigrationCarriesRows stages track events the way servers
// before 0022 did (a row each in agg_staged: two cycles, two owner types,
// two events, values and none, a repeated owner), migrates up to 0022 and
// down again: a server stopped with cycles staged but not folded must find
// every event in the new arrays, each owner beside its own time and value,
// and a rollback must give back the same rows.
func TestStagedTracksMigrationCarriesRows(t *testing.T) {
	ctx := context.Background()
	url := pgtest.NewEmptyDatabase(t)
	const arrays = 22
	for {
		if err := migrations.UpByOne(ctx, url); err != nil {
			t.Fatal(err)
		}
		if version(t, url) == arrays-1 {
			break
		}
	}
	ts := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	val := func(v float64) *float64 { return &v }
	staged := []stagedRow{
		{1, "customer", "c-1", ts, "purchase", val(12.5)},
		{1, "customer", "c-1", ts.Add(time.Second), "purchase", nil},
		{1, "customer", "c-2", ts.Add(2 * time.Second), "purchase", val(-3)},
		{1, "customer", "c-2", ts.Add(3 * time.Second), "signup", nil},
		{1, "device", "d-9", ts.Add(4 * time.Second), "purchase", val(0)},
		{2, "customer", "c-1", ts.Add(5 * time.Second), "purchase", val(7.25)},
		{2, "customer", "c-3", ts.Add(-48 * time.Hour), "purchase", val(1e300)},
	}
	conn := pgtest.Connect(t, url)
	defer conn.Close(ctx)
	for _, r := range staged {
		if _, err := conn.Exec(ctx, `INSERT INTO agg_staged (cycle, owner_type, owner, ts, event, value) VALUES ($1, $2, $3, $4, $5, $6)`,
			r.Cycle, r.OwnerType, r.Owner, r.TS, r.Event, r.Value); err != nil {
			t.Fatal(err)
		}
	}
	read := func(query string) []stagedRow {
		t.Helper()
		rows, err := conn.Query(ctx, query)
		if err != nil {
			t.Fatal(err)
		}
		var out []stagedRow
		for rows.Next() {
			var r stagedRow
			if err := rows.Scan(&r.Cycle, &r.OwnerType, &r.Owner, &r.TS, &r.Event, &r.Value); err != nil {
				t.Fatal(err)
			}
			r.TS = r.TS.UTC()
			out = append(out, r)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		slices.SortFunc(out, func(a, b stagedRow) int { return a.TS.Compare(b.TS) }) // distinct in staged
		return out
	}
	want := read(`SELECT cycle, owner_type, owner, ts, event, value FROM agg_staged`)
	if len(want) != len(staged) {
		t.Fatalf("staged %d rows, read back %d", len(staged), len(want))
	}

	if err := migrations.UpByOne(ctx, url); err != nil {
		t.Fatal(err)
	}
	if v := version(t, url); v != arrays {
		t.Fatalf("at version %d, want %d", v, arrays)
	}
	var chunks int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM agg_staged_tracks`).Scan(&chunks); err != nil {
		t.Fatal(err)
	}
	if chunks != 4 { // (1, customer, purchase), (1, customer, signup), (1, device, purchase), (2, customer, purchase)
		t.Errorf("0022 wrote %d chunks, want one per cycle, owner type and event: 4", chunks)
	}
	got := read(`SELECT s.cycle, s.owner_type, k.owner, k.ts, s.event, k.value
		FROM agg_staged_tracks s, unnest(s.owners, s.ts, s.vals) AS k(owner, ts, value)`)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("staged events after 0022 (-before +after):\n%s", diff)
	}

	if err := migrations.DownByOne(ctx, url); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, read(`SELECT cycle, owner_type, owner, ts, event, value FROM agg_staged`)); diff != "" {
		t.Errorf("agg_staged after 0022's rollback (-before +after):\n%s", diff)
	}
}
