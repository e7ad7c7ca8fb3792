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
const timeseriesStats = `
WITH owned AS (%s),
unit_day AS (
    SELECT u.unit_id, date_trunc('day', o.ts AT TIME ZONE 'UTC')::date AS d,
        count(*) AS n, COALESCE(sum(o.value), 0) AS v,
        COALESCE(sum(COALESCE(o.value, 1)) FILTER (WHERE o.event = $8), 0) AS num,
        COALESCE(sum(COALESCE(o.value, 1)) FILTER (WHERE o.event = $9), 0) AS den
    FROM r_units u JOIN owned o ON o.owner = u.unit_id
    WHERE o.ts >= u.first_ts + make_interval(hours => $4)
      AND ($5 = 0 OR o.ts < u.first_ts + make_interval(hours => $5))
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
// MaxTimeseriesDays (the latest ones).
func (db *DB) TimeseriesInput(ctx context.Context, e *flywheel.Experiment, m flywheel.Metric, q analysis.Query) ([]analysis.Day, error) {
	q = normalizeQuery(q)
	var days []analysis.Day
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		var in analysis.Input
		owned, err := prepareResults(ctx, tx, e, q, &in)
		if err != nil {
			return err
		}
		end := q.Now.UTC().Truncate(24 * time.Hour)
		if e.StoppedAt != nil && e.StoppedAt.Before(q.Now) {
			end = e.StoppedAt.UTC().Truncate(24 * time.Hour)
		}
		// Only the latest MaxTimeseriesDays: units exposed earlier enter on
		// the first day shown.
		if _, err := tx.Exec(ctx, `UPDATE r_units SET first_ts = greatest(first_ts, $1)`, end.AddDate(0, 0, 1-MaxTimeseriesDays)); err != nil {
			return err
		}
		events := []string{m.Event}
		if m.Type == flywheel.MetricRatio {
			events = []string{m.Numerator, m.Denominator}
		}
		from, to := 0, m.WindowHours
		if m.Type == flywheel.MetricRetention {
			from, to = m.FromHours, m.ToHours
		}
		var capValue, capPct *float64
		if m.Cap != nil {
			capValue, capPct = m.Cap.Value, m.Cap.Percentile
		}
		rows, err := tx.Query(ctx, fmt.Sprintf(timeseriesStats, owned), e.UnitType, events, string(m.Type), from, to,
			capValue, capPct, m.Numerator, m.Denominator, end)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var d time.Time
			s := analysis.MetricStats{Metric: m.Key}
			if err := rows.Scan(&d, &s.Variant, &s.N, &s.Conversions, &s.Sum, &s.SumSq,
				&s.SumNum, &s.SumDen, &s.SumNumSq, &s.SumDenSq, &s.SumNumDen); err != nil {
				return err
			}
			if n := len(days); n == 0 || !days[n-1].Date.Equal(d) {
				days = append(days, analysis.Day{Date: d})
			}
			days[len(days)-1].Stats = append(days[len(days)-1].Stats, s)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, translate("timeseries", err)
	}
	return days, nil
}
