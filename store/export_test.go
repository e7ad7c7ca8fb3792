package store

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// CopyTestRow is a row of TestCopyRowsMatchPgx's table.
type CopyTestRow struct {
	Text  string
	ID    [16]byte
	TS    time.Time
	Value *float64
	Doc   []byte
}

// CopyRowsForTest COPYs rows into table (t text, t_or_null text, id uuid,
// ts timestamptz, v float8, doc jsonb) with copyRows.
func CopyRowsForTest(ctx context.Context, db *DB, table string, rows []CopyTestRow) (int64, error) {
	c := newCopyRows(0)
	for _, r := range rows {
		c.row(6)
		c.text(r.Text)
		c.textOrNull(r.Text)
		c.uuid(r.ID)
		c.timestamptz(r.TS)
		c.float8OrNull(r.Value)
		c.jsonbOrNull(r.Doc)
	}
	var n int64
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) (err error) {
		n, err = c.copyTo(ctx, tx, "COPY "+pgx.Identifier{table}.Sanitize()+" (t, t_or_null, id, ts, v, doc) FROM STDIN (FORMAT binary)")
		return err
	})
	return n, err
}

// UpliftFoldsForTest computes the cross-fitting fold of each id with the
// SQL of UpliftInput.
func UpliftFoldsForTest(ctx context.Context, db *DB, ids []string) ([]int, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+upliftFoldSQL+` FROM unnest($1::text[]) WITH ORDINALITY AS x(unit_id, i) ORDER BY i`, ids)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[int])
}

// Float8NumericForTest is float8Numeric's value as numeric input.
func Float8NumericForTest(x float64) string { return DecSumForTest(x) }

// DecSumForTest is the exact sum of the terms' numeric values (decSum).
func DecSumForTest(terms ...float64) string {
	var s decSum
	for _, x := range terms {
		s.addSigned(1, x)
	}
	return s.String()
}

// SetUnitFillForTest sizes the chunks folds read into an incomplete copy
// (fillStep: at least least, at most most, perOwner an owner; 0: the
// defaults), so that tests fill copies over many folds.
func SetUnitFillForTest(db *DB, least, most, perOwner int) {
	db.units.fillLeast, db.units.fillChunk, db.units.fillPerOwner = least, most, perOwner
}

// SetUnitFillPagesForTest sets the most pages a chunk scans (0: the
// default, a quarter of a page a row).
func SetUnitFillPagesForTest(db *DB, pages int) { db.units.fillPages = pages }

// TIDLess is tidLess.
var TIDLess = tidLess

// LinkFilter is the filter of linked ids, for tests.
type LinkFilter struct{ f *linkFilter }

// NewLinkFilterForTest returns an empty filter sized for n ids.
func NewLinkFilterForTest(n int) LinkFilter {
	f := newLinkFilter()
	f.reset(n)
	return LinkFilter{f}
}

func (f LinkFilter) Add(typ, id string)      { f.f.add(typ, id) }
func (f LinkFilter) May(typ, id string) bool { return f.f.may(typ, id) }

// LinkFilterMayForTest says whether db's filter of linked ids may hold
// the id (true when it has none).
func LinkFilterMayForTest(db *DB, typ, id string) bool {
	db.links.mu.Lock()
	defer db.links.mu.Unlock()
	return db.links.may(typ, id)
}

// SortIDs is sortIDs.
var SortIDs = sortIDs

// FillStep is fillStep.
var FillStep = fillStep

// UnitCopy is what the aggregator's copy of a definition holds.
type UnitCopy struct {
	Epoch    int64 // the agg_defs.epoch it is current at
	Units    int   // unit rows
	Complete bool
	Unknown  []string   // units to look up again, sorted
	From     pgtype.TID // its fill reads the rows after this ctid next
	Start    uint32     // the page its fill started at
	Wrapped  bool       // its fill has read from Start to the end, and reads from the table's start to Start
	Pages    int64      // the table's pages at its fill's first chunk (-1 before)
	Read     int        // the rows its fill has read
}

// UnitCopyForTest returns the aggregator's copy of definition (exp,
// metric); ok false when there is none.
func UnitCopyForTest(db *DB, exp, metric string) (c UnitCopy, ok bool) {
	db.units.mu.Lock()
	defer db.units.mu.Unlock()
	d := db.units.defs[[2]string{exp, metric}]
	if d == nil {
		return c, false
	}
	return UnitCopy{Epoch: d.epoch, Units: len(d.units), Complete: d.complete, Unknown: slices.Sorted(maps.Keys(d.unknown)),
		From: d.from, Start: d.start, Wrapped: d.wrapped, Pages: d.pages, Read: d.read}, true
}

// UnitBlocksForTest returns the page of each unit row that the copy of
// definition (exp, metric) holds, as the folds' writes returned them.
func UnitBlocksForTest(db *DB, exp, metric string) map[string]uint32 {
	db.units.mu.Lock()
	defer db.units.mu.Unlock()
	blocks := map[string]uint32{}
	if d := db.units.defs[[2]string{exp, metric}]; d != nil {
		for id, u := range d.units {
			blocks[id] = u.tid.BlockNumber
		}
	}
	return blocks
}

// CheckUnitCopiesForTest compares each of the aggregator's copies with
// agg_units: each unit a copy holds must have that row, at that ctid,
// with those values, and a complete copy must hold every row of its
// definition but those of its unknown units. A copy behind its
// definition's epoch is skipped: the next fold drops it. It returns the
// first difference.
func CheckUnitCopiesForTest(ctx context.Context, db *DB) error {
	db.units.mu.Lock()
	defer db.units.mu.Unlock()
	for key, d := range db.units.defs {
		if err := checkUnitCopy(ctx, db, key, d); err != nil {
			return fmt.Errorf("copy of %s/%s: %w", key[0], key[1], err)
		}
	}
	return nil
}

func checkUnitCopy(ctx context.Context, db *DB, key [2]string, d *cachedDef) error {
	var epoch int64
	if err := db.pool.QueryRow(ctx, `SELECT epoch FROM agg_defs WHERE experiment = $1 AND metric = $2`, key[0], key[1]).Scan(&epoch); err != nil {
		return err
	}
	if epoch != d.epoch {
		return nil // another process moved on: the copy is dropped when a fold takes it
	}
	rows, err := db.pool.Query(ctx, `SELECT `+unitColumns+` FROM agg_units a WHERE a.experiment = $1 AND a.metric = $2`, key[0], key[1])
	if err != nil {
		return err
	}
	defer rows.Close()
	table := map[string]cachedUnit{}
	for rows.Next() {
		var u foldUnit
		var last pgtype.Date
		if err := rows.Scan(&u.tid, &u.id, &u.variant, &u.state, &u.y, &u.x, &u.num, &u.den, &u.first,
			&last, &u.last.n, &u.last.v, &u.last.nm, &u.last.dn); err != nil {
			return err
		}
		u.last.day = noDay
		if last.Valid {
			u.last.day = dayNumber(last.Time)
		}
		table[u.id] = u.cached()
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for id, cu := range d.units {
		row, ok := table[id]
		switch {
		case !ok:
			return fmt.Errorf("the copy holds %s, which has no row", id)
		case row.tid != cu.tid:
			return fmt.Errorf("the copy holds %s at %v, its row is at %v", id, cu.tid, row.tid)
		case row.variant != cu.variant || row.state != cu.state || row.y != cu.y || row.x != cu.x || row.num != cu.num ||
			row.den != cu.den || !row.first.Equal(cu.first) || row.last != cu.last:
			return fmt.Errorf("the copy holds %s as %+v, its row is %+v", id, cu, row)
		}
	}
	if d.complete {
		for id := range table {
			_, held := d.units[id]
			_, unknown := d.unknown[id]
			if !held && !unknown {
				return fmt.Errorf("the complete copy lacks %s", id)
			}
		}
	}
	return nil
}

// QueryPreparedForTest runs sql, prepared on tx's connection as name, with
// params in the binary format, as the aggregator's large statements run
// (queryPrepared), and calls row with each result row's values.
func QueryPreparedForTest(ctx context.Context, tx pgx.Tx, name, sql string, params [][]byte, row func([][]byte) error) error {
	p := &wireParams{}
	for _, v := range params {
		p.add(v, 1)
	}
	return queryPrepared(ctx, tx, name, sql, p, row)
}

// BindSizeForTest is the room queryPrepared makes for a Bind of values
// (in the binary format) to the statement name, and the messages after it.
func BindSizeForTest(name string, values [][]byte) int {
	p := &wireParams{}
	for _, v := range values {
		p.add(v, 1)
	}
	return p.bindSize(name)
}

// TrackFilter is a filter of tracked days, for tests, with the builds it
// started (which end only when a test ends them).
type TrackFilter struct {
	f      *trackFilter
	builds []*trackBuild
	keep   int64
}

// Keep makes the next cycles drop the days before day.
func (t *TrackFilter) Keep(day time.Time) { t.keep = dayOf(day) }

// Keys is how many (id, day) keys the built filter holds.
func (t *TrackFilter) Keys() int { return t.f.days.size() }

// TrackEvent is a track event's id and time.
type TrackEvent struct {
	Type, ID string
	TS       time.Time
}

// NewTrackFilterForTest returns a new filter whose builds start at least
// every apart.
func NewTrackFilterForTest(every time.Duration) *TrackFilter {
	f := newTrackFilter(context.Background())
	f.every = every
	return &TrackFilter{f: f, keep: math.MinInt64}
}

// Advance plays queue cycle c, whose definitions read the events reads
// and whose queue rows hold the track events events, and says whether
// its history step could use the filter.
func (t *TrackFilter) Advance(c int64, reads []string, events ...TrackEvent) bool {
	var q queueTracks
	for _, e := range events {
		q.types, q.ids, q.ts = append(q.types, e.Type), append(q.ids, e.ID), append(q.ts, e.TS)
	}
	return t.advance(c, false, reads, []queueTracks{q})
}

// Idle plays an idle cycle (one that took no queue rows) when the last
// number of agg_queue_cycle taken was c and the filter is due (see
// trackFilter.due), says whether it was, and whether a history step could
// use the filter then.
func (t *TrackFilter) Idle(c int64, reads []string) (due, held bool) {
	if !t.f.due(reads) {
		return false, false
	}
	return true, t.advance(c, true, reads, nil)
}

func (t *TrackFilter) advance(c int64, idle bool, reads []string, tracks []queueTracks) bool {
	keep := func(time.Time) int64 { return t.keep }
	held, _ := t.f.advance(c, idle, reads, tracks, keep, func(b *trackBuild, _ []string) { t.builds = append(t.builds, b) })
	return held != nil
}

// Builds is how many builds the filter started.
func (t *TrackFilter) Builds() int { return len(t.builds) }

// SetBuildFrom makes build i read the events from day on only.
func (t *TrackFilter) SetBuildFrom(i int, day time.Time) { t.builds[i].from = dayOf(day) }

// FinishBuild ends build i, as if it had read the events stored.
func (t *TrackFilter) FinishBuild(i int, stored ...TrackEvent) {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	for _, e := range stored {
		t.f.addOne(t.builds[i].days, e.Type, e.ID, e.TS)
	}
	t.builds[i].done = true
}

// Look is what a history step would look up of an id whose window is
// [from, to) (to nil: no end): whether to look it up, and between which
// times, with the filter as it is (built or not).
func (t *TrackFilter) Look(typ, id string, from time.Time, to *time.Time) (look bool, lo, hi time.Time, noEnd bool) {
	var days []int64
	for d := range t.f.days {
		days = append(days, d)
	}
	slices.Sort(days)
	end := pgtype.Timestamptz{InfinityModifier: pgtype.Infinity, Valid: true}
	if to != nil {
		end = pgtype.Timestamptz{Time: *to, Valid: true}
	}
	var w trackWindow
	w.look(t.f, days, t.f.days, "o", typ, id, pgtype.Timestamptz{Time: from, Valid: true}, end)
	if len(w.ids) == 0 {
		return false, time.Time{}, time.Time{}, false
	}
	if len(w.ids) > 1 {
		panic("Look: several ranges; use Ranges")
	}
	return true, w.from[0].Time, w.to[0].Time, w.to[0].InfinityModifier == pgtype.Infinity
}

// Ranges is every range a history step would look an id up in, for a
// window [from, to).
func (t *TrackFilter) Ranges(typ, id string, from, to time.Time) [][2]time.Time {
	var days []int64
	for d := range t.f.days {
		days = append(days, d)
	}
	slices.Sort(days)
	var w trackWindow
	w.look(t.f, days, t.f.days, "o", typ, id, pgtype.Timestamptz{Time: from, Valid: true}, pgtype.Timestamptz{Time: to, Valid: true})
	var out [][2]time.Time
	for i := range w.ids {
		out = append(out, [2]time.Time{w.from[i].Time, w.to[i].Time})
	}
	return out
}

// SetTrackFilterRebuildForTest sets the least time between two builds of
// db's filter of tracked days.
func SetTrackFilterRebuildForTest(db *DB, every time.Duration) {
	db.tracks.mu.Lock()
	defer db.tracks.mu.Unlock()
	db.tracks.every = every
}

// WaitTrackFilterForTest waits (up to 20 s) until db's filter of tracked
// days has no build under way, and says whether it is built or a build
// ended well (the next cycle takes it).
func WaitTrackFilterForTest(db *DB) bool {
	for range 2000 {
		db.tracks.mu.Lock()
		b, built := db.tracks.build, db.tracks.days != nil
		done := b == nil || b.done
		ok := built || (b != nil && b.done && b.err == nil)
		db.tracks.mu.Unlock()
		if done {
			return ok
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

// TrackDaysForTest is the day of ts as a cycle reads it (dayOf) and as a
// build does (from its binary timestamptz).
func TrackDaysForTest(ts time.Time) (cycle, build int64) {
	micros := ts.Unix()*1_000_000 + int64(ts.Nanosecond()/1000) - pgEpochMicros
	return dayOf(ts), floorDiv(micros+pgEpochMicros, 86_400_000_000)
}

// TrackFilterFromForTest is the first day db's filter of tracked days
// holds every key of, and whether it is built.
func TrackFilterFromForTest(db *DB) (time.Time, bool) {
	db.tracks.mu.Lock()
	defer db.tracks.mu.Unlock()
	return dayStart(db.tracks.from), db.tracks.days != nil
}
