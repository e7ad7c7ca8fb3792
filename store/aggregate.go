package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/flywheel-oss/flywheel"
)

// Incremental aggregation. Results read per-variant sufficient statistics
// that this file keeps up to date, instead of rescanning the event history:
//
//   - The ingestion transaction that stores events also appends one row to
//     agg_queue naming the units it touched (and, for identity links, the
//     customers a link joins or leaves). A queue row becomes visible exactly
//     when its events do, whatever order concurrent transactions commit in.
//   - A cycle (Aggregate) takes the visible queue rows, resolves each unit
//     to the exposures it can change (its own, and for customer experiments
//     those of its identity root), recomputes those units' values from their
//     events for every definition (experiment × metric), and adds the
//     difference between new and old values to the variant sums. Every step
//     is a recomputation of whole units, so folding a unit in twice, or in
//     an order different from its events, cannot double-count.
//   - A definition that is new or whose metric changed is rebuilt from all
//     of the experiment's exposures; until it is built, results recompute
//     from raw events (ResultInput falls back).
//
// Only one cycle runs at a time across all processes (an advisory lock), and
// erasure takes the same lock so it never interleaves with a cycle.

// aggLock is the advisory lock key of aggregation.
const aggLock = 0x666c7977686c6167 // "flywhlag"

// MaxQueueRows bounds the queue rows one cycle folds in (each names the
// units of one ingestion group, so up to a few thousand units).
const MaxQueueRows = 500

// AggregateReport says what one cycle did.
type AggregateReport struct {
	Skipped bool     // another process held the aggregation lock
	Queued  int      // queue rows folded in
	Units   int      // distinct units named by them for a recomputation
	Tracks  int      // track events named by them that a metric reads, applied as deltas
	Pairs   int      // (experiment, unit) aggregates recomputed
	Rebuilt []string // definitions built from scratch, "experiment/metric"
	More    bool     // the queue had more rows than one cycle takes
	Steps   []Step   // the time each step of the cycle took, in order
}

// Step is the time one step of an aggregation cycle took: "statistics"
// (analyzing agg_units and exposures, when they have grown), "queue" (taking
// the queue rows), "roots" (identity roots of the named units), "pairs"
// (their exposures), "history" (reading their events), "units"
// (recomputing them), "track owners" (the units, and identity roots, that
// own the new track events), "tracks" (adding them as deltas), "crossover",
// "build" (a definition built from scratch).
type Step struct {
	Name string
	Took time.Duration
}

// lap records the time since the previous lap (or since *last) as a step.
func (r *AggregateReport) lap(name string, last *time.Time) {
	now := time.Now()
	r.Steps = append(r.Steps, Step{Name: name, Took: now.Sub(*last)})
	*last = now
}

// aggDef is one aggregated definition: the units of an experiment (metric
// nil) or one of its metrics.
type aggDef struct {
	exp    *flywheel.Experiment
	metric *flywheel.Metric
	hash   string
}

func (d aggDef) key() string {
	if d.metric == nil {
		return ""
	}
	return d.metric.Key
}

// fixedCap is the cap applied to the variant sums: a fixed value only; a
// percentile cap moves with the data and is applied when results are read.
func (d aggDef) fixedCap() *float64 {
	if d.metric == nil || d.metric.Cap == nil {
		return nil
	}
	return d.metric.Cap.Value
}

func (d aggDef) percentileCap() bool {
	return d.metric != nil && d.metric.Cap != nil && d.metric.Cap.Percentile != nil
}

// defsOf returns the definitions of experiment e given its metrics'
// definitions (metrics it names without a definition are left out).
func defsOf(e *flywheel.Experiment, metrics map[string]*flywheel.Metric) []aggDef {
	defs := []aggDef{{exp: e, hash: defHash(e, nil)}}
	for _, k := range e.Metrics.Keys() {
		if m, ok := metrics[k]; ok {
			defs = append(defs, aggDef{exp: e, metric: m, hash: defHash(e, m)})
		}
	}
	return defs
}

// defHash covers everything that shapes the aggregate of a definition.
func defHash(e *flywheel.Experiment, m *flywheel.Metric) string {
	shape := struct {
		Version  int
		UnitType string
		Type     flywheel.MetricType
		Event    string
		Num, Den string
		Window   int
		From, To int
		CUPED    int
		Cap      *float64
	}{Version: 2, UnitType: e.UnitType} // 2: per-day contributions (agg_unit_days)
	if m != nil {
		shape.Type, shape.Event, shape.Num, shape.Den = m.Type, m.Event, m.Numerator, m.Denominator
		shape.Window, shape.From, shape.To, shape.CUPED = m.WindowHours, m.FromHours, m.ToHours, m.CUPEDHours
		if m.Cap != nil {
			shape.Cap = m.Cap.Value
		}
	}
	b, _ := json.Marshal(shape)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:12])
}

// window returns the analysis window of a metric in hours after first
// exposure ([from, to), to 0 = no end), and the events it reads.
func window(m *flywheel.Metric) (from, to int, events []string) {
	if m == nil {
		return 0, 0, nil
	}
	from, to, events = 0, m.WindowHours, []string{m.Event}
	if m.Type == flywheel.MetricRetention {
		from, to = m.FromHours, m.ToHours
	}
	if m.Type == flywheel.MetricRatio {
		events = []string{m.Numerator, m.Denominator}
	}
	return from, to, events
}

// aggregatedExperiments returns the experiments that are aggregated (every
// one not archived) with their metrics' definitions.
func (db *DB) aggregatedExperiments(ctx context.Context) ([]flywheel.Experiment, map[string]*flywheel.Metric, error) {
	exps, _, err := db.ListLiveExperiments(ctx)
	if err != nil {
		return nil, nil, err
	}
	var keys []string
	for i := range exps {
		keys = append(keys, exps[i].Metrics.Keys()...)
	}
	ms, err := db.FindMetricsByKeys(ctx, keys)
	if err != nil {
		return nil, nil, err
	}
	byKey := make(map[string]*flywheel.Metric, len(ms))
	for i := range ms {
		byKey[ms[i].Key] = &ms[i]
	}
	return exps, byKey, nil
}

// Aggregate runs one aggregation cycle: it folds in the queued units and
// builds the definitions that are new or changed. It returns at once, with
// Skipped, when another process is running a cycle.
func (db *DB) Aggregate(ctx context.Context) (AggregateReport, error) {
	var rep AggregateReport
	exps, metrics, err := db.aggregatedExperiments(ctx)
	if err != nil {
		return rep, err
	}
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return rep, translate("aggregate", err)
	}
	defer conn.Release()
	var locked bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, int64(aggLock)).Scan(&locked); err != nil {
		return rep, translate("aggregate", err)
	}
	if !locked {
		return AggregateReport{Skipped: true}, nil
	}
	defer func() {
		if _, err := conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, int64(aggLock)); err != nil {
			conn.Conn().Close(context.WithoutCancel(ctx)) // never return a connection that holds the lock
		}
	}()
	// One snapshot for the whole cycle: the queue rows it takes are exactly
	// those whose events it can see, so an event is either recomputed with
	// its unit now or applied as a delta later, never both.
	err = pgx.BeginTxFunc(ctx, conn, pgx.TxOptions{IsoLevel: pgx.RepeatableRead}, func(tx pgx.Tx) error {
		rep = AggregateReport{}
		t0 := time.Now()
		if analyzed, err := refreshStatistics(ctx, tx); err != nil {
			return err
		} else if analyzed {
			rep.lap("statistics", &t0)
		}
		built, err := builtDefs(ctx, tx)
		if err != nil {
			return err
		}
		var ready, stale []aggDef
		wanted := map[[2]string]bool{}
		for i := range exps {
			for _, d := range defsOf(&exps[i], metrics) {
				wanted[[2]string{d.exp.Key, d.key()}] = true
				if built[[2]string{d.exp.Key, d.key()}] == d.hash {
					ready = append(ready, d)
				} else {
					stale = append(stale, d)
				}
			}
		}
		for k := range built {
			if !wanted[k] {
				if err := dropDef(ctx, tx, k[0], k[1]); err != nil {
					return err
				}
			}
		}
		if err := db.foldQueue(ctx, tx, ready, &rep); err != nil {
			return err
		}
		for _, d := range stale {
			last := time.Now()
			if err := db.rebuild(ctx, tx, d); err != nil {
				return fmt.Errorf("build %s/%s: %w", d.exp.Key, d.key(), err)
			}
			rep.Rebuilt = append(rep.Rebuilt, d.exp.Key+"/"+d.key())
			rep.lap("build", &last)
		}
		return nil
	})
	if err != nil {
		return rep, translate("aggregate", err)
	}
	return rep, nil
}

// refreshStatistics analyzes agg_units and exposures when agg_units holds
// more than twice, or less than half, the rows its statistics say (and at
// least a thousand). A young experiment grows faster than autovacuum
// analyzes, and plans made for a table of a few rows read all of a
// definition's rows for every unit a cycle looks up. The row count is
// exact and cheap: every unit row is counted in agg_variants. As a table
// grows this analyzes a logarithmic number of times.
func refreshStatistics(ctx context.Context, tx pgx.Tx) (analyzed bool, err error) {
	var rows, estimate float64
	err = tx.QueryRow(ctx, `SELECT COALESCE(sum(units + multiple + opted_out), 0)::float8,
		(SELECT reltuples::float8 FROM pg_class WHERE oid = 'agg_units'::regclass) FROM agg_variants`).Scan(&rows, &estimate)
	if err != nil || rows < 1000 || (estimate >= 0 && rows <= 2*estimate && rows >= estimate/2) {
		return false, err
	}
	_, err = tx.Exec(ctx, `ANALYZE agg_units, exposures`)
	return err == nil, err
}

// builtDefs returns the hash of every built definition.
func builtDefs(ctx context.Context, tx pgx.Tx) (map[[2]string]string, error) {
	rows, err := tx.Query(ctx, `SELECT experiment, metric, hash FROM agg_defs`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[[2]string]string{}
	for rows.Next() {
		var e, m, h string
		if err := rows.Scan(&e, &m, &h); err != nil {
			return nil, err
		}
		out[[2]string{e, m}] = h
	}
	return out, rows.Err()
}

// dropDef forgets the aggregate of a definition.
func dropDef(ctx context.Context, tx pgx.Tx, exp, metric string) error {
	_, err := tx.Exec(ctx, `DELETE FROM agg_units WHERE experiment = $1 AND metric = $2;`, exp, metric)
	if err == nil && metric != "" {
		_, err = tx.Exec(ctx, `DELETE FROM agg_unit_days WHERE experiment = $1 AND metric = $2`, exp, metric)
	}
	if err == nil {
		_, err = tx.Exec(ctx, `DELETE FROM agg_variants WHERE experiment = $1 AND metric = $2`, exp, metric)
	}
	if err == nil && metric == "" {
		_, err = tx.Exec(ctx, `DELETE FROM agg_first_hours WHERE experiment = $1`, exp)
	}
	if err == nil && metric == "" {
		_, err = tx.Exec(ctx, `DELETE FROM agg_crossover WHERE experiment = $1`, exp)
		if err == nil {
			_, err = tx.Exec(ctx, `DELETE FROM agg_crossover_totals WHERE experiment = $1`, exp)
		}
	}
	if err == nil {
		_, err = tx.Exec(ctx, `DELETE FROM agg_defs WHERE experiment = $1 AND metric = $2`, exp, metric)
	}
	return err
}

// upWalk resolves the ids of the table %[1]s (unit_type, unit_id) to their
// identity roots: the customer at the end of their chain of links.
const upWalk = `
WITH RECURSIVE walk(unit_type, unit_id, root, depth) AS (
    SELECT d.unit_type, d.unit_id, a.customer_id, 1
    FROM %[1]s d JOIN aliases a ON a.unit_type = d.unit_type AND a.unit_id = d.unit_id
    UNION ALL
    SELECT w.unit_type, w.unit_id, a.customer_id, w.depth + 1
    FROM walk w JOIN aliases a ON a.unit_type = 'customer' AND a.unit_id = w.root
    WHERE w.depth < 16 AND a.customer_id <> w.unit_id
)
SELECT DISTINCT root FROM (
    SELECT DISTINCT ON (unit_type, unit_id) root FROM walk ORDER BY unit_type, unit_id, depth DESC
) r`

// readEvents returns the track events that the metrics of defs read: the
// only ones whose deltas matter. (Definitions built from scratch in the
// cycle read the events table itself.)
func readEvents(defs []aggDef) []string {
	read := []string{}
	for _, d := range defs {
		_, _, events := window(d.metric)
		read = append(read, events...)
	}
	return read
}

// foldQueue takes the visible queue rows and recomputes the units they
// name for every ready definition, and the crossover of their customers.
func (db *DB) foldQueue(ctx context.Context, tx pgx.Tx, ready []aggDef, rep *AggregateReport) error {
	var queued bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM agg_queue)`).Scan(&queued); err != nil || !queued {
		return err
	}
	last := time.Now()
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE a_dirty (unit_type text, unit_id text) ON COMMIT DROP;
		CREATE TEMP TABLE a_new_tracks (unit_type text, unit_id text, ts timestamptz, event text, value float8) ON COMMIT DROP`); err != nil {
		return err
	}
	err := tx.QueryRow(ctx, `WITH q AS (
		DELETE FROM agg_queue WHERE ctid = ANY(ARRAY(SELECT ctid FROM agg_queue ORDER BY at LIMIT $1))
		RETURNING unit_types, unit_ids, track_types, track_ids, track_ts, track_events, track_values
	), d AS (
		INSERT INTO a_dirty SELECT DISTINCT u.t, u.i FROM q, unnest(q.unit_types, q.unit_ids) AS u(t, i) RETURNING 1
	), t AS (
		INSERT INTO a_new_tracks SELECT k.* FROM q, unnest(q.track_types, q.track_ids, q.track_ts, q.track_events, q.track_values) AS k(t, i, ts, event, v)
		WHERE k.event = ANY($2) RETURNING 1
	) SELECT (SELECT count(*) FROM q), (SELECT count(*) FROM d), (SELECT count(*) FROM t)`, MaxQueueRows+1, readEvents(ready)).Scan(&rep.Queued, &rep.Units, &rep.Tracks)
	if err != nil {
		return err
	}
	if rep.Queued > MaxQueueRows {
		rep.Queued, rep.More = MaxQueueRows, true // the extra row is folded in too; More asks for another cycle
	}
	rep.lap("queue", &last)
	if rep.Units == 0 && rep.Tracks == 0 {
		return nil
	}
	if _, err := tx.Exec(ctx, `ANALYZE a_dirty`); err != nil {
		return err
	}
	// The customers whose aggregates the dirty ids can change: their roots,
	// and dirty customers themselves (a customer merged into another loses
	// its own events to the root).
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE a_roots ON COMMIT DROP AS `+fmt.Sprintf(upWalk, "a_dirty")+`
		UNION SELECT unit_id FROM a_dirty WHERE unit_type = 'customer'`); err != nil {
		return err
	}
	rep.lap("roots", &last)
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE a_pairs ON COMMIT DROP AS
		SELECT DISTINCT experiment, unit_id FROM (
		    SELECT x.experiment, x.unit_id FROM a_dirty d JOIN exposures x ON x.unit_id = d.unit_id AND x.unit_type = d.unit_type
		    UNION ALL
		    SELECT x.experiment, x.unit_id FROM a_roots r JOIN exposures x ON x.unit_id = r.root AND x.unit_type = 'customer'
		    UNION ALL
		    SELECT a.experiment, a.unit_id FROM a_dirty d JOIN agg_units a ON a.unit_id = d.unit_id AND a.unit_type = d.unit_type AND a.metric = ''
		) p;
		ANALYZE a_pairs; ANALYZE a_roots`); err != nil {
		return err
	}
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM a_pairs`).Scan(&rep.Pairs); err != nil {
		return err
	}
	rep.lap("pairs", &last)
	if rep.Pairs > 0 {
		if _, err := tx.Exec(ctx, `CREATE TEMP TABLE a_owned (experiment text, owner text, ts timestamptz, value float8, event text) ON COMMIT DROP`); err != nil {
			return err
		}
		byExp := map[string][]aggDef{}
		var order []string
		for _, d := range ready {
			if byExp[d.exp.Key] == nil {
				order = append(order, d.exp.Key)
			}
			byExp[d.exp.Key] = append(byExp[d.exp.Key], d)
		}
		for _, key := range order {
			defs := byExp[key]
			if err := collectOwned(ctx, tx, defs); err != nil {
				return err
			}
			rep.lap("history", &last)
			for _, d := range defs {
				if err := foldUnits(ctx, tx, d, "a_pairs", "a_owned"); err != nil {
					return fmt.Errorf("%s/%s: %w", d.exp.Key, d.key(), err)
				}
			}
			rep.lap("units", &last)
		}
	}
	if err := foldTracks(ctx, tx, ready, rep, &last); err != nil {
		return err
	}
	// Crossover is kept for experiments on devices (any unit type but
	// customer); with none aggregated there is nothing to keep.
	if !slices.ContainsFunc(ready, func(d aggDef) bool { return d.exp.UnitType != "customer" }) {
		return nil
	}
	err = foldCrossover(ctx, tx, "a_roots", nil)
	rep.lap("crossover", &last)
	return err
}

// foldTracks applies the new track events as deltas to the values of the
// units that own them, for units not recomputed whole in this cycle: a
// unit's window sums only grow by the event's contribution (and a
// conversion only turns on), so its history need not be read again.
func foldTracks(ctx context.Context, tx pgx.Tx, ready []aggDef, rep *AggregateReport, last *time.Time) error {
	if rep.Tracks == 0 {
		return nil
	}
	// The owners of each event: the unit itself (for experiments on its
	// unit type) and its identity root (for customer experiments), where
	// they are aggregated and not recomputed in this cycle.
	if _, err := tx.Exec(ctx, `
		DELETE FROM a_new_tracks t USING a_dirty d WHERE d.unit_type = t.unit_type AND d.unit_id = t.unit_id;
		CREATE TEMP TABLE a_track_units ON COMMIT DROP AS SELECT DISTINCT unit_type, unit_id FROM a_new_tracks;
		ANALYZE a_track_units`); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE a_track_roots ON COMMIT DROP AS
		WITH RECURSIVE walk(unit_type, unit_id, root, depth) AS (
		    SELECT d.unit_type, d.unit_id, a.customer_id, 1
		    FROM a_track_units d JOIN aliases a ON a.unit_type = d.unit_type AND a.unit_id = d.unit_id
		    UNION ALL
		    SELECT w.unit_type, w.unit_id, a.customer_id, w.depth + 1
		    FROM walk w JOIN aliases a ON a.unit_type = 'customer' AND a.unit_id = w.root
		    WHERE w.depth < 16 AND a.customer_id <> w.unit_id
		), ends AS (
		    SELECT DISTINCT ON (unit_type, unit_id) unit_type, unit_id, root FROM walk ORDER BY unit_type, unit_id, depth DESC
		)
		SELECT unit_type, unit_id, root FROM ends e
		WHERE NOT EXISTS (SELECT 1 FROM aliases a WHERE a.unit_type = 'customer' AND a.unit_id = e.root AND a.customer_id <> e.root)
		UNION ALL
		SELECT unit_type, unit_id, unit_id FROM a_track_units t
		WHERE t.unit_type = 'customer' AND NOT EXISTS (SELECT 1 FROM aliases a WHERE a.unit_type = 'customer' AND a.unit_id = t.unit_id)`); err != nil {
		return err
	}
	// Whether an owner is in an experiment is left to each definition's
	// lookup of its unit rows (by primary key): a lookup of the owners'
	// experiments first would read every unit row twice.
	if _, err := tx.Exec(ctx, `ANALYZE a_track_roots;
		CREATE TEMP TABLE a_tracks ON COMMIT DROP AS
		SELECT t.unit_type AS owner_type, t.unit_id AS owner, t.ts, t.event, t.value
		FROM a_new_tracks t WHERE t.unit_type <> 'customer'
		UNION ALL
		SELECT 'customer', r.root, t.ts, t.event, t.value
		FROM a_new_tracks t JOIN a_track_roots r ON r.unit_type = t.unit_type AND r.unit_id = t.unit_id;
		ANALYZE a_tracks`); err != nil {
		return err
	}
	rep.lap("track owners", last)
	for _, d := range ready {
		if d.metric == nil {
			continue
		}
		from, to, events := window(d.metric)
		m := d.metric
		if _, err := tx.Exec(ctx, foldTracksSQL, d.exp.Key, m.Key, string(m.Type), events, from, to, m.CUPEDHours,
			m.Numerator, d.fixedCap(), m.Denominator, d.exp.UnitType); err != nil {
			return fmt.Errorf("%s/%s: %w", d.exp.Key, m.Key, err)
		}
	}
	rep.lap("tracks", last)
	return nil
}

// foldTracksSQL adds the events of a_tracks to the values of their owners
// for one metric definition (parameters as foldUnitsSQL, and $11 the
// experiment's unit type), and the change to the variant sums, leaving out
// the units recomputed whole in this cycle (a_pairs). The sums use the same
// filters as foldUnitsSQL.
var foldTracksSQL = `
WITH t AS (
    SELECT owner, ts, value, event FROM a_tracks k
    WHERE owner_type = $11 AND event = ANY($4)
      AND NOT EXISTS (SELECT 1 FROM a_pairs p WHERE p.experiment = $1 AND p.unit_id = k.owner)
), old AS (
    SELECT a.* FROM (SELECT DISTINCT owner FROM t) k CROSS JOIN LATERAL (
        SELECT a.ctid AS tid, a.unit_id, a.variant, a.state, a.y, a.x, a.num, a.den, a.first_ts FROM agg_units a
        WHERE a.experiment = $1 AND a.metric = $2 AND a.unit_id = k.owner OFFSET 0) a
), d AS (
    SELECT o.unit_id,
        count(t.ts) FILTER (WHERE t.ts >= o.first_ts + make_interval(hours => $5)
                              AND ($6 = 0 OR t.ts < o.first_ts + make_interval(hours => $6))) AS n_in,
        COALESCE(sum(t.value) FILTER (WHERE t.ts >= o.first_ts AND ($6 = 0 OR t.ts < o.first_ts + make_interval(hours => $6))), 0) AS v_in,
        count(t.ts) FILTER (WHERE t.ts >= o.first_ts - make_interval(hours => $7) AND t.ts < o.first_ts) AS n_pre,
        COALESCE(sum(t.value) FILTER (WHERE t.ts >= o.first_ts - make_interval(hours => $7) AND t.ts < o.first_ts), 0) AS v_pre,
        COALESCE(sum(COALESCE(t.value, 1)) FILTER (WHERE t.event = $8 AND t.ts >= o.first_ts AND ($6 = 0 OR t.ts < o.first_ts + make_interval(hours => $6))), 0) AS num,
        COALESCE(sum(COALESCE(t.value, 1)) FILTER (WHERE t.event = $10 AND t.ts >= o.first_ts AND ($6 = 0 OR t.ts < o.first_ts + make_interval(hours => $6))), 0) AS den
    FROM old o JOIN t ON t.owner = o.unit_id
    GROUP BY o.unit_id
), new AS (
    SELECT o.tid, o.unit_id, o.variant, o.state, o.first_ts,
        CASE $3 WHEN 'conversion' THEN greatest(o.y, (d.n_in > 0)::int::float8) WHEN 'retention' THEN greatest(o.y, (d.n_in > 0)::int::float8)
                WHEN 'count' THEN o.y + d.n_in ELSE o.y + d.v_in END AS y,
        CASE $3 WHEN 'conversion' THEN greatest(o.x, (d.n_pre > 0)::int::float8) WHEN 'retention' THEN 0 WHEN 'ratio' THEN 0
                WHEN 'count' THEN o.x + d.n_pre ELSE o.x + d.v_pre END AS x,
        o.num + d.num AS num, o.den + d.den AS den
    FROM old o JOIN d ON d.unit_id = o.unit_id
    WHERE (d.n_in, d.v_in, d.n_pre, d.v_pre, d.num, d.den) <> (0, 0, 0, 0, 0, 0)
), up AS (
    -- By ctid: the planner cannot tell how few rows new holds, and would
    -- rather hash all of the definition's unit rows than look them up. The
    -- cycle is the only writer of agg_units (the aggregation lock).
    UPDATE agg_units a SET y = n.y, x = n.x, num = n.num, den = n.den
    FROM new n WHERE a.ctid = n.tid
), days_add AS (
    INSERT INTO agg_unit_days (experiment, metric, unit_id, day, n, v, num, den)
    SELECT $1, $2, o.unit_id, (t.ts AT TIME ZONE 'UTC')::date, count(*), COALESCE(sum(t.value), 0),
        COALESCE(sum(COALESCE(t.value, 1)) FILTER (WHERE t.event = $8), 0),
        COALESCE(sum(COALESCE(t.value, 1)) FILTER (WHERE t.event = $10), 0)
    FROM old o JOIN t ON t.owner = o.unit_id
    WHERE t.ts >= o.first_ts + make_interval(hours => $5) AND ($6 = 0 OR t.ts < o.first_ts + make_interval(hours => $6))
    GROUP BY 3, 4
), change AS (
    SELECT $1::text AS experiment, $2::text AS metric, variant, state, 1 AS sign, y, x, num, den, $9::float8 AS cap, first_ts FROM new
    UNION ALL
    SELECT $1, $2, o.variant, o.state, -1, o.y, o.x, o.num, o.den, $9, o.first_ts FROM old o JOIN new n ON n.unit_id = o.unit_id
), ` + variantUpsert

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

// collectOwned reads once, for the affected units of one experiment, the
// track events that any of its metrics reads: the units' own, and for a
// customer experiment those of every id linked to them.
func collectOwned(ctx context.Context, tx pgx.Tx, defs []aggDef) error {
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
		return nil
	}
	if !bounded {
		upper = 0
	}
	if _, err := tx.Exec(ctx, `TRUNCATE a_owned`); err != nil {
		return err
	}
	// $1 experiment, $2 unit type, $3 events, $4 hours before, $5 hours after.
	sql := `INSERT INTO a_owned
		SELECT $1, p.unit_id, e.ts, e.value, e.event
		FROM a_pairs p JOIN exposures x ON x.experiment = p.experiment AND x.unit_id = p.unit_id
		JOIN events e ON e.unit_type = $2 AND e.unit_id = p.unit_id
		WHERE p.experiment = $1 AND e.type = 'track' AND e.event = ANY($3)
		  AND e.ts >= x.first_ts - make_interval(hours => $4) AND ($5 = 0 OR e.ts < x.first_ts + make_interval(hours => $5))`
	if e.UnitType == "customer" {
		sql = `WITH RECURSIVE u AS (SELECT unit_id FROM a_pairs WHERE experiment = $1), ` + fmt.Sprintf(members, "u") + `
		INSERT INTO a_owned
		SELECT $1, m.owner, e.ts, e.value, e.event
		FROM members m JOIN exposures x ON x.experiment = $1 AND x.unit_id = m.owner
		JOIN events e ON e.unit_type = m.unit_type AND e.unit_id = m.unit_id
		WHERE $2 = 'customer' AND e.type = 'track' AND e.event = ANY($3)
		  AND e.ts >= x.first_ts - make_interval(hours => $4) AND ($5 = 0 OR e.ts < x.first_ts + make_interval(hours => $5))`
	}
	// The units are few and the events many: probe each unit's events
	// through the unit index of each partition. Estimates of the recursive
	// members are poor, and a hash of every event costs seconds per cycle.
	if _, err := tx.Exec(ctx, `SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off`); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, sql, e.Key, e.UnitType, events, lower, upper); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `RESET enable_hashjoin; RESET enable_mergejoin; ANALYZE a_owned`)
	return err
}

// foldUnitsSQL recomputes the units of experiment $1 listed in the table
// %[1]s (experiment, unit_id) for definition $2, from the owned events
// %[2]s (owner, ts, value, event), stores their values in agg_units, and
// adds the difference to agg_variants. A unit whose exposure is gone is
// removed. Values are uncapped in agg_units; the fixed cap $9 applies to
// the variant sums.
//
// $1 experiment, $2 metric (empty: the units), $3 metric type, $4 events,
// $5 from hours, $6 to hours (0 = no end), $7 cuped hours, $8 numerator,
// $9 cap, $10 denominator.
//
// Here and in foldTracksSQL the unit rows are read by primary key from the
// few units named (LATERAL ... OFFSET 0 keeps the planner from turning that
// around), then changed by ctid: with agg_units' statistics stale (a young
// experiment grows faster than autovacuum analyzes), a planner free to
// choose nested all of a definition's rows against the units named.
var foldUnitsSQL = `
WITH u AS (
    SELECT p.unit_id, x.unit_type, x.variant, x.first_ts,
        CASE WHEN x.unit_id IS NULL THEN -1 WHEN x.multiple THEN 1
             WHEN EXISTS (SELECT 1 FROM consent c WHERE c.unit_type = x.unit_type AND c.unit_id = x.unit_id AND NOT c.analytics) THEN 2
             ELSE 0 END AS state
    FROM %[1]s p LEFT JOIN exposures x ON x.experiment = p.experiment AND x.unit_id = p.unit_id
    WHERE p.experiment = $1
), owned AS (
    SELECT owner, ts, value, event FROM %[2]s src
), per_unit AS (
    SELECT u.unit_id, u.unit_type, u.variant, u.first_ts, u.state,
        count(o.ts) FILTER (WHERE o.ts >= u.first_ts + make_interval(hours => $5)
                              AND ($6 = 0 OR o.ts < u.first_ts + make_interval(hours => $6))) AS n_in,
        COALESCE(sum(o.value) FILTER (WHERE o.ts >= u.first_ts AND ($6 = 0 OR o.ts < u.first_ts + make_interval(hours => $6))), 0) AS v_in,
        count(o.ts) FILTER (WHERE o.ts >= u.first_ts - make_interval(hours => $7) AND o.ts < u.first_ts) AS n_pre,
        COALESCE(sum(o.value) FILTER (WHERE o.ts >= u.first_ts - make_interval(hours => $7) AND o.ts < u.first_ts), 0) AS v_pre,
        COALESCE(sum(COALESCE(o.value, 1)) FILTER (WHERE o.event = $8 AND o.ts >= u.first_ts AND ($6 = 0 OR o.ts < u.first_ts + make_interval(hours => $6))), 0) AS num,
        COALESCE(sum(COALESCE(o.value, 1)) FILTER (WHERE o.event = $10 AND o.ts >= u.first_ts AND ($6 = 0 OR o.ts < u.first_ts + make_interval(hours => $6))), 0) AS den
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
        SELECT a.ctid AS tid, a.unit_id, a.variant, a.state, a.y, a.x, a.num, a.den, a.first_ts FROM agg_units a
        WHERE a.experiment = $1 AND a.metric = $2 AND a.unit_id = u.unit_id OFFSET 0) a
), up AS (
    INSERT INTO agg_units AS a (experiment, metric, unit_id, unit_type, variant, first_ts, state, y, x, num, den)
    SELECT $1, $2, unit_id, unit_type, variant, first_ts, state, y, x, num, den FROM new
    ON CONFLICT (experiment, metric, unit_id) DO UPDATE SET unit_type = EXCLUDED.unit_type, variant = EXCLUDED.variant,
        first_ts = EXCLUDED.first_ts, state = EXCLUDED.state, y = EXCLUDED.y, x = EXCLUDED.x, num = EXCLUDED.num, den = EXCLUDED.den
    WHERE (a.variant, a.first_ts, a.state, a.y, a.x, a.num, a.den)
          IS DISTINCT FROM (EXCLUDED.variant, EXCLUDED.first_ts, EXCLUDED.state, EXCLUDED.y, EXCLUDED.x, EXCLUDED.num, EXCLUDED.den)
), gone AS (
    DELETE FROM agg_units WHERE ctid = ANY(ARRAY(SELECT tid FROM old WHERE now_state = -1))
), days_gone AS (
    DELETE FROM agg_unit_days WHERE $2 <> '' AND ctid = ANY(ARRAY(
        SELECT d.ctid FROM u CROSS JOIN LATERAL (
            SELECT d.ctid FROM agg_unit_days d WHERE d.unit_id = u.unit_id AND d.experiment = $1 AND d.metric = $2 OFFSET 0) d))
), days_new AS (
    INSERT INTO agg_unit_days (experiment, metric, unit_id, day, n, v, num, den)
    SELECT $1, $2, u.unit_id, (o.ts AT TIME ZONE 'UTC')::date, count(*), COALESCE(sum(o.value), 0),
        COALESCE(sum(COALESCE(o.value, 1)) FILTER (WHERE o.event = $8), 0),
        COALESCE(sum(COALESCE(o.value, 1)) FILTER (WHERE o.event = $10), 0)
    FROM u JOIN owned o ON o.owner = u.unit_id AND o.event = ANY($4)
    WHERE $2 <> '' AND u.state >= 0 AND o.ts >= u.first_ts + make_interval(hours => $5)
      AND ($6 = 0 OR o.ts < u.first_ts + make_interval(hours => $6))
    GROUP BY 3, 4
), change AS (
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
// summed in numeric, so that a value added and later subtracted cancels
// exactly; zeros (most columns of most metrics) skip the conversion to
// numeric, which costs more than everything else here.
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
	return fmt.Sprintf(`COALESCE(sum(CASE WHEN (%[1]s) = 0 THEN 0 ELSE sign * (%[1]s)::numeric END) FILTER (WHERE state = 0), 0) AS %[2]s`, expr, name)
}

// variantUpsert adds the sums of variantDelta to agg_variants.
var variantUpsert = variantDelta + `
INSERT INTO agg_variants AS v (experiment, metric, variant, units, multiple, opted_out, conversions,
    sum, sumsq, sumx, sumxsq, sumxy, sumnum, sumden, sumnumsq, sumdensq, sumnumden)
SELECT experiment, metric, variant, units, multiple, opted_out, sum,
    sum, sumsq, sumx, sumxsq, sumxy, sumnum, sumden, sumnumsq, sumdensq, sumnumden
FROM delta
ON CONFLICT (experiment, metric, variant) DO UPDATE SET
    units = v.units + EXCLUDED.units, multiple = v.multiple + EXCLUDED.multiple, opted_out = v.opted_out + EXCLUDED.opted_out,
    conversions = v.conversions + EXCLUDED.conversions, sum = v.sum + EXCLUDED.sum, sumsq = v.sumsq + EXCLUDED.sumsq,
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

// rebuild builds a definition from scratch over every exposure of its
// experiment, reading the events once with a set-wise join.
func (db *DB) rebuild(ctx context.Context, tx pgx.Tx, d aggDef) error {
	if err := dropDef(ctx, tx, d.exp.Key, d.key()); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `DROP TABLE IF EXISTS b_pairs, b_owned`); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE b_pairs ON COMMIT DROP AS
		SELECT experiment, unit_id, unit_type FROM exposures WHERE experiment = $1`, d.exp.Key); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `CREATE INDEX ON b_pairs (unit_id); ANALYZE b_pairs`); err != nil {
		return err
	}
	owned := "b_owned"
	if d.metric != nil {
		_, _, events := window(d.metric)
		sql := `CREATE TEMP TABLE b_owned ON COMMIT DROP AS
			SELECT $1::text AS experiment, e.unit_id AS owner, e.ts, e.value, e.event
			FROM events e JOIN b_pairs p ON p.unit_id = e.unit_id
			WHERE e.type = 'track' AND e.unit_type = $2 AND e.event = ANY($3)`
		if d.exp.UnitType == "customer" {
			sql = `CREATE TEMP TABLE b_owned ON COMMIT DROP AS
			WITH RECURSIVE ` + fmt.Sprintf(members, "b_pairs") + `
			SELECT $1::text AS experiment, m.owner, e.ts, e.value, e.event
			FROM events e JOIN members m ON m.unit_type = e.unit_type AND m.unit_id = e.unit_id
			WHERE e.type = 'track' AND $2 = 'customer' AND e.event = ANY($3)`
		}
		if _, err := tx.Exec(ctx, sql, d.exp.Key, d.exp.UnitType, events); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `ANALYZE b_owned`); err != nil {
			return err
		}
	}
	if err := foldUnits(ctx, tx, d, "b_pairs", owned); err != nil {
		return err
	}
	if d.metric == nil && d.exp.UnitType != "customer" {
		if _, err := tx.Exec(ctx, `CREATE TEMP TABLE b_roots ON COMMIT DROP AS `+fmt.Sprintf(upWalk, "b_pairs")+`; ANALYZE b_roots`); err != nil {
			return err
		}
		if err := foldCrossover(ctx, tx, "b_roots", &d.exp.Key); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DROP TABLE b_roots`); err != nil {
			return err
		}
	}
	_, err := tx.Exec(ctx, `INSERT INTO agg_defs (experiment, metric, hash, cap, built_at) VALUES ($1, $2, $3, $4, $5)`,
		d.exp.Key, d.key(), d.hash, d.fixedCap(), time.Now().UTC())
	return err
}

// foldCrossoverSQL recomputes, for each identity root in %[1]s (root), how
// many variants of each device experiment its linked units saw, and adds
// the difference to the totals. $1 limits it to one experiment (NULL: all).
const foldCrossoverSQL = `
WITH RECURSIVE r AS (SELECT DISTINCT root AS unit_id FROM %[1]s), ` + "%[2]s" + `,
cur AS (
    SELECT x.experiment, m.owner AS root, count(DISTINCT x.variant)::int AS variants
    FROM members m JOIN exposures x ON x.unit_type = m.unit_type AND x.unit_id = m.unit_id
    WHERE m.depth > 0 AND x.unit_type <> 'customer' AND ($1::text IS NULL OR x.experiment = $1)
    GROUP BY 1, 2
), old AS (
    SELECT c.experiment, c.root, c.variants FROM agg_crossover c JOIN r ON r.unit_id = c.root
    WHERE $1::text IS NULL OR c.experiment = $1
), up AS (
    INSERT INTO agg_crossover AS c (experiment, root, variants) SELECT experiment, root, variants FROM cur
    ON CONFLICT (experiment, root) DO UPDATE SET variants = EXCLUDED.variants WHERE c.variants <> EXCLUDED.variants
), gone AS (
    DELETE FROM agg_crossover c USING old o
    WHERE c.experiment = o.experiment AND c.root = o.root
      AND NOT EXISTS (SELECT 1 FROM cur WHERE cur.experiment = o.experiment AND cur.root = o.root)
), delta AS (
    SELECT experiment, sum(sign) AS customers, COALESCE(sum(sign) FILTER (WHERE variants > 1), 0) AS mixed
    FROM (SELECT experiment, variants, 1 AS sign FROM cur UNION ALL SELECT experiment, variants, -1 FROM old) d
    GROUP BY experiment
)
INSERT INTO agg_crossover_totals AS t (experiment, customers, mixed) SELECT experiment, customers, mixed FROM delta
ON CONFLICT (experiment) DO UPDATE SET customers = t.customers + EXCLUDED.customers, mixed = t.mixed + EXCLUDED.mixed`

func foldCrossover(ctx context.Context, tx pgx.Tx, roots string, exp *string) error {
	_, err := tx.Exec(ctx, fmt.Sprintf(foldCrossoverSQL, roots, fmt.Sprintf(members, "r")), exp)
	return err
}

// enqueueSQL adds units to the aggregation queue.
const enqueueSQL = `INSERT INTO agg_queue (at, unit_types, unit_ids) VALUES ($1, $2, $3)`

// AggregationLag returns how far the aggregates are behind ingestion: the
// age at now of the oldest receipt not folded in yet (0 when none), and the
// number of queue rows waiting.
func (db *DB) AggregationLag(ctx context.Context, now time.Time) (lag time.Duration, pending int64, err error) {
	var oldest *time.Time
	if err := db.pool.QueryRow(ctx, `SELECT min(at), count(*) FROM agg_queue`).Scan(&oldest, &pending); err != nil {
		return 0, 0, translate("aggregation lag", err)
	}
	if oldest != nil && now.After(*oldest) {
		lag = now.Sub(*oldest)
	}
	return lag, pending, nil
}

// eraseAggregates removes erased units from the aggregates: their unit
// rows (subtracted from the variant sums), the crossover of their
// customers, their names in the queue and in other links' replaced. The identity cluster is erased
// whole, so no other unit's value depended on their events.
func eraseAggregates(ctx context.Context, tx pgx.Tx, types, ids []string) error {
	const u = `WITH u AS (SELECT * FROM unnest($1::text[], $2::text[]) AS u(unit_type, unit_id)) `
	if _, err := tx.Exec(ctx, u+`, gone AS (
		DELETE FROM agg_units a USING u WHERE a.unit_type = u.unit_type AND a.unit_id = u.unit_id
		RETURNING a.experiment, a.metric, a.variant, a.state, a.y, a.x, a.num, a.den, a.first_ts
	), change AS (
		SELECT g.experiment, g.metric, g.variant, g.state, -1 AS sign, g.y, g.x, g.num, g.den, d.cap, g.first_ts
		FROM gone g LEFT JOIN agg_defs d ON d.experiment = g.experiment AND d.metric = g.metric
	), `+hoursUpsert+`, `+variantUpsert, types, ids); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, u+`, gone AS (
		DELETE FROM agg_crossover c USING u WHERE u.unit_type = 'customer' AND c.root = u.unit_id
		RETURNING c.experiment, c.variants
	)
	UPDATE agg_crossover_totals t SET customers = t.customers - g.n, mixed = t.mixed - g.m
	FROM (SELECT experiment, count(*) AS n, count(*) FILTER (WHERE variants > 1) AS m FROM gone GROUP BY 1) g
	WHERE t.experiment = g.experiment`, types, ids); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, u+`
	DELETE FROM agg_unit_days d USING u, experiments x
	WHERE d.unit_id = u.unit_id AND x.key = d.experiment AND x.unit_type = u.unit_type`, types, ids); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `UPDATE aliases SET replaced = NULL WHERE replaced = ANY($1)`, ids); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, u+`
	UPDATE agg_queue q SET (unit_types, unit_ids) = (
		SELECT COALESCE(array_agg(k.t), '{}'), COALESCE(array_agg(k.i), '{}')
		FROM unnest(q.unit_types, q.unit_ids) AS k(t, i)
		WHERE NOT EXISTS (SELECT 1 FROM u WHERE u.unit_type = k.t AND u.unit_id = k.i))
	WHERE q.unit_ids && $2::text[]`, types, ids)
	return err
}
