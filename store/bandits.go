package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/analysis"
)

// banditEpochRow is the bandit_epochs table.
type banditEpochRow struct {
	ExperimentKey string `gorm:"primaryKey"`
	Epoch         int    `gorm:"primaryKey"`
	StartedAt     time.Time
	Weights       []byte `gorm:"type:jsonb"`
	Posterior     []byte `gorm:"type:jsonb"`
	Revision      int64
}

func (banditEpochRow) TableName() string { return "bandit_epochs" }

func (r banditEpochRow) toDomain() (flywheel.BanditEpoch, error) {
	ep := flywheel.BanditEpoch{Epoch: r.Epoch, StartedAt: r.StartedAt.UTC(), Revision: r.Revision}
	if err := json.Unmarshal(r.Weights, &ep.Weights); err != nil {
		return ep, fmt.Errorf("store: bandit epoch %s/%d weights: %w", r.ExperimentKey, r.Epoch, err)
	}
	if len(r.Posterior) > 0 && string(r.Posterior) != "null" {
		ep.Posterior = json.RawMessage(r.Posterior)
	}
	return ep, nil
}

// BanditEpochs returns the weight epochs of an experiment, oldest first:
// none for a fixed experiment or a bandit that has not run yet; epoch 0
// is written by the first update cycle after the start.
func (db *DB) BanditEpochs(ctx context.Context, key string) ([]flywheel.BanditEpoch, error) {
	if _, err := db.FindExperimentByKey(ctx, key); err != nil {
		return nil, err
	}
	var rows []banditEpochRow
	if err := db.gorm.WithContext(ctx).Where("experiment_key = ?", key).Order("epoch").Find(&rows).Error; err != nil {
		return nil, translate("bandit epochs", err)
	}
	out := make([]flywheel.BanditEpoch, 0, len(rows))
	for _, r := range rows {
		ep, err := r.toDomain()
		if err != nil {
			return nil, err
		}
		out = append(out, ep)
	}
	return out, nil
}

// epochCellsSQL sums the units of one definition of the aggregates per
// weight epoch and variant, with the metric's cap: the fixed value $3, or
// the percentile $4 of the analysed units' values (as the pooled results
// compute it), or none. A bandit's units are analysed by the arm of their
// first exposure (intention to treat), those exposed to several arms
// (state 1) included: a unit sees a second arm when an SDK process that
// forgot it buckets it at the new weights, which depends on the arm and
// the epoch, so leaving those units out would select on what happened
// after assignment. Opted-out units (state 2) are left out, as everywhere.
// A unit's epoch is the one active at its first exposure; epoch 0 reaches
// back to -infinity (an exposure stamped before the start by a skewed
// clock), and without epochs every unit is in epoch 0.
const epochCellsSQL = `
WITH ep AS (
    SELECT epoch, CASE WHEN epoch = 0 THEN '-infinity'::timestamptz ELSE started_at END AS from_ts,
           lead(started_at) OVER (ORDER BY epoch) AS to_ts
    FROM bandit_epochs WHERE experiment_key = $1
), c AS (
    SELECT COALESCE($3::float8, (SELECT percentile_cont($4::float8) WITHIN GROUP (ORDER BY y) FROM agg_units
        WHERE experiment = $1 AND metric = $2 AND state = 0 AND $4::float8 IS NOT NULL)) AS cap
), v AS (
    SELECT COALESCE(ep.epoch, 0) AS epoch, u.variant, CASE WHEN c.cap IS NULL THEN u.y ELSE least(u.y, c.cap) END AS y
    FROM agg_units u CROSS JOIN c
    LEFT JOIN ep ON u.first_ts >= ep.from_ts AND (ep.to_ts IS NULL OR u.first_ts < ep.to_ts)
    WHERE u.experiment = $1 AND u.metric = $2 AND u.state IN (0, 1)
)
SELECT epoch, variant, count(*), COALESCE(sum(y), 0), COALESCE(sum(y * y), 0)
FROM v GROUP BY 1, 2 ORDER BY 1, 2`

// scanner is what pgx.Rows and *sql.Rows share.
type scanner interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

func scanEpochCells(rows scanner, metric string) ([]analysis.EpochStats, error) {
	var out []analysis.EpochStats
	for rows.Next() {
		c := analysis.EpochStats{Metric: metric}
		if err := rows.Scan(&c.Epoch, &c.Variant, &c.N, &c.Sum, &c.SumSq); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// metricCap returns a metric's fixed cap and cap percentile (nil: none).
func metricCap(m *flywheel.Metric) (value, percentile *float64) {
	return capOf(m.Cap)
}

// gormEpochCells reads the epoch cells of one metric inside a gorm
// transaction.
func gormEpochCells(ctx context.Context, tx *gorm.DB, key string, m *flywheel.Metric) ([]analysis.EpochStats, error) {
	q, ok := tx.Statement.ConnPool.(interface {
		QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	})
	if !ok {
		return nil, fmt.Errorf("store: bandit cells: connection cannot query")
	}
	value, pct := metricCap(m)
	rows, err := q.QueryContext(ctx, epochCellsSQL, key, m.Key, value, pct)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return scanEpochCells(rows, m.Key)
}

// BanditDecision is what a bandit update computes from the data: the new
// weights by variant and the posterior summary behind them.
type BanditDecision struct {
	Weights   map[string]float64
	Posterior json.RawMessage
}

// BanditUpdate says what AdvanceBandit did.
type BanditUpdate struct {
	// Epoch is the epoch started (0 = none: not due, not a running bandit,
	// or the primary metric's aggregates are not built yet).
	Epoch  int
	Reason string // why nothing was done, when Epoch is 0
}

// AdvanceBandit runs one update of a bandit experiment at now, under the
// experiment's row lock (SELECT ... FOR UPDATE), so that of several
// processes one updates and the others, once the lock is theirs, find the
// update done. It writes epoch 0 (the initial weights, from the start) if
// missing; when the burn-in and the period since the last epoch have
// passed and the primary metric's aggregates are built, it reads the
// metric's per-arm sufficient statistics over every epoch, lets decide
// compute the weights, and stores them as the variants' weights (a new
// configuration revision, so SDKs fetch them), a new epoch, and an audit
// row (action "bandit_update", actor "bandit").
func (db *DB) AdvanceBandit(ctx context.Context, key string, now time.Time, metric *flywheel.Metric,
	decide func(e *flywheel.Experiment, cells []analysis.EpochStats) (BanditDecision, error)) (BanditUpdate, error) {
	var res BanditUpdate
	err := db.tx(ctx, func(tx *gorm.DB) error {
		var row experimentRow
		if err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).Take(&row, "key = ?", key).Error; err != nil {
			if errIsNotFound(err) {
				return flywheel.Errorf(flywheel.CodeNotFound, "experiment %q not found", key)
			}
			return err
		}
		e, err := row.toDomain()
		if err != nil {
			return err
		}
		if e.Status != flywheel.StatusRunning || e.Allocation != flywheel.AllocationBandit || e.Bandit == nil || e.StartedAt == nil {
			res.Reason = "not a running bandit"
			return nil
		}
		var last banditEpochRow
		err = tx.Where("experiment_key = ?", key).Order("epoch DESC").Limit(1).Take(&last).Error
		switch {
		case errIsNotFound(err):
			w, err := json.Marshal(weightsOf(e.Variants))
			if err != nil {
				return err
			}
			last = banditEpochRow{ExperimentKey: key, Epoch: 0, StartedAt: *e.StartedAt, Weights: w, Revision: e.Revision}
			if err := tx.Create(&last).Error; err != nil {
				return err
			}
		case err != nil:
			return err
		}
		period, burnIn := e.Bandit.Durations()
		if now.Before(e.StartedAt.Add(burnIn)) {
			res.Reason = "burn-in"
			return nil
		}
		if last.Epoch > 0 && now.Before(last.StartedAt.Add(period)) {
			res.Reason = "period"
			return nil
		}
		built, err := builtHash(tx, key, metric.Key)
		if err != nil {
			return err
		}
		if built != defHash(e, metric) {
			res.Reason = "aggregates not built"
			return nil
		}
		cells, err := gormEpochCells(ctx, tx, key, metric)
		if err != nil {
			return err
		}
		d, err := decide(e, cells)
		if err != nil {
			return err
		}
		before, err := row.toDomain()
		if err != nil {
			return err
		}
		for i := range e.Variants {
			w, ok := d.Weights[e.Variants[i].Key]
			if !ok {
				return fmt.Errorf("store: bandit %q: no weight for variant %q", key, e.Variants[i].Key)
			}
			e.Variants[i].Weight = w
		}
		if err := checkWeights(e.Variants); err != nil {
			return fmt.Errorf("store: bandit %q: new weights: %w", key, err)
		}
		rev, err := bumpRevision(tx)
		if err != nil {
			return err
		}
		e.Revision, e.UpdatedAt = rev, now
		nr, err := toExperimentRow(e)
		if err != nil {
			return err
		}
		if err := tx.Select("*").Omit("created_at").Save(nr).Error; err != nil {
			return err
		}
		changes := flywheel.DiffExperiments(before, e)
		changes["bandit_epoch"] = flywheel.FieldChange{From: last.Epoch, To: last.Epoch + 1}
		if err := addHistory(tx, key, "bandit", "bandit_update", changes, now); err != nil {
			return err
		}
		w, err := json.Marshal(d.Weights)
		if err != nil {
			return err
		}
		next := banditEpochRow{ExperimentKey: key, Epoch: last.Epoch + 1, StartedAt: now, Weights: w, Posterior: d.Posterior, Revision: rev}
		if err := tx.Create(&next).Error; err != nil {
			return err
		}
		res.Epoch = next.Epoch
		return nil
	})
	if err != nil {
		return res, translate("advance bandit", err)
	}
	return res, nil
}

// RunningBandits returns the keys of the running bandit experiments.
func (db *DB) RunningBandits(ctx context.Context) ([]string, error) {
	var keys []string
	err := db.gorm.WithContext(ctx).Raw(`SELECT key FROM experiments WHERE status = 'running' AND allocation = 'bandit' ORDER BY key`).Scan(&keys).Error
	if err != nil {
		return nil, translate("running bandits", err)
	}
	return keys, nil
}

// builtHash returns the hash of a built aggregate definition ("" if none).
func builtHash(tx *gorm.DB, key, metric string) (string, error) {
	var hashes []string
	if err := tx.Raw(`SELECT hash FROM agg_defs WHERE experiment = ? AND metric = ?`, key, metric).Scan(&hashes).Error; err != nil {
		return "", err
	}
	if len(hashes) == 0 {
		return "", nil
	}
	return hashes[0], nil
}

func weightsOf(vs []flywheel.Variant) map[string]float64 {
	w := make(map[string]float64, len(vs))
	for _, v := range vs {
		w[v.Key] = v.Weight
	}
	return w
}

// loadBanditEpochs fills the epochs of a bandit experiment and, per
// metric (ratio metrics aside), its analysed units per epoch and variant
// from the aggregates, which the results stratify by.
func loadBanditEpochs(ctx context.Context, tx pgx.Tx, e *flywheel.Experiment, defs []aggDef, in *analysis.Input) error {
	if e.Allocation != flywheel.AllocationBandit {
		return nil
	}
	rows, err := tx.Query(ctx, `SELECT epoch, started_at, weights, revision FROM bandit_epochs WHERE experiment_key = $1 ORDER BY epoch`, e.Key)
	if err != nil {
		return err
	}
	for rows.Next() {
		var ep flywheel.BanditEpoch
		var w []byte
		if err := rows.Scan(&ep.Epoch, &ep.StartedAt, &w, &ep.Revision); err != nil {
			rows.Close()
			return err
		}
		if err := json.Unmarshal(w, &ep.Weights); err != nil {
			rows.Close()
			return fmt.Errorf("bandit epoch %d weights: %w", ep.Epoch, err)
		}
		ep.StartedAt = ep.StartedAt.UTC()
		in.BanditEpochs = append(in.BanditEpochs, ep)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	in.EpochStatsRead = true
	for _, d := range defs {
		if d.metric.Type == flywheel.MetricRatio {
			continue
		}
		value, pct := metricCap(d.metric)
		rows, err := tx.Query(ctx, epochCellsSQL, e.Key, d.metric.Key, value, pct)
		if err != nil {
			return err
		}
		cells, err := scanEpochCells(rows, d.metric.Key)
		rows.Close()
		if err != nil {
			return fmt.Errorf("metric %q epochs: %w", d.metric.Key, err)
		}
		in.EpochStats = append(in.EpochStats, cells...)
	}
	return nil
}

// ExposedVariant returns the variant of a unit's first recorded exposure
// to an experiment: one lookup by the exposures table's primary key.
func (db *DB) ExposedVariant(ctx context.Context, experiment, unitID string) (string, bool, error) {
	var v string
	err := db.pool.QueryRow(ctx, `SELECT variant FROM exposures WHERE experiment = $1 AND unit_id = $2`, experiment, unitID).Scan(&v)
	if err == pgx.ErrNoRows {
		return "", false, nil
	}
	if err != nil {
		return "", false, translate("exposed variant", err)
	}
	return v, true, nil
}

// ExposedVariants returns the variants of the units' first recorded
// exposures to experiment, by unit id (units never exposed are absent):
// ExposedVariant for a list of units in one lookup.
func (db *DB) ExposedVariants(ctx context.Context, experiment string, unitIDs []string) (map[string]string, error) {
	out := make(map[string]string, len(unitIDs))
	if len(unitIDs) == 0 {
		return out, nil
	}
	rows, err := db.pool.Query(ctx, `SELECT unit_id, variant FROM exposures WHERE experiment = $1 AND unit_id = ANY($2)`, experiment, unitIDs)
	if err != nil {
		return nil, translate("exposed variants", err)
	}
	defer rows.Close()
	for rows.Next() {
		var u, v string
		if err := rows.Scan(&u, &v); err != nil {
			return nil, translate("exposed variants", err)
		}
		out[u] = v
	}
	if err := rows.Err(); err != nil {
		return nil, translate("exposed variants", err)
	}
	return out, nil
}

// checkWeights refuses weights an experiment cannot have: each in (0, 1],
// summing to 1 within 1e-9 (as Experiment.Validate, which would also
// re-check the rest of the definition, audiences included).
func checkWeights(vs []flywheel.Variant) error {
	sum := 0.0
	for _, v := range vs {
		if !(v.Weight > 0 && v.Weight <= 1) {
			return fmt.Errorf("weight %v of %q is not in (0, 1]", v.Weight, v.Key)
		}
		sum += v.Weight
	}
	if math.Abs(sum-1) > 1e-9 {
		return fmt.Errorf("weights sum to %.12g, not 1", sum)
	}
	return nil
}
