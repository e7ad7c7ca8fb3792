package store

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/analysis"
)

// ResultInput returns the sufficient statistics of experiment e for its
// metrics, with identity links, consent, multiple exposures and overrides
// applied. It reads the incremental aggregates (store/aggregate.go) when
// every definition the experiment needs is built, and reports their lag;
// otherwise it recomputes from raw events (RecomputeResultInput).
func (db *DB) ResultInput(ctx context.Context, e *flywheel.Experiment, metrics []flywheel.Metric, q analysis.Query) (analysis.Input, error) {
	q = normalizeQuery(q)
	in, ok, err := db.aggregatedInput(ctx, e, metrics, q)
	if err != nil {
		return in, translate("results", err)
	}
	if ok {
		return in, nil
	}
	return db.RecomputeResultInput(ctx, e, metrics, q)
}

// aggregatedInput reads the aggregates in one snapshot; ok is false when a
// definition is not built (or is out of date).
func (db *DB) aggregatedInput(ctx context.Context, e *flywheel.Experiment, metrics []flywheel.Metric, q analysis.Query) (in analysis.Input, ok bool, err error) {
	byKey := make(map[string]*flywheel.Metric, len(metrics))
	for i := range metrics {
		byKey[metrics[i].Key] = &metrics[i]
	}
	defs := defsOf(e, byKey)
	err = pgx.BeginTxFunc(ctx, db.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		in = analysis.Input{Experiment: *e, Metrics: metrics, ComputedAt: q.Now}
		built, err := experimentDefs(ctx, tx, e.Key)
		if err != nil {
			return err
		}
		for _, d := range defs {
			if built[d.key()] != d.hash {
				return nil
			}
		}
		ok = true
		if in.Freshness, err = queueFreshness(ctx, tx, q.Now); err != nil {
			return err
		}
		if e.UnitType != "customer" {
			err := tx.QueryRow(ctx, `SELECT customers, mixed FROM agg_crossover_totals WHERE experiment = $1`, e.Key).
				Scan(&in.Crossover.Customers, &in.Crossover.Mixed)
			if err != nil && err != pgx.ErrNoRows {
				return err
			}
		}
		if err := aggregatedArms(ctx, tx, e, q, &in); err != nil {
			return err
		}
		for _, d := range defs[1:] {
			if q.Segment != "" || d.percentileCap() {
				all, segmented, err := unitStats(ctx, tx, d, q)
				if err != nil {
					return fmt.Errorf("metric %q: %w", d.key(), err)
				}
				in.Stats = append(in.Stats, all...)
				in.SegmentStats = append(in.SegmentStats, segmented...)
				continue
			}
			stats, err := variantStats(ctx, tx, d, q)
			if err != nil {
				return fmt.Errorf("metric %q: %w", d.key(), err)
			}
			in.Stats = append(in.Stats, stats...)
		}
		if err := loadBanditEpochs(ctx, tx, e, defs[1:], &in); err != nil {
			return err
		}
		return loadSequential(ctx, tx, e.Key, &in)
	})
	return in, ok, err
}

// queueFreshness says how complete the aggregates are at now, in the
// snapshot of tx: the changes still queued or staged and the oldest one's
// receipt.
// Which experiment a queued event counts for is known only once it is
// folded in (a later identity link can move it), so every queued change is
// pending for every experiment.
func queueFreshness(ctx context.Context, tx pgx.Tx, now time.Time) (analysis.Freshness, error) {
	var oldest *time.Time
	var pending, rows int64
	if err := tx.QueryRow(ctx, pendingSQL).Scan(&oldest, &pending, &rows); err != nil {
		return analysis.Freshness{}, err
	}
	if oldest == nil {
		return analysis.Complete(now), nil
	}
	return analysis.Pending(now, *oldest, pending), nil
}

// experimentDefs returns the hash of each built definition of an experiment.
func experimentDefs(ctx context.Context, tx pgx.Tx, key string) (map[string]string, error) {
	rows, err := tx.Query(ctx, `SELECT metric, hash FROM agg_defs WHERE experiment = $1`, key)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var m, h string
		if err := rows.Scan(&m, &h); err != nil {
			return nil, err
		}
		out[m] = h
	}
	return out, rows.Err()
}

// aggregatedArms fills the arm counts, multiple exposures and overridden
// units (and the arms per segment value) from the units definition.
func aggregatedArms(ctx context.Context, tx pgx.Tx, e *flywheel.Experiment, q analysis.Query, in *analysis.Input) error {
	rows, err := tx.Query(ctx, `SELECT variant, units, opted_out, multiple FROM agg_variants
		WHERE experiment = $1 AND metric = '' ORDER BY variant`, e.Key)
	if err != nil {
		return err
	}
	arms, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (analysis.ArmCounts, error) {
		var a analysis.ArmCounts
		var multiple int64
		err := r.Scan(&a.Variant, &a.Units, &a.OptedOut, &multiple)
		in.MultipleExposures += multiple
		return a, err
	})
	if err != nil {
		return err
	}
	if len(q.Overrides) > 0 {
		rows, err := tx.Query(ctx, `SELECT variant, count(*) FILTER (WHERE state = 0), count(*) FILTER (WHERE state = 2)
			FROM agg_units WHERE experiment = $1 AND metric = '' AND unit_id = ANY($2) AND state IN (0, 2) GROUP BY variant`, e.Key, q.Overrides)
		if err != nil {
			return err
		}
		for rows.Next() {
			var v string
			var units, optedOut int64
			if err := rows.Scan(&v, &units, &optedOut); err != nil {
				rows.Close()
				return err
			}
			in.Overridden += units + optedOut
			for i := range arms {
				if arms[i].Variant == v {
					arms[i].Units -= units
					arms[i].OptedOut -= optedOut
				}
			}
		}
		if rows.Err() != nil {
			return rows.Err()
		}
	}
	for _, a := range arms {
		if a.Units+a.OptedOut > 0 {
			in.Arms = append(in.Arms, a)
		}
	}
	if q.Segment == "" {
		return nil
	}
	rows, err = tx.Query(ctx, `SELECT a.variant, COALESCE(x.attributes->>$2, '(none)'),
		    count(*) FILTER (WHERE a.state = 0), count(*) FILTER (WHERE a.state = 2)
		FROM agg_units a JOIN exposures x ON x.experiment = a.experiment AND x.unit_id = a.unit_id
		WHERE a.experiment = $1 AND a.metric = '' AND a.state IN (0, 2) AND a.unit_id <> ALL($3)
		GROUP BY 1, 2 ORDER BY 1, 2`, e.Key, q.Segment, q.Overrides)
	if err != nil {
		return err
	}
	in.SegmentArms, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (analysis.ArmCounts, error) {
		var a analysis.ArmCounts
		return a, r.Scan(&a.Variant, &a.Segment, &a.Units, &a.OptedOut)
	})
	if err != nil {
		return err
	}
	return analysis.CheckSegmentValues(q.Segment, in.SegmentArms)
}

// variantStats reads a metric's variant sums, less the overridden units,
// and counts its maturing units.
func variantStats(ctx context.Context, tx pgx.Tx, d aggDef, q analysis.Query) ([]analysis.MetricStats, error) {
	// Conversions are not stored: they are the sum of y, rounded below.
	rows, err := tx.Query(ctx, `SELECT variant, units, sum, sumsq, sumx, sumxsq, sumxy,
		    sumnum, sumden, sumnumsq, sumdensq, sumnumden
		FROM agg_variants WHERE experiment = $1 AND metric = $2 ORDER BY variant`, d.exp.Key, d.key())
	if err != nil {
		return nil, err
	}
	stats, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (analysis.MetricStats, error) {
		s := analysis.MetricStats{Metric: d.key()}
		err := r.Scan(&s.Variant, &s.N, &s.Sum, &s.SumSq, &s.SumX, &s.SumXSq, &s.SumXY,
			&s.SumNum, &s.SumDen, &s.SumNumSq, &s.SumDenSq, &s.SumNumDen)
		return s, err
	})
	if err != nil {
		return nil, err
	}
	if len(q.Overrides) > 0 {
		// The overridden units' own contributions, with the fixed cap.
		rows, err := tx.Query(ctx, `WITH change AS (
			SELECT experiment, metric, variant, state, -1 AS sign, y, x, num, den, $3::float8 AS cap
			FROM agg_units WHERE experiment = $1 AND metric = $2 AND unit_id = ANY($4) AND state = 0
		), `+variantDelta+`
		SELECT variant, units, sum, sumsq, sumx, sumxsq, sumxy, sumnum, sumden, sumnumsq, sumdensq, sumnumden FROM delta`,
			d.exp.Key, d.key(), d.fixedCap(), q.Overrides)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var o analysis.MetricStats
			if err := rows.Scan(&o.Variant, &o.N, &o.Sum, &o.SumSq, &o.SumX, &o.SumXSq, &o.SumXY,
				&o.SumNum, &o.SumDen, &o.SumNumSq, &o.SumDenSq, &o.SumNumDen); err != nil {
				rows.Close()
				return nil, err
			}
			for i := range stats {
				if s := &stats[i]; s.Variant == o.Variant { // o holds negated sums
					s.N += o.N
					s.Sum, s.SumSq, s.SumX, s.SumXSq, s.SumXY = s.Sum+o.Sum, s.SumSq+o.SumSq, s.SumX+o.SumX, s.SumXSq+o.SumXSq, s.SumXY+o.SumXY
					s.SumNum, s.SumDen, s.SumNumSq, s.SumDenSq, s.SumNumDen = s.SumNum+o.SumNum, s.SumDen+o.SumDen,
						s.SumNumSq+o.SumNumSq, s.SumDenSq+o.SumDenSq, s.SumNumDen+o.SumNumDen
				}
			}
		}
		if rows.Err() != nil {
			return nil, rows.Err()
		}
	}
	out := stats[:0]
	for _, s := range stats {
		// As SQL's sum(y)::bigint on float8: conversions are the sum of y,
		// rounded half to even.
		s.Conversions = int64(math.RoundToEven(s.Sum))
		if s.N > 0 {
			out = append(out, s)
		}
	}
	if _, to, _ := window(d.metric); to > 0 && len(out) > 0 {
		if err := countMaturing(ctx, tx, d.exp.Key, q, q.Now.Add(-time.Duration(to)*time.Hour), out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// countMaturing sets the Maturing count of each row of stats: analysed
// units first exposed after bound, not overridden. Whole hours come from
// agg_first_hours; the hour holding bound, and the overridden units, from
// agg_units through its (experiment, metric, first_ts) index.
func countMaturing(ctx context.Context, tx pgx.Tx, key string, q analysis.Query, bound time.Time, stats []analysis.MetricStats) error {
	hour := bound.UTC().Truncate(time.Hour)
	rows, err := tx.Query(ctx, `SELECT variant, sum(n)::bigint FROM (
		    SELECT variant, units AS n FROM agg_first_hours WHERE experiment = $1 AND hour > $2
		    UNION ALL
		    SELECT variant, count(*) FROM agg_units
		    WHERE experiment = $1 AND metric = '' AND first_ts > $3 AND first_ts < $4 AND state = 0 GROUP BY variant
		    UNION ALL
		    SELECT variant, -count(*) FROM agg_units
		    WHERE experiment = $1 AND metric = '' AND first_ts > $3 AND state = 0 AND unit_id = ANY($5) GROUP BY variant
		) m GROUP BY variant`, key, hour, bound, hour.Add(time.Hour), q.Overrides)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var v string
		var n int64
		if err := rows.Scan(&v, &n); err != nil {
			return err
		}
		for i := range stats {
			if stats[i].Variant == v {
				stats[i].Maturing = n
			}
		}
	}
	return rows.Err()
}

// unitStats computes a metric's statistics from its unit aggregates: for a
// percentile cap (which moves with the data) and for segments (any exposure
// attribute). It reads one row per unit, not the events.
func unitStats(ctx context.Context, tx pgx.Tx, d aggDef, q analysis.Query) (out, segmented []analysis.MetricStats, err error) {
	capValue, capPct := capOf(d.metric.Cap)
	_, to, _ := window(d.metric)
	segment, join := `'(none)'`, ""
	if q.Segment != "" {
		segment = `COALESCE(x.attributes->>$8, '(none)')`
		join = `JOIN exposures x ON x.experiment = a.experiment AND x.unit_id = a.unit_id`
	}
	// $1 experiment, $2 metric, $3 overrides, $4 cap value, $5 cap
	// percentile, $6 to hours, $7 now, $8 segment attribute.
	sql := `WITH units AS (
		SELECT a.variant, ` + segment + ` AS segment, a.first_ts, a.y, a.x, a.num, a.den
		FROM agg_units a ` + join + `
		WHERE a.experiment = $1 AND a.metric = $2 AND a.state = 0 AND a.unit_id <> ALL($3)
	), ` + cappedSums("units", "$4", "$5", "$6", "$7") + `
	ORDER BY 1, 2`
	args := []any{d.exp.Key, d.key(), q.Overrides, capValue, capPct, to, q.Now}
	if q.Segment != "" {
		args = append(args, q.Segment)
	} else {
		sql = strings.Replace(sql, "ORDER BY 1, 2", "HAVING GROUPING(segment) = 1 ORDER BY 1, 2", 1)
	}
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return nil, nil, err
	}
	return scanCappedSums(rows, d.key())
}

// VerifyAggregates compares what ResultInput reads from the aggregates for
// experiment e with a recomputation from raw events, and describes every
// difference: counts must agree exactly and sums to 1e-9 (relative). It
// fails when the aggregates are not built. Tests, and `flywheel bench
// results`, use it to show the incremental path is exact.
func (db *DB) VerifyAggregates(ctx context.Context, e *flywheel.Experiment, metrics []flywheel.Metric, q analysis.Query) error {
	q = normalizeQuery(q)
	agg, ok, err := db.aggregatedInput(ctx, e, metrics, q)
	if err != nil {
		return translate("verify aggregates", err)
	}
	if !ok {
		return fmt.Errorf("aggregates of %q are not built", e.Key)
	}
	raw, err := db.RecomputeResultInput(ctx, e, metrics, q)
	if err != nil {
		return err
	}
	var diffs []string
	add := func(format string, args ...any) { diffs = append(diffs, fmt.Sprintf(format, args...)) }
	if agg.MultipleExposures != raw.MultipleExposures || agg.Overridden != raw.Overridden || agg.Crossover != raw.Crossover {
		add("multiple/overridden/crossover: aggregates %d/%d/%+v, recomputed %d/%d/%+v",
			agg.MultipleExposures, agg.Overridden, agg.Crossover, raw.MultipleExposures, raw.Overridden, raw.Crossover)
	}
	compareArms := func(name string, a, r []analysis.ArmCounts) {
		key := func(x analysis.ArmCounts) string { return x.Variant + "\x00" + x.Segment }
		am, rm := map[string]analysis.ArmCounts{}, map[string]analysis.ArmCounts{}
		for _, x := range a {
			am[key(x)] = x
		}
		for _, x := range r {
			rm[key(x)] = x
			if am[key(x)] != x {
				add("%s %s/%s: aggregates %+v, recomputed %+v", name, x.Variant, x.Segment, am[key(x)], x)
			}
		}
		for k, x := range am {
			if _, ok := rm[k]; !ok {
				add("%s %s/%s: aggregates %+v, recomputed none", name, x.Variant, x.Segment, x)
			}
		}
	}
	compareArms("arm", agg.Arms, raw.Arms)
	compareArms("segment arm", agg.SegmentArms, raw.SegmentArms)
	compareStats(add, "stats", agg.Stats, raw.Stats)
	compareStats(add, "segment stats", agg.SegmentStats, raw.SegmentStats)
	if len(diffs) > 0 {
		return fmt.Errorf("aggregates of %q differ from a recomputation:\n  %s", e.Key, strings.Join(diffs, "\n  "))
	}
	return nil
}

// compareStats adds to diffs how the statistics a (aggregates) differ from
// r (recomputed): counts exactly, sums to 1e-9 relative.
func compareStats(add func(string, ...any), name string, a, r []analysis.MetricStats) {
	key := func(x analysis.MetricStats) string { return x.Metric + "\x00" + x.Variant + "\x00" + x.Segment }
	am := map[string]analysis.MetricStats{}
	for _, x := range a {
		am[key(x)] = x
	}
	if len(a) != len(r) {
		add("%s rows: aggregates %d, recomputed %d", name, len(a), len(r))
	}
	for _, x := range r {
		y, ok := am[key(x)]
		if !ok {
			add("%s %s/%s/%s: missing from aggregates", name, x.Metric, x.Variant, x.Segment)
			continue
		}
		// Conversions of a non-conversion metric are the sum rounded: at a
		// sum of k+0.5 the two paths' last bits may round either way.
		halfway := abs(x.Sum-math.Floor(x.Sum)-0.5) < 1e-9*max(1, abs(x.Sum)) && abs(float64(x.Conversions-y.Conversions)) == 1
		if x.N != y.N || (x.Conversions != y.Conversions && !halfway) || x.Maturing != y.Maturing {
			add("%s %s/%s/%s: n/conversions/maturing aggregates %d/%d/%d, recomputed %d/%d/%d", name, x.Metric, x.Variant, x.Segment,
				y.N, y.Conversions, y.Maturing, x.N, x.Conversions, x.Maturing)
		}
		sums := [][3]any{{"sum", y.Sum, x.Sum}, {"sumsq", y.SumSq, x.SumSq}, {"sumx", y.SumX, x.SumX}, {"sumxsq", y.SumXSq, x.SumXSq},
			{"sumxy", y.SumXY, x.SumXY}, {"sumnum", y.SumNum, x.SumNum}, {"sumden", y.SumDen, x.SumDen},
			{"sumnumsq", y.SumNumSq, x.SumNumSq}, {"sumdensq", y.SumDenSq, x.SumDenSq}, {"sumnumden", y.SumNumDen, x.SumNumDen}}
		for _, s := range sums {
			g, w := s[1].(float64), s[2].(float64)
			if d := g - w; d > 1e-9*max(1, abs(w)) || -d > 1e-9*max(1, abs(w)) {
				add("%s %s/%s/%s %s: aggregates %.17g, recomputed %.17g", name, x.Metric, x.Variant, x.Segment, s[0], g, w)
			}
		}
	}
}

// VerifyTimeseries compares the timeseries of each metric read from the
// aggregates with the recomputation from raw events, day by day, as
// VerifyAggregates does for results. It fails when a metric's aggregates
// are not built.
func (db *DB) VerifyTimeseries(ctx context.Context, e *flywheel.Experiment, metrics []flywheel.Metric, q analysis.Query) error {
	q = normalizeQuery(q)
	var diffs []string
	add := func(format string, args ...any) { diffs = append(diffs, fmt.Sprintf(format, args...)) }
	for _, m := range metrics {
		agg, _, ok, err := db.aggregatedTimeseries(ctx, e, m, q)
		if err != nil {
			return translate("verify timeseries", err)
		}
		if !ok {
			return fmt.Errorf("aggregates of %s/%s are not built", e.Key, m.Key)
		}
		raw, err := db.RecomputeTimeseriesInput(ctx, e, m, q)
		if err != nil {
			return err
		}
		if len(agg) != len(raw) {
			add("%s: %d days from aggregates, %d recomputed", m.Key, len(agg), len(raw))
			continue
		}
		for i := range raw {
			if !agg[i].Date.Equal(raw[i].Date) {
				add("%s: day %d is %s from aggregates, %s recomputed", m.Key, i, agg[i].Date.Format(time.DateOnly), raw[i].Date.Format(time.DateOnly))
				continue
			}
			compareStats(add, "day "+raw[i].Date.Format(time.DateOnly), agg[i].Stats, raw[i].Stats)
		}
	}
	if len(diffs) > 0 {
		return fmt.Errorf("timeseries of %q differ from a recomputation:\n  %s", e.Key, strings.Join(diffs, "\n  "))
	}
	return nil
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

// normalizeQuery makes nil overrides an empty list: SQL's x <> ALL(NULL)
// is never true.
func normalizeQuery(q analysis.Query) analysis.Query {
	if q.Overrides == nil {
		q.Overrides = []string{}
	}
	return q
}
