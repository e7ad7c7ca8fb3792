package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// New track events applied as deltas to the values of the units that own
// them (store/aggregate.go describes the whole).

// stageTracks writes the cycle's new track events to agg_staged under a
// new cycle number, each with the units that own it: the unit itself (for
// experiments on its unit type) and its identity root (for customer
// experiments), for units not recomputed whole in this cycle (a unit's
// window sums only grow by the event's contribution, and a conversion only
// turns on, so its history need not be read again). Each definition adds
// them later, on a connection of its own (foldStaged). leftovers says that
// staged events of earlier cycles are still to be added by some
// definition: then every unit this cycle recomputed is recorded, since its
// recomputation counted them.
func stageTracks(ctx context.Context, tx pgx.Tx, rep *AggregateReport, oldest time.Time, leftovers bool, last *time.Time) error {
	if rep.Tracks == 0 && !(leftovers && rep.Pairs > 0) {
		return nil
	}
	var cycle int64
	if err := tx.QueryRow(ctx, `SELECT nextval('agg_cycle')`).Scan(&cycle); err != nil {
		return err
	}
	staged := int64(0)
	if rep.Tracks > 0 {
		// Each id's own link is looked up once (customer_id NULL: none): a
		// customer with none is its own root, and only linked ids walk on.
		if _, err := tx.Exec(ctx, `
		DELETE FROM a_new_tracks t USING a_dirty d WHERE d.unit_type = t.unit_type AND d.unit_id = t.unit_id;
		CREATE TEMP TABLE a_track_units ON COMMIT DROP AS
		SELECT t.unit_type, t.unit_id, a.customer_id FROM (SELECT DISTINCT unit_type, unit_id FROM a_new_tracks ORDER BY unit_type, unit_id) t
		LEFT JOIN LATERAL (
		    SELECT a.customer_id FROM aliases a WHERE a.unit_type = t.unit_type AND a.unit_id = t.unit_id OFFSET 0) a ON true;
		ANALYZE a_track_units`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TEMP TABLE a_track_roots ON COMMIT DROP AS
		`+walkFromLinks+`, ends AS (
		    SELECT DISTINCT ON (unit_type, unit_id) unit_type, unit_id, root FROM walk ORDER BY unit_type, unit_id, depth DESC
		)
		SELECT unit_type, unit_id, root FROM ends e
		WHERE NOT EXISTS (SELECT 1 FROM aliases a WHERE a.unit_type = 'customer' AND a.unit_id = e.root AND a.customer_id <> e.root OFFSET 0)
		UNION ALL
		SELECT unit_type, unit_id, unit_id FROM a_track_units WHERE unit_type = 'customer' AND customer_id IS NULL`); err != nil {
			return err
		}
		// Whether an owner is in an experiment is left to each definition's
		// lookup of its unit rows (by primary key): a lookup of the owners'
		// experiments first would read every unit row twice.
		if _, err := tx.Exec(ctx, `ANALYZE a_track_roots`); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `INSERT INTO agg_staged (cycle, owner_type, owner, ts, event, value)
		SELECT $1::int8, t.unit_type, t.unit_id, t.ts, t.event, t.value
		FROM a_new_tracks t WHERE t.unit_type <> 'customer'
		UNION ALL
		SELECT $1::int8, 'customer', r.root, t.ts, t.event, t.value
		FROM a_new_tracks t JOIN a_track_roots r ON r.unit_type = t.unit_type AND r.unit_id = t.unit_id`, cycle)
		if err != nil {
			return err
		}
		staged = tag.RowsAffected()
		if _, err := tx.Exec(ctx, `ANALYZE agg_staged`); err != nil {
			return err
		}
	}
	// The units recomputed whole: those that own a staged event (of this
	// cycle, or of any with leftovers).
	pairs := int64(0)
	if rep.Pairs > 0 && (staged > 0 || leftovers) {
		sql := `INSERT INTO agg_staged_pairs (experiment, unit_id, cycle)
			SELECT p.experiment, p.unit_id, $1 FROM a_pairs p
			WHERE EXISTS (SELECT 1 FROM agg_staged s WHERE s.cycle = $1 AND s.owner = p.unit_id)`
		if leftovers {
			sql = `INSERT INTO agg_staged_pairs (experiment, unit_id, cycle) SELECT experiment, unit_id, $1 FROM a_pairs`
		}
		tag, err := tx.Exec(ctx, sql, cycle)
		if err != nil {
			return err
		}
		pairs = tag.RowsAffected()
	}
	// A cycle that staged nothing (every track event's unit recomputed
	// whole) leaves the definitions nothing to fold.
	if staged > 0 || pairs > 0 {
		if _, err := tx.Exec(ctx, `INSERT INTO agg_staged_cycles (cycle, at, events) VALUES ($1, $2, $3)`, cycle, oldest, staged); err != nil {
			return err
		}
	}
	rep.lap("track owners", last)
	return nil
}

// collectStaged removes what every definition has folded from the staging
// tables, and says whether staged events remain that some definition has
// not (leftovers: a definition's fold failed, or its process stopped,
// after the cycle that staged them). Only the aggregation, under its lock,
// reads these tables, so emptying them whole is safe.
func collectStaged(ctx context.Context, tx pgx.Tx) (leftovers bool, err error) {
	var latest, folded *int64
	if err := tx.QueryRow(ctx, `SELECT (SELECT max(cycle) FROM agg_staged_cycles),
		(SELECT min(folded_cycle) FROM agg_defs WHERE metric <> '')`).Scan(&latest, &folded); err != nil {
		return false, err
	}
	switch {
	case latest == nil:
		return false, nil
	case folded == nil || *folded >= *latest:
		_, err = tx.Exec(ctx, `TRUNCATE agg_staged, agg_staged_pairs; DELETE FROM agg_staged_cycles`)
		return false, err
	}
	for _, table := range []string{"agg_staged", "agg_staged_pairs", "agg_staged_cycles"} {
		if _, err := tx.Exec(ctx, `DELETE FROM `+table+` WHERE cycle <= $1`, *folded); err != nil {
			return false, err
		}
	}
	return true, nil
}

// stagedFolds is what the definitions of a cycle still have to fold: each
// definition behind the latest staged cycle, with the cycle it has folded.
type stagedFolds struct {
	latest int64
	pairs  bool // agg_staged_pairs has rows: folds check each event's owner
	defs   []stagedFold
}

type stagedFold struct {
	def    aggDef
	folded int64
}

// pendingFolds returns the definitions of ready behind the latest staged
// cycle (every definition in agg_defs is ready or was just built, at the
// latest cycle, when the cycle's transaction ends).
func pendingFolds(ctx context.Context, tx pgx.Tx, ready []aggDef) (stagedFolds, error) {
	var f stagedFolds
	var latest *int64
	if err := tx.QueryRow(ctx, `SELECT (SELECT max(cycle) FROM agg_staged_cycles),
		EXISTS (SELECT 1 FROM agg_staged_pairs)`).Scan(&latest, &f.pairs); err != nil || latest == nil {
		return f, err
	}
	f.latest = *latest
	rows, err := tx.Query(ctx, `SELECT experiment, metric, folded_cycle FROM agg_defs
		WHERE metric <> '' AND folded_cycle < $1 ORDER BY experiment, metric`, f.latest)
	if err != nil {
		return f, err
	}
	type behind struct {
		exp, metric string
		folded      int64
	}
	bs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (b behind, err error) {
		err = r.Scan(&b.exp, &b.metric, &b.folded)
		return b, err
	})
	if err != nil {
		return f, err
	}
	for _, b := range bs {
		i := slices.IndexFunc(ready, func(d aggDef) bool { return d.exp.Key == b.exp && d.key() == b.metric })
		if i < 0 || ready[i].metric == nil {
			return f, fmt.Errorf("definition %s/%s has staged events to fold but is not aggregated", b.exp, b.metric)
		}
		f.defs = append(f.defs, stagedFold{def: ready[i], folded: b.folded})
	}
	return f, nil
}

// foldStaged adds the staged events after the definition's folded cycle
// to its units' values, in one transaction on a connection of its own, and
// records the latest cycle as folded.
func (db *DB) foldStaged(ctx context.Context, f stagedFold, latest int64, pairs bool) error {
	d, m := f.def, f.def.metric
	from, to, events := window(m)
	sql := foldTracksSQL
	if !pairs {
		sql = foldTracksAllSQL
	}
	return pgx.BeginFunc(ctx, db.agg, func(tx pgx.Tx) error {
		// The fold sorts its units' days (see Aggregate).
		if _, err := tx.Exec(ctx, `SET LOCAL work_mem = '64MB'`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, sql, d.exp.Key, m.Key, string(m.Type), events, from, to, m.CUPEDHours,
			m.Numerator, d.fixedCap(), m.Denominator, d.exp.UnitType, f.folded); err != nil {
			return fmt.Errorf("%s/%s: %w", d.exp.Key, m.Key, err)
		}
		tag, err := tx.Exec(ctx, `UPDATE agg_defs SET folded_cycle = $3 WHERE experiment = $1 AND metric = $2 AND folded_cycle = $4`,
			d.exp.Key, m.Key, latest, f.folded)
		if err == nil && tag.RowsAffected() != 1 {
			err = fmt.Errorf("%s/%s: folded cycle changed during its fold", d.exp.Key, m.Key)
		}
		return err
	})
}

// notRecomputed is foldTracksSQL's condition that leaves out the staged
// events of units recomputed whole in their cycle or a later one.
const notRecomputed = `
      AND NOT EXISTS (SELECT 1 FROM agg_staged_pairs p WHERE p.experiment = $1 AND p.unit_id = k.owner AND p.cycle >= k.cycle)`

// foldTracksAllSQL is foldTracksSQL when no unit was recomputed: nothing
// to leave out, and the check would cost an index probe per event.
var foldTracksAllSQL = strings.Replace(foldTracksSQL, notRecomputed, "", 1)

// foldTracksSQL adds the staged events after cycle $12 to the values of
// their owners for one metric definition (parameters as foldUnitsSQL, and
// $11 the experiment's unit type), and the change to the variant sums,
// leaving out the units recomputed whole since (agg_staged_pairs). The sums are
// windowSums, as in foldUnitsSQL and the recomputation.
var foldTracksSQL = `
WITH t AS (
    SELECT owner, ts, value, event FROM agg_staged k
    WHERE k.cycle > $12 AND owner_type = $11 AND event = ANY($4)` + notRecomputed + `
), old AS (
    -- Every lookup and write below goes in key order (ORDER BY owner,
    -- unit_id, tid): consecutive probes of a big index share its pages,
    -- which stay in the CPU's caches and TLB, instead of landing anywhere
    -- in it (BENCHMARKS.md, "Lookups in key order").
    SELECT a.* FROM (SELECT DISTINCT owner FROM t ORDER BY owner) k CROSS JOIN LATERAL (
        SELECT a.ctid AS tid, a.unit_id, a.variant, a.state, a.y, a.x, a.num, a.den, a.first_ts FROM agg_units a
        WHERE a.experiment = $1 AND a.metric = $2 AND a.unit_id = k.owner OFFSET 0) a
), d AS (
    SELECT o.unit_id,
        ` + windowSums("t", "o", "$5", "$6", "$7", "$8", "$10") + `
    FROM old o JOIN t ON t.owner = o.unit_id
    GROUP BY o.unit_id
), new AS (
    -- A unit whose value the new events leave as it was (a conversion
    -- already counted, values of 0, events outside its windows) is not
    -- written: its old and new rows in change would cancel.
    SELECT tid, unit_id, variant, state, first_ts, y, x, num, den FROM (
        SELECT o.tid, o.unit_id, o.variant, o.state, o.first_ts, o.y AS oy, o.x AS ox, o.num AS onum, o.den AS oden,
            CASE $3 WHEN 'conversion' THEN greatest(o.y, (d.n_in > 0)::int::float8) WHEN 'retention' THEN greatest(o.y, (d.n_in > 0)::int::float8)
                    WHEN 'count' THEN o.y + d.n_in ELSE o.y + d.v_in END AS y,
            CASE $3 WHEN 'conversion' THEN greatest(o.x, (d.n_pre > 0)::int::float8) WHEN 'retention' THEN 0 WHEN 'ratio' THEN 0
                    WHEN 'count' THEN o.x + d.n_pre ELSE o.x + d.v_pre END AS x,
            o.num + d.num AS num, o.den + d.den AS den
        FROM old o JOIN d ON d.unit_id = o.unit_id) n
    WHERE (y, x, num, den) <> (oy, ox, onum, oden)
), up AS (
    -- By ctid: the planner cannot tell how few rows new holds, and would
    -- rather hash all of the definition's unit rows than look them up. The
    -- cycle is the only writer of agg_units (the aggregation lock).
    UPDATE agg_units a SET y = n.y, x = n.x, num = n.num, den = n.den
    FROM (SELECT * FROM new ORDER BY tid) n WHERE a.ctid = n.tid
), ad AS (
    -- The day rows the new events add to, with their unit's variant, state
    -- and value before them (p*).
    SELECT o.unit_id, o.variant, o.state, o.y AS py, o.num AS pnum, o.den AS pden, (t.ts AT TIME ZONE 'UTC')::date AS day,
        ` + daySums("t", "$8", "$10") + `
    FROM old o JOIN t ON t.owner = o.unit_id
    WHERE ` + inWindow("t", "o", "$5", "$6") + `
    GROUP BY 1, 2, 3, 4, 5, 6, 7
), ak AS (
    -- The analysed units' new days, and whether the unit already has a day
    -- after its first new one (late). No unit has a day after the
    -- definition's latest (agg_defs.max_day, read as the statement
    -- starts), so events that arrive in order need no lookup; before it,
    -- one index probe.
    -- A conversion or retention already counted (py > 0) whose new days
    -- are not late is settled: its counted day is on or before them, so
    -- its value on every day stays 1 and its day changes stay 0.
    SELECT k.*, NOT k.late AND $3 IN ('conversion', 'retention') AND k.py > 0 AS settled FROM (
        SELECT a.*, CASE WHEN a.since >= (SELECT max_day FROM agg_defs WHERE experiment = $1 AND metric = $2) THEN false
            ELSE EXISTS (SELECT 1 FROM agg_unit_days d
                WHERE d.unit_id = a.unit_id AND d.experiment = $1 AND d.metric = $2 AND d.day > a.since OFFSET 0) END AS late
        FROM (SELECT ad.*, min(day) OVER (PARTITION BY unit_id COLLATE "C") AS since FROM ad WHERE state = 0) a) k
), latest AS (
    ` + raiseMaxDay("ad") + `
), days_add AS (
    -- A settled unit's day rows are not written: for these metrics only
    -- whether a day has events (n > 0) matters, and only up to the first
    -- day that has (every reader of the rows, store/aggregate_days.go,
    -- store/timeseries.go, computes the same from them whether or not the
    -- later days' events are there).
    INSERT INTO agg_unit_days AS d (experiment, metric, unit_id, day, n, v, num, den)
    SELECT $1, $2, unit_id, day, n, v, num, den FROM ad
    WHERE NOT EXISTS (SELECT 1 FROM ak WHERE ak.settled AND ak.unit_id = ad.unit_id)
    ORDER BY unit_id, day
    ON CONFLICT (unit_id, experiment, metric, day) DO UPDATE SET
        n = d.n + EXCLUDED.n, v = d.v + EXCLUDED.v, num = d.num + EXCLUDED.num, den = d.den + EXCLUDED.den
), od AS (
    -- A late unit's days are read: its changes are computed from all of
    -- them, before the new events (o*) and after (m*, summed as the upsert
    -- sums them), so that agg_variant_days changes by exactly the
    -- difference. No join here is between two sizes the planner cannot
    -- know but a full join (hash or merge, never a nested loop).
    SELECT k.variant, d.* FROM (SELECT DISTINCT unit_id, variant FROM ak WHERE late ORDER BY unit_id) k CROSS JOIN LATERAL (
        SELECT d.unit_id, d.day, d.n, d.v, d.num, d.den FROM agg_unit_days d
        WHERE d.unit_id = k.unit_id AND d.experiment = $1 AND d.metric = $2 OFFSET 0) d
), both_days AS (
    SELECT COALESCE(od.unit_id, a.unit_id) AS unit_id, COALESCE(od.variant, a.variant) AS variant,
        COALESCE(od.day, a.day) AS day, a.unit_id IS NOT NULL AS added,
        COALESCE(od.n, 0) AS on_, COALESCE(od.v, 0) AS ov, COALESCE(od.num, 0) AS onum, COALESCE(od.den, 0) AS oden,
        COALESCE(od.n, 0) + COALESCE(a.n, 0) AS mn, COALESCE(od.v, 0) + COALESCE(a.v, 0) AS mv,
        COALESCE(od.num, 0) + COALESCE(a.num, 0) AS mnum, COALESCE(od.den, 0) + COALESCE(a.den, 0) AS mden
    FROM od FULL JOIN (SELECT * FROM ak WHERE late) a ON a.unit_id = od.unit_id AND a.day = od.day
), run AS (
    -- Both running sums in one pass. A day before the unit's first new
    -- one is the same before and after: its changes cancel, and it is
    -- left out (since).
    SELECT variant, day, bool_or(added) OVER w AS since, on_, ov, onum, oden, mn, mv, mnum, mden,
        sum(on_) OVER w AS con, sum(ov) OVER w AS cov, sum(onum) OVER w AS conum, sum(oden) OVER w AS coden,
        sum(mn) OVER w AS cmn, sum(mv) OVER w AS cmv, sum(mnum) OVER w AS cmnum, sum(mden) OVER w AS cmden
    FROM both_days WINDOW w AS (PARTITION BY unit_id COLLATE "C" ORDER BY day)
), inorder AS (
    -- A unit whose new days all fall on or after its last one: its days up
    -- to them add up to its value in agg_units (p*), and only the new days
    -- change. On a day it already has (its last), the change stored for
    -- the day was capped(p) minus its value before the day; the new change
    -- is capped(p + the new events) minus the same value before, so the
    -- difference to add is capped(p + new) - capped(p), as for a new day.
    -- (That sum is the unit's, not its days' running sum, so a
    -- later change may subtract a value that differs from this one in the
    -- last bits of a non-integer value: what agg_variant_days keeps is
    -- exact to rounding there, not to the bit.)
    SELECT variant, day, n, v, num, den, py, pnum, pden,
        sum(n) OVER w AS cn, sum(v) OVER w AS cv, sum(num) OVER w AS cnum, sum(den) OVER w AS cden
    FROM ak WHERE NOT late AND NOT settled WINDOW w AS (PARTITION BY unit_id COLLATE "C" ORDER BY day)
), sides AS (
    -- The value after the day (y) and before it (y0), before (o) and
    -- after (m) the new events, as dayDeltas computes them.
    SELECT variant, day, coden AS den_o, coden - oden AS den0_o, cmden AS den_m, cmden - mden AS den0_m,
        CASE WHEN $9::float8 IS NULL THEN conum ELSE least(conum, $9) END AS num_o,
        CASE WHEN $9::float8 IS NULL THEN conum - onum ELSE least(conum - onum, $9) END AS num0_o,
        CASE WHEN $9::float8 IS NULL THEN cmnum ELSE least(cmnum, $9) END AS num_m,
        CASE WHEN $9::float8 IS NULL THEN cmnum - mnum ELSE least(cmnum - mnum, $9) END AS num0_m,
        ` + capped("$3", "$9", "con", "cov") + ` AS y_o, ` + capped("$3", "$9", "con - on_", "cov - ov") + ` AS y0_o,
        ` + capped("$3", "$9", "cmn", "cmv") + ` AS y_m, ` + capped("$3", "$9", "cmn - mn", "cmv - mv") + ` AS y0_m
    FROM run WHERE since
    UNION ALL
    SELECT variant, day, 0, 0, pden + cden, pden + cden - den,
        0, 0, least(pnum + cnum, $9::float8), least(pnum + cnum - num, $9::float8),
        0, 0, ` + capped("$3", "$9", "py + cn", "py + cv") + `, ` + capped("$3", "$9", "py + cn - n", "py + cv - v") + `
    FROM inorder
), vchange AS (
    SELECT $1::text AS experiment, $2::text AS metric, variant, day, 0::bigint AS units,
        ` + sidesSum("y_m - y0_m", "y_o - y0_o", "sum") + `,
        ` + sidesSum("y_m * y_m - y0_m * y0_m", "y_o * y_o - y0_o * y0_o", "sumsq") + `,
        ` + sidesSum("num_m - num0_m", "num_o - num0_o", "sumnum") + `,
        ` + sidesSum("den_m - den0_m", "den_o - den0_o", "sumden") + `,
        ` + sidesSum("num_m * num_m - num0_m * num0_m", "num_o * num_o - num0_o * num0_o", "sumnumsq") + `,
        ` + sidesSum("den_m * den_m - den0_m * den0_m", "den_o * den_o - den0_o * den0_o", "sumdensq") + `,
        ` + sidesSum("num_m * den_m - num0_m * den0_m", "num_o * den_o - num0_o * den0_o", "sumnumden") + `
    FROM sides GROUP BY variant, day
), ` + dayUpsert + `, change AS (
    SELECT $1::text AS experiment, $2::text AS metric, variant, state, 1 AS sign, y, x, num, den, $9::float8 AS cap, first_ts FROM new
    UNION ALL
    SELECT $1, $2, o.variant, o.state, -1, o.y, o.x, o.num, o.den, $9, o.first_ts FROM old o JOIN new n ON n.unit_id = o.unit_id
), ` + variantUpsert
