package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/analysis"
)

// MaxTimeseriesDays bounds a timeseries: the query grows with units × days.
const MaxTimeseriesDays = 366

// timeseriesStats returns, for each day from the first exposure to the
// day of q.Now (UTC), the cumulative sufficient statistics of metric m:
// the units first exposed by the end of the day, each with the value of its
// events up to then (in its window). Each unit's contributions are grouped
// by day, spread over a grid of (unit, day) from its exposure day, and
// summed cumulatively, so every event is read once. Fixed caps apply to
// every day; a percentile cap uses the cut of the latest day.
var timeseriesStats = `
WITH owned AS (%s),
unit_day AS (
    SELECT u.unit_id, (o.ts AT TIME ZONE 'UTC')::date AS d, ` + daySums("o", "$8", "$9") + `
    FROM r_units u JOIN owned o ON o.owner = u.unit_id
    WHERE ` + inWindow("o", "u", "$4", "$5") + `
      AND o.ts < ($10::date + 1)::timestamp AT TIME ZONE 'UTC'
    GROUP BY 1, 2
), grid AS (
    SELECT u.unit_id, u.variant, g.d::date AS d
    FROM r_units u, generate_series(date_trunc('day', u.first_ts AT TIME ZONE 'UTC'), $10::date, interval '1 day') g(d)
), cum AS (
    SELECT g.d, g.variant,
        sum(COALESCE(ud.n, 0)) OVER w AS n, sum(COALESCE(ud.v, 0)) OVER w AS v,
        sum(COALESCE(ud.num, 0)) OVER w AS num, sum(COALESCE(ud.den, 0)) OVER w AS den
    FROM grid g LEFT JOIN unit_day ud ON ud.unit_id = g.unit_id AND ud.d = g.d
    WINDOW w AS (PARTITION BY g.unit_id ORDER BY g.d)
), valued AS (
    SELECT d, variant, num, den,
        CASE $3 WHEN 'conversion' THEN (n > 0)::int::float8 WHEN 'retention' THEN (n > 0)::int::float8
                WHEN 'count' THEN n::float8 ELSE v END AS y
    FROM cum
), cap AS (
    SELECT COALESCE($6::float8, (SELECT percentile_cont($7::float8) WITHIN GROUP (ORDER BY y)
        FROM valued WHERE $7::float8 IS NOT NULL AND d = $10::date)) AS c
), capped AS (
    SELECT v.d, v.variant, v.den,
        CASE WHEN cap.c IS NULL THEN v.y ELSE least(v.y, cap.c) END AS y,
        CASE WHEN cap.c IS NULL THEN v.num ELSE least(v.num, cap.c) END AS num
    FROM valued v CROSS JOIN cap
)
SELECT d, variant, count(*), sum(y)::bigint, sum(y), sum(y * y),
    sum(num), sum(den), sum(num * num), sum(den * den), sum(num * den)
FROM capped GROUP BY d, variant ORDER BY d, variant`

// TimeseriesInput aggregates the daily cumulative statistics of metric m
// of experiment e, from the first exposure to the day of q.Now, at most
// MaxTimeseriesDays (the latest ones): from the per-day aggregates when the
// metric's are built, else from raw events (RecomputeTimeseriesInput).
func (db *DB) TimeseriesInput(ctx context.Context, e *flywheel.Experiment, m flywheel.Metric, q analysis.Query) ([]analysis.Day, analysis.Freshness, error) {
	q = normalizeQuery(q)
	days, fresh, ok, err := db.aggregatedTimeseries(ctx, e, m, q)
	if err != nil {
		return nil, fresh, translate("timeseries", err)
	}
	if ok {
		return days, fresh, nil
	}
	days, err = db.RecomputeTimeseriesInput(ctx, e, m, q)
	return days, analysis.Complete(q.Now), err
}

// timeseriesEnd returns the last day of a timeseries (the day of now, or of
// the stop) and the first day shown.
func timeseriesEnd(e *flywheel.Experiment, now time.Time) (end, first time.Time) {
	end = now.UTC().Truncate(24 * time.Hour)
	if e.StoppedAt != nil && e.StoppedAt.Before(now) {
		end = e.StoppedAt.UTC().Truncate(24 * time.Hour)
	}
	return end, end.AddDate(0, 0, 1-MaxTimeseriesDays)
}

// RecomputeTimeseriesInput is TimeseriesInput from raw events.
func (db *DB) RecomputeTimeseriesInput(ctx context.Context, e *flywheel.Experiment, m flywheel.Metric, q analysis.Query) ([]analysis.Day, error) {
	q = normalizeQuery(q)
	var days []analysis.Day
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		var in analysis.Input
		owned, err := prepareResults(ctx, tx, e, q, &in)
		if err != nil {
			return err
		}
		end, first := timeseriesEnd(e, q.Now)
		// Only the latest MaxTimeseriesDays: units exposed earlier enter on
		// the first day shown.
		if _, err := tx.Exec(ctx, `UPDATE r_units SET first_ts = greatest(first_ts, $1)`, first); err != nil {
			return err
		}
		from, to, events := window(&m)
		capValue, capPct := capOf(m.Cap)
		rows, err := tx.Query(ctx, fmt.Sprintf(timeseriesStats, owned), e.UnitType, events, string(m.Type), from, to,
			capValue, capPct, m.Numerator, m.Denominator, end)
		if err != nil {
			return err
		}
		days, err = scanDays(rows, m.Key)
		return err
	})
	if err != nil {
		return nil, translate("timeseries", err)
	}
	return days, nil
}

// scanDays reads rows of (day, variant, n, conversions, sum, sumsq, sumnum,
// sumden, sumnumsq, sumdensq, sumnumden) ordered by day.
func scanDays(rows pgx.Rows, metric string) ([]analysis.Day, error) {
	defer rows.Close()
	var days []analysis.Day
	for rows.Next() {
		var d time.Time
		s := analysis.MetricStats{Metric: metric}
		if err := rows.Scan(&d, &s.Variant, &s.N, &s.Conversions, &s.Sum, &s.SumSq,
			&s.SumNum, &s.SumDen, &s.SumNumSq, &s.SumDenSq, &s.SumNumDen); err != nil {
			return nil, err
		}
		if n := len(days); n == 0 || !days[n-1].Date.Equal(d) {
			days = append(days, analysis.Day{Date: d})
		}
		days[len(days)-1].Stats = append(days[len(days)-1].Stats, s)
	}
	return days, rows.Err()
}

// variantDaysTimeseriesSQL is timeseriesStats from the per-variant days
// (agg_variant_days, store/aggregate_days.go): the running sum of each
// variant's daily changes, from the first day with units to the last day.
// The QA override units' own changes, computed from their day rows as the
// aggregator computes them, are subtracted. Days before the first day shown
// are summed into it, as the units exposed before it enter on it.
//
// $1 experiment, $2 metric, $3 metric type, $4 overrides, $5 last day,
// $6 first day shown, $7 fixed cap.
var variantDaysTimeseriesSQL = `
WITH ov AS (
    SELECT a.unit_id, a.variant, a.first_ts, a.last_day, a.last_n, a.last_v, a.last_num, a.last_den FROM agg_units a
    WHERE a.experiment = $1 AND a.metric = $2 AND a.state = 0 AND a.unit_id = ANY($4)
), dchange AS (
    SELECT $1::text AS experiment, $2::text AS metric, $3::text AS typ, $7::float8 AS cap, -1 AS sign,
        d.unit_id, o.variant, d.day, d.n, d.v, d.num, d.den
    FROM ov o JOIN agg_unit_days d ON d.unit_id = o.unit_id AND d.experiment = $1 AND d.metric = $2
    UNION ALL
    SELECT $1, $2, $3, $7, -1, unit_id, variant, last_day, last_n, last_v, last_num, last_den
    FROM ov WHERE last_day IS NOT NULL
), uchange AS (
    SELECT $1::text AS experiment, $2::text AS metric, -1 AS sign, variant, (first_ts AT TIME ZONE 'UTC')::date AS day FROM ov
), ` + dayDeltas + `, per_day AS (
    SELECT variant, day, sum(units) AS units, sum(sum) AS s, sum(sumsq) AS ss, sum(sumnum) AS sn, sum(sumden) AS sd,
        sum(sumnumsq) AS snn, sum(sumdensq) AS sdd, sum(sumnumden) AS snd
    FROM (
        SELECT variant, day, units, sum, sumsq, sumnum, sumden, sumnumsq, sumdensq, sumnumden
        FROM agg_variant_days WHERE experiment = $1 AND metric = $2 AND day <= $5::date
        UNION ALL
        SELECT variant, day, units, sum, sumsq, sumnum, sumden, sumnumsq, sumdensq, sumnumden
        FROM vchange WHERE day <= $5::date
    ) c GROUP BY 1, 2
), ` + runningDays

// unitDaysTimeseriesSQL is timeseriesStats from the aggregates: each
// analysed unit (agg_units) enters on its first day, and its per-day
// contributions (agg_unit_days, and its last day in agg_units) change its
// value on the days they fall on.
// A unit's value changes only on days with events, so the statistics are
// built from the change of each unit on those days (its value after the
// day minus before, of y, y², ...) summed cumulatively per variant: the
// work grows with the units' days with events, not with units × days, in
// one pass over them. Sums are float8, as in the recomputation: the two
// agree to rounding (VerifyTimeseries).
//
// $1 experiment, $2 metric, $3 metric type, $4 overrides, $5 last day,
// $6 first day shown, $7 cap value, $8 cap percentile (of the values on the
// last day).
const unitDaysTimeseriesSQL = `
WITH u AS (
    SELECT unit_id, variant, greatest((first_ts AT TIME ZONE 'UTC')::date, $6::date) AS d0
    FROM agg_units
    WHERE experiment = $1 AND metric = $2 AND state = 0 AND unit_id <> ALL($4)
      AND (first_ts AT TIME ZONE 'UTC')::date <= $5::date
), c AS (
    -- A unit's days: its day rows, and its last day in its unit row.
    SELECT a.unit_id, greatest(a.day, $6::date) AS day, sum(a.n) AS n, sum(a.v) AS v, sum(a.num) AS num, sum(a.den) AS den
    FROM (
        SELECT unit_id, day, n, v, num, den FROM agg_unit_days WHERE experiment = $1 AND metric = $2
        UNION ALL
        SELECT unit_id, last_day, last_n, last_v, last_num, last_den FROM agg_units
        WHERE experiment = $1 AND metric = $2 AND last_day IS NOT NULL
    ) a
    WHERE a.day <= $5::date
    GROUP BY 1, 2
), run AS (
    SELECT u.variant, c.day, c.unit_id, c.n AS dn, c.v AS dv, c.num AS dnum, c.den AS dden,
        sum(c.n) OVER w AS n, sum(c.v) OVER w AS v, sum(c.num) OVER w AS num, sum(c.den) OVER w AS den
    FROM c JOIN u USING (unit_id)
    WINDOW w AS (PARTITION BY c.unit_id ORDER BY c.day)
), val AS (
    -- The unit's value after the day (y) and before it (y0).
    SELECT variant, day, unit_id, num, den, num - dnum AS num0, den - dden AS den0,
        CASE $3 WHEN 'conversion' THEN (n > 0)::int::float8 WHEN 'retention' THEN (n > 0)::int::float8
                WHEN 'count' THEN n ELSE v END AS y,
        CASE $3 WHEN 'conversion' THEN (n - dn > 0)::int::float8 WHEN 'retention' THEN (n - dn > 0)::int::float8
                WHEN 'count' THEN n - dn ELSE v - dv END AS y0
    FROM run
), cap AS (
    SELECT COALESCE($7::float8, (SELECT percentile_cont($8::float8) WITHIN GROUP (ORDER BY COALESCE(f.y, 0))
        FROM u LEFT JOIN (SELECT DISTINCT ON (unit_id) unit_id, y FROM val ORDER BY unit_id, day DESC) f USING (unit_id)
        WHERE $8::float8 IS NOT NULL)) AS c
), step AS (
    SELECT v.variant, v.day, v.den, v.den0,
        CASE WHEN cap.c IS NULL THEN v.y ELSE least(v.y, cap.c) END AS y,
        CASE WHEN cap.c IS NULL THEN v.y0 ELSE least(v.y0, cap.c) END AS y0,
        CASE WHEN cap.c IS NULL THEN v.num ELSE least(v.num, cap.c) END AS num,
        CASE WHEN cap.c IS NULL THEN v.num0 ELSE least(v.num0, cap.c) END AS num0
    FROM val v CROSS JOIN cap
), delta AS (
    SELECT variant, day,
        sum(y - y0) AS s, sum(y * y - y0 * y0) AS ss, sum(num - num0) AS sn, sum(den - den0) AS sd,
        sum(num * num - num0 * num0) AS snn, sum(den * den - den0 * den0) AS sdd, sum(num * den - num0 * den0) AS snd
    FROM step GROUP BY 1, 2
), per_day AS (
    SELECT COALESCE(e.variant, d.variant) AS variant, COALESCE(e.day, d.day) AS day, COALESCE(e.units, 0) AS units,
        COALESCE(d.s, 0) AS s, COALESCE(d.ss, 0) AS ss, COALESCE(d.sn, 0) AS sn, COALESCE(d.sd, 0) AS sd,
        COALESCE(d.snn, 0) AS snn, COALESCE(d.sdd, 0) AS sdd, COALESCE(d.snd, 0) AS snd
    FROM (SELECT variant, d0 AS day, count(*) AS units FROM u GROUP BY 1, 2) e
    FULL JOIN delta d ON d.variant = e.variant AND d.day = e.day
), ` + runningDays

// runningDays is the end of both timeseries queries from aggregates: the
// running sums, per variant from its first day to the last ($5), of the
// daily changes in the CTE per_day (variant, day, units, s, ss, sn, sd, snn,
// sdd, snd), from the first day shown ($6).
const runningDays = `grid AS (
    SELECT v.variant, g.d::date AS day
    FROM (SELECT DISTINCT variant FROM per_day) v, generate_series((SELECT min(day) FROM per_day), $5::date, interval '1 day') g(d)
), cum AS (
    SELECT g.day, g.variant,
        sum(COALESCE(p.units, 0)) OVER w AS n,
        sum(COALESCE(p.s, 0)) OVER w AS s, sum(COALESCE(p.ss, 0)) OVER w AS ss,
        sum(COALESCE(p.sn, 0)) OVER w AS sn, sum(COALESCE(p.sd, 0)) OVER w AS sd,
        sum(COALESCE(p.snn, 0)) OVER w AS snn, sum(COALESCE(p.sdd, 0)) OVER w AS sdd, sum(COALESCE(p.snd, 0)) OVER w AS snd
    FROM grid g LEFT JOIN per_day p ON p.variant = g.variant AND p.day = g.day
    WINDOW w AS (PARTITION BY g.variant ORDER BY g.day)
)
SELECT day, variant, n::bigint, s::bigint, s::float8, ss::float8, sn::float8, sd::float8, snn::float8, sdd::float8, snd::float8
FROM cum WHERE n > 0 AND day >= $6::date ORDER BY day, variant`

// aggregatedTimeseries reads the timeseries from the aggregates; ok is
// false when the metric's aggregates are not built (or out of date).
func (db *DB) aggregatedTimeseries(ctx context.Context, e *flywheel.Experiment, m flywheel.Metric, q analysis.Query) (days []analysis.Day, fresh analysis.Freshness, ok bool, err error) {
	err = pgx.BeginTxFunc(ctx, db.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		built, err := experimentDefs(ctx, tx, e.Key)
		if err != nil || built[m.Key] != defHash(e, &m) {
			return err
		}
		ok = true
		if fresh, err = queueFreshness(ctx, tx, q.Now); err != nil {
			return err
		}
		end, first := timeseriesEnd(e, q.Now)
		capValue, capPct := capOf(m.Cap)
		// A percentile cap moves with the data: its timeseries is read
		// from every unit's days, capped at the cut of the last day.
		sql, args := variantDaysTimeseriesSQL, []any{e.Key, m.Key, string(m.Type), q.Overrides, end, first, capValue}
		if capPct != nil {
			sql, args = unitDaysTimeseriesSQL, []any{e.Key, m.Key, string(m.Type), q.Overrides, end, first, capValue, capPct}
		}
		rows, err := tx.Query(ctx, sql, args...)
		if err != nil {
			return err
		}
		days, err = scanDays(rows, m.Key)
		return err
	})
	return days, fresh, ok, err
}
