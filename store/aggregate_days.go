package store

// Per-variant, per-day statistics for the timeseries (store/aggregate.go
// describes the whole, store/timeseries.go reads them).
//
// A timeseries gives, for each day, the sufficient statistics of the units
// exposed by the end of the day, each with its value up to then. A unit's
// value changes only on the days it has events, so the statistics are the
// running sum of their changes: on each day, the units entering, and for
// each unit with events that day its value after the day minus before
// (of y, y², and the ratio parts). agg_variant_days keeps that change per
// definition, variant and day; every step that changes a unit's day rows
// subtracts the unit's old changes and adds its new ones, computed from all
// of its days in the same way, so that the two cancel exactly where nothing
// moved (the tracks step takes a shortcut for new events after a unit's
// last day: store/aggregate_fold.go). Reading a timeseries is then a
// running sum over variants × days.

// dayChanges is the SQL of CTEs that add to agg_variant_days the signed
// changes of the units in two CTEs the statement defines first:
//
//   - dchange (experiment, metric, typ, cap, sign, unit_id, variant, day, n,
//     v, num, den): the days of analysed units (their rows in agg_unit_days
//     and their last day in agg_units), all of a unit's days with the same
//     sign: -1 for the days it had, +1 for those it has now;
//   - uchange (experiment, metric, sign, variant, day): analysed units
//     leaving (-1) or entering (+1) on the UTC day of their first exposure.
//
// typ is the metric's type and cap its fixed cap (NULL: none). The last CTE
// is named days_up.
var dayChanges = dayDeltas + `, ` + dayUpsert

// dayUpsert is the CTE days_up, which adds the rows of the CTE vchange
// (experiment, metric, variant, day, units, sum, ..., sumnumden) to
// agg_variant_days.
var dayUpsert = `days_up AS (
    INSERT INTO agg_variant_days AS v (experiment, metric, variant, day, units, sum, sumsq, sumnum, sumden, sumnumsq, sumdensq, sumnumden)
    SELECT experiment, metric, variant, day, sum(units), sum(sum), sum(sumsq), sum(sumnum), sum(sumden), sum(sumnumsq), sum(sumdensq), sum(sumnumden)
    FROM vchange GROUP BY 1, 2, 3, 4
    -- Where a unit's old and new days agree, their changes cancel: nothing to write.
    HAVING (sum(units), sum(sum), sum(sumsq), sum(sumnum), sum(sumden), sum(sumnumsq), sum(sumdensq), sum(sumnumden))
        <> (0, 0, 0, 0, 0, 0, 0, 0)
    ON CONFLICT (experiment, metric, variant, day) DO UPDATE SET units = v.units + EXCLUDED.units,
        sum = v.sum + EXCLUDED.sum, sumsq = v.sumsq + EXCLUDED.sumsq, sumnum = v.sumnum + EXCLUDED.sumnum,
        sumden = v.sumden + EXCLUDED.sumden, sumnumsq = v.sumnumsq + EXCLUDED.sumnumsq,
        sumdensq = v.sumdensq + EXCLUDED.sumdensq, sumnumden = v.sumnumden + EXCLUDED.sumnumden
)`

// dayDeltas is the part of dayChanges that computes the changes per
// definition, variant and day (the CTE vchange: experiment, metric,
// variant, day, units, sum, ..., sumnumden) without writing them.
var dayDeltas = `dcum AS (
    SELECT experiment, metric, typ, cap, sign, variant, day, n - dn AS n0, v - dv AS v0, num, den, num - dnum AS num0, den - dden AS den0, n, v
    FROM (SELECT experiment, metric, typ, cap, sign, variant, day, n AS dn, v AS dv, num AS dnum, den AS dden,
              sum(n) OVER w AS n, sum(v) OVER w AS v, sum(num) OVER w AS num, sum(den) OVER w AS den
          FROM dchange
          -- "C": byte order is enough to group a unit's rows, and much cheaper than the locale's.
          WINDOW w AS (PARTITION BY experiment COLLATE "C", metric COLLATE "C", sign, unit_id COLLATE "C" ORDER BY day)) r
), dval AS (
    -- The unit's value after the day (y) and before it (y0), capped.
    SELECT experiment, metric, cap, sign, variant, day, den, den0,
        CASE WHEN cap IS NULL THEN num ELSE least(num, cap) END AS num,
        CASE WHEN cap IS NULL THEN num0 ELSE least(num0, cap) END AS num0,
        CASE typ WHEN 'conversion' THEN (n > 0)::int::float8 WHEN 'retention' THEN (n > 0)::int::float8
                 WHEN 'count' THEN n ELSE v END AS y,
        CASE typ WHEN 'conversion' THEN (n0 > 0)::int::float8 WHEN 'retention' THEN (n0 > 0)::int::float8
                 WHEN 'count' THEN n0 ELSE v0 END AS y0
    FROM dcum
), dstep AS (
    SELECT experiment, metric, sign, variant, day, den, den0, num, num0,
        CASE WHEN cap IS NULL THEN y ELSE least(y, cap) END AS y,
        CASE WHEN cap IS NULL THEN y0 ELSE least(y0, cap) END AS y0
    FROM dval
), vchange AS (
    SELECT experiment, metric, variant, day, 0::bigint AS units, ` + daySigned("y - y0", "sum") + `,
        ` + daySigned("y * y - y0 * y0", "sumsq") + `, ` + daySigned("num - num0", "sumnum") + `,
        ` + daySigned("den - den0", "sumden") + `, ` + daySigned("num * num - num0 * num0", "sumnumsq") + `,
        ` + daySigned("den * den - den0 * den0", "sumdensq") + `, ` + daySigned("num * den - num0 * den0", "sumnumden") + `
    FROM dstep GROUP BY 1, 2, 3, 4
    UNION ALL
    SELECT experiment, metric, variant, day, sum(sign)::bigint, 0, 0, 0, 0, 0, 0, 0
    FROM uchange GROUP BY 1, 2, 3, 4
)`

// daySigned is the numeric sum of sign * (expr).
func daySigned(expr, name string) string {
	return `COALESCE(sum(sign * ` + exactNumeric(expr) + `), 0) AS ` + name
}

// exactNumeric is the SQL of the float8 expression expr as numeric: the
// value of expr::numeric (float8's 15 significant digits), which every sum
// of the aggregates is made of, so that what one statement adds another can
// subtract exactly. That cast prints the value and parses the text, and is
// most of a cycle's arithmetic; most values are 0 (most columns of most
// metrics), whole numbers (conversions, counts, fixed caps) or whole cents
// (money) and their squares, and take cheaper casts that give the same
// value:
//
// When |x| < 1e11 and float8(k / 10^s) = x for the whole number k =
// round(x × 10^s), x is the float8 nearest to the decimal k / 10^s, which
// has at most 15 significant digits; x is within half a unit in the last
// place of it (2^-53 relative), much nearer than half a step of 15
// significant digits (5 × 10^-16 relative at least), so x rounded to 15
// digits is k / 10^s, and so is x::numeric (its scale may differ:
// 0.1 and 0.10 are the same numeric). TestExactNumeric compares the two.
func exactNumeric(expr string) string {
	x := "(" + expr + ")"
	return `CASE WHEN ` + x + ` = 0 THEN 0
        WHEN abs(` + x + `) >= 1e11 THEN ` + x + `::numeric
        WHEN ` + x + ` = trunc(` + x + `) THEN ` + x + `::int8::numeric
        WHEN round(` + x + ` * 100) / 100 = ` + x + ` THEN round(` + x + ` * 100)::int8 * 0.01
        WHEN round(` + x + ` * 10000) / 10000 = ` + x + ` THEN round(` + x + ` * 10000)::int8 * 0.0001
        ELSE ` + x + `::numeric END`
}
