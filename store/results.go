package store

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/analysis"
)

// identityRoots maps every linked id to the customer it resolves to: a
// device to its customer, a customer merged into another to that one,
// following chains up to 16 links. The end of the walk must be a root (a
// customer linked to no other): an id on a cycle of links, or more than 16
// links from a root, resolves to no one (root NULL), and its events count
// for nobody. The aggregates (store/aggregate.go, members) walk down from
// roots with the same rule.
const identityRoots = `
CREATE TEMP TABLE r_roots ON COMMIT DROP AS
WITH RECURSIVE walk(unit_type, unit_id, root, depth) AS (
    SELECT unit_type, unit_id, customer_id, 1 FROM aliases
    UNION ALL
    SELECT w.unit_type, w.unit_id, a.customer_id, w.depth + 1
    FROM walk w JOIN aliases a ON a.unit_type = 'customer' AND a.unit_id = w.root
    WHERE w.depth < 16 AND a.customer_id <> w.unit_id
)
SELECT DISTINCT ON (unit_type, unit_id) unit_type, unit_id,
    CASE WHEN EXISTS (SELECT 1 FROM aliases a WHERE a.unit_type = 'customer' AND a.unit_id = walk.root AND a.customer_id <> walk.root)
         THEN NULL ELSE root END AS root
FROM walk ORDER BY unit_type, unit_id, depth DESC;
CREATE INDEX ON r_roots (unit_type, unit_id)`

// RecomputeResultInput aggregates, in one transaction, the sufficient
// statistics of experiment e for its metrics from the stored exposures and
// events, with identity links, consent, multiple exposures and overrides
// applied: the plain recomputation that ResultInput falls back to before
// the incremental aggregates are built. Only sufficient statistics leave
// the database.
func (db *DB) RecomputeResultInput(ctx context.Context, e *flywheel.Experiment, metrics []flywheel.Metric, q analysis.Query) (analysis.Input, error) {
	q = normalizeQuery(q)
	in := analysis.Input{Experiment: *e, Metrics: metrics, ComputedAt: q.Now, Freshness: analysis.Complete(q.Now)}
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		owned, err := prepareResults(ctx, tx, e, q, &in)
		if err != nil {
			return err
		}
		for _, m := range metrics {
			all, segmented, err := metricStats(ctx, tx, owned, e.UnitType, m, q)
			if err != nil {
				return fmt.Errorf("metric %q: %w", m.Key, err)
			}
			in.Stats = append(in.Stats, all...)
			in.SegmentStats = append(in.SegmentStats, segmented...)
		}
		return loadSequential(ctx, tx, e.Key, &in)
	})
	if err != nil {
		return in, translate("results", err)
	}
	return in, nil
}

// prepareResults fills r_units (the analysed units) and r_roots (identity
// links resolved to their customer), the arm counts and the crossover of
// in, and returns the query of the track events each unit owns: its own,
// and for customer experiments those of every id linked to it.
func prepareResults(ctx context.Context, tx pgx.Tx, e *flywheel.Experiment, q analysis.Query, in *analysis.Input) (string, error) {
	if err := loadUnits(ctx, tx, e, q, in); err != nil {
		return "", err
	}
	return ownedEvents(ctx, tx, e, in)
}

// ownedEvents fills r_roots (identity links resolved to their customer)
// and the crossover of in, and returns the query of the track events each
// unit owns: its own, and for customer experiments those of every id
// linked to it.
func ownedEvents(ctx context.Context, tx pgx.Tx, e *flywheel.Experiment, in *analysis.Input) (string, error) {
	if _, err := tx.Exec(ctx, identityRoots); err != nil {
		return "", err
	}
	owned := `SELECT e.unit_id AS owner, e.ts, e.value, e.event FROM events e
		WHERE e.type = 'track' AND e.unit_type = $1 AND e.event = ANY($2)`
	if e.UnitType != "customer" {
		// Crossover: customers whose linked units saw different variants.
		if err := tx.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE variants > 1) FROM (
		SELECT r.root, count(DISTINCT x.variant) AS variants
		FROM exposures x JOIN r_roots r ON r.unit_type = x.unit_type AND r.unit_id = x.unit_id
		WHERE x.experiment = $1 AND r.root IS NOT NULL GROUP BY r.root) c`, e.Key).Scan(&in.Crossover.Customers, &in.Crossover.Mixed); err != nil {
			return "", err
		}
	} else {
		// A customer's own events are its own unless it is linked (then
		// they belong to its root, if it has one).
		owned = `SELECT CASE WHEN r.unit_id IS NULL THEN e.unit_id ELSE r.root END AS owner, e.ts, e.value, e.event FROM events e
		LEFT JOIN r_roots r ON r.unit_type = e.unit_type AND r.unit_id = e.unit_id
		WHERE e.type = 'track' AND e.event = ANY($2) AND ((e.unit_type = $1 AND r.unit_id IS NULL) OR r.root IS NOT NULL)`
	}
	return owned, nil
}

// loadUnits fills r_units with the analysed units (first exposed to one
// variant, not overridden, not opted out) and the arm counts.
func loadUnits(ctx context.Context, tx pgx.Tx, e *flywheel.Experiment, q analysis.Query, in *analysis.Input) error {
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE r_units ON COMMIT DROP AS
		SELECT x.unit_id, x.variant, x.first_ts, COALESCE(x.attributes->>$3, '(none)') AS segment
		FROM exposures x
		WHERE x.experiment = $1 AND NOT x.multiple AND x.unit_id <> ALL($2)
		  AND NOT EXISTS (SELECT 1 FROM consent c WHERE c.unit_type = x.unit_type AND c.unit_id = x.unit_id AND NOT c.analytics)`,
		e.Key, q.Overrides, q.Segment); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `CREATE INDEX ON r_units (unit_id); ANALYZE r_units`); err != nil {
		return err
	}
	err := tx.QueryRow(ctx, `SELECT count(*) FILTER (WHERE multiple), count(*) FILTER (WHERE NOT multiple AND unit_id = ANY($2))
		FROM exposures WHERE experiment = $1`, e.Key, q.Overrides).Scan(&in.MultipleExposures, &in.Overridden)
	if err != nil {
		return err
	}
	rows, err := tx.Query(ctx, `
		SELECT x.variant, CASE WHEN GROUPING(s.segment) = 1 THEN NULL ELSE s.segment END,
		       count(*) FILTER (WHERE c.unit_id IS NULL), count(*) FILTER (WHERE c.unit_id IS NOT NULL)
		FROM exposures x
		LEFT JOIN consent c ON c.unit_type = x.unit_type AND c.unit_id = x.unit_id AND NOT c.analytics
		CROSS JOIN LATERAL (SELECT COALESCE(x.attributes->>$3, '(none)') AS segment) s
		WHERE x.experiment = $1 AND NOT x.multiple AND x.unit_id <> ALL($2)
		GROUP BY GROUPING SETS ((x.variant), (x.variant, s.segment))`, e.Key, q.Overrides, q.Segment)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var a analysis.ArmCounts
		var seg *string
		if err := rows.Scan(&a.Variant, &seg, &a.Units, &a.OptedOut); err != nil {
			return err
		}
		if seg == nil {
			in.Arms = append(in.Arms, a)
		} else if q.Segment != "" {
			a.Segment = *seg
			in.SegmentArms = append(in.SegmentArms, a)
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	return analysis.CheckSegmentValues(q.Segment, in.SegmentArms)
}

// windowSums is the SQL of one unit's sums over its events, as columns
// n_in, v_in, n_pre, v_pre, num, den: ev names the events (ts, value,
// event) and unit the unit (first_ts); the rest are SQL expressions, from
// and to the analysis window in hours after first exposure (to 0: no end),
// cuped the hours before it, num and den a ratio's numerator and
// denominator events. n_in counts the events in [from, to); v_in, num and
// den sum from the exposure to the window's end; n_pre and v_pre cover
// the CUPED period. The recomputation (metricStats) and the units'
// recomputation in a cycle (foldUnitsSQL) use it; the fold of new track
// events computes the same sums in Go (foldSpec.unitSums), and the
// aggregates' tests compare the two paths with a recomputation.
func windowSums(ev, unit, from, to, cuped, num, den string) string {
	return strings.NewReplacer("ev.", ev+".", "unit.", unit+".", "$FROM", from, "$TO", to, "$CUPED", cuped, "$NUM", num, "$DEN", den).Replace(
		`count(ev.ts) FILTER (WHERE ` + inWindow("ev", "unit", "$FROM", "$TO") + `) AS n_in,
        COALESCE(sum(ev.value) FILTER (WHERE ev.ts >= unit.first_ts AND ($TO = 0 OR ev.ts < unit.first_ts + make_interval(hours => $TO))), 0) AS v_in,
        count(ev.ts) FILTER (WHERE ev.ts >= unit.first_ts - make_interval(hours => $CUPED) AND ev.ts < unit.first_ts) AS n_pre,
        COALESCE(sum(ev.value) FILTER (WHERE ev.ts >= unit.first_ts - make_interval(hours => $CUPED) AND ev.ts < unit.first_ts), 0) AS v_pre,
        COALESCE(sum(COALESCE(ev.value, 1)) FILTER (WHERE ev.event = $NUM AND ev.ts >= unit.first_ts AND ($TO = 0 OR ev.ts < unit.first_ts + make_interval(hours => $TO))), 0) AS num,
        COALESCE(sum(COALESCE(ev.value, 1)) FILTER (WHERE ev.event = $DEN AND ev.ts >= unit.first_ts AND ($TO = 0 OR ev.ts < unit.first_ts + make_interval(hours => $TO))), 0) AS den`)
}

// inWindow is the SQL condition that the event ev (ts) falls in the
// analysis window of the unit (first_ts): from (inclusive) to to
// (exclusive; 0: no end) hours after first exposure. n_in of windowSums,
// and every per-day contribution (agg_unit_days, the timeseries), count
// the events it admits.
func inWindow(ev, unit, from, to string) string {
	return fmt.Sprintf(`%[1]s.ts >= %[2]s.first_ts + make_interval(hours => %[3]s) AND (%[4]s = 0 OR %[1]s.ts < %[2]s.first_ts + make_interval(hours => %[4]s))`,
		ev, unit, from, to)
}

// daySums is the SQL of the columns n, v, num, den of a unit's contribution
// to one day: its events (ev: value, event) counted, their values summed,
// and a ratio's numerator and denominator events' values (1 when none).
func daySums(ev, num, den string) string {
	return fmt.Sprintf(`count(*) AS n, COALESCE(sum(%[1]s.value), 0) AS v,
        COALESCE(sum(COALESCE(%[1]s.value, 1)) FILTER (WHERE %[1]s.event = %[2]s), 0) AS num,
        COALESCE(sum(COALESCE(%[1]s.value, 1)) FILTER (WHERE %[1]s.event = %[3]s), 0) AS den`, ev, num, den)
}

// metricStats computes one metric's per-unit values (in the window after
// first exposure, and in the CUPED period before it), applies the cap, and
// returns the sums per variant, and per variant and segment value.
func metricStats(ctx context.Context, tx pgx.Tx, owned, unitType string, m flywheel.Metric, q analysis.Query) (out, segmented []analysis.MetricStats, err error) {
	from, to, events := window(&m) // the analysis window, hours after exposure; 0 = no end
	capValue, capPct := capOf(m.Cap)
	// $1 unit type, $2 events, $3 metric type, $4 from hours, $5 to hours
	// (0 = no end), $6 cuped hours, $7 cap value, $8 cap percentile, $9 now,
	// $10 numerator, $11 denominator, $12 segmented.
	sql := `
WITH owned AS (` + owned + `),
per_unit AS (
    SELECT u.unit_id, u.variant, u.segment, u.first_ts,
        ` + windowSums("o", "u", "$4", "$5", "$6", "$10", "$11") + `
    FROM r_units u LEFT JOIN owned o ON o.owner = u.unit_id
    GROUP BY u.unit_id, u.variant, u.segment, u.first_ts
), valued AS (
    SELECT variant, segment, first_ts, num, den,
        CASE $3 WHEN 'conversion' THEN (n_in > 0)::int::float8 WHEN 'retention' THEN (n_in > 0)::int::float8
                WHEN 'count' THEN n_in::float8 ELSE v_in END AS y,
        CASE $3 WHEN 'conversion' THEN (n_pre > 0)::int::float8 WHEN 'retention' THEN 0
                WHEN 'count' THEN n_pre::float8 WHEN 'ratio' THEN 0 ELSE v_pre END AS x
    FROM per_unit
), ` + cappedSums("valued", "$7", "$8", "$5", "$9") + `
HAVING GROUPING(segment) = 1 OR $12`
	rows, err := tx.Query(ctx, sql, unitType, events, string(m.Type), from, to, m.CUPEDHours, capValue, capPct, q.Now,
		m.Numerator, m.Denominator, q.Segment != "")
	if err != nil {
		return nil, nil, err
	}
	return scanCappedSums(rows, m.Key)
}

// loadSequential reads the stored mSPRT states of the experiment.
func loadSequential(ctx context.Context, tx pgx.Tx, key string, in *analysis.Input) error {
	rows, err := tx.Query(ctx, `SELECT metric, variant, tau2, alpha, look, diff, v, log_lambda, lambda, p, reject, ci_lower, ci_upper
		FROM sequential_state WHERE experiment = $1`, key)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var s analysis.SequentialState
		l := &s.State
		if err := rows.Scan(&s.Metric, &s.Variant, &s.Tau2, &s.Alpha, &l.Index, &l.Diff, &l.V, &l.LogLambda, &l.Lambda, &l.P, &l.Reject, &l.CI.Lower, &l.CI.Upper); err != nil {
			return err
		}
		in.Sequential = append(in.Sequential, s)
	}
	return rows.Err()
}

// SaveSequential stores the mSPRT states after a results computation.
func (db *DB) SaveSequential(ctx context.Context, key string, states []analysis.SequentialState) error {
	if len(states) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	for _, s := range states {
		l := s.State
		b.Queue(`INSERT INTO sequential_state (experiment, metric, variant, tau2, alpha, look, diff, v, log_lambda, lambda, p, reject, ci_lower, ci_upper, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
			ON CONFLICT (experiment, metric, variant) DO UPDATE SET tau2 = EXCLUDED.tau2, alpha = EXCLUDED.alpha, look = EXCLUDED.look,
			  diff = EXCLUDED.diff, v = EXCLUDED.v, log_lambda = EXCLUDED.log_lambda, lambda = EXCLUDED.lambda, p = EXCLUDED.p,
			  reject = EXCLUDED.reject, ci_lower = EXCLUDED.ci_lower, ci_upper = EXCLUDED.ci_upper, updated_at = EXCLUDED.updated_at`,
			key, s.Metric, s.Variant, s.Tau2, s.Alpha, l.Index, l.Diff, l.V, l.LogLambda, l.Lambda, l.P, l.Reject, l.CI.Lower, l.CI.Upper, db.now())
	}
	if err := db.pool.SendBatch(ctx, b).Close(); err != nil {
		return translate("save sequential state", err)
	}
	return nil
}

// scanCappedSums reads the rows of a statement ending in cappedSums: the
// statistics per variant (out) and per variant and segment (segmented).
func scanCappedSums(rows pgx.Rows, metric string) (out, segmented []analysis.MetricStats, err error) {
	defer rows.Close()
	for rows.Next() {
		s := analysis.MetricStats{Metric: metric}
		var seg *string
		if err := rows.Scan(&s.Variant, &seg, &s.N, &s.Conversions, &s.Sum, &s.SumSq, &s.SumX, &s.SumXSq, &s.SumXY,
			&s.SumNum, &s.SumDen, &s.SumNumSq, &s.SumDenSq, &s.SumNumDen, &s.Maturing); err != nil {
			return nil, nil, err
		}
		if seg == nil {
			out = append(out, s)
		} else {
			s.Segment = *seg
			segmented = append(segmented, s)
		}
	}
	return out, segmented, rows.Err()
}

// cappedSums is the end of a statement that has a CTE src of per-unit
// values (variant, segment, first_ts, y, x, num, den): it applies the cap
// (a fixed value, or the percentile of y over src) and returns the
// sufficient statistics per variant and per variant and segment, with the
// units whose window (to hours after first exposure, 0 = none) has not
// passed at now. The recomputation and the unit aggregates share it; the
// arguments name their parameters.
func cappedSums(src, capValue, capPct, to, now string) string {
	return fmt.Sprintf(`cap AS (
    SELECT COALESCE(%[2]s::float8, (SELECT percentile_cont(%[3]s::float8) WITHIN GROUP (ORDER BY y) FROM %[1]s WHERE %[3]s::float8 IS NOT NULL)) AS c
), capped AS (
    SELECT v.variant, v.segment, v.first_ts, v.den,
        CASE WHEN cap.c IS NULL THEN v.y ELSE least(v.y, cap.c) END AS y,
        CASE WHEN cap.c IS NULL THEN v.x ELSE least(v.x, cap.c) END AS x,
        CASE WHEN cap.c IS NULL THEN v.num ELSE least(v.num, cap.c) END AS num
    FROM %[1]s v CROSS JOIN cap
)
SELECT variant, CASE WHEN GROUPING(segment) = 1 THEN NULL ELSE segment END,
    count(*), sum(y)::bigint, sum(y), sum(y * y), sum(x), sum(x * x), sum(x * y),
    sum(num), sum(den), sum(num * num), sum(den * den), sum(num * den),
    count(*) FILTER (WHERE %[4]s > 0 AND first_ts + make_interval(hours => %[4]s) > %[5]s)
FROM capped
GROUP BY GROUPING SETS ((variant), (variant, segment))`, src, capValue, capPct, to, now)
}
