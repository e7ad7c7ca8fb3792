package store

import (
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/flywheel-oss/flywheel"
)

// The staged track events of one definition, added to its units' values in
// Go (foldTracks): PostgreSQL reads the units' rows and writes the changed
// ones, and the arithmetic between (each unit's window sums, its new day
// rows, the changes of the per-variant and per-day sums) runs here instead
// of row by row in SQL's interpreter, where it was most of a fold's time
// (BENCHMARKS.md, "Where the tracks step's time goes").
//
// Every number is computed as the SQL of the other paths computes it, so
// that what one adds another can subtract: the same float8 operations in
// the same order (each product rounded on its own: float64(a*b), which Go
// may not fuse), and the numeric sums from each term's float8::numeric
// value (decSum).

// stagedForDef reads the chunks of staged events after cycle $1 of owner
// type $2 and the events $3.
const stagedForDef = `
SELECT cycle, owners, ts, vals, event FROM agg_staged_tracks
WHERE cycle > $1 AND owner_type = $2 AND event = ANY($3)`

// recomputedSince reads the units of experiment $1 recomputed whole in a
// cycle after $2, each with the latest such cycle: their staged events of
// that cycle or before are counted already.
const recomputedSince = `
SELECT unit_id, max(cycle) FROM agg_staged_pairs WHERE experiment = $1 AND cycle > $2 GROUP BY unit_id`

// unitColumns are the columns of agg_units a that foldUnit.decode reads,
// in its order.
const unitColumns = `a.ctid AS tid, a.unit_id, a.variant, a.state, a.y, a.x, a.num, a.den, a.first_ts,
    a.last_day, a.last_n, a.last_v, a.last_num, a.last_den`

// unitRows reads the unit rows of definition ($1, $2) of the owners $3
// (sorted), each by primary key, in key order (BENCHMARKS.md, "Lookups in
// key order"); an owner without one is not in the experiment.
const unitRows = `
SELECT a.* FROM unnest($3::text[]) AS k(owner) CROSS JOIN LATERAL (
    SELECT ` + unitColumns + ` FROM agg_units a
    WHERE a.experiment = $1 AND a.metric = $2 AND a.unit_id = k.owner OFFSET 0) a`

// lateDays reads the day rows of the units $3: all of their days but the
// last (in agg_units).
const lateDays = `
SELECT k.u, d.day, d.n, d.v, d.num, d.den FROM unnest($3::text[]) AS k(u) CROSS JOIN LATERAL (
    SELECT d.day, d.n, d.v, d.num, d.den FROM agg_unit_days d
    WHERE d.unit_id = k.u AND d.experiment = $1 AND d.metric = $2 OFFSET 0) d`

// writeFold writes what foldTracks computed for definition ($1, $2): the
// changed unit rows by ctid ($3-$7, and their last days $14, $40-$43), the
// day rows added to ($8-$13, in key order), the per-variant day changes
// ($15-$23) and the variant sums' changes ($24-$34), and returns the
// changed units' new ctids, each with its place in $3 (from 1). The
// cycle is the only writer of these rows
// (the aggregation lock), and each definition writes only its own. A unit
// row is written only if it is still the one the fold read, with the values
// it read ($35-$39, $44-$48): a copy kept in memory (unitCache) that is not, for
// whatever reason, makes the fold fail (and the copy be dropped) instead
// of writing a wrong value. The rows marked in $49 are looked up by their
// key (cur) before they are updated by ctid, so that the index scan
// prunes their pages' dead row versions (pageUpdates says which).
const writeFold = `
WITH up AS (
    UPDATE agg_units a SET y = n.y, x = n.x, num = n.num, den = n.den,
        last_day = n.lday, last_n = n.ln, last_v = n.lv, last_num = n.lnum, last_den = n.lden
    FROM (SELECT k.*, CASE WHEN k.look THEN (
                  SELECT b.ctid FROM agg_units b WHERE b.experiment = $1 AND b.metric = $2 AND b.unit_id = k.unit_id)
              ELSE k.tid END AS cur
          FROM unnest($3::tid[], $4::float8[], $5::float8[], $6::float8[], $7::float8[], $35::text[],
                      $36::float8[], $37::float8[], $38::float8[], $39::float8[],
                      $14::date[], $40::float8[], $41::float8[], $42::float8[], $43::float8[],
                      $44::date[], $45::float8[], $46::float8[], $47::float8[], $48::float8[], $49::bool[])
              WITH ORDINALITY AS k(tid, y, x, num, den, unit_id, oy, ox, onum, oden,
                                   lday, ln, lv, lnum, lden, olday, oln, olv, olnum, olden, look, ord)) n
    WHERE a.ctid = n.tid AND n.cur = n.tid AND a.experiment = $1 AND a.metric = $2 AND a.unit_id = n.unit_id
      AND a.y = n.oy AND a.x = n.ox AND a.num = n.onum AND a.den = n.oden
      AND a.last_day IS NOT DISTINCT FROM n.olday AND a.last_n = n.oln AND a.last_v = n.olv
      AND a.last_num = n.olnum AND a.last_den = n.olden
    RETURNING n.ord, a.ctid
), days_add AS (
    INSERT INTO agg_unit_days AS d (experiment, metric, unit_id, day, n, v, num, den)
    SELECT $1, $2, u, day, n, v, num, den FROM unnest($8::text[], $9::date[], $10::float8[], $11::float8[], $12::float8[], $13::float8[])
        AS k(u, day, n, v, num, den)
    ON CONFLICT (unit_id, experiment, metric, day) DO UPDATE SET
        n = d.n + EXCLUDED.n, v = d.v + EXCLUDED.v, num = d.num + EXCLUDED.num, den = d.den + EXCLUDED.den
), days_up AS (
    INSERT INTO agg_variant_days AS v (experiment, metric, variant, day, units, sum, sumsq, sumnum, sumden, sumnumsq, sumdensq, sumnumden)
    SELECT $1, $2, variant, day, 0, sum, sumsq, sumnum, sumden, sumnumsq, sumdensq, sumnumden
    FROM unnest($15::text[], $16::date[], $17::numeric[], $18::numeric[], $19::numeric[], $20::numeric[], $21::numeric[], $22::numeric[], $23::numeric[])
        AS k(variant, day, sum, sumsq, sumnum, sumden, sumnumsq, sumdensq, sumnumden)
    ON CONFLICT (experiment, metric, variant, day) DO UPDATE SET
        sum = v.sum + EXCLUDED.sum, sumsq = v.sumsq + EXCLUDED.sumsq, sumnum = v.sumnum + EXCLUDED.sumnum,
        sumden = v.sumden + EXCLUDED.sumden, sumnumsq = v.sumnumsq + EXCLUDED.sumnumsq,
        sumdensq = v.sumdensq + EXCLUDED.sumdensq, sumnumden = v.sumnumden + EXCLUDED.sumnumden
), vars AS (
INSERT INTO agg_variants AS v (experiment, metric, variant, units, multiple, opted_out,
    sum, sumsq, sumx, sumxsq, sumxy, sumnum, sumden, sumnumsq, sumdensq, sumnumden)
SELECT $1, $2, variant, 0, 0, 0, sum, sumsq, sumx, sumxsq, sumxy, sumnum, sumden, sumnumsq, sumdensq, sumnumden
FROM unnest($24::text[], $25::numeric[], $26::numeric[], $27::numeric[], $28::numeric[], $29::numeric[],
            $30::numeric[], $31::numeric[], $32::numeric[], $33::numeric[], $34::numeric[])
    AS k(variant, sum, sumsq, sumx, sumxsq, sumxy, sumnum, sumden, sumnumsq, sumdensq, sumnumden)
ON CONFLICT (experiment, metric, variant) DO UPDATE SET
    sum = v.sum + EXCLUDED.sum, sumsq = v.sumsq + EXCLUDED.sumsq,
    sumx = v.sumx + EXCLUDED.sumx, sumxsq = v.sumxsq + EXCLUDED.sumxsq, sumxy = v.sumxy + EXCLUDED.sumxy,
    sumnum = v.sumnum + EXCLUDED.sumnum, sumden = v.sumden + EXCLUDED.sumden, sumnumsq = v.sumnumsq + EXCLUDED.sumnumsq,
    sumdensq = v.sumdensq + EXCLUDED.sumdensq, sumnumden = v.sumnumden + EXCLUDED.sumnumden
)
SELECT ord, ctid FROM up`

// decodeUnitRow decodes a row of unitRows (binary format), with its
// variant's string from variants (filled as they come).
func decodeUnitRow(vals [][]byte, variants map[string]string) (*foldUnit, error) {
	u := &foldUnit{}
	if err := u.decode(vals, variants); err != nil {
		return nil, err
	}
	return u, nil
}

// decode sets the row fields of u (id, tid, variant, state, values, first
// exposure and last day) from a row of unitColumns.
func (u *foldUnit) decode(vals [][]byte, variants map[string]string) error {
	if len(vals) != 14 {
		return fmt.Errorf("%d columns, want 14", len(vals))
	}
	u.id = string(vals[1])
	var err error
	if u.tid, err = wireTID(vals[0]); err != nil {
		return err
	}
	v, ok := variants[string(vals[2])]
	if !ok {
		v = string(vals[2])
		variants[v] = v
	}
	u.variant = v
	if u.state, err = wireInt2(vals[3]); err != nil {
		return err
	}
	for i, f := range []*float64{&u.y, &u.x, &u.num, &u.den} {
		if *f, err = wireFloat8(vals[4+i]); err != nil {
			return err
		}
	}
	if u.first, err = wireTimestamptz(vals[8]); err != nil {
		return err
	}
	u.last = foldDay{day: noDay}
	if vals[9] != nil {
		if u.last.day, err = wireDay(vals[9]); err != nil {
			return err
		}
	}
	for i, f := range []*float64{&u.last.n, &u.last.v, &u.last.nm, &u.last.dn} {
		if *f, err = wireFloat8(vals[10+i]); err != nil {
			return err
		}
	}
	return nil
}

// foldUnit is one unit of a fold: its row as stored and its staged events.
type foldUnit struct {
	tid                pgtype.TID
	id, variant        string
	state              int16
	y, x, num, den     float64
	first              time.Time
	last               foldDay // its last day with events (day noDay: none), as stored
	events             []foldEvent
	days               []foldDay // its new days in the window, in day order
	late, settled      bool
	looked             bool      // read from the table, not the copy
	old                []foldDay // a late unit's stored days, in day order
	newY, newX, nn, nd float64
	newLast            foldDay // its last day after the new ones (writeArgs)
}

type foldEvent struct {
	ts       time.Time
	value    float64
	hasValue bool
	event    string
}

// foldDay is a unit's sums on one UTC day (agg_unit_days, or its last day
// in agg_units).
type foldDay struct {
	day          int32 // days since 1970-01-01
	n, v, nm, dn float64
}

// noDay is the day of a unit row's last day when it has none (NULL).
const noDay = math.MinInt32

// plus is the day with d's sums added.
func (f foldDay) plus(d foldDay) foldDay {
	return foldDay{day: f.day, n: f.n + d.n, v: f.v + d.v, nm: f.nm + d.nm, dn: f.dn + d.dn}
}

// foldSpec is what a fold needs of its definition.
type foldSpec struct {
	typ              flywheel.MetricType
	from, to, cuped  time.Duration // to 0: no end
	numerator, denom string
	cap              *float64
}

func specOf(d aggDef) foldSpec {
	m := d.metric
	from, to, _ := window(m)
	return foldSpec{typ: m.Type, from: time.Duration(from) * time.Hour, to: time.Duration(to) * time.Hour,
		cuped: time.Duration(m.CUPEDHours) * time.Hour, numerator: m.Numerator, denom: m.Denominator, cap: d.fixedCap()}
}

// foldTracks adds the staged events after cycle folded to the values of
// their owners for definition d, and the changes to the per-variant sums
// and days. A unit's window sums only grow by its new events'
// contributions, and a conversion only turns on, so its history need not
// be read again. The owners' unit rows come from the copy db keeps in
// memory where it is current (unitCache), else from the table; an owner
// that a complete copy lacks is not in the experiment and is not looked
// up. It returns what to record in that copy once the transaction
// commits, with the definition's new epoch, and the epoch it read: the
// fold's update of agg_defs (foldStaged) checks that no other transaction
// moved it since. What it did goes into rep.
//
// The days: a unit's row holds its last day with events, its earlier days
// are rows of agg_unit_days. New days on or after the last are added to the
// row, which moves its last day on and makes the old one a day row when a
// later day comes (moveLast); earlier ones are added to agg_unit_days. The
// per-variant day changes (agg_variant_days, see aggregate_days.go) are
// computed from the unit's value before the new events and its days:
//   - a unit whose new days all fall on or after its last day is in order,
//     and needs none of its days; one with a new day before it is late, and
//     then all of its days are read (readLateDays);
//   - a conversion or retention already counted whose new days are not
//     late is settled: its counted day is on or before them, so its value
//     on every day stays 1 and its day changes stay 0. Its day rows are not
//     written either: for these metrics only whether a day has events
//     matters, and only up to the first day that has (every reader of the
//     rows computes the same whether or not the later days' events are
//     there).
func (db *DB) foldTracks(ctx context.Context, tx pgx.Tx, d aggDef, folded int64, pairs bool, mem *stagedCycle, rep *Fold) (record func(epoch int64), epoch int64, err error) {
	m := d.metric
	*rep = Fold{Definition: rep.Definition}
	last := time.Now()
	_, _, events := window(m)
	if err := tx.QueryRow(ctx, `SELECT epoch FROM agg_defs WHERE experiment = $1 AND metric = $2`,
		d.exp.Key, m.Key).Scan(&epoch); err != nil {
		return nil, 0, err
	}
	byOwner, err := stagedEvents(ctx, tx, d, events, folded, pairs, mem)
	key := [2]string{d.exp.Key, m.Key}
	if err != nil {
		return nil, 0, err
	}
	rep.Owners = len(byOwner)
	rep.lap("staged", &last)
	if len(byOwner) == 0 { // nothing to add: the copy stays as it is
		return func(next int64) { db.units.advance(key, epoch, next) }, epoch, nil
	}
	c := db.units.take(key, epoch)
	if !c.complete {
		read := c.read
		if err := db.fillUnits(ctx, tx, d, c, byOwner); err != nil {
			return nil, 0, fmt.Errorf("fill the unit copy: %w", err)
		}
		rep.Filled = c.read - read
		rep.lap("fill", &last)
	}
	known := c.units // after the fill, which may have made a bigger map
	order := make([]*foldUnit, 0, len(byOwner))
	var missing []string
	for id, evs := range byOwner {
		cu, ok := known[id]
		if !ok {
			// A complete copy lacks only the units not in the experiment,
			// and those recomputed since (unknown).
			if _, recomputed := c.unknown[id]; !c.complete || recomputed {
				missing = append(missing, id)
			}
			continue
		}
		u := &foldUnit{tid: cu.tid, id: id, variant: cu.variant, state: cu.state, y: cu.y, x: cu.x, num: cu.num, den: cu.den,
			first: cu.first, last: cu.last, events: evs}
		order = append(order, u)
	}
	// A unit recomputed since the fill read it is looked up once it is an
	// owner, not before: most units a cycle recomputes are newly exposed,
	// and most of those have no track event for a while, or ever.
	if len(missing) > 0 {
		sortIDs(missing)
		ids := newBinArray(oidText, len(missing)*16)
		for _, id := range missing {
			ids.text(id)
		}
		p := &wireParams{}
		p.text(d.exp.Key)
		p.text(m.Key)
		p.array(ids)
		variants := map[string]string{} // a definition has a few: each string once
		err := queryPrepared(ctx, tx, "flywheel_unit_rows", unitRows, p, func(vals [][]byte) error {
			u, err := decodeUnitRow(vals, variants)
			if err != nil {
				return fmt.Errorf("unit rows: %w", err)
			}
			rep.Lookups++
			u.events, u.looked = byOwner[u.id], true
			order = append(order, u)
			return nil
		})
		if err != nil {
			return nil, 0, err
		}
		blocks := make([]uint32, 0, len(order))
		for _, u := range order {
			if u.looked {
				blocks = append(blocks, u.tid.BlockNumber)
			}
		}
		db.pages.pruned(blocks) // read by key: pruned
		rep.lap("lookups", &last)
	}
	for _, id := range missing { // looked up: in the copy once recorded, or without a row
		delete(c.unknown, id)
	}
	spec := specOf(d)
	// A unit whose first new day is before its last day is late; the rows
	// of its earlier days are read when its day changes are computed (it
	// is analysed).
	var probe []*foldUnit
	for _, u := range order {
		spec.unitSums(u)
		u.late = len(u.days) > 0 && u.last.day != noDay && u.days[0].day < u.last.day
		if u.late && u.state == 0 {
			probe = append(probe, u)
		}
	}
	if len(probe) > 0 {
		broken, err := readLateDays(ctx, tx, d, probe)
		if err != nil {
			return nil, 0, err
		}
		rep.Late = len(probe)
		if len(broken) > 0 {
			if order, err = db.repairUnits(ctx, tx, d, c, order, broken); err != nil {
				return nil, 0, fmt.Errorf("repair units: %w", err)
			}
			rep.Repaired = len(broken)
		}
		rep.lap("late", &last)
	}
	if len(order) == 0 { // no owner is in the experiment, or every one is left to a recomputation
		return func(next int64) { db.units.put(key, next, c) }, epoch, nil
	}
	for _, u := range order {
		u.settled = u.state == 0 && len(u.days) > 0 && !u.late &&
			(spec.typ == flywheel.MetricConversion || spec.typ == flywheel.MetricRetention) && u.y > 0
	}
	params, changed, days := spec.writeArgs(d, order, db.pages)
	rep.Units, rep.Days = len(changed), days
	rep.lap("compute", &last)
	written := 0
	err = queryPrepared(ctx, tx, "flywheel_write_fold", writeFold, params, func(vals [][]byte) error {
		if len(vals[0]) != 8 {
			return fmt.Errorf("the fold's write: an ordinal of %d bytes", len(vals[0]))
		}
		tid, err := wireTID(vals[1])
		if err != nil {
			return err
		}
		i := int64(binary.BigEndian.Uint64(vals[0])) - 1
		if i < 0 || i >= int64(len(changed)) {
			return fmt.Errorf("the fold's write returned row %d of %d", i+1, len(changed))
		}
		changed[i].tid = tid
		written++
		return nil
	})
	if err == nil && written != len(changed) {
		err = fmt.Errorf("wrote %d of %d unit rows: they changed since they were read", written, len(changed))
	}
	if err != nil {
		return nil, 0, err
	}
	rep.lap("write", &last)
	return func(next int64) {
		// The copy holds the other owners as they are.
		for _, u := range changed {
			known[u.id] = cachedUnit{tid: u.tid, variant: u.variant, state: u.state, y: u.newY, x: u.newX, num: u.nn, den: u.nd,
				first: u.first, last: u.newLast}
		}
		for _, u := range order {
			if u.looked && !u.rewritten() {
				known[u.id] = u.cached()
			}
		}
		db.units.put(key, next, c)
	}, epoch, nil
}

// cached is the unit's row as read, for the unit copy.
func (u *foldUnit) cached() cachedUnit {
	return cachedUnit{tid: u.tid, variant: u.variant, state: u.state, y: u.y, x: u.x, num: u.num, den: u.den, first: u.first, last: u.last}
}

// fillFrom reads the next chunk of definition ($1, $2)'s unit rows for its
// copy: at most $5 rows after the row at ctid $3 and before ctid $4, in the
// table's order, by a TID range scan (fillSettings). It visits each heap
// page once, where reading in key order visits a random page for each row
// (BENCHMARKS.md, "The rest of a copy in the table's order", "The fill in
// the table's order, a chunk a fold"); it also reads the other
// definitions' rows on those pages, at a fraction of the cost of a row
// sent, and the page bound $4 keeps a chunk from crossing, in one fold,
// all of a table whose other definitions' rows lie between this one's. A
// bitmap scan of the definition's key range would read only its rows, but
// it fetches every row before $3 again before skipping it, and returns a
// HOT-updated row at its chain's first place, not at its ctid, so that a
// chunk cut by LIMIT would not be all the rows up to its last ctid.
// fillUnits checks the order as the rows come.
const fillFrom = `SELECT ` + unitColumns + ` FROM agg_units a
WHERE a.experiment = $1 AND a.metric = $2 AND a.ctid > $3 AND a.ctid < $4 LIMIT $5`

// fillSettings leave fillFrom's planner only a TID range scan, in one
// process, so that its rows come in the table's order, whatever the
// statistics say; fillSettingsReset restores the transaction's settings
// for the fold's other statements.
const (
	fillSettings = `SET LOCAL enable_indexscan = off; SET LOCAL enable_bitmapscan = off; SET LOCAL enable_seqscan = off;
SET LOCAL max_parallel_workers_per_gather = 0`
	fillSettingsReset = `SET LOCAL enable_indexscan TO DEFAULT; SET LOCAL enable_bitmapscan TO DEFAULT;
SET LOCAL enable_seqscan TO DEFAULT; SET LOCAL max_parallel_workers_per_gather TO DEFAULT`
)

// fillRowsPerPage sets how far a chunk may scan: a 16th of a page for
// each row it may read (about 3 of the table's rows for each; agg_units
// holds about 43 a page), and at least fillLeastPages pages. Crossing
// other definitions' pages costs about 1–2.5 µs a row under load: with a
// quarter of a page a row, the bench's definitions, built one after the
// other, crossed 23,000 and 46,000 pages in their first folds, 2.5–3.1 s
// on a slow host; with a 16th, a chunk of 200,000 rows crosses at most
// 12,500, and each fold's fill took 0.25–0.44 s there (BENCHMARKS.md,
// "The fill in the table's order, a chunk a fold").
const (
	fillRowsPerPage = 16
	fillLeastPages  = 1_000
)

// fillPerOwner sizes a fold's chunk of an incomplete copy: this many rows
// for each of the fold's owners, at least fillLeast and at most the
// cache's fillChunk (defaultFillChunk). A fold that fills pays, for each
// owner the copy lacks, its lookup (6–100 µs by the hosts measured), and
// reads its chunk in the table's order at about 1–5 µs a row, so 128 rows
// an owner cost one fold one to a few dozen lookups an owner, and make
// the whole fill several times cheaper than the lookups of the folds it
// would otherwise take (BENCHMARKS.md, "The rest of a copy read sooner").
// A quiet definition, whose few lookups cost little, is not read whole
// each time its copy is dropped.
//
// The fold's owners, not its lookups, size the chunk: the lookups shrink
// with the rows left, so a rule on them would shrink the chunks towards
// the smallest and leave the copy incomplete for hundreds of folds.
//
// A definition whose copy another process has dropped in this process's
// lifetime (its cycle, fold or erasure moved the epoch on) is filled with
// fillPerOwnerShared instead: the servers may be taking turns at the
// aggregation lock, each turn dropping the other's copies again, and
// large chunks after each drop would cost a busy definition a second or
// two a turn where small ones cost a fraction of that.
const (
	fillPerOwner       = 128
	fillPerOwnerShared = 16
	fillLeast          = 1_000
)

// fillStep returns how many rows a fold with owners owners reads into an
// incomplete copy: perOwner for each owner, at least least and at most
// most (0: fillPerOwner, fillLeast and defaultFillChunk).
func fillStep(owners, least, most, perOwner int) int {
	if perOwner <= 0 {
		perOwner = fillPerOwner
	}
	if least <= 0 {
		least = fillLeast
	}
	if most <= 0 {
		most = defaultFillChunk
	}
	return min(max(perOwner*owners, least), most)
}

// fillUnits reads the next chunk of definition d's unit rows into its
// copy c, at the epoch the fold read, unless the copy is complete or the
// definition's units would not fit beside the other copies (then its folds
// look their owners up, as without a fill). The chunk is fillStep's rows
// for the fold's owners (byOwner) after the last the fill read, in the
// table's order (fillFrom), on the pages fillRowsPerPage allows it.
//
// The fill starts at the page of the first row, in the table's order, of
// a sample of the fold's owners (fillStart), reads to the table's end as
// it was at the fill's first chunk, then from the table's start up to the
// page it started at; the copy is complete once a chunk that reaches the
// end of the second stretch reads fewer rows than it may. A definition
// built after others has its rows after theirs: a fill from the table's
// start crossed their pages first, reading none of its rows for several
// folds while those folds looked up all their owners (BENCHMARKS.md, "The
// fill starts at the definition's rows"); now it crosses them last, when
// the copy holds most of the owners.
//
// A row the copy holds already is the same row at the same epoch, and stays: a
// fold or a cycle that moved a unit's row since the fill began has put its
// new row in the copy, or marked the unit unknown, so rows that move
// behind the fill's place are not lost, and those that move ahead are read
// again and kept once.
func (db *DB) fillUnits(ctx context.Context, tx pgx.Tx, d aggDef, c *cachedDef, byOwner map[string][]foldEvent) error {
	if c.complete {
		return nil
	}
	if !c.filling {
		var n int64 // the definition's unit rows, every state
		if err := tx.QueryRow(ctx, `SELECT COALESCE(sum(units + multiple + opted_out), 0)::int8 FROM agg_variants
			WHERE experiment = $1 AND metric = $2`, d.exp.Key, d.metric.Key).Scan(&n); err != nil {
			return err
		}
		if !db.units.room(int(n) + int(n)/8) { // and room for the units it gains meanwhile
			return nil
		}
		c.filling, c.pages = true, -1
		if len(c.units) == 0 { // room for the rows to come
			c.units = make(map[string]cachedUnit, n)
		}
	}
	perOwner := db.units.fillPerOwner // 0 unless a test set it, as the others
	if perOwner == 0 && db.units.isShared([2]string{d.exp.Key, d.metric.Key}) {
		perOwner = fillPerOwnerShared
	}
	limit := int64(fillStep(len(byOwner), db.units.fillLeast, db.units.fillChunk, perOwner))
	pages := db.units.fillPages // 0 unless a test set it
	if pages <= 0 {
		pages = max(int(limit/fillRowsPerPage), fillLeastPages)
	}
	if c.whole { // the rows came out of the table's order once: read them all, in any
		c.from, limit, pages = pgtype.TID{}, math.MaxInt64, math.MaxUint32-1
	}
	var end int64 // the table's pages: every row the fold can see is on them
	if err := tx.QueryRow(ctx, `SELECT pg_relation_size('agg_units') / current_setting('block_size')::int8`).Scan(&end); err != nil {
		return err
	}
	if c.pages < 0 { // the fill's first chunk
		c.pages = end
		start, err := fillStart(ctx, tx, d, byOwner)
		if err != nil {
			return err
		}
		if int64(start) < end { // (start, 0) comes before every row of its page
			c.start, c.from = start, pgtype.TID{BlockNumber: start, Valid: true}
		}
	}
	// A row after the table's end at the fill's first chunk was written
	// since, by this process (in the copy, or unknown) or by another
	// (which moved the epoch on, and dropped the copy): at 50,000 events/s
	// the folds move as many rows to the table's end as a chunk reads, and
	// a fill that followed them would never end (BENCHMARKS.md, "The fill
	// ends").
	end = min(end, c.pages)
	if _, err := tx.Exec(ctx, fillSettings); err != nil {
		return err
	}
	// A chunk that ends the first stretch goes on from the table's start
	// with the rows and pages it has left, so that a definition whose
	// rows fit one chunk is read whole in one fold.
	for {
		stop := end
		if c.wrapped && !c.whole { // the second stretch: from the table's start to the fill's
			stop = int64(c.start)
		}
		// The rest of from's page, and pages more.
		upto := pgtype.TID{BlockNumber: uint32(min(int64(c.from.BlockNumber)+1+int64(pages), stop, math.MaxUint32)), Valid: true}
		read, last, ordered, err := fillChunk(ctx, tx, d, c, upto, limit)
		if err != nil {
			return err
		}
		c.read += int(read)
		scanned := max(int64(upto.BlockNumber)-int64(c.from.BlockNumber)-1, 0) // pages after from's
		switch {
		case read == limit && !ordered: // where the chunk ended is not known
			c.whole = true
		case read == limit: // the next chunk starts after its last row
			c.from = last
		case int64(upto.BlockNumber) < stop: // every row before upto, in any order
			c.from = pgtype.TID{BlockNumber: upto.BlockNumber - 1, OffsetNumber: math.MaxUint16, Valid: true}
		case c.start > 0 && !c.wrapped && !c.whole: // the first stretch is read: the pages before it
			c.wrapped, c.from = true, pgtype.TID{Valid: true}
			if limit -= read; scanned < int64(pages) {
				pages -= int(scanned)
				continue
			}
		default:
			c.complete = true
		}
		break
	}
	_, err := tx.Exec(ctx, fillSettingsReset)
	return err
}

// fillStartSample is how many of a fold's owners fillStart looks at: the
// definition's rows before the first of theirs are about a 65th of its
// rows where a build wrote them together, read at the fill's end.
const fillStartSample = 64

// fillStart returns the page of the first row, in the table's order, of
// up to fillStartSample of the owners' unit rows of definition d, or 0
// when none has a row.
func fillStart(ctx context.Context, tx pgx.Tx, d aggDef, byOwner map[string][]foldEvent) (uint32, error) {
	ids := make([]string, 0, min(len(byOwner), fillStartSample))
	for id := range byOwner { // in the map's order, which has nothing to do with their rows' places
		if len(ids) == fillStartSample {
			break
		}
		ids = append(ids, id)
	}
	var first pgtype.TID
	if err := tx.QueryRow(ctx, `SELECT min(ctid) FROM agg_units WHERE experiment = $1 AND metric = $2 AND unit_id = ANY($3)`,
		d.exp.Key, d.metric.Key, ids).Scan(&first); err != nil {
		return 0, err
	}
	if !first.Valid {
		return 0, nil
	}
	return first.BlockNumber, nil
}

// fillChunk reads into copy c definition d's unit rows after ctid c.from
// and before upto, at most limit, and returns how many it read, the last
// one's ctid, and whether they came in the table's order.
func fillChunk(ctx context.Context, tx pgx.Tx, d aggDef, c *cachedDef, upto pgtype.TID, limit int64) (read int64, last pgtype.TID, ordered bool, err error) {
	p := &wireParams{}
	p.text(d.exp.Key)
	p.text(d.metric.Key)
	p.add(appendTID(nil, c.from), 1)
	p.add(appendTID(nil, upto), 1)
	p.add(binary.BigEndian.AppendUint64(nil, uint64(limit)), 1)
	variants := map[string]string{} // each variant's string once a chunk
	last, ordered = c.from, true
	var u foldUnit // decoded into, row after row
	err = queryPrepared(ctx, tx, "flywheel_fill_from", fillFrom, p, func(vals [][]byte) error {
		if err := u.decode(vals, variants); err != nil {
			return fmt.Errorf("unit rows: %w", err)
		}
		read++
		if tidLess(last, u.tid) {
			last = u.tid
		} else {
			ordered = false
		}
		if _, ok := c.units[u.id]; !ok {
			c.units[u.id] = u.cached()
		}
		delete(c.unknown, u.id)
		return nil
	})
	return read, last, ordered, err
}

// tidLess says whether ctid a comes before b in the table's order.
func tidLess(a, b pgtype.TID) bool {
	return a.BlockNumber < b.BlockNumber || a.BlockNumber == b.BlockNumber && a.OffsetNumber < b.OffsetNumber
}

// stagedEvents returns the staged events after cycle folded that
// definition d reads (events), by owner, leaving out those of units
// recomputed whole in their cycle or a later one (pairs says that some
// unit was). The events of the cycle mem, when it is the only one to add,
// are taken from memory; other cycles' are read.
func stagedEvents(ctx context.Context, tx pgx.Tx, d aggDef, events []string, folded int64, pairs bool, mem *stagedCycle) (map[string][]foldEvent, error) {
	// Each event name once (a ratio may read one event on both sides).
	events = slices.Compact(slices.Sorted(slices.Values(events)))
	if mem != nil && mem.cycle == folded+1 {
		// The definitions of an experiment that read the same events
		// (a conversion and a revenue of one purchase event) share them.
		return mem.byOwner(d.exp.Key+"\x00"+d.exp.UnitType+"\x00"+strings.Join(events, "\x00"), func() (map[string][]foldEvent, error) {
			return ownersEvents(ctx, tx, d, events, folded, pairs, mem)
		})
	}
	return ownersEvents(ctx, tx, d, events, folded, pairs, mem)
}

// ownersEvents is stagedEvents, for events sorted and each once.
func ownersEvents(ctx context.Context, tx pgx.Tx, d aggDef, events []string, folded int64, pairs bool, mem *stagedCycle) (map[string][]foldEvent, error) {
	var recomputed map[string]int64
	if pairs {
		rows, err := tx.Query(ctx, recomputedSince, d.exp.Key, folded)
		if err != nil {
			return nil, err
		}
		recomputed = map[string]int64{}
		var id string
		var cycle int64
		if _, err := pgx.ForEachRow(rows, []any{&id, &cycle}, func() error {
			recomputed[id] = cycle
			return nil
		}); err != nil {
			return nil, err
		}
	}
	var byOwner map[string][]foldEvent
	add := func(cycle int64, event string, g *stagedGroup) {
		for i, owner := range g.owners {
			if c, ok := recomputed[owner]; ok && c >= cycle {
				continue
			}
			e := foldEvent{ts: g.ts[i], event: event, value: g.vals[i].Float64, hasValue: g.vals[i].Valid}
			byOwner[owner] = append(byOwner[owner], e)
		}
	}
	if mem != nil && mem.cycle == folded+1 {
		n := 0
		for _, e := range events {
			if g := mem.groups[[2]string{d.exp.UnitType, e}]; g != nil {
				n += len(g.owners)
			}
		}
		byOwner = make(map[string][]foldEvent, n/2) // owners have a few events each
		for _, e := range events {
			if g := mem.groups[[2]string{d.exp.UnitType, e}]; g != nil {
				add(mem.cycle, e, g)
			}
		}
		return byOwner, nil
	}
	byOwner = map[string][]foldEvent{}
	rows, err := tx.Query(ctx, stagedForDef, folded, d.exp.UnitType, events)
	if err != nil {
		return nil, err
	}
	var cycle int64
	var event string
	var g stagedGroup
	_, err = pgx.ForEachRow(rows, []any{&cycle, &g.owners, &g.ts, &g.vals, &event}, func() error {
		if len(g.ts) != len(g.owners) || len(g.vals) != len(g.owners) {
			return fmt.Errorf("staged events of cycle %d: arrays of %d owners, %d times and %d values", cycle, len(g.owners), len(g.ts), len(g.vals))
		}
		add(cycle, event, &g)
		return nil
	})
	return byOwner, err
}

// readLateDays reads the stored days of the late units of probe: their
// day rows, and their last day. A unit with a day row on or after its last
// day breaks what a fold relies on (its unit row holds its last day, its
// day rows the days before); it is returned in broken, its days unread,
// for repairUnits.
func readLateDays(ctx context.Context, tx pgx.Tx, d aggDef, probe []*foldUnit) (broken map[string]bool, err error) {
	refs := make([]unitRef, len(probe)) // in key order, for the index probes
	for i, u := range probe {
		refs[i] = unitRef{idPrefix(u.id), u}
	}
	sortRefs(refs)
	ids := make([]string, len(probe))
	units := make(map[string]*foldUnit, len(probe))
	for i, r := range refs {
		ids[i] = r.u.id
		units[r.u.id] = r.u
	}
	rows, err := tx.Query(ctx, lateDays, d.exp.Key, d.metric.Key, ids)
	if err != nil {
		return nil, err
	}
	var (
		id           string
		day          time.Time
		n, v, nm, dn float64
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &day, &n, &v, &nm, &dn}, func() error {
		u := units[id]
		if at := dayNumber(day); at < u.last.day {
			u.old = append(u.old, foldDay{day: at, n: n, v: v, nm: nm, dn: dn})
		} else {
			if broken == nil {
				broken = map[string]bool{}
			}
			broken[id] = true
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, u := range probe {
		if broken[u.id] {
			u.old = nil
			continue
		}
		u.old = append(u.old, u.last)
		slices.SortFunc(u.old, func(a, b foldDay) int { return cmp.Compare(a.day, b.day) })
	}
	return broken, nil
}

// repairUnits takes the units of broken out of a fold (order, which it
// returns without them) and has them recomputed whole from their events
// by the next cycle, as a consent change has: their stored rows are not
// what a fold can add to, and a cycle that failed on them would fail again
// on every retry, leaving every later event out of the results. Their
// staged events are not lost: the recomputation reads them from events.
// The process's copy looks them up again after that.
func (db *DB) repairUnits(ctx context.Context, tx pgx.Tx, d aggDef, c *cachedDef, order []*foldUnit, broken map[string]bool) ([]*foldUnit, error) {
	ids := make([]string, 0, len(broken))
	for id := range broken {
		ids = append(ids, id)
		delete(c.units, id)
		if c.filling {
			if c.unknown == nil {
				c.unknown = map[string]struct{}{}
			}
			c.unknown[id] = struct{}{}
		}
	}
	slices.Sort(ids)
	types := make([]string, len(ids))
	for i := range types {
		types[i] = d.exp.UnitType
	}
	if _, err := tx.Exec(ctx, enqueueSQL, db.now(), types, ids); err != nil {
		return nil, err
	}
	return slices.DeleteFunc(order, func(u *foldUnit) bool { return broken[u.id] }), nil
}

// unitSums computes the unit's new value from its stored one and the sums
// of its new events (windowSums), and its new days (daySums over the events
// inWindow), as the SQL of those names does.
func (s foldSpec) unitSums(u *foldUnit) {
	inFrom, inTo, pre := u.first.Add(s.from), u.first.Add(s.to), u.first.Add(-s.cuped)
	var nIn, nPre, vIn, vPre, num, den float64
	for _, e := range u.events {
		beforeEnd := s.to == 0 || e.ts.Before(inTo)
		if !e.ts.Before(inFrom) && beforeEnd {
			nIn++
			u.addDay(e, s)
		}
		if !e.ts.Before(u.first) && beforeEnd {
			vIn += e.valueOr(0, e.hasValue)
			if e.event == s.numerator {
				num += e.valueOr(1, true)
			}
			if e.event == s.denom {
				den += e.valueOr(1, true)
			}
		}
		if !e.ts.Before(pre) && e.ts.Before(u.first) {
			nPre++
			vPre += e.valueOr(0, e.hasValue)
		}
	}
	switch s.typ {
	case flywheel.MetricConversion:
		u.newY, u.newX = max(u.y, indicator(nIn)), max(u.x, indicator(nPre))
	case flywheel.MetricRetention:
		u.newY, u.newX = max(u.y, indicator(nIn)), 0
	case flywheel.MetricCount:
		u.newY, u.newX = u.y+nIn, u.x+nPre
	case flywheel.MetricRatio:
		u.newY, u.newX = u.y+vIn, 0
	default:
		u.newY, u.newX = u.y+vIn, u.x+vPre
	}
	u.nn, u.nd = u.num+num, u.den+den
	slices.SortFunc(u.days, func(a, b foldDay) int { return cmp.Compare(a.day, b.day) })
}

// valueOr is the event's value, or def when it has none; add says whether
// it counts at all (sum skips NULL values, COALESCE(value, 1) does not).
func (e foldEvent) valueOr(def float64, add bool) float64 {
	switch {
	case !add:
		return 0
	case e.hasValue:
		return e.value
	}
	return def
}

func (u *foldUnit) addDay(e foldEvent, s foldSpec) {
	day := dayNumber(e.ts)
	i := slices.IndexFunc(u.days, func(d foldDay) bool { return d.day == day })
	if i < 0 {
		u.days = append(u.days, foldDay{day: day})
		i = len(u.days) - 1
	}
	d := &u.days[i]
	d.n++
	d.v += e.valueOr(0, e.hasValue)
	if e.event == s.numerator {
		d.nm += e.valueOr(1, true)
	}
	if e.event == s.denom {
		d.dn += e.valueOr(1, true)
	}
}

func (u *foldUnit) changed() bool {
	return u.newY != u.y || u.newX != u.x || u.nn != u.num || u.nd != u.den
}

func indicator(n float64) float64 {
	if n > 0 {
		return 1
	}
	return 0
}

// capped is the SQL function capped: a unit's value from its running count
// n and sum v, capped.
func (s foldSpec) capped(n, v float64) float64 {
	var y float64
	switch s.typ {
	case flywheel.MetricConversion, flywheel.MetricRetention:
		y = indicator(n)
	case flywheel.MetricCount:
		y = n
	default:
		y = v
	}
	return s.capTo(y)
}

func (s foldSpec) capTo(y float64) float64 {
	if s.cap != nil {
		return min(y, *s.cap)
	}
	return y
}

// side is a unit's value on one day, after the day (y, num, den) and
// before it (y0, num0, den0), as dayDeltas computes them.
type side struct{ y, y0, num, num0, den, den0 float64 }

// dayKey is a variant's day.
type dayKey struct {
	variant string
	day     int32
}

// dayChangeSums are the seven numeric sums of agg_variant_days.
type dayChangeSums [7]decSum

func (ds *dayChangeSums) add(after, before side) {
	ds[0].addDiff(after.y-after.y0, before.y-before.y0)
	ds[1].addDiff(float64(after.y*after.y)-float64(after.y0*after.y0), float64(before.y*before.y)-float64(before.y0*before.y0))
	ds[2].addDiff(after.num-after.num0, before.num-before.num0)
	ds[3].addDiff(after.den-after.den0, before.den-before.den0)
	ds[4].addDiff(float64(after.num*after.num)-float64(after.num0*after.num0), float64(before.num*before.num)-float64(before.num0*before.num0))
	ds[5].addDiff(float64(after.den*after.den)-float64(after.den0*after.den0), float64(before.den*before.den)-float64(before.den0*before.den0))
	ds[6].addDiff(float64(after.num*after.den)-float64(after.num0*after.den0), float64(before.num*before.den)-float64(before.num0*before.den0))
}

// dayChanges adds the unit's changes of agg_variant_days to out, each the
// change after the new events minus the change before them:
//
//   - for a late unit, from running sums over all of its days before and
//     after the new events; a day before its first new one is the same
//     before and after, and is left out;
//   - for one whose new days are on or after its last, from its value and
//     the new days alone: its days up to them add up to its value in
//     agg_units, and only the new days change. On a day it already has
//     (its last), the change stored for the day was capped(p) minus its
//     value before the day; the new change is capped(p + the new events)
//     minus the same value before, so the difference to add is capped(p +
//     new) - capped(p), as for a new day. (That sum is the unit's, not its
//     days' running sum, so a later change may subtract a value that
//     differs from this one in the last bits of a non-integer value: what
//     agg_variant_days keeps is exact to rounding there, not to the bit.)
func (s foldSpec) dayChanges(u *foldUnit, out map[dayKey]*dayChangeSums) {
	at := func(day int32) *dayChangeSums {
		k := dayKey{u.variant, day}
		if out[k] == nil {
			out[k] = &dayChangeSums{}
		}
		return out[k]
	}
	if !u.late {
		var cn, cv, cnum, cden float64
		for _, d := range u.days {
			cn, cv, cnum, cden = cn+d.n, cv+d.v, cnum+d.nm, cden+d.dn
			m := side{
				y: s.capped(u.y+cn, u.y+cv), y0: s.capped(u.y+cn-d.n, u.y+cv-d.v),
				num: s.capTo(u.num + cnum), num0: s.capTo(u.num + cnum - d.nm),
				den: u.den + cden, den0: u.den + cden - d.dn,
			}
			// least(x, NULL) is x: a missing cap caps nothing, as capTo.
			at(d.day).add(m, side{})
		}
		return
	}
	// Merge the stored days (o) and the new ones (a) in day order.
	var co, cm foldDay // running sums before and after
	since := false
	i, j := 0, 0
	for i < len(u.old) || j < len(u.days) {
		var o, a foldDay
		added := false
		switch {
		case j == len(u.days) || (i < len(u.old) && u.old[i].day < u.days[j].day):
			o = u.old[i]
			a.day = o.day
			i++
		case i == len(u.old) || u.days[j].day < u.old[i].day:
			a = u.days[j]
			o.day = a.day
			added = true
			j++
		default:
			o, a = u.old[i], u.days[j]
			added = true
			i, j = i+1, j+1
		}
		mn, mv, mnum, mden := o.n+a.n, o.v+a.v, o.nm+a.nm, o.dn+a.dn
		co = foldDay{n: co.n + o.n, v: co.v + o.v, nm: co.nm + o.nm, dn: co.dn + o.dn}
		cm = foldDay{n: cm.n + mn, v: cm.v + mv, nm: cm.nm + mnum, dn: cm.dn + mden}
		since = since || added
		if !since {
			continue
		}
		before := side{
			y: s.capped(co.n, co.v), y0: s.capped(co.n-o.n, co.v-o.v),
			num: s.capTo(co.nm), num0: s.capTo(co.nm - o.nm), den: co.dn, den0: co.dn - o.dn,
		}
		after := side{
			y: s.capped(cm.n, cm.v), y0: s.capped(cm.n-mn, cm.v-mv),
			num: s.capTo(cm.nm), num0: s.capTo(cm.nm - mnum), den: cm.dn, den0: cm.dn - mden,
		}
		at(o.day).add(after, before)
	}
}

// variantSums are the ten numeric sums of agg_variants that a fold
// changes (its units' counts do not change).
type variantSums [10]decSum

// add adds sign times the contribution of a unit row (variantDelta).
func (vs *variantSums) add(s foldSpec, sign float64, y, x, num, den float64) {
	cy, cx, cnum := s.capTo(y), s.capTo(x), s.capTo(num)
	for i, v := range [10]float64{cy, float64(cy * cy), cx, float64(cx * cx), float64(cx * cy), cnum, den,
		float64(cnum * cnum), float64(den * den), float64(cnum * den)} {
		vs[i].addSigned(sign, v)
	}
}

// writeArgs are writeFold's parameters for the fold of units, in wire
// format (queryPrepared), the units whose rows it changes, in their order
// in $3, and the number of day rows it adds to.
func (s foldSpec) writeArgs(d aggDef, units []*foldUnit, pages *pageUpdates) (p *wireParams, changed []*foldUnit, days int) {
	var (
		vdays       = map[dayKey]*dayChangeSums{}
		vsums       = map[string]*variantSums{}
		changedTIDs []unitRef // by ctid
		dayUnits    []unitRef // by id: the units with day rows to write
		nDays       int
	)
	for _, u := range units {
		u.newLast = u.last
		if len(u.days) > 0 && !u.settled {
			rows := 0
			u.newLast = u.moveLast(func(foldDay) { rows++ })
			if rows > 0 {
				nDays += rows
				dayUnits = append(dayUnits, unitRef{idPrefix(u.id), u})
			}
			if u.state == 0 {
				s.dayChanges(u, vdays)
			}
		}
		if u.changed() && u.state == 0 {
			vs := vsums[u.variant]
			if vs == nil {
				vs = &variantSums{}
				vsums[u.variant] = vs
			}
			vs.add(s, 1, u.newY, u.newX, u.nn, u.nd)
			vs.add(s, -1, u.y, u.x, u.num, u.den)
		}
		if u.rewritten() {
			changedTIDs = append(changedTIDs, unitRef{uint64(u.tid.BlockNumber)<<16 | uint64(u.tid.OffsetNumber), u})
		}
	}
	// The day rows added to, in key order ($8-$13): moveLast again, now
	// that the arrays can be sized (a unit has a few new days at most).
	sortRefs(dayUnits)
	dUnits, dDays := newBinArray(oidText, nDays*16), newBinArray(oidDate, nDays*8)
	dn, dv, dnum, dden := newBinArray(oidFloat8, nDays*12), newBinArray(oidFloat8, nDays*12), newBinArray(oidFloat8, nDays*12), newBinArray(oidFloat8, nDays*12)
	for _, r := range dayUnits {
		r.u.moveLast(func(day foldDay) {
			dUnits.text(r.u.id)
			dDays.date(day.day)
			dn.float8(day.n)
			dv.float8(day.v)
			dnum.float8(day.nm)
			dden.float8(day.dn)
		})
	}
	// The changed unit rows in ctid order, with their new values ($3-$7)
	// and last days ($14, $40-$43), and the values ($35-$39) and last days
	// ($44-$48) the fold read.
	slices.SortFunc(changedTIDs, func(a, b unitRef) int { return cmp.Compare(a.k, b.k) })
	n := len(changedTIDs)
	tids, ids := newBinArray(oidTID, n*10), newBinArray(oidText, n*16)
	lastDays, oldLastDays := newBinArray(oidDate, n*8), newBinArray(oidDate, n*8)
	var cols [16]*binArray // ys, xs, nums, dens, then the old ones; the last days' sums, then the old ones
	for i := range cols {
		cols[i] = newBinArray(oidFloat8, n*12)
	}
	blocks := make([]uint32, n)
	for i, r := range changedTIDs {
		blocks[i] = r.u.tid.BlockNumber
	}
	look := newBinArray(oidBool, n*5)
	for _, l := range pages.mark(blocks) {
		look.boolean(l)
	}
	changed = make([]*foldUnit, n)
	for i, r := range changedTIDs {
		u := r.u
		changed[i] = u
		tids.tid(u.tid)
		ids.text(u.id)
		lastDays.dateOrNull(u.newLast.day)
		oldLastDays.dateOrNull(u.last.day)
		l, o := u.newLast, u.last
		for i, v := range [16]float64{u.newY, u.newX, u.nn, u.nd, u.y, u.x, u.num, u.den,
			l.n, l.v, l.nm, l.dn, o.n, o.v, o.nm, o.dn} {
			cols[i].float8(v)
		}
	}
	// The per-variant day changes ($15-$23) and variant sums ($24-$34):
	// few rows, their numerics as text.
	keys := make([]dayKey, 0, len(vdays))
	for k, ds := range vdays {
		if !ds.zero() {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b dayKey) int { return cmp.Or(cmp.Compare(a.variant, b.variant), cmp.Compare(a.day, b.day)) })
	vdVariants, vdDays := newBinArray(oidText, 0), newBinArray(oidDate, 0)
	var vdCols [7][]string
	for _, k := range keys {
		vdVariants.text(k.variant)
		vdDays.date(k.day)
		for i := range vdCols {
			vdCols[i] = append(vdCols[i], vdays[k][i].String())
		}
	}
	variants := make([]string, 0, len(vsums))
	for v, vs := range vsums {
		if !vs.zero() {
			variants = append(variants, v)
		}
	}
	slices.Sort(variants)
	vVariants := newBinArray(oidText, 0)
	var vCols [10][]string
	for _, v := range variants {
		vVariants.text(v)
		for i := range vCols {
			vCols[i] = append(vCols[i], vsums[v][i].String())
		}
	}
	p = &wireParams{}
	p.text(d.exp.Key)
	p.text(d.metric.Key)
	p.array(tids)
	for _, c := range cols[:4] {
		p.array(c)
	}
	for _, c := range []*binArray{dUnits, dDays, dn, dv, dnum, dden} {
		p.array(c)
	}
	p.array(lastDays)
	p.array(vdVariants)
	p.array(vdDays)
	for _, c := range vdCols {
		p.literal(numericArray(c))
	}
	p.array(vVariants)
	for _, c := range vCols {
		p.literal(numericArray(c))
	}
	p.array(ids)
	for _, c := range cols[4:8] {
		p.array(c)
	}
	for _, c := range cols[8:12] {
		p.array(c)
	}
	p.array(oldLastDays)
	for _, c := range cols[12:] {
		p.array(c)
	}
	p.array(look)
	return p, changed, nDays
}

// rewritten says whether the fold writes the unit's row: its values or
// its last day change.
func (u *foldUnit) rewritten() bool { return u.changed() || u.newLast != u.last }

// moveLast returns the unit's last day once its new days (in day order)
// are added, and calls closed, in day order, with each other day whose
// sums change, as a row of agg_unit_days adds them: a new day before the
// last (its new sums), and the stored last day when a new day follows it
// (its stored sums, with the new ones of that day).
func (u *foldUnit) moveLast(closed func(foldDay)) foldDay {
	top := u.days[len(u.days)-1]
	if u.last.day != noDay && u.last.day >= top.day { // the last day stays
		l := u.last
		for _, d := range u.days {
			if d.day == l.day {
				l = l.plus(d)
			} else {
				closed(d)
			}
		}
		return l
	}
	stored := u.last.day != noDay // the stored last day, until it is closed
	for _, d := range u.days[:len(u.days)-1] {
		if stored && u.last.day < d.day {
			closed(u.last)
			stored = false
		}
		if stored && u.last.day == d.day {
			d = u.last.plus(d)
			stored = false
		}
		closed(d)
	}
	if stored {
		closed(u.last)
	}
	return top
}

// unitRef is a fold's unit with a key to sort it by: the sort compares
// the keys, held in the slice, before it reads a unit. Sorting the units'
// pointers by their ids alone read two units and two ids, scattered in
// memory, for each comparison: 6.6 s of a 50,000 events/s run's CPU
// (BENCHMARKS.md, "Less Go CPU in a fold").
type unitRef struct {
	k uint64
	u *foldUnit
}

// idPrefix is the first 8 bytes of id as a big-endian number (padded
// with zeros): two ids whose prefixes differ are in the order of their
// prefixes.
func idPrefix(id string) uint64 {
	var b [8]byte
	copy(b[:], id)
	return binary.BigEndian.Uint64(b[:])
}

// compareIDs orders ids a and b, with prefixes ka and kb (idPrefix), in
// byte order, reading the ids only when the prefixes are equal.
func compareIDs(ka uint64, a string, kb uint64, b string) int {
	if ka != kb {
		return cmp.Compare(ka, kb)
	}
	return strings.Compare(a, b)
}

// sortRefs sorts refs keyed by idPrefix in the byte order of their ids.
func sortRefs(refs []unitRef) {
	slices.SortFunc(refs, func(a, b unitRef) int { return compareIDs(a.k, a.u.id, b.k, b.u.id) })
}

// sortIDs sorts ids in byte order, as sortRefs does.
func sortIDs(ids []string) {
	type ref struct {
		k  uint64
		id string
	}
	refs := make([]ref, len(ids))
	for i, id := range ids {
		refs[i] = ref{idPrefix(id), id}
	}
	slices.SortFunc(refs, func(a, b ref) int { return compareIDs(a.k, a.id, b.k, b.id) })
	for i, r := range refs {
		ids[i] = r.id
	}
}

// numericArray is a numeric[] in PostgreSQL's text format, of decimals as
// decSum writes them.
func numericArray(vals []string) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, v := range vals {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('"')
		b.WriteString(v)
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

func (ds *dayChangeSums) zero() bool {
	for i := range ds {
		if !ds[i].isZero() {
			return false
		}
	}
	return true
}

func (vs *variantSums) zero() bool {
	for i := range vs {
		if !vs[i].isZero() {
			return false
		}
	}
	return true
}

// dayNumber is the UTC day of t, in days since 1970-01-01.
func dayNumber(t time.Time) int32 {
	s := t.Unix()
	if s < 0 && s%86400 != 0 {
		return int32(s/86400) - 1
	}
	return int32(s / 86400)
}

// decSum is an exact sum of decimals, each the value of a float8 as
// PostgreSQL's float8::numeric gives it: the float's shortest-or-15-digit
// rounding, "%.15g" (exactNumeric in SQL computes the same value). Terms
// are kept by decimal exponent, as int64 sums of their mantissas (at most
// 15 digits), spilling into big integers before they could overflow.
type decSum struct {
	terms map[int]int64
	big   map[int]*big.Int
	// special is the sum when a term is not finite, as numeric sums them:
	// "NaN", "Infinity" or "-Infinity" (no stored or ingested value is,
	// but a fold must not fail where the SQL it replaced did not).
	special string
}

// addDiff adds float8::numeric of after minus that of before (sidesSum).
func (s *decSum) addDiff(after, before float64) {
	s.addSigned(1, after)
	s.addSigned(-1, before)
}

// addSigned adds sign (1 or -1) times float8::numeric of x.
func (s *decSum) addSigned(sign, x float64) {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		s.addSpecial(sign * x)
		return
	}
	m, e := float8Numeric(x)
	if m == 0 {
		return
	}
	if sign < 0 {
		m = -m
	}
	if s.terms == nil {
		s.terms = map[int]int64{}
	}
	old := s.terms[e]
	if old > 1<<62 || old < -(1<<62) {
		if s.big == nil {
			s.big = map[int]*big.Int{}
		}
		if s.big[e] == nil {
			s.big[e] = new(big.Int)
		}
		s.big[e].Add(s.big[e], big.NewInt(old))
		old = 0
	}
	s.terms[e] = old + m
}

// addSpecial adds a term that is NaN or infinite.
func (s *decSum) addSpecial(x float64) {
	t := "NaN"
	switch {
	case math.IsInf(x, 1):
		t = "Infinity"
	case math.IsInf(x, -1):
		t = "-Infinity"
	}
	if s.special == "" || s.special == t {
		s.special = t
	} else {
		s.special = "NaN" // NaN with anything, and Infinity with -Infinity
	}
}

func (s *decSum) isZero() bool {
	return s.special == "" && s.total().Sign() == 0
}

// total is the sum as a big integer times 10^exp, exp the least exponent
// of a term (0 when none).
func (s *decSum) totalExp() (*big.Int, int) {
	exp, first := 0, true
	for e, v := range s.terms {
		if v != 0 && (first || e < exp) {
			exp, first = e, false
		}
	}
	for e, v := range s.big {
		if v.Sign() != 0 && (first || e < exp) {
			exp, first = e, false
		}
	}
	sum := new(big.Int)
	ten := big.NewInt(10)
	addAt := func(e int, v *big.Int) {
		if v.Sign() == 0 {
			return
		}
		t := new(big.Int).Exp(ten, big.NewInt(int64(e-exp)), nil)
		sum.Add(sum, t.Mul(t, v))
	}
	for e, v := range s.terms {
		addAt(e, big.NewInt(v))
	}
	for e, v := range s.big {
		addAt(e, v)
	}
	return sum, exp
}

func (s *decSum) total() *big.Int {
	t, _ := s.totalExp()
	return t
}

// String is the sum as numeric input ("0", "-12345e-4").
func (s *decSum) String() string {
	if s.special != "" {
		return s.special
	}
	t, e := s.totalExp()
	if t.Sign() == 0 {
		return "0"
	}
	return t.String() + "e" + strconv.Itoa(e)
}

// float8Numeric is x::numeric as m × 10^e: the cheap cases of exactNumeric
// first (zero; below 1e11, whole, or whole in hundredths or ten-
// thousandths: exactly the decimal the cast gives, see exactNumeric), else
// the float's 15 significant digits, rounded half to even as C's printf
// "%.15g" (and Go's strconv) round.
func float8Numeric(x float64) (m int64, e int) {
	if x == 0 {
		return 0, 0
	}
	if math.Abs(x) < 1e11 {
		if x == math.Trunc(x) {
			return int64(x), 0
		}
		if k := math.RoundToEven(x * 100); k/100 == x {
			return int64(k), -2
		}
		if k := math.RoundToEven(x * 10000); k/10000 == x {
			return int64(k), -4
		}
	}
	var buf [32]byte
	b := strconv.AppendFloat(buf[:0], x, 'e', 14, 64) // d.dddddddddddddde±XX
	neg := b[0] == '-'
	if neg {
		b = b[1:]
	}
	for _, c := range b[:1] {
		m = int64(c - '0')
	}
	for _, c := range b[2:16] {
		m = m*10 + int64(c-'0')
	}
	exp, _ := strconv.Atoi(string(b[17:]))
	if neg {
		m = -m
	}
	return m, exp - 14
}

// unitCache keeps, per definition, the unit rows that its folds of staged
// track events read and wrote, so that the next fold reads from the table
// only the units it has not seen: a fold's lookups of its owners' rows
// were about half of its time (BENCHMARKS.md, "The tracks fold in Go").
// A definition's copy is used only at the epoch it was recorded at
// (agg_defs.epoch, which every other change of its unit rows moves on,
// see migration 0021), and each row is written back only if it still
// holds what the copy says (writeFold).
//
// A copy is also filled from the table by each fold (fillUnits): a chunk
// of the definition's rows in the table's order, sized by the fold's
// owners, from the definition's first rows round to where it began, so
// that after a start or a build the folds stop looking their owners up
// one by one (BENCHMARKS.md, "The unit copy filled in chunks", "The fill
// in the table's order, a chunk a fold", "The fill starts at the
// definition's rows"). Once every row has been read the copy is complete:
// an owner it lacks has no row, so is not in the experiment, and is not
// looked up at all, unless the cycle recomputed it since (unknown).
type unitCache struct {
	mu   sync.Mutex
	defs map[[2]string]*cachedDef
	// fillLeast, fillChunk and fillPerOwner size a fold's chunk of an
	// incomplete copy (fillStep): 0 is fillLeast, defaultFillChunk and
	// fillPerOwner (or fillPerOwnerShared); tests set fewer, to fill over
	// many folds.
	fillLeast, fillChunk, fillPerOwner int
	// fillPages, when set (tests), is the most pages a chunk scans.
	fillPages int
	// shared holds the definitions whose copies another process has
	// dropped (moved their epochs on) since this one started.
	shared map[[2]string]bool
}

// defaultFillChunk is the most rows a fold reads into an incomplete copy
// (fillUnits): 0.3–1 s of one connection by the hosts measured, so that a
// large definition's fill spreads over a few cycles instead of stalling
// one (BENCHMARKS.md, "The fill in the table's order, a chunk a fold"):
// the bench's definitions of 1,060,000 rows, read whole by their first
// busy fold, stalled a cycle for 5 s on a slow host.
const defaultFillChunk = 200_000

type cachedDef struct {
	epoch int64
	units map[string]cachedUnit
	// filling: the copy also holds every unit row the fill has passed in
	// the table's order, from page start up to ctid from (the last row
	// the fill read, or the end of the last page it scanned), or, once
	// wrapped, from page start to the end and from the table's start up
	// to from; complete: every row, except those of
	// unknown, the units recomputed since the fill read them (a cycle may
	// have added, changed or removed their rows); whole: a chunk's rows
	// came out of the table's order, so the next chunk reads all the rows.
	filling, complete, whole bool
	from                     pgtype.TID
	// pages: the table's pages when the fill read its first chunk (-1
	// before): every row it lacks is on them. The fill reads from page
	// start to pages, then (wrapped) from page 0 to start (fillUnits).
	pages   int64
	start   uint32
	wrapped bool
	// read: the rows the fill has read, for the folds' reports.
	read    int
	unknown map[string]struct{}
}

// cachedUnit is a unit row of agg_units, with its ctid.
type cachedUnit struct {
	tid            pgtype.TID
	variant        string
	state          int16
	y, x, num, den float64
	first          time.Time
	last           foldDay
}

// maxCachedUnits bounds the unit rows the copies of all definitions hold
// together (about 190 bytes each, so some 760 MB): a copy that would
// take the total past it is not kept, and its definition's folds read
// their units from the table.
const maxCachedUnits = 4_000_000

// take returns the definition's copy if it was recorded at epoch, else an
// empty one, and removes it until put: a fold that fails leaves nothing.
func (c *unitCache) take(key [2]string, epoch int64) *cachedDef {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.defs[key]
	delete(c.defs, key)
	if d != nil && d.epoch != epoch {
		c.dropped(key)
	}
	if d == nil || d.epoch != epoch {
		return &cachedDef{epoch: epoch, units: map[string]cachedUnit{}}
	}
	return d
}

// dropped records that another process moved definition key's epoch on
// past this one's copy (c.mu held).
func (c *unitCache) dropped(key [2]string) {
	if c.shared == nil {
		c.shared = map[[2]string]bool{}
	}
	c.shared[key] = true
}

// isShared says whether another process has dropped a copy of definition
// key since this one started.
func (c *unitCache) isShared(key [2]string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.shared[key]
}

// held is the units all copies hold (c.mu held).
func (c *unitCache) held() int {
	n := 0
	for _, d := range c.defs {
		n += d.size()
	}
	return n
}

// room says whether copies could hold n more units.
func (c *unitCache) room(n int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.held()+n <= maxCachedUnits
}

func (d *cachedDef) size() int { return len(d.units) + len(d.unknown) }

// put records the definition's copy at epoch, if there is room for it.
func (c *unitCache) put(key [2]string, epoch int64, d *cachedDef) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.defs == nil {
		c.defs = map[[2]string]*cachedDef{}
	}
	if c.held()+d.size() <= maxCachedUnits {
		d.epoch = epoch
		c.defs[key] = d
	}
}

// forget drops the copies of definitions that no longer exist.
func (c *unitCache) forget(keys [][2]string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range keys {
		delete(c.defs, k)
	}
}

// advance moves the definition's copy from epoch old to next, if it is at
// old (a fold that changed none of its rows).
func (c *unitCache) advance(key [2]string, old, next int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d := c.defs[key]; d != nil && d.epoch == old {
		d.epoch = next
	}
}

// recomputed updates the copies after a cycle that recomputed the units of
// pairs (experiment → unit ids) whole and moved the epochs of their
// definitions from old to new: a copy at the old epoch forgets those units
// (a filled one marks them unknown) and moves to the new one; any other is
// dropped.
func (c *unitCache) recomputed(pairs map[string][]string, moved []epochMove) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, mv := range moved {
		d := c.defs[mv.key]
		if d == nil {
			continue
		}
		if d.epoch != mv.old {
			delete(c.defs, mv.key)
			c.dropped(mv.key)
			continue
		}
		for _, id := range pairs[mv.key[0]] {
			delete(d.units, id)
			if d.filling {
				if d.unknown == nil {
					d.unknown = map[string]struct{}{}
				}
				d.unknown[id] = struct{}{}
			}
		}
		d.epoch = mv.new
	}
}

// epochMove is a definition's epoch moved by a cycle.
type epochMove struct {
	key      [2]string
	old, new int64
}

// moveEpochs moves on, in the cycle's transaction, the epochs of the
// definitions of the experiments whose units the cycle recomputed, and
// returns what to tell the unit cache once the transaction commits.
func moveEpochs(ctx context.Context, tx pgx.Tx) (func(*unitCache), error) {
	rows, err := tx.Query(ctx, `SELECT experiment, unit_id FROM a_pairs`)
	if err != nil {
		return nil, err
	}
	pairs := map[string][]string{}
	var exp, id string
	if _, err := pgx.ForEachRow(rows, []any{&exp, &id}, func() error {
		pairs[exp] = append(pairs[exp], id)
		return nil
	}); err != nil || len(pairs) == 0 {
		return nil, err
	}
	exps := make([]string, 0, len(pairs))
	for e := range pairs {
		exps = append(exps, e)
	}
	moved, err := moveEpochsWhere(ctx, tx, `experiment = ANY($1) AND metric <> ''`, exps)
	if err != nil {
		return nil, err
	}
	return func(c *unitCache) { c.recomputed(pairs, moved) }, nil
}

// moveEpochsWhere moves on the epochs of the definitions in agg_defs that
// match where (with args) and returns each one's old and new epoch.
func moveEpochsWhere(ctx context.Context, tx pgx.Tx, where string, args ...any) ([]epochMove, error) {
	rows, err := tx.Query(ctx, `UPDATE agg_defs d SET epoch = nextval('agg_epoch')
		FROM (SELECT experiment, metric, epoch FROM agg_defs WHERE `+where+`) o
		WHERE d.experiment = o.experiment AND d.metric = o.metric
		RETURNING d.experiment, d.metric, o.epoch, d.epoch`, args...)
	if err != nil {
		return nil, err
	}
	var moved []epochMove
	var mv epochMove
	_, err = pgx.ForEachRow(rows, []any{&mv.key[0], &mv.key[1], &mv.old, &mv.new}, func() error {
		moved = append(moved, mv)
		return nil
	})
	return moved, err
}
