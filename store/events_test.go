package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/ingest"
	"github.com/flywheel-oss/flywheel/internal/pgtest"
	"github.com/flywheel-oss/flywheel/live"
	"github.com/flywheel-oss/flywheel/store"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// newDB opens a fresh, migrated database for one test.
func newDB(tb testing.TB) *store.DB {
	tb.Helper()
	return openDB(tb, pgtest.NewDatabase(tb))
}

// openDB opens a store on the database at url (another process's handle,
// when the test has one open there already), closed when the test ends.
func openDB(tb testing.TB, url string) *store.DB {
	tb.Helper()
	db, err := store.Open(context.Background(), url, store.Options{MaxConns: 10})
	if err != nil {
		tb.Fatalf("store.Open: %v", err)
	}
	tb.Cleanup(db.Close)
	return db
}

// queryInt runs a query that returns one integer.
func queryInt(tb testing.TB, db *store.DB, sql string, args ...any) int64 {
	tb.Helper()
	var n int64
	if err := db.Pool().QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
	return n
}

func queryStrings(tb testing.TB, db *store.DB, sql string, args ...any) []string {
	tb.Helper()
	rows, err := db.Pool().Query(context.Background(), sql, args...)
	if err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			tb.Fatalf("%s: %v", sql, err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
	return out
}

var t0 = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

func newID() [16]byte { return uuid.Must(uuid.NewV7()) }

func track(unit, name string, ts time.Time) flywheel.Event {
	return flywheel.Event{ID: newID(), Type: flywheel.EventTrack, UnitType: "customer", UnitID: unit,
		Timestamp: ts, ReceivedAt: ts, Name: name}
}

func exposure(unitType, unit, exp, variant string, ts time.Time, attrs string) flywheel.Event {
	e := flywheel.Event{ID: newID(), Type: flywheel.EventExposure, UnitType: unitType, UnitID: unit,
		Timestamp: ts, ReceivedAt: ts, Experiment: exp, Variant: variant}
	if attrs != "" {
		e.Attributes = json.RawMessage(attrs)
	}
	return e
}

func identify(unitType, unit, customer string, ts time.Time) flywheel.Event {
	return flywheel.Event{ID: newID(), Type: flywheel.EventIdentify, UnitType: unitType, UnitID: unit,
		Timestamp: ts, ReceivedAt: ts, CustomerID: customer}
}

func mustWrite(tb testing.TB, db *store.DB, events ...flywheel.Event) []int {
	tb.Helper()
	acc, err := db.WriteEvents(context.Background(), events)
	if err != nil {
		tb.Fatalf("WriteEvents: %v", err)
	}
	sort.Ints(acc)
	return acc
}

func TestWriteEventsExactlyOnce(t *testing.T) {
	db := newDB(t)
	a, b, c := track("u1", "first", t0), track("u1", "b", t0), track("u2", "c", t0)
	again := a
	again.Name = "second" // same id, sent again in the same group
	if got := mustWrite(t, db, a, b, again, c); !slices.Equal(got, []int{0, 1, 3}) {
		t.Fatalf("WriteEvents accepted %v, want [0 1 3]", got)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM events`); n != 3 {
		t.Errorf("events = %d, want 3", n)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM event_ids`); n != 3 {
		t.Errorf("event_ids = %d, want 3", n)
	}
	if got := queryStrings(t, db, `SELECT event FROM events WHERE id = $1`, uuid.UUID(a.ID)); !slices.Equal(got, []string{"first"}) {
		t.Errorf("stored event of the repeated id = %v, want [first] (the first in the group wins)", got)
	}

	// A retry of the whole request, with one new event: only that one is new.
	d := track("u3", "d", t0)
	if got := mustWrite(t, db, c, a, b, d); !slices.Equal(got, []int{3}) {
		t.Errorf("retry accepted %v, want [3]", got)
	}
	if got := mustWrite(t, db, a, b, c, d); len(got) != 0 {
		t.Errorf("second retry accepted %v, want none", got)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM events`); n != 4 {
		t.Errorf("events = %d, want 4", n)
	}
	if acc, err := db.WriteEvents(context.Background(), nil); acc != nil || err != nil {
		t.Errorf("WriteEvents(nil) = %v, %v; want nil, nil", acc, err)
	}

	// Every column survives the trip.
	v := 59.9
	full := exposure("customer", "u9", "checkout-button", "green", t0.Add(time.Second), `{"device": "mobile", "n": 12345678901234567890}`)
	tr := track("u9", "purchase", t0.Add(2*time.Second))
	tr.Value, tr.Properties = &v, json.RawMessage(`{"sku": "A-1"}`)
	tr.ReceivedAt = t0.Add(3 * time.Second)
	id := identify("device", "d9", "u9", t0.Add(4*time.Second))
	mustWrite(t, db, full, tr, id)
	var (
		typ, exp, variant, name, customer *string
		value                             *float64
		attrs, props                      *string
		ts, recv                          time.Time
	)
	err := db.Pool().QueryRow(context.Background(), `SELECT type, experiment, variant, event, customer_id, value,
		attributes::text, properties::text, ts, received_at FROM events WHERE id = $1`, uuid.UUID(tr.ID)).
		Scan(&typ, &exp, &variant, &name, &customer, &value, &attrs, &props, &ts, &recv)
	if err != nil {
		t.Fatal(err)
	}
	if *typ != "track" || exp != nil || variant != nil || *name != "purchase" || customer != nil || *value != 59.9 ||
		attrs != nil || *props != `{"sku": "A-1"}` || !ts.Equal(tr.Timestamp) || !recv.Equal(tr.ReceivedAt) {
		t.Errorf("stored track = %v %v %v %v %v %v %v %v %v %v", *typ, exp, variant, *name, customer, *value, attrs, *props, ts, recv)
	}
	if got := queryStrings(t, db, `SELECT attributes->>'n' FROM events WHERE id = $1`, uuid.UUID(full.ID)); !slices.Equal(got, []string{"12345678901234567890"}) {
		t.Errorf("exposure attributes n = %v, want the exact integer", got)
	}
	if got := queryStrings(t, db, `SELECT customer_id FROM events WHERE id = $1`, uuid.UUID(id.ID)); !slices.Equal(got, []string{"u9"}) {
		t.Errorf("identify customer_id = %v, want [u9]", got)
	}
}

// TestWriteEventsConcurrentOverlap: groups of overlapping ids written at
// once from many sessions store each id exactly once, and exactly one
// writer is told it was new.
func TestWriteEventsConcurrentOverlap(t *testing.T) {
	db := newDB(t)
	const pool, writers, rounds, size = 600, 8, 6, 150
	all := make([]flywheel.Event, pool)
	for i := range all {
		switch i % 3 {
		case 0:
			all[i] = track(fmt.Sprintf("u%d", i%50), "purchase", t0.Add(time.Duration(i)*time.Second))
		case 1:
			all[i] = exposure("customer", fmt.Sprintf("u%d", i%50), "exp", []string{"a", "b"}[i%2], t0.Add(time.Duration(i)*time.Second), `{"i": 1}`)
		default:
			all[i] = identify("device", fmt.Sprintf("d%d", i%40), fmt.Sprintf("u%d", i%50), t0.Add(time.Duration(i)*time.Second))
		}
	}
	var (
		mu       sync.Mutex
		accepted = map[[16]byte]int{}
		sent     = map[[16]byte]bool{}
		retries  int
	)
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 7))
			for range rounds {
				batch := make([]flywheel.Event, size)
				for i := range batch {
					batch[i] = all[r.IntN(pool)] // repeats within a batch too
				}
				var acc []int
				var err error
				for attempt := 0; ; attempt++ {
					acc, err = db.WriteEvents(context.Background(), batch)
					if err == nil || !flywheel.Retryable(err) || attempt == 5 {
						break
					}
					mu.Lock()
					retries++ // a deadlock would show here
					mu.Unlock()
				}
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				for _, e := range batch {
					sent[e.ID] = true
				}
				for _, p := range acc {
					accepted[batch[p].ID]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("WriteEvents: %v", err)
	}
	if retries > 0 {
		t.Logf("%d retryable errors (deadlocks or serialization failures)", retries)
	}
	for id := range sent {
		if n := accepted[id]; n != 1 {
			t.Errorf("id %s accepted %d times, want 1", uuid.UUID(id), n)
		}
	}
	if len(accepted) != len(sent) {
		t.Errorf("%d ids accepted, %d sent", len(accepted), len(sent))
	}
	if n := queryInt(t, db, `SELECT count(*) FROM (SELECT id FROM events GROUP BY id HAVING count(*) > 1) d`); n != 0 {
		t.Errorf("%d ids stored more than once in events", n)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM events`); n != int64(len(sent)) {
		t.Errorf("events = %d, want %d", n, len(sent))
	}
	if n := queryInt(t, db, `SELECT count(*) FROM event_ids`); n != int64(len(sent)) {
		t.Errorf("event_ids = %d, want %d", n, len(sent))
	}
	// Each exposure is stored once.
	var wantExposures int64
	for i, e := range all {
		if i%3 == 1 && sent[e.ID] {
			wantExposures++
		}
	}
	if n := queryInt(t, db, `SELECT count(*) FROM events WHERE type = 'exposure'`); n != wantExposures {
		t.Errorf("exposure events = %d, want %d", n, wantExposures)
	}
}

type exposureRow struct {
	Variant    string
	First      time.Time
	Attributes string
	Multiple   bool
}

func readExposure(tb testing.TB, db *store.DB, exp, unit string) exposureRow {
	tb.Helper()
	var r exposureRow
	err := db.Pool().QueryRow(context.Background(), `SELECT variant, first_ts, coalesce(attributes::text, ''), multiple
		FROM exposures WHERE experiment = $1 AND unit_id = $2`, exp, unit).
		Scan(&r.Variant, &r.First, &r.Attributes, &r.Multiple)
	if err != nil {
		tb.Fatalf("exposure %s/%s: %v", exp, unit, err)
	}
	r.First = r.First.UTC()
	return r
}

func TestExposures(t *testing.T) {
	db := newDB(t)
	t1, t2, t3 := t0, t0.Add(time.Hour), t0.Add(2*time.Hour)

	// The earlier exposure arrives second: it still defines the row.
	late := exposure("customer", "late-first", "exp", "green", t2, `{"seg": "late"}`)
	mustWrite(t, db, late)
	mustWrite(t, db, exposure("customer", "late-first", "exp", "control", t1, `{"seg": "early"}`))
	// Exposed again to the same variant, earlier and later: only the
	// earlier one changes the row.
	mustWrite(t, db, exposure("customer", "same", "exp", "green", t2, `{"seg": "b"}`))
	mustWrite(t, db, exposure("customer", "same", "exp", "green", t1, `{"seg": "a"}`), exposure("customer", "same", "exp", "green", t3, `{"seg": "c"}`))
	// Two variants in one group, the later one first in the group.
	mustWrite(t, db, exposure("customer", "group", "exp", "green", t3, ""), exposure("customer", "group", "exp", "control", t1, `{"seg": "g"}`))
	// A later exposure to another variant than the first one.
	mustWrite(t, db, exposure("customer", "switch", "exp", "control", t1, ""))
	mustWrite(t, db, exposure("customer", "switch", "exp", "green", t3, ""))
	// A repeated id is not counted.
	once := exposure("customer", "once", "exp", "control", t1, "")
	mustWrite(t, db, once)
	mustWrite(t, db, once, once)
	// The same unit in another experiment is another row.
	mustWrite(t, db, exposure("customer", "once", "other", "b", t2, ""))

	tests := []struct {
		exp, unit string
		want      exposureRow
	}{
		{"exp", "late-first", exposureRow{"control", t1, `{"seg": "early"}`, true}},
		{"exp", "same", exposureRow{"green", t1, `{"seg": "a"}`, false}},
		{"exp", "group", exposureRow{"control", t1, `{"seg": "g"}`, true}},
		{"exp", "switch", exposureRow{"control", t1, ``, true}},
		{"exp", "once", exposureRow{"control", t1, ``, false}},
		{"other", "once", exposureRow{"b", t2, ``, false}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, readExposure(t, db, tt.exp, tt.unit)); diff != "" {
			t.Errorf("exposure %s/%s mismatch (-want +got):\n%s", tt.exp, tt.unit, diff)
		}
	}
	if n := queryInt(t, db, `SELECT count(*) FROM exposures`); n != int64(len(tests)) {
		t.Errorf("exposures rows = %d, want %d", n, len(tests))
	}
}

func TestAliasesEarliestWins(t *testing.T) {
	db := newDB(t)
	t1, t2, t3 := t0, t0.Add(time.Hour), t0.Add(2*time.Hour)
	mustWrite(t, db, identify("device", "d1", "late", t2))
	mustWrite(t, db, identify("device", "d1", "early", t1))
	mustWrite(t, db, identify("device", "d1", "later", t3))
	// In one group, in reverse order.
	mustWrite(t, db, identify("device", "d2", "b", t3), identify("device", "d2", "a", t1), identify("device", "d2", "c", t2))
	// The same id under another unit type is another unit.
	mustWrite(t, db, identify("account", "d1", "acct-owner", t3))

	got := map[string]string{}
	rows, err := db.Pool().Query(context.Background(), `SELECT unit_type || '/' || unit_id, customer_id || '@' || to_char(ts AT TIME ZONE 'UTC', 'HH24:MI') FROM aliases`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			t.Fatal(err)
		}
		got[k] = v
	}
	want := map[string]string{"device/d1": "early@10:00", "device/d2": "a@10:00", "account/d1": "acct-owner@12:00"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("aliases mismatch (-want +got):\n%s", diff)
	}
}

func partitionOf(tb testing.TB, db *store.DB, id [16]byte) string {
	tb.Helper()
	got := queryStrings(tb, db, `SELECT tableoid::regclass::text FROM events WHERE id = $1`, uuid.UUID(id))
	if len(got) != 1 {
		tb.Fatalf("event %s stored %d times", uuid.UUID(id), len(got))
	}
	return got[0]
}

func TestPartitions(t *testing.T) {
	db := newDB(t)
	ctx := context.Background()
	now := time.Date(2026, 11, 23, 15, 30, 0, 0, time.UTC)
	day := func(d int) time.Time { return time.Date(2026, 11, 23+d, 0, 0, 0, 0, time.UTC) }
	name := func(d int) string { return "events_p" + day(d).Format("20060102") }

	// An event for a day that has no partition yet lands in the default one,
	// and that day's partition is then left out rather than failing.
	early := track("u", "early", day(3).Add(time.Hour))
	mustWrite(t, db, early)

	created, err := db.EnsurePartitions(ctx, now, 2, 4)
	if err != nil {
		t.Fatalf("EnsurePartitions: %v", err)
	}
	want := []string{name(-2), name(-1), name(0), name(1), name(2), name(4)}
	if !slices.Equal(created, want) {
		t.Errorf("EnsurePartitions created %v, want %v", created, want)
	}
	if again, err := db.EnsurePartitions(ctx, now, 2, 4); err != nil || len(again) != 0 {
		t.Errorf("second EnsurePartitions = %v, %v; want nothing new", again, err)
	}
	// Bounds are [midnight, next midnight) UTC.
	var bounds string
	err = db.Pool().QueryRow(ctx, `SELECT set_config('TimeZone', 'UTC', true), pg_get_expr(c.relpartbound, c.oid)
		FROM pg_class c WHERE relname = $1`, name(0)).Scan(new(string), &bounds)
	if err != nil {
		t.Fatal(err)
	}
	if want := "FOR VALUES FROM ('2026-11-23 00:00:00+00') TO ('2026-11-24 00:00:00+00')"; bounds != want {
		t.Errorf("bounds of %s = %q, want %q", name(0), bounds, want)
	}

	events := map[string]flywheel.Event{
		name(-2):         track("u", "a", day(-2).Add(23*time.Hour+59*time.Minute)),
		name(-1):         track("u", "b", day(-1)),
		name(0):          track("u", "c", now),
		name(4):          track("u", "d", day(4).Add(time.Hour)),
		"events_default": track("u", "old", time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)),
	}
	var batch []flywheel.Event
	for _, e := range events {
		batch = append(batch, e)
	}
	mustWrite(t, db, batch...)
	for want, e := range events {
		if got := partitionOf(t, db, e.ID); got != want {
			t.Errorf("event %q in %s, want %s", e.Name, got, want)
		}
	}
	if got := partitionOf(t, db, early.ID); got != "events_default" {
		t.Errorf("early event in %s, want events_default", got)
	}

	// Retention: partitions that end on or before the cutoff go, with old
	// rows of the default partition and old ids.
	dropped, err := db.DropPartitionsBefore(ctx, day(-1))
	if err != nil {
		t.Fatalf("DropPartitionsBefore: %v", err)
	}
	if !slices.Equal(dropped, []string{name(-2)}) {
		t.Errorf("dropped %v, want [%s]", dropped, name(-2))
	}
	if n := queryInt(t, db, `SELECT count(*) FROM pg_class WHERE relname = $1`, name(-2)); n != 0 {
		t.Errorf("%s still exists", name(-2))
	}
	left := queryStrings(t, db, `SELECT event FROM events ORDER BY ts`)
	if !slices.Equal(left, []string{"b", "c", "early", "d"}) {
		t.Errorf("events after retention = %v, want [b c early d]", left)
	}
	// Ids are forgotten two days after their events, so that an event
	// timestamped ahead of its arrival cannot outlive its id: a's id stays,
	// the 2001 event's goes.
	idCutoff := day(-1).Add(-48 * time.Hour)
	if n := queryInt(t, db, `SELECT count(*) FROM event_ids WHERE received_at < $1`, idCutoff); n != 0 {
		t.Errorf("event_ids received before %v after retention = %d, want 0", idCutoff, n)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM event_ids WHERE id = $1`, events[name(-2)].ID); n != 1 {
		t.Errorf("id of the dropped event a = %d rows, want kept for two more days", n)
	}
}

// tableCounts counts the rows of every table that holds unit data.
func tableCounts(tb testing.TB, db *store.DB) map[string]int64 {
	tb.Helper()
	out := map[string]int64{}
	for _, table := range []string{"events", "event_ids", "exposures", "aliases", "consent"} {
		out[table] = queryInt(tb, db, `SELECT count(*) FROM `+table)
	}
	return out
}

func TestEraseUnit(t *testing.T) {
	db := newDB(t)
	ctx := context.Background()
	// The customer, two devices, and a customer merged into it. Ids are
	// distinctive so that a search of the audit log cannot miss them.
	const (
		cust    = "cust-7f3a91"
		phone   = "phone-2b8c44"
		laptop  = "laptop-9d1e07"
		merged  = "merged-c5a6b2"
		other   = "other-customer-1"
		otherD  = "other-device-1"
		sharedD = phone // another unit type with the same id: not linked
	)
	erased := []flywheel.UnitRef{{UnitType: "customer", UnitID: cust}, {UnitType: "device", UnitID: phone}, {UnitType: "device", UnitID: laptop}, {UnitType: "customer", UnitID: merged}}
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	mustWrite(t, db,
		identify("device", phone, cust, at(1)),
		identify("device", laptop, cust, at(2)),
		identify("customer", merged, cust, at(3)),
		track(cust, "purchase", at(4)),
		track(cust, "purchase", at(5)),
		exposure("customer", cust, "checkout", "green", at(6), `{"device": "mobile"}`),
		exposure("device", phone, "onboarding", "b", at(7), ""),
		exposure("customer", merged, "checkout", "control", at(8), ""),
		track(merged, "refund", at(9)),
		// Untouched units.
		identify("device", otherD, other, at(1)),
		track(other, "purchase", at(2)),
		exposure("customer", other, "checkout", "green", at(3), ""),
		identify("account", sharedD, other, at(4)),
		exposure("account", sharedD, "account-exp", "a", at(5), ""),
	)
	// A device event sent under the device id: counts as the device's.
	tr := track(laptop, "view", at(10))
	tr.UnitType = "device"
	mustWrite(t, db, tr)
	// Another customer's device, later also identified as the customer: the
	// earlier link stands, so the device stays, but the event naming the
	// customer goes.
	mustWrite(t, db, identify("device", otherD, cust, at(11)))
	for _, u := range []flywheel.UnitRef{{UnitType: "customer", UnitID: cust}, {UnitType: "device", UnitID: phone}, {UnitType: "device", UnitID: otherD}, {UnitType: "account", UnitID: sharedD}} {
		if err := db.SetConsent(ctx, u, false, 0, "alice"); err != nil {
			t.Fatalf("SetConsent: %v", err)
		}
	}
	before := tableCounts(t, db)

	got, err := db.EraseUnit(ctx, flywheel.UnitRef{UnitType: "customer", UnitID: cust}, "alice")
	if err != nil {
		t.Fatalf("EraseUnit: %v", err)
	}
	want := flywheel.Erasure{Units: 4, Events: 11, EventIDs: 11, Exposures: 3, Aliases: 3, Consent: 2, OptOutsKept: 2}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("EraseUnit counts mismatch (-want +got):\n%s", diff)
	}
	after := tableCounts(t, db)
	wantAfter := map[string]int64{
		"events": before["events"] - want.Events, "event_ids": before["event_ids"] - want.EventIDs,
		"exposures": before["exposures"] - want.Exposures, "aliases": before["aliases"] - want.Aliases,
		"consent": before["consent"] - want.Consent,
	}
	if diff := cmp.Diff(wantAfter, after); diff != "" {
		t.Errorf("rows left mismatch (-want +got):\n%s", diff)
	}

	// Nothing anywhere still names an erased unit.
	ids := []string{cust, phone, laptop, merged}
	for _, q := range []string{
		`SELECT count(*) FROM events WHERE (unit_type, unit_id) IN (SELECT * FROM unnest($1::text[], $2::text[])) OR customer_id = ANY($2)`,
		`SELECT count(*) FROM event_ids i WHERE $1::text[] IS NOT NULL AND unit_id = ANY($2) AND NOT EXISTS (SELECT 1 FROM events e WHERE e.id = i.id AND e.unit_type = 'account')`,
		`SELECT count(*) FROM exposures WHERE (unit_type, unit_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))`,
		`SELECT count(*) FROM aliases WHERE (unit_type, unit_id) IN (SELECT * FROM unnest($1::text[], $2::text[])) OR customer_id = ANY($2)`,
		`SELECT count(*) FROM consent WHERE (unit_type, unit_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))`,
	} {
		types, unitIDs := make([]string, len(erased)), make([]string, len(erased))
		for i, u := range erased {
			types[i], unitIDs[i] = u.UnitType, u.UnitID
		}
		if n := queryInt(t, db, q, types, unitIDs); n != 0 {
			t.Errorf("%d rows left: %s", n, q)
		}
	}
	// The other units keep everything.
	for q, want := range map[string]int64{
		`SELECT count(*) FROM events WHERE unit_id IN ('other-customer-1', 'other-device-1') OR unit_type = 'account'`: 5,
		`SELECT count(*) FROM aliases`:   2,
		`SELECT count(*) FROM exposures`: 2,
		`SELECT count(*) FROM consent`:   2,
		`SELECT count(*) FROM event_ids`: 5,
	} {
		if n := queryInt(t, db, q); n != want {
			t.Errorf("%s = %d, want %d", q, n, want)
		}
	}

	// The two opt-outs outlive the erasure as digests, which hold no id.
	var digests [][]byte
	for _, u := range erased[:2] {
		d := u.Digest()
		digests = append(digests, d[:])
	}
	if n := queryInt(t, db, `SELECT count(*) FROM consent_tombstones WHERE digest = ANY($1)`, digests); n != 2 {
		t.Errorf("%d tombstones of the erased opt-outs, want 2", n)
	}
	for _, text := range queryStrings(t, db, `SELECT t::text FROM consent_tombstones t`) {
		for _, id := range ids {
			if strings.Contains(text, id) {
				t.Errorf("tombstone %q holds erased id %q", text, id)
			}
		}
	}

	// The audit log records the erasure, with counts and never an id.
	details := queryStrings(t, db, `SELECT details::text FROM audit_log WHERE action = 'erase_unit' AND actor = 'alice'`)
	if len(details) != 1 || !strings.Contains(details[0], `"events": 11`) {
		t.Errorf("erase_unit audit rows = %v, want one with the counts", details)
	}
	for _, text := range queryStrings(t, db, `SELECT actor || ' ' || action || ' ' || details::text FROM audit_log`) {
		for _, id := range ids {
			if strings.Contains(text, id) {
				t.Errorf("audit log row %q holds erased id %q", text, id)
			}
		}
	}

	// Erasing again finds only the unit itself, and nothing to delete.
	again, err := db.EraseUnit(ctx, flywheel.UnitRef{UnitType: "customer", UnitID: cust}, "alice")
	if err != nil || again != (flywheel.Erasure{Units: 1}) {
		t.Errorf("second EraseUnit = %+v, %v; want only the unit, nothing erased", again, err)
	}
}

// TestEraseFromDevice: erasing starts from any id of the cluster.
func TestEraseFromDevice(t *testing.T) {
	db := newDB(t)
	mustWrite(t, db,
		identify("device", "dev-a", "cust-a", t0),
		identify("device", "dev-b", "cust-a", t0),
		identify("customer", "cust-old", "cust-a", t0),
		identify("device", "dev-old", "cust-old", t0),
		track("cust-old", "purchase", t0),
	)
	got, err := db.EraseUnit(context.Background(), flywheel.UnitRef{UnitType: "device", UnitID: "dev-old"}, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if want := (flywheel.Erasure{Units: 5, Events: 5, EventIDs: 5, Aliases: 4}); got != want {
		t.Errorf("EraseUnit(dev-old) = %+v, want %+v", got, want)
	}
	if c := tableCounts(t, db); c["events"]+c["event_ids"]+c["aliases"] != 0 {
		t.Errorf("rows left: %v", c)
	}
}

func TestDescribeUnitChain(t *testing.T) {
	db := newDB(t)
	ctx := context.Background()
	mustWrite(t, db,
		identify("device", "dev", "cust-a", t0),
		identify("customer", "cust-a", "cust-b", t0.Add(time.Minute)),
		track("cust-a", "purchase", t0),
		exposure("device", "dev", "onboarding", "b", t0, ""),
		exposure("device", "dev", "tour", "a", t0, ""),
	)
	if err := db.SetConsent(ctx, flywheel.UnitRef{UnitType: "device", UnitID: "dev"}, true, 0, "alice"); err != nil {
		t.Fatal(err)
	}
	yes := true
	tests := []struct {
		unit flywheel.UnitRef
		want flywheel.UnitInfo
	}{
		{flywheel.UnitRef{UnitType: "device", UnitID: "dev"}, flywheel.UnitInfo{
			UnitRef:  flywheel.UnitRef{UnitType: "device", UnitID: "dev"},
			Customer: "cust-b", Analytics: &yes, Events: 3, Exposures: []string{"onboarding", "tour"},
			Linked: []flywheel.UnitRef{{UnitType: "customer", UnitID: "cust-a"}, {UnitType: "customer", UnitID: "cust-b"}},
		}},
		{flywheel.UnitRef{UnitType: "customer", UnitID: "cust-a"}, flywheel.UnitInfo{
			UnitRef:  flywheel.UnitRef{UnitType: "customer", UnitID: "cust-a"},
			Customer: "cust-b", Events: 2, Exposures: []string{},
			Linked: []flywheel.UnitRef{{UnitType: "customer", UnitID: "cust-b"}, {UnitType: "device", UnitID: "dev"}},
		}},
		{flywheel.UnitRef{UnitType: "customer", UnitID: "cust-b"}, flywheel.UnitInfo{
			UnitRef: flywheel.UnitRef{UnitType: "customer", UnitID: "cust-b"},
			Events:  0, Exposures: []string{},
			Linked: []flywheel.UnitRef{{UnitType: "customer", UnitID: "cust-a"}, {UnitType: "device", UnitID: "dev"}},
		}},
		{flywheel.UnitRef{UnitType: "device", UnitID: "stranger"}, flywheel.UnitInfo{
			UnitRef: flywheel.UnitRef{UnitType: "device", UnitID: "stranger"},
			Linked:  []flywheel.UnitRef{}, Exposures: []string{},
		}},
	}
	for _, tt := range tests {
		got, err := db.DescribeUnit(ctx, tt.unit)
		if err != nil {
			t.Fatalf("DescribeUnit(%v): %v", tt.unit, err)
		}
		sort.Slice(got.Linked, func(i, j int) bool {
			return got.Linked[i].UnitType+got.Linked[i].UnitID < got.Linked[j].UnitType+got.Linked[j].UnitID
		})
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("DescribeUnit(%v) mismatch (-want +got):\n%s", tt.unit, diff)
		}
	}

	// A cycle of merges ends.
	mustWrite(t, db, identify("customer", "cust-b", "cust-a", t0.Add(time.Hour)))
	got, err := db.DescribeUnit(ctx, flywheel.UnitRef{UnitType: "device", UnitID: "dev"})
	if err != nil {
		t.Fatalf("DescribeUnit with a cycle: %v", err)
	}
	if got.Customer != "cust-a" && got.Customer != "cust-b" {
		t.Errorf("DescribeUnit with a cycle: customer %q", got.Customer)
	}
}

// TestValidatedEventsAreStorable: what the validator accepts, PostgreSQL
// stores. An event that passed validation but failed in the database would
// fail its whole group, and its request with an internal error, instead of
// being rejected alone.
func TestValidatedEventsAreStorable(t *testing.T) {
	db := newDB(t)
	ctx := context.Background()
	st, err := live.Build(nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	digits := func(n int) string { return strings.Repeat("7", n) }
	tests := []struct {
		name  string
		attrs string
		valid bool // what the validator must say
	}{
		{"plain", `{"device": "mobile", "n": 12345678901234567890, "f": -0.5}`, true},
		{"exponent at the limit", `{"a": 1e1000, "b": -1E-1000, "c": 1.5e+300}`, true},
		{"exponent over the limit", `{"a": 1e1001}`, false}, // PostgreSQL 14+ holds it, 13 does not
		{"exponent far over", `{"a": 1e999999}`, false},
		{"tiny", `{"a": [1e-999999]}`, false},
		{"decimal places at the limit", `{"a": 0.` + digits(15383) + `e-1000}`, true},
		{"decimal places over the limit", `{"a": 0.` + digits(15384) + `e-1000}`, false},
		{"many plain decimal places", `{"a": 0.` + digits(16300) + `}`, true},
		{"lone surrogates", `{"a": "x\ud800", "\udc00": 1}`, true},
		{"escapes", `{"a": "caf\u00e9 \ud83d\ude00 \u001f \"q\" \\u0000"}`, true},
		{"NUL", `{"a": "\u0000"}`, false},
		// An event nests at most 64 levels (strictjson.MaxDepth): the event
		// is level 1, attributes level 2.
		{"deep", `{"a": ` + strings.Repeat("[", 62) + strings.Repeat("]", 62) + `}`, true},
		{"too deep", `{"a": ` + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + `}`, false},
	}
	v := &ingest.Validator{}
	var valid []flywheel.Event
	for _, tt := range tests {
		body, err := json.Marshal(map[string]any{
			"id": uuid.NewString(), "type": "track", "event": "e", "unit_type": "customer", "unit_id": "u",
			"timestamp": t0, "attributes": json.RawMessage(tt.attrs), "properties": json.RawMessage(tt.attrs),
		})
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		ev, bad := v.Validate(body, t0, st)
		if (bad == nil) != tt.valid {
			t.Errorf("%s: Validate = %v, want valid %v", tt.name, bad, tt.valid)
			continue
		}
		if bad != nil {
			if !strings.HasPrefix(bad.Field, "attributes") {
				t.Errorf("%s: rejected on %q, want attributes", tt.name, bad.Field)
			}
			continue
		}
		// Each alone, to name the culprit, then all together.
		if _, err := db.WriteEvents(ctx, []flywheel.Event{ev}); err != nil {
			t.Errorf("%s: valid event not storable: %v", tt.name, err)
		}
		ev.ID = uuid.New()
		valid = append(valid, ev)
	}
	if _, err := db.WriteEvents(ctx, valid); err != nil {
		t.Errorf("WriteEvents(every valid event): %v", err)
	}
}

// TestOptOutOutlivesErasure: an opted-out unit that is erased and comes
// back is still opted out (for the server's set and for SDKs' tokens),
// through a tombstone that holds no id; opting back in ends it.
func TestOptOutOutlivesErasure(t *testing.T) {
	db := newDB(t)
	ctx := context.Background()
	u := flywheel.UnitRef{UnitType: "customer", UnitID: "c-tomb"}
	other := flywheel.UnitRef{UnitType: "customer", UnitID: "c-fine"}
	const token, otherToken = uint64(0xfedcba9876543210), uint64(42)
	start := time.Unix(0, 0)

	if err := db.SetConsent(ctx, u, false, token, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := db.SetConsent(ctx, other, true, otherToken, "alice"); err != nil {
		t.Fatal(err)
	}
	ch, err := db.OptedOut(ctx, start)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ch.Out, []flywheel.UnitRef{u}) || !slices.Equal(ch.In, []flywheel.UnitRef{other}) || len(ch.Tombstones) != 0 {
		t.Fatalf("OptedOut = %+v, want c-tomb out and c-fine in", ch)
	}
	tokens, err := db.OptOutTokens(ctx, start, -1, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(tokens) != 2 || tokens[0].Token != token || !tokens[0].OptedOut || tokens[1].Token != otherToken || tokens[1].OptedOut {
		t.Fatalf("OptOutTokens = %+v, want c-tomb's token out, then c-fine's in", tokens)
	}
	// The cursor is exclusive: after the last change there is none.
	last := tokens[1]
	if rest, err := db.OptOutTokens(ctx, last.At, last.Kind, last.Token, 10); err != nil || len(rest) != 0 {
		t.Errorf("OptOutTokens after the last change = %+v, %v; want none", rest, err)
	}

	erased, err := db.EraseUnit(ctx, u, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if erased.Consent != 1 || erased.OptOutsKept != 1 {
		t.Errorf("erasure = %+v, want 1 consent record erased and 1 opt-out kept", erased)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM consent WHERE unit_id = 'c-tomb'`); n != 0 {
		t.Errorf("%d consent rows still name the erased unit", n)
	}
	ch, err = db.OptedOut(ctx, start)
	if err != nil {
		t.Fatal(err)
	}
	if len(ch.Tombstones) != 1 || ch.Tombstones[0] != u.Digest() || len(ch.Out) != 0 {
		t.Errorf("OptedOut after erasure = %+v, want only c-tomb's tombstone", ch)
	}
	tokens, err = db.OptOutTokens(ctx, start, -1, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(tokens) != 2 || tokens[1].Token != token || !tokens[1].OptedOut || tokens[1].Kind != 1 {
		t.Errorf("OptOutTokens after erasure = %+v, want c-tomb's token still out, from its tombstone", tokens)
	}
	info, err := db.DescribeUnit(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	if info.Analytics == nil || *info.Analytics {
		t.Errorf("DescribeUnit(erased opt-out).Analytics = %v, want false (the tombstone)", info.Analytics)
	}

	// It comes back and consents again: the tombstone goes.
	if err := db.SetConsent(ctx, u, true, token, "alice"); err != nil {
		t.Fatal(err)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM consent_tombstones`); n != 0 {
		t.Errorf("%d tombstones after opting back in, want 0", n)
	}
	tokens, err = db.OptOutTokens(ctx, start, -1, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(tokens); n == 0 || tokens[n-1].Token != token || tokens[n-1].OptedOut {
		t.Errorf("OptOutTokens after opting in = %+v, want c-tomb's token in, last", tokens)
	}
	// Erasing a unit that consents keeps nothing.
	if erased, err := db.EraseUnit(ctx, u, "alice"); err != nil || erased.OptOutsKept != 0 || erased.Consent != 1 {
		t.Errorf("erasure of a consenting unit = %+v, %v; want its consent erased, nothing kept", erased, err)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM consent_tombstones`); n != 0 {
		t.Errorf("%d tombstones after erasing a consenting unit, want 0", n)
	}
}
