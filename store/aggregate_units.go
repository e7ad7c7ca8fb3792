package store

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// Units recomputed whole from their events, and the variant sums their
// changes feed (store/aggregate.go describes the whole).

// members lists, for each owner in %[1]s (unit_id) that is an identity
// root, the ids whose events it owns: itself and every id linked to it,
// through chains of customers merged into one another.
const members = `members(owner, unit_type, unit_id, depth) AS (
    SELECT o.unit_id, 'customer'::text, o.unit_id, 0 FROM %[1]s o
    WHERE NOT EXISTS (SELECT 1 FROM aliases a WHERE a.unit_type = 'customer' AND a.unit_id = o.unit_id AND a.customer_id <> o.unit_id)
    UNION ALL
    SELECT m.owner, a.unit_type, a.unit_id, m.depth + 1
    FROM members m JOIN aliases a ON a.customer_id = m.unit_id
    WHERE m.unit_type = 'customer' AND m.depth < 16 AND NOT (a.unit_type = 'customer' AND a.unit_id = m.owner)
)`

// membersByProbe is members for the units of one cycle: every step looks
// aliases up by index, one unit at a time (OFFSET 0 keeps the planner from
// turning a lookup into a join), so that the cost follows the units named
// and not the size of aliases or the statistics the planner has of it (a
// table that grew since it was last analyzed is planned as if empty).
const membersByProbe = `members(owner, unit_type, unit_id, depth) AS (
    SELECT o.unit_id, 'customer'::text, o.unit_id, 0 FROM %[1]s o
    WHERE NOT EXISTS (SELECT 1 FROM aliases a WHERE a.unit_type = 'customer' AND a.unit_id = o.unit_id AND a.customer_id <> o.unit_id OFFSET 0)
    UNION ALL
    SELECT m.owner, a.unit_type, a.unit_id, m.depth + 1
    FROM members m CROSS JOIN LATERAL (
        SELECT a.unit_type, a.unit_id FROM aliases a WHERE a.customer_id = m.unit_id OFFSET 0) a
    WHERE m.unit_type = 'customer' AND m.depth < 16 AND NOT (a.unit_type = 'customer' AND a.unit_id = m.owner)
)`

// collectOwned reads once, for the affected units of one experiment, the
// track events that any of its metrics reads: the units' own, and for a
// customer experiment those of every id linked to them. No event the
// cycle sees is at or after end (visibleEventsEnd). The ids are listed
// first, each with its window, and each id's events are looked up only on
// the days that the filter's days held say may hold some (trackFilter;
// every day of the window for nil held). It returns how many ids it
// looked up and how many it left out because held has none of their
// events.
func collectOwned(ctx context.Context, tx pgx.Tx, defs []aggDef, end pgtype.Timestamptz, f *trackFilter, held trackDays) (probed, quiet int, err error) {
	e := defs[0].exp
	var events []string
	lower, upper := 0, 0 // hours before and after first exposure; upper 0 = no end
	bounded := true
	for _, d := range defs {
		if d.metric == nil {
			continue
		}
		_, to, evs := window(d.metric)
		events = append(events, evs...)
		lower = max(lower, d.metric.CUPEDHours)
		if to == 0 {
			bounded = false
		}
		upper = max(upper, to)
	}
	if len(events) == 0 {
		return 0, 0, nil
	}
	if !bounded {
		upper = 0
	}
	if _, err := tx.Exec(ctx, `TRUNCATE a_owned`); err != nil {
		return 0, 0, err
	}
	if end.InfinityModifier == pgtype.NegativeInfinity {
		return 0, 0, nil // no visible event at all
	}
	// The units are few and the events many: each unit's exposure and
	// each id's events are looked up by index, one at a time (LATERAL ...
	// OFFSET 0), whatever the planner believes of the tables' sizes: a
	// hash of every event, or a plan made while a partition still looked
	// empty, costs minutes per cycle. The window's bounds are the id's
	// own, so each lookup reads only the partitions of its window
	// (run-time pruning), and none after the end of the latest partition
	// with an event (end), nor of days the filter says hold none of the
	// id's events. $1 experiment, $2 unit type.
	exposure := `CROSS JOIN LATERAL (
		    SELECT x.first_ts FROM exposures x WHERE x.experiment = $1 AND x.unit_id = %s OFFSET 0) x`
	sql := `SELECT p.unit_id, $2::text, p.unit_id, x.first_ts FROM a_pairs p ` + fmt.Sprintf(exposure, "p.unit_id") + `
		WHERE p.experiment = $1`
	if e.UnitType == "customer" {
		sql = `WITH RECURSIVE u AS (SELECT unit_id FROM a_pairs WHERE experiment = $1), ` + fmt.Sprintf(membersByProbe, "u") + `
		SELECT m.owner, m.unit_type, m.unit_id, x.first_ts FROM members m ` + fmt.Sprintf(exposure, "m.owner") + `
		WHERE $2::text = 'customer'`
	}
	rows, err := tx.Query(ctx, sql, e.Key, e.UnitType)
	if err != nil {
		return 0, 0, err
	}
	var w trackWindow
	var days []int64
	if held != nil {
		days = slices.Sorted(maps.Keys(held))
	}
	var owner, typ, id string
	var first time.Time
	if _, err := pgx.ForEachRow(rows, []any{&owner, &typ, &id, &first}, func() error {
		from, to := pgtype.Timestamptz{Time: first.Add(-time.Duration(lower) * time.Hour), Valid: true}, end
		if upper > 0 {
			if u := first.Add(time.Duration(upper) * time.Hour); end.InfinityModifier != pgtype.Finite || u.Before(end.Time) {
				to = pgtype.Timestamptz{Time: u, Valid: true}
			}
		}
		if to.InfinityModifier == pgtype.Finite && !to.Time.After(from.Time) {
			return nil // an empty window
		}
		w.look(f, days, held, owner, typ, id, from, to)
		return nil
	}); err != nil {
		return 0, 0, err
	}
	if len(w.ids) > 0 {
		if _, err := tx.Exec(ctx, `INSERT INTO a_owned
			SELECT $1, m.owner, e.ts, e.value, e.event
			FROM unnest($2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::timestamptz[]) AS m(owner, unit_type, unit_id, lo, hi)
			CROSS JOIN LATERAL (
			    SELECT e.ts, e.value, e.event FROM events e
			    WHERE e.unit_type = m.unit_type AND e.unit_id = m.unit_id AND e.type = 'track' AND e.event = ANY($7)
			      AND e.ts >= m.lo AND e.ts < m.hi`+notLater+` OFFSET 0) e`,
			e.Key, w.owners, w.types, w.ids, w.from, w.to, events); err != nil {
			return 0, 0, err
		}
	}
	_, err = tx.Exec(ctx, `ANALYZE a_owned`)
	return w.probed, w.quiet, err
}

// splitFreshSQL splits the units of experiment $1 in a_pairs in two: the
// fresh units (a_fresh), which own no event that the experiment's metrics
// read (none in a_owned) and have no row in any of the definitions $2
// (the ready ones; the empty key is the units'), and the others (a_rest).
// It returns how many of each there are.
const splitFreshSQL = `
WITH c AS MATERIALIZED (
    SELECT p.unit_id, o.owner IS NULL AND NOT EXISTS (
            SELECT 1 FROM agg_units a WHERE a.experiment = $1 AND a.metric = ANY($2) AND a.unit_id = p.unit_id OFFSET 0) AS fresh
    FROM a_pairs p LEFT JOIN (SELECT DISTINCT owner FROM a_owned WHERE experiment = $1) o ON o.owner = p.unit_id
    WHERE p.experiment = $1
), rest AS (
    INSERT INTO a_rest (experiment, unit_id) SELECT $1, unit_id FROM c WHERE NOT fresh ORDER BY unit_id RETURNING 1
), fresh AS (
    INSERT INTO a_fresh (experiment, unit_id) SELECT $1, unit_id FROM c WHERE fresh ORDER BY unit_id RETURNING 1
)
SELECT (SELECT count(*) FROM rest), (SELECT count(*) FROM fresh)`

// foldFreshSQL folds in the fresh units of experiment $1 (a_fresh) for the
// definitions $2. Recomputed by foldUnitsSQL, such a unit would get a row
// of zeros in each definition (or none, without an exposure) and add to
// its variant's counts (units, multiple, opted_out), first hours and
// first day, and 0 to every sum. This statement writes just that, for
// every definition in one pass: one exposure and one consent probe per
// unit instead of one per definition, and none of the lookups of old rows
// and days that a recomputation makes only to find them empty. Most units
// a busy experiment names are such: new customers, exposed before they do
// anything (BENCHMARKS.md, "New units in one pass").
const foldFreshSQL = `
WITH f AS MATERIALIZED (
    SELECT x.unit_id, x.unit_type, x.variant, x.first_ts,
        CASE WHEN x.multiple THEN 1
             WHEN EXISTS (SELECT 1 FROM consent s WHERE s.unit_type = x.unit_type AND s.unit_id = x.unit_id AND NOT s.analytics OFFSET 0) THEN 2
             ELSE 0 END AS state
    FROM a_fresh c CROSS JOIN LATERAL (
        SELECT x.unit_id, x.unit_type, x.variant, x.first_ts, x.multiple FROM exposures x
        WHERE x.experiment = $1 AND x.unit_id = c.unit_id OFFSET 0) x
    WHERE c.experiment = $1
), ins AS (
    INSERT INTO agg_units (experiment, metric, unit_id, unit_type, variant, first_ts, state, y, x, num, den,
        last_day, last_n, last_v, last_num, last_den)
    SELECT $1, m.metric, f.unit_id, f.unit_type, f.variant, f.first_ts, f.state, 0, 0, 0, 0, NULL, 0, 0, 0, 0
    FROM unnest($2::text[]) AS m(metric) CROSS JOIN f
    ORDER BY m.metric, f.unit_id -- in key order
), hours AS (
    INSERT INTO agg_first_hours AS h (experiment, variant, hour, units)
    SELECT $1, variant, date_trunc('hour', first_ts), count(*) FROM f
    WHERE state = 0 AND '' = ANY($2)
    GROUP BY 2, 3
    ON CONFLICT (experiment, variant, hour) DO UPDATE SET units = h.units + EXCLUDED.units
), days AS (
    INSERT INTO agg_variant_days AS v (experiment, metric, variant, day, units, sum, sumsq, sumnum, sumden, sumnumsq, sumdensq, sumnumden)
    SELECT $1, m.metric, f.variant, (f.first_ts AT TIME ZONE 'UTC')::date, count(*), 0, 0, 0, 0, 0, 0, 0
    FROM unnest($2::text[]) AS m(metric) CROSS JOIN f
    WHERE m.metric <> '' AND f.state = 0
    GROUP BY 2, 3, 4
    ON CONFLICT (experiment, metric, variant, day) DO UPDATE SET units = v.units + EXCLUDED.units
), vars AS (
    INSERT INTO agg_variants AS v (experiment, metric, variant, units, multiple, opted_out,
        sum, sumsq, sumx, sumxsq, sumxy, sumnum, sumden, sumnumsq, sumdensq, sumnumden)
    SELECT $1, m.metric, f.variant, count(*) FILTER (WHERE f.state = 0), count(*) FILTER (WHERE f.state = 1),
        count(*) FILTER (WHERE f.state = 2), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
    FROM unnest($2::text[]) AS m(metric) CROSS JOIN f
    GROUP BY 2, 3
    ON CONFLICT (experiment, metric, variant) DO UPDATE SET units = v.units + EXCLUDED.units,
        multiple = v.multiple + EXCLUDED.multiple, opted_out = v.opted_out + EXCLUDED.opted_out
)
SELECT 1`

// foldNamed recomputes or folds in the units of a_pairs of the experiment
// of defs (its ready definitions), after collectOwned, and returns how
// many of them were fresh. The others are recomputed first: a fresh unit's
// rows, written in the same transaction, would be in the indexes that the
// recomputation's lookups read before the statistics count them (in a
// new experiment's first cycle, a lookup of the units' definition took
// the partial index on first exposure, and read all of the experiment's
// new rows in it for each unit).
func foldNamed(ctx context.Context, tx pgx.Tx, defs []aggDef) (fresh int, err error) {
	exp := defs[0].exp.Key
	keys := make([]string, len(defs))
	for i, d := range defs {
		keys[i] = d.key()
	}
	var rest int
	if err := tx.QueryRow(ctx, splitFreshSQL, exp, keys).Scan(&rest, &fresh); err != nil {
		return 0, fmt.Errorf("%s: fresh units: %w", exp, err)
	}
	if rest > 0 {
		if _, err := tx.Exec(ctx, `ANALYZE a_rest`); err != nil {
			return 0, err
		}
		for _, d := range defs {
			if err := foldUnits(ctx, tx, d, "a_rest", "a_owned"); err != nil {
				return 0, fmt.Errorf("%s/%s: %w", exp, d.key(), err)
			}
		}
	}
	if fresh > 0 {
		if _, err := tx.Exec(ctx, foldFreshSQL, exp, keys); err != nil {
			return 0, fmt.Errorf("%s: fresh units: %w", exp, err)
		}
	}
	return fresh, nil
}

// foldUnitsSQL recomputes the units of experiment $1 listed in the table
// %[1]s (experiment, unit_id) for definition $2, from the owned events
// %[2]s (owner, ts, value, event), stores their values in agg_units (with
// their last day's sums) and their earlier days in agg_unit_days, and adds
// the differences to agg_variants and agg_variant_days. A unit whose exposure is gone is
// removed. Values are uncapped in agg_units; the fixed cap $9 applies to
// the variant sums.
//
// $1 experiment, $2 metric (empty: the units), $3 metric type, $4 events,
// $5 from hours, $6 to hours (0 = no end), $7 cuped hours, $8 numerator,
// $9 cap, $10 denominator.
//
// Here the unit rows are read by primary key from the
// few units named (LATERAL ... OFFSET 0 keeps the planner from turning that
// around), then changed by ctid: with agg_units' statistics stale (a young
// experiment grows faster than autovacuum analyzes), a planner free to
// choose nested all of a definition's rows against the units named.
var foldUnitsSQL = `
WITH u AS (
    SELECT p.unit_id, x.unit_type, x.variant, x.first_ts,
        CASE WHEN x.unit_id IS NULL THEN -1 WHEN x.multiple THEN 1
             WHEN EXISTS (SELECT 1 FROM consent c WHERE c.unit_type = x.unit_type AND c.unit_id = x.unit_id AND NOT c.analytics OFFSET 0) THEN 2
             ELSE 0 END AS state
    FROM %[1]s p LEFT JOIN LATERAL (
        SELECT x.unit_id, x.unit_type, x.variant, x.first_ts, x.multiple FROM exposures x
        WHERE x.experiment = p.experiment AND x.unit_id = p.unit_id OFFSET 0) x ON true
    WHERE p.experiment = $1
), owned AS (
    SELECT owner, ts, value, event FROM %[2]s src
), per_unit AS (
    SELECT u.unit_id, u.unit_type, u.variant, u.first_ts, u.state,
        ` + windowSums("o", "u", "$5", "$6", "$7", "$8", "$10") + `
    FROM u LEFT JOIN owned o ON o.owner = u.unit_id AND o.event = ANY($4)
    WHERE u.state >= 0
    GROUP BY u.unit_id, u.unit_type, u.variant, u.first_ts, u.state
), new AS (
    SELECT unit_id, unit_type, variant, first_ts, state, num, den,
        CASE $3 WHEN 'conversion' THEN (n_in > 0)::int::float8 WHEN 'retention' THEN (n_in > 0)::int::float8
                WHEN 'count' THEN n_in::float8 WHEN '' THEN 0 ELSE v_in END AS y,
        CASE $3 WHEN 'conversion' THEN (n_pre > 0)::int::float8 WHEN 'retention' THEN 0
                WHEN 'count' THEN n_pre::float8 WHEN 'ratio' THEN 0 WHEN '' THEN 0 ELSE v_pre END AS x
    FROM per_unit
), old AS (
    SELECT a.*, u.state AS now_state FROM u CROSS JOIN LATERAL (
        SELECT a.ctid AS tid, a.unit_id, a.variant, a.state, a.y, a.x, a.num, a.den, a.first_ts,
            a.last_day, a.last_n, a.last_v, a.last_num, a.last_den FROM agg_units a
        WHERE a.experiment = $1 AND a.metric = $2 AND a.unit_id = u.unit_id OFFSET 0) a
), nd AS (
    -- The units' days now (nd, with their variant and state now), each
    -- marked if it is the unit's last: that one goes into its unit row,
    -- the others into agg_unit_days.
    SELECT *, day = max(day) OVER (PARTITION BY unit_id) AS last FROM (
        SELECT u.unit_id, u.variant, u.state, (o.ts AT TIME ZONE 'UTC')::date AS day, ` + daySums("o", "$8", "$10") + `
        FROM u JOIN owned o ON o.owner = u.unit_id AND o.event = ANY($4)
        WHERE $2 <> '' AND u.state >= 0 AND ` + inWindow("o", "u", "$5", "$6") + `
        GROUP BY 1, 2, 3, 4) d
), up AS (
    -- Every unit of nd is one of new: the full join is a left join, made a
    -- hash or merge join whatever the planner believes of the sizes (a
    -- unit of nd alone would be a row without a unit_id, and fail).
    INSERT INTO agg_units AS a (experiment, metric, unit_id, unit_type, variant, first_ts, state, y, x, num, den,
        last_day, last_n, last_v, last_num, last_den)
    SELECT $1, $2, n.unit_id, n.unit_type, n.variant, n.first_ts, n.state, n.y, n.x, n.num, n.den,
        l.day, COALESCE(l.n, 0), COALESCE(l.v, 0), COALESCE(l.num, 0), COALESCE(l.den, 0)
    FROM new n FULL JOIN (SELECT * FROM nd WHERE last) l ON l.unit_id = n.unit_id
    ON CONFLICT (experiment, metric, unit_id) DO UPDATE SET unit_type = EXCLUDED.unit_type, variant = EXCLUDED.variant,
        first_ts = EXCLUDED.first_ts, state = EXCLUDED.state, y = EXCLUDED.y, x = EXCLUDED.x, num = EXCLUDED.num, den = EXCLUDED.den,
        last_day = EXCLUDED.last_day, last_n = EXCLUDED.last_n, last_v = EXCLUDED.last_v, last_num = EXCLUDED.last_num,
        last_den = EXCLUDED.last_den
    WHERE (a.variant, a.first_ts, a.state, a.y, a.x, a.num, a.den, a.last_day, a.last_n, a.last_v, a.last_num, a.last_den)
          IS DISTINCT FROM (EXCLUDED.variant, EXCLUDED.first_ts, EXCLUDED.state, EXCLUDED.y, EXCLUDED.x, EXCLUDED.num, EXCLUDED.den,
                            EXCLUDED.last_day, EXCLUDED.last_n, EXCLUDED.last_v, EXCLUDED.last_num, EXCLUDED.last_den)
), gone AS (
    DELETE FROM agg_units WHERE ctid = ANY(ARRAY(SELECT tid FROM old WHERE now_state = -1))
), odt AS (
    -- The units' day rows as they were (with the unit's variant and state
    -- then), matched to their days before the last now by a full join: a
    -- hash or merge join, never a nested loop over two sizes the planner
    -- cannot know.
    SELECT o.variant, o.state, d.tid, d.unit_id, d.day, d.n, d.v, d.num, d.den FROM old o CROSS JOIN LATERAL (
        SELECT d.ctid AS tid, d.unit_id, d.day, d.n, d.v, d.num, d.den FROM agg_unit_days d
        WHERE d.unit_id = o.unit_id AND d.experiment = $1 AND d.metric = $2 OFFSET 0) d
    WHERE $2 <> ''
), od AS (
    -- All of their days as they were: the rows and the unit's last day.
    SELECT variant, state, unit_id, day, n, v, num, den FROM odt
    UNION ALL
    SELECT variant, state, unit_id, last_day, last_n, last_v, last_num, last_den FROM old
    WHERE $2 <> '' AND last_day IS NOT NULL
), dd AS (
    SELECT odt.tid, nd.unit_id, nd.day, nd.n, nd.v, nd.num, nd.den
    FROM odt FULL JOIN (SELECT * FROM nd WHERE NOT last) nd ON nd.unit_id = odt.unit_id AND nd.day = odt.day
), days_gone AS (
    DELETE FROM agg_unit_days WHERE ctid = ANY(ARRAY(SELECT tid FROM dd WHERE unit_id IS NULL))
), days_new AS (
    INSERT INTO agg_unit_days AS d (experiment, metric, unit_id, day, n, v, num, den)
    SELECT $1, $2, unit_id, day, n, v, num, den FROM dd WHERE unit_id IS NOT NULL
    ON CONFLICT (unit_id, experiment, metric, day) DO UPDATE SET n = EXCLUDED.n, v = EXCLUDED.v, num = EXCLUDED.num, den = EXCLUDED.den
    WHERE (d.n, d.v, d.num, d.den) IS DISTINCT FROM (EXCLUDED.n, EXCLUDED.v, EXCLUDED.num, EXCLUDED.den)
), dchange AS (
    SELECT $1::text AS experiment, $2::text AS metric, $3::text AS typ, $9::float8 AS cap, -1 AS sign,
        unit_id, variant, day, n, v, num, den
    FROM od WHERE state = 0
    UNION ALL
    SELECT $1, $2, $3, $9, 1, unit_id, variant, day, n, v, num, den FROM nd WHERE state = 0
), uchange AS (
    SELECT $1::text AS experiment, $2::text AS metric, -1 AS sign, variant, (first_ts AT TIME ZONE 'UTC')::date AS day
    FROM old WHERE state = 0 AND $2 <> ''
    UNION ALL
    SELECT $1, $2, 1, variant, (first_ts AT TIME ZONE 'UTC')::date FROM new WHERE state = 0 AND $2 <> ''
), ` + dayChanges + `, change AS (
    SELECT $1::text AS experiment, $2::text AS metric, variant, state, 1 AS sign, y, x, num, den, $9::float8 AS cap, first_ts FROM new
    UNION ALL
    SELECT $1, $2, variant, state, -1, y, x, num, den, $9, first_ts FROM old
), ` + hoursUpsert + `, ` + variantUpsert

// hoursUpsert keeps agg_first_hours, the analysed units of each variant by
// hour of first exposure, from the units definition's rows of change (with
// first_ts): results count the units still maturing from it.
const hoursUpsert = `hours AS (
    INSERT INTO agg_first_hours AS h (experiment, variant, hour, units)
    SELECT experiment, variant, date_trunc('hour', first_ts), sum(sign)
    FROM change WHERE metric = '' AND state = 0
    GROUP BY 1, 2, 3
    ON CONFLICT (experiment, variant, hour) DO UPDATE SET units = h.units + EXCLUDED.units
)`

// variantDelta sums the signed contributions of the rows of the CTE change
// (experiment, metric, variant, state, sign, y, x, num, den, cap) per
// variant, with each row's cap applied. Products are taken in float8 and
// summed in numeric (exactNumeric), so that a value added and later
// subtracted cancels exactly.
var variantDelta = `delta AS (
    SELECT experiment, metric, variant,
        COALESCE(sum(sign) FILTER (WHERE state = 0), 0) AS units,
        COALESCE(sum(sign) FILTER (WHERE state = 1), 0) AS multiple,
        COALESCE(sum(sign) FILTER (WHERE state = 2), 0) AS opted_out,
        ` + signedSum("cy", "sum") + `,
        ` + signedSum("cy * cy", "sumsq") + `,
        ` + signedSum("cx", "sumx") + `,
        ` + signedSum("cx * cx", "sumxsq") + `,
        ` + signedSum("cx * cy", "sumxy") + `,
        ` + signedSum("cnum", "sumnum") + `,
        ` + signedSum("den", "sumden") + `,
        ` + signedSum("cnum * cnum", "sumnumsq") + `,
        ` + signedSum("den * den", "sumdensq") + `,
        ` + signedSum("cnum * den", "sumnumden") + `
    FROM (SELECT experiment, metric, variant, state, sign, den,
              CASE WHEN cap IS NULL THEN y ELSE least(y, cap) END AS cy,
              CASE WHEN cap IS NULL THEN x ELSE least(x, cap) END AS cx,
              CASE WHEN cap IS NULL THEN num ELSE least(num, cap) END AS cnum
          FROM change) c
    GROUP BY experiment, metric, variant
)`

// signedSum is the numeric sum of sign * (expr) over analysed rows.
func signedSum(expr, name string) string {
	return `COALESCE(sum(sign * ` + exactNumeric(expr) + `) FILTER (WHERE state = 0), 0) AS ` + name
}

// variantUpsert adds the sums of variantDelta to agg_variants.
var variantUpsert = variantDelta + `
INSERT INTO agg_variants AS v (experiment, metric, variant, units, multiple, opted_out,
    sum, sumsq, sumx, sumxsq, sumxy, sumnum, sumden, sumnumsq, sumdensq, sumnumden)
SELECT experiment, metric, variant, units, multiple, opted_out,
    sum, sumsq, sumx, sumxsq, sumxy, sumnum, sumden, sumnumsq, sumdensq, sumnumden
FROM delta
ON CONFLICT (experiment, metric, variant) DO UPDATE SET
    units = v.units + EXCLUDED.units, multiple = v.multiple + EXCLUDED.multiple, opted_out = v.opted_out + EXCLUDED.opted_out,
    sum = v.sum + EXCLUDED.sum, sumsq = v.sumsq + EXCLUDED.sumsq,
    sumx = v.sumx + EXCLUDED.sumx, sumxsq = v.sumxsq + EXCLUDED.sumxsq, sumxy = v.sumxy + EXCLUDED.sumxy,
    sumnum = v.sumnum + EXCLUDED.sumnum, sumden = v.sumden + EXCLUDED.sumden, sumnumsq = v.sumnumsq + EXCLUDED.sumnumsq,
    sumdensq = v.sumdensq + EXCLUDED.sumdensq, sumnumden = v.sumnumden + EXCLUDED.sumnumden`

// foldUnits runs foldUnitsSQL for one definition.
func foldUnits(ctx context.Context, tx pgx.Tx, d aggDef, pairs, owned string) error {
	from, to, events := window(d.metric)
	var typ, num, den string
	cuped := 0
	if m := d.metric; m != nil {
		typ, num, den, cuped = string(m.Type), m.Numerator, m.Denominator, m.CUPEDHours
	}
	src := fmt.Sprintf(`(SELECT owner, ts, value, event FROM %s WHERE experiment = $1)`, owned)
	if d.metric == nil {
		src = `(SELECT NULL::text AS owner, NULL::timestamptz AS ts, NULL::float8 AS value, NULL::text AS event WHERE false)`
	}
	_, err := tx.Exec(ctx, fmt.Sprintf(foldUnitsSQL, pairs, src),
		d.exp.Key, d.key(), typ, events, from, to, cuped, num, d.fixedCap(), den)
	return err
}
