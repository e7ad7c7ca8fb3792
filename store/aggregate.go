package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

	"github.com/flywheel-oss/flywheel"
)

// Incremental aggregation. Results read per-variant sufficient statistics
// that this file keeps up to date, instead of rescanning the event history:
//
//   - The ingestion transaction that stores events also appends one row to
//     agg_queue naming the units whose exposure or identity link it inserted
//     or changed (and, for a link, the customer it replaced), and its track
//     events. A queue row becomes visible exactly when its events do,
//     whatever order concurrent transactions commit in.
//   - A cycle (Aggregate) takes the visible queue rows, resolves each unit
//     to the exposures it can change (its own, and for customer experiments
//     those of its identity root), recomputes those units' values from their
//     events for every definition (experiment × metric), and adds the
//     difference between new and old values to the variant sums (reading
//     each id's events only on the days a filter says may hold some:
//     store/aggregate_tracked.go). Every step
//     is a recomputation of whole units, so folding a unit in twice, or in
//     an order different from its events, cannot double-count. A unit
//     without events in the windows and without aggregates yet (a new
//     customer's exposure) gets what its recomputation would write, rows
//     of zeros, without running one (foldNamed).
//   - The new track events of units a cycle does not recompute are added
//     as deltas. The cycle's transaction stages them (agg_staged_tracks,
//     each with the unit whose value it adds to, resolved in Go and written
//     as a few rows of arrays) under a cycle number; then each
//     definition adds them in a transaction of its own, on a connection of
//     its own, in parallel with the others (they write disjoint rows), and
//     records the cycle as folded (agg_defs.folded_cycle), so each staged
//     event is added once per definition. A definition whose fold failed
//     adds them in a later cycle, leaving out the units recomputed whole
//     since (agg_staged_pairs). Results count staged events as pending
//     until every definition has folded them. A fold's arithmetic runs in
//     Go, on the unit rows it reads, or on the copy of them the process
//     keeps from its earlier folds while nothing else has changed them
//     (store/aggregate_fold.go).
//   - A definition that is new or whose metric changed is rebuilt from all
//     of the experiment's exposures; until it is built, results recompute
//     from raw events (ResultInput falls back).
//
// Only one cycle runs at a time across all processes (an advisory lock), and
// erasure takes the same lock so it never interleaves with a cycle.

// aggLock is the advisory lock key of aggregation.
const aggLock = 0x666c7977686c6167 // "flywhlag"

// AggregationLock is the PostgreSQL advisory lock key that an aggregation
// cycle holds while it runs and that erasures wait for (tests hold it to
// play a long cycle).
const AggregationLock int64 = aggLock

// MaxQueueRows bounds the queue rows one cycle folds in (each names the
// units of one ingestion group, so up to a few thousand units).
const MaxQueueRows = 500

// AggregateReport says what one cycle did.
type AggregateReport struct {
	Skipped  bool     // another process held the aggregation lock
	Deferred bool     // another server leads aggregation (AggregateUnlessLed)
	Queued   int      // queue rows folded in
	Units    int      // distinct units named by them for a recomputation
	Tracks   int      // track events named by them that a metric reads, applied as deltas
	Pairs    int      // (experiment, unit) aggregates recomputed
	Fresh    int      // of them, units with no event and no aggregate yet, folded in without a recomputation (foldNamed)
	Probed   int      // ids (units, and ids linked to them) whose events the history step looked up
	Quiet    int      // ids it did not look up: the filter of tracked days holds none of their events in the window (trackFilter)
	Rebuilt  []string // definitions built from scratch, "experiment/metric"
	More     bool     // the queue had more rows than one cycle takes
	Steps    []Step   // the time each step of the cycle took, in order
	Folds    []Fold   // the definitions' folds of the staged events (the "tracks" step), in no order
	// TrackFilter is the build of the filter of tracked days that ended
	// since the last cycle, if one did (and was not dropped).
	TrackFilter *TrackFilterBuild
}

// Fold says what one definition's fold of staged track events did (its
// part of the "tracks" step; the folds run in parallel): the owners of its
// events, the rows it read, the unit and day rows it wrote, and the time
// each of its steps took: "staged" (its events, by owner), "fill" (the
// unit copy's fill), "lookups" (owners the copy lacks, by index), "late"
// (the stored days of units with new events before their latest),
// "compute" (the new values and sums, in Go), "write" (writeFold).
type Fold struct {
	Definition string // "experiment/metric"
	Owners     int    // units owning staged events of the definition
	Filled     int    // unit rows the fill read
	Lookups    int    // unit rows looked up by index
	Late       int    // units whose stored days were read
	Repaired   int    // late units whose stored days were inconsistent: left to the next cycle to recompute (repairUnits)
	Units      int    // unit rows written
	Days       int    // day rows written (added to or inserted)
	Steps      []Step
}

// Step is the time one step of an aggregation cycle took: "statistics"
// (analyzing agg_units and exposures, when they have grown), "queue"
// (taking the queue rows), "roots" (identity roots of the named units,
// which of them have a link now, and the queue rows' track events added
// to the filter of tracked days), "pairs" (their exposures), "history"
// (reading their events), "units" (recomputing them), "track owners" (the
// units, and identity roots, that own the new track events, staged with
// them), "crossover", "build" (a definition built from scratch), "tracks"
// (the definitions adding the staged events as deltas, in parallel, after
// the cycle's transaction).
type Step struct {
	Name string
	Took time.Duration
}

// StepNames are the names of the steps of a cycle, in the order a cycle
// takes them (a cycle reports only those it ran).
var StepNames = []string{"statistics", "queue", "roots", "pairs", "history", "units", "track owners", "crossover", "build", "tracks"}

// lap records the time since the previous lap (or since *last) as a step.
func (r *AggregateReport) lap(name string, last *time.Time) { r.Steps = lap(r.Steps, name, last) }

// lap records the time since *last as a step of the fold.
func (f *Fold) lap(name string, last *time.Time) { f.Steps = lap(f.Steps, name, last) }

// lap appends the time since *last to steps as the step name, and moves
// *last on to now.
func lap(steps []Step, name string, last *time.Time) []Step {
	now := time.Now()
	steps = append(steps, Step{Name: name, Took: now.Sub(*last)})
	*last = now
	return steps
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
	}{Version: 3, UnitType: e.UnitType} // 2: per-day contributions (agg_unit_days); 3: per-variant days (agg_variant_days)
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

// capOf returns a metric's cap as SQL parameters: the fixed value and the
// percentile (nil when not set).
func capOf(c *flywheel.Cap) (value, percentile *float64) {
	if c == nil {
		return nil, nil
	}
	return c.Value, c.Percentile
}

// aggregatedExperiments returns the experiments that are aggregated (every
// one not archived, and every holdout not archived as its analysed
// experiment) with their metrics' definitions.
func (db *DB) aggregatedExperiments(ctx context.Context) ([]flywheel.Experiment, map[string]*flywheel.Metric, error) {
	exps, _, err := db.ListLiveExperiments(ctx)
	if err != nil {
		return nil, nil, err
	}
	// A holdout is aggregated as the two-arm experiment its results read
	// (flywheel.Holdout.Analyzed), under "holdout:" + key.
	hs, err := db.LiveHoldouts(ctx)
	if err != nil {
		return nil, nil, err
	}
	for i := range hs {
		exps = append(exps, *hs[i].Analyzed())
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
// Skipped, when another process is running a cycle. A cycle that ends well
// records this server as the one that leads aggregation (see
// AggregationLed).
func (db *DB) Aggregate(ctx context.Context) (AggregateReport, error) {
	return db.aggregate(ctx, 0)
}

// AggregateUnlessLed is Aggregate for a server's background aggregator:
// once it holds the lock, it returns at once, with Deferred, when another
// server leads aggregation (AggregationLed with takeover). The aggregator
// asks AggregationLed before, without the lock; asked again under it, a
// leader's cycle that ended in between cannot be taken for a silent one.
func (db *DB) AggregateUnlessLed(ctx context.Context, takeover time.Duration) (AggregateReport, error) {
	return db.aggregate(ctx, takeover)
}

func (db *DB) aggregate(ctx context.Context, takeover time.Duration) (AggregateReport, error) {
	var rep AggregateReport
	var folds stagedFolds
	var staged *stagedCycle         // what the cycle staged, for its folds
	var recomputed func(*unitCache) // the units this cycle recomputed, for the unit cache
	var dropped [][2]string         // the definitions it dropped or rebuilt, whose copies go too
	exps, metrics, err := db.aggregatedExperiments(ctx)
	if err != nil {
		return rep, err
	}
	conn, err := db.agg.Acquire(ctx)
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
	if takeover > 0 {
		if led, err := db.led(ctx, conn, takeover); err != nil || led {
			return AggregateReport{Deferred: led}, translate("aggregate", err)
		}
	}
	// One snapshot for the whole cycle: the queue rows it takes are exactly
	// those whose events it can see, so an event is either recomputed with
	// its unit now or applied as a delta later, never both.
	err = pgx.BeginTxFunc(ctx, conn, pgx.TxOptions{IsoLevel: pgx.RepeatableRead}, func(tx pgx.Tx) error {
		rep = AggregateReport{}
		t0 := time.Now()
		// A cycle sorts each touched unit's days (the timeseries' running
		// sums): tens of megabytes for a busy cycle, which the default 4 MB
		// would spill to disk. One cycle runs at a time.
		if _, err := tx.Exec(ctx, `SET LOCAL work_mem = '64MB'`); err != nil {
			return err
		}
		// a_later holds the ingestion transactions of the queue rows this
		// cycle leaves for a later one (see foldQueue): every read of
		// events skips theirs (notLater), which that cycle folds in.
		if _, err := tx.Exec(ctx, `CREATE TEMP TABLE a_later (x xid) ON COMMIT DROP`); err != nil {
			return err
		}
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
		dropped = dropped[:0]
		for k := range built {
			if !wanted[k] {
				if err := dropDef(ctx, tx, k[0], k[1]); err != nil {
					return err
				}
				dropped = append(dropped, k)
			}
		}
		leftovers, err := collectStaged(ctx, tx)
		if err != nil {
			return err
		}
		if staged, err = db.foldQueue(ctx, tx, ready, leftovers, &rep); err != nil {
			return err
		}
		if rep.Pairs > 0 {
			if recomputed, err = moveEpochs(ctx, tx); err != nil {
				return err
			}
		}
		for _, d := range stale {
			last := time.Now()
			if err := db.rebuild(ctx, tx, d); err != nil {
				return fmt.Errorf("build %s/%s: %w", d.exp.Key, d.key(), err)
			}
			rep.Rebuilt = append(rep.Rebuilt, d.exp.Key+"/"+d.key())
			// Its copy holds the old rows: forgotten, so that the next
			// fold does not take it for one another process made stale.
			dropped = append(dropped, [2]string{d.exp.Key, d.key()})
			rep.lap("build", &last)
		}
		folds, err = pendingFolds(ctx, tx, ready)
		return err
	})
	if err != nil {
		return rep, translate("aggregate", err)
	}
	if recomputed != nil {
		recomputed(db.units)
	}
	db.units.forget(dropped)
	if len(folds.defs) == 0 {
		return rep, translate("aggregate", db.recordLead(ctx, conn))
	}
	// Each definition adds the staged track events on a connection of its
	// own, in parallel (they write disjoint rows), while this one keeps the
	// aggregation lock.
	last := time.Now()
	db.pages.begin() // the folds' updates of earlier cycles are prunable now
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(int(db.agg.Config().MaxConns) - 1)
	reports := make([]Fold, len(folds.defs))
	for i, f := range folds.defs {
		reports[i].Definition = f.def.exp.Key + "/" + f.def.key()
		g.Go(func() error { return db.foldStaged(gctx, f, folds.latest, folds.pairs, staged, &reports[i]) })
	}
	err = g.Wait()
	rep.lap("tracks", &last)
	rep.Folds = reports
	if err != nil {
		return rep, translate("aggregate", err)
	}
	return rep, translate("aggregate", db.recordLead(ctx, conn))
}

// foldParallelism is how many definitions fold their staged events at
// once, for a main pool of poolSize: one per core, but not more than
// leaves the main pool two connections (the aggregator's pool holds the
// folds' connections and the one that holds the aggregation lock).
func foldParallelism(poolSize int32) int {
	return max(1, min(runtime.GOMAXPROCS(0), int(poolSize)-2))
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
	if err == nil && metric != "" {
		_, err = tx.Exec(ctx, `DELETE FROM agg_variant_days WHERE experiment = $1 AND metric = $2`, exp, metric)
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

// walkByProbe follows the identity links of the ids of the table %[1]s
// (unit_type, unit_id) up their chain, one index lookup a step: walk holds
// each id with every customer on its way and the depth it was reached at.
const walkByProbe = `
WITH RECURSIVE walk(unit_type, unit_id, root, depth) AS (
    SELECT d.unit_type, d.unit_id, a.customer_id, 1
    FROM %[1]s d CROSS JOIN LATERAL (
        SELECT a.customer_id FROM aliases a WHERE a.unit_type = d.unit_type AND a.unit_id = d.unit_id OFFSET 0) a` + walkOn

// walkOn is the recursive step of walkByProbe: from each
// customer reached, its own link, one index lookup (a cycle ends the walk).
const walkOn = `
    UNION ALL
    SELECT w.unit_type, w.unit_id, a.customer_id, w.depth + 1
    FROM walk w CROSS JOIN LATERAL (
        SELECT a.customer_id FROM aliases a WHERE a.unit_type = 'customer' AND a.unit_id = w.root OFFSET 0) a
    WHERE w.depth < 16 AND a.customer_id <> w.unit_id
)`

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

// advanceTracks brings the filter of tracked days up to queue cycle c,
// with the track events of the queue rows the cycle took, or none for an
// idle cycle (see trackFilter.advance), and reports a build that ended.
// It returns the days for the cycle's history step, nil when the filter
// cannot tell. The days the filter keeps count back from now, or from the
// end of the latest day it holds if sooner (a database of past events).
func (db *DB) advanceTracks(ctx context.Context, tx pgx.Tx, ready []aggDef, read []string, c int64, idle bool, tracks []queueTracks, rep *AggregateReport) trackDays {
	now := db.now()
	keep := func(end time.Time) int64 {
		if now.Before(end) {
			end = now
		}
		return trackKeep(ready, end)
	}
	held, built := db.tracks.advance(c, idle, read, tracks, keep, func(b *trackBuild, reads []string) {
		b.from = trackHorizon(ctx, tx, ready, db.now())
		db.startTracks(b, reads)
	})
	if built != nil && !errors.Is(built.Err, errTrackBuildDropped) {
		rep.TrackFilter = built
	}
	return held
}

// foldQueue takes the visible queue rows and recomputes the units they
// name for every ready definition, and the crossover of their customers.
func (db *DB) foldQueue(ctx context.Context, tx pgx.Tx, ready []aggDef, leftovers bool, rep *AggregateReport) (staged *stagedCycle, err error) {
	var queued bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM agg_queue)`).Scan(&queued); err != nil {
		return nil, err
	}
	read := readEvents(ready)
	if !queued {
		// An idle cycle starts the filter of tracked days' build, or takes
		// up one that ended: a server started on a large database builds
		// it before the first burst of new customers, not during it.
		// It takes no number of agg_queue_cycle, which would break other
		// processes' filters' chains: the filter is brought to the last
		// one taken (every cycle that took queue rows has ended, under the
		// aggregation lock this one holds, and their rows are gone).
		if db.tracks.due(read) {
			var queueCycle int64
			if err := tx.QueryRow(ctx, `SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM agg_queue_cycle`).Scan(&queueCycle); err != nil {
				return nil, err
			}
			db.advanceTracks(ctx, tx, ready, read, queueCycle, true, nil, rep)
		}
		return nil, nil
	}
	last := time.Now()
	var oldest time.Time // the receipt of the oldest queue row taken
	// Every table this fold analyzes is one of its own temporary tables,
	// read once or twice by the cycle's statements: a sample of 3,000 rows
	// (a tenth of the default) tells their plans enough, and ANALYZE costs
	// about a quarter (a few milliseconds a table at 10,000 rows, tens at
	// 200,000), several times a cycle. A build (rebuild) keeps the default.
	if _, err := tx.Exec(ctx, `SET LOCAL default_statistics_target = 10`); err != nil {
		return nil, err
	}
	defer func() {
		if err == nil {
			_, err = tx.Exec(ctx, `SET LOCAL default_statistics_target TO DEFAULT`)
		}
	}()
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE a_dirty (unit_type text, unit_id text) ON COMMIT DROP`); err != nil {
		return nil, err
	}
	// The queue rows come back here with their track events, as arrays:
	// the events are resolved to their owners in Go (stageTracks). When no
	// ready definition reads track events, the track arrays are only
	// deleted, never read nor decompressed.
	trackCols := "q.track_types, q.track_ids, q.track_ts, q.track_events, q.track_values"
	returning := "*"
	if len(read) == 0 {
		trackCols = "NULL::text[], NULL::text[], NULL::timestamptz[], NULL::text[], NULL::float8[]"
		returning = "at, unit_types, unit_ids"
	}
	rows, err := tx.Query(ctx, fmt.Sprintf(`WITH q AS (
		DELETE FROM agg_queue WHERE ctid = ANY(ARRAY(SELECT ctid FROM agg_queue ORDER BY at LIMIT $1))
		RETURNING %s
	), d AS (
		INSERT INTO a_dirty SELECT DISTINCT u.t, u.i FROM q, unnest(q.unit_types, q.unit_ids) AS u(t, i) RETURNING 1
	) SELECT (SELECT count(*) FROM d), q.at, q.unit_types, q.unit_ids, %s FROM q`, returning, trackCols), MaxQueueRows+1)
	if err != nil {
		return nil, err
	}
	reads := make(map[string]bool, len(read))
	for _, e := range read {
		reads[e] = true
	}
	dirty := map[unitKey]struct{}{}
	var tracks []queueTracks
	var (
		units        int64
		at           time.Time
		uTypes, uIDs []string
		q            queueTracks
	)
	_, err = pgx.ForEachRow(rows, []any{&units, &at, &uTypes, &uIDs, &q.types, &q.ids, &q.ts, &q.events, &q.vals}, func() error {
		rep.Queued++
		rep.Units = int(units)
		if oldest.IsZero() || at.Before(oldest) {
			oldest = at
		}
		for i := range uIDs {
			dirty[unitKey{uTypes[i], uIDs[i]}] = struct{}{}
		}
		if len(q.ids) != len(q.types) || len(q.ts) != len(q.ids) || len(q.events) != len(q.ids) || len(q.vals) != len(q.ids) {
			return fmt.Errorf("a queue row's track arrays differ in length")
		}
		// Only the events that a ready definition reads count.
		n := 0
		for i, e := range q.events {
			if reads[e] {
				q.types[n], q.ids[n], q.ts[n], q.events[n], q.vals[n] = q.types[i], q.ids[i], q.ts[i], e, q.vals[i]
				n++
			}
		}
		if n > 0 {
			tracks = append(tracks, queueTracks{types: q.types[:n], ids: q.ids[:n], ts: q.ts[:n], events: q.events[:n], vals: q.vals[:n]})
			rep.Tracks += n
		}
		q = queueTracks{} // the next row's arrays are new ones
		return nil
	})
	if err != nil {
		return nil, err
	}
	if rep.Queued > MaxQueueRows {
		rep.Queued, rep.More = MaxQueueRows, true // the extra row is folded in too; More asks for another cycle
		// The rows left in the queue are visible to this cycle's snapshot,
		// and so are their events: a unit recomputed now would count
		// their tracks, and the cycle that takes them would add the same
		// tracks again as deltas. Each row was inserted by the transaction
		// that stored its events (store/events.go), so those events are
		// known by their xmin: this cycle leaves them out.
		if _, err := tx.Exec(ctx, `INSERT INTO a_later SELECT DISTINCT xmin FROM agg_queue; ANALYZE a_later`); err != nil {
			return nil, err
		}
	}
	rep.lap("queue", &last)
	if rep.Units == 0 && rep.Tracks == 0 {
		return nil, nil
	}
	if _, err := tx.Exec(ctx, `ANALYZE a_dirty`); err != nil {
		return nil, err
	}
	// The customers whose aggregates the dirty ids can change: their roots,
	// and dirty customers themselves (a customer merged into another loses
	// its own events to the root). The walk's first steps are the dirty
	// ids that have a link.
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE a_walk ON COMMIT DROP AS `+fmt.Sprintf(walkByProbe, "a_dirty")+`
		SELECT unit_type, unit_id, root, depth FROM walk;
		CREATE TEMP TABLE a_roots ON COMMIT DROP AS SELECT DISTINCT root FROM (
		    SELECT DISTINCT ON (unit_type, unit_id) root FROM a_walk ORDER BY unit_type, unit_id, depth DESC) r
		UNION SELECT unit_id FROM a_dirty WHERE unit_type = 'customer'`); err != nil {
		return nil, err
	}
	// They go into the filter of linked ids before the track owners are
	// resolved.
	var queueCycle int64
	if err := tx.QueryRow(ctx, `SELECT nextval('agg_queue_cycle')`).Scan(&queueCycle); err != nil {
		return nil, err
	}
	if err := db.links.sync(ctx, tx, queueCycle); err != nil {
		return nil, fmt.Errorf("linked ids: %w", err)
	}
	// And their track events into the filter of tracked days, before the
	// history step reads it.
	held := db.advanceTracks(ctx, tx, ready, read, queueCycle, false, tracks, rep)
	rep.lap("roots", &last)
	// Every lookup by index, one unit at a time (see membersByProbe): the
	// cost follows the units named, not the size of exposures or agg_units.
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE a_pairs ON COMMIT DROP AS
		SELECT DISTINCT experiment, unit_id FROM (
		    SELECT x.experiment, x.unit_id FROM a_dirty d CROSS JOIN LATERAL (
		        SELECT x.experiment, x.unit_id FROM exposures x WHERE x.unit_id = d.unit_id AND x.unit_type = d.unit_type OFFSET 0) x
		    UNION ALL
		    SELECT x.experiment, x.unit_id FROM a_roots r CROSS JOIN LATERAL (
		        SELECT x.experiment, x.unit_id FROM exposures x WHERE x.unit_id = r.root AND x.unit_type = 'customer' OFFSET 0) x
		    UNION ALL
		    SELECT a.experiment, a.unit_id FROM a_dirty d CROSS JOIN LATERAL (
		        SELECT a.experiment, a.unit_id FROM agg_units a
		        WHERE a.unit_id = d.unit_id AND a.unit_type = d.unit_type AND a.metric = '' OFFSET 0) a
		) p ORDER BY experiment, unit_id; -- the later steps' lookups in key order
		ANALYZE a_pairs; ANALYZE a_roots`); err != nil {
		return nil, err
	}
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM a_pairs`).Scan(&rep.Pairs); err != nil {
		return nil, err
	}
	rep.lap("pairs", &last)
	if rep.Pairs > 0 {
		if _, err := tx.Exec(ctx, `CREATE TEMP TABLE a_owned (experiment text, owner text, ts timestamptz, value float8, event text) ON COMMIT DROP;
			CREATE TEMP TABLE a_rest (experiment text, unit_id text) ON COMMIT DROP;
			CREATE TEMP TABLE a_fresh (experiment text, unit_id text) ON COMMIT DROP`); err != nil {
			return nil, err
		}
		byExp := map[string][]aggDef{}
		var order []string
		for _, d := range ready {
			if byExp[d.exp.Key] == nil {
				order = append(order, d.exp.Key)
			}
			byExp[d.exp.Key] = append(byExp[d.exp.Key], d)
		}
		end, err := visibleEventsEnd(ctx, tx)
		if err != nil {
			return nil, err
		}
		for _, key := range order {
			defs := byExp[key]
			probed, quiet, err := collectOwned(ctx, tx, defs, end, db.tracks, held)
			if err != nil {
				return nil, err
			}
			rep.Probed, rep.Quiet = rep.Probed+probed, rep.Quiet+quiet
			rep.lap("history", &last)
			fresh, err := foldNamed(ctx, tx, defs)
			if err != nil {
				return nil, err
			}
			rep.Fresh += fresh
			rep.lap("units", &last)
		}
	}
	if staged, err = stageTracks(ctx, tx, rep, oldest, leftovers, &last, tracks, dirty, db.links); err != nil {
		return nil, err
	}
	// Crossover is kept for experiments on devices (any unit type but
	// customer); with none aggregated there is nothing to keep.
	if !slices.ContainsFunc(ready, func(d aggDef) bool { return d.exp.UnitType != "customer" }) {
		return staged, nil
	}
	err = foldCrossover(ctx, tx, "a_roots", nil)
	rep.lap("crossover", &last)
	return staged, err
}

// notLater is the condition, on events e, that leaves out the events of
// the queue rows a cycle leaves for a later one (a_later; empty, and then
// nearly free, unless the queue held more than MaxQueueRows rows).
const notLater = ` AND e.xmin <> ALL (ARRAY(SELECT x FROM a_later))`

// enqueueSQL adds units to the aggregation queue.
const enqueueSQL = `INSERT INTO agg_queue (at, unit_types, unit_ids, events) VALUES ($1, $2, $3, cardinality($3::text[]))`

// pendingSQL reads what ingestion has acknowledged and the aggregates do
// not count yet: the oldest receipt, the events (a queue row counts at
// least one) and the queue rows and staged cycles. A staged cycle is
// pending until every definition has folded it.
const pendingSQL = `SELECT min(at), COALESCE(sum(events), 0)::int8, count(*) FROM (
    SELECT at, greatest(events, 1) AS events FROM agg_queue
    UNION ALL
    SELECT at, events FROM agg_staged_cycles
    WHERE events > 0 AND cycle > (SELECT COALESCE(min(folded_cycle), 9223372036854775807) FROM agg_defs WHERE metric <> '')
) p`

// AggregationLag returns how far the aggregates are behind ingestion: the
// age at now of the oldest receipt not folded in yet (0 when none), and the
// number of queue rows and staged cycles waiting.
func (db *DB) AggregationLag(ctx context.Context, now time.Time) (lag time.Duration, pending int64, err error) {
	var oldest *time.Time
	var events int64
	if err := db.pool.QueryRow(ctx, pendingSQL).Scan(&oldest, &events, &pending); err != nil {
		return 0, 0, translate("aggregation lag", err)
	}
	if oldest != nil && now.After(*oldest) {
		lag = now.Sub(*oldest)
	}
	return lag, pending, nil
}
