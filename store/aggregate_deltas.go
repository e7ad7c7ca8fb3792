package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
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
	// What the fold read and wrote goes into the unit cache only once its
	// transaction has committed; until then the cache has no copy of the
	// definition (take removed it), so a fold that fails leaves none.
	var record func(epoch int64)
	var epoch int64
	err := pgx.BeginFunc(ctx, db.agg, func(tx pgx.Tx) error {
		// The fold sorts its units' days (see Aggregate).
		if _, err := tx.Exec(ctx, `SET LOCAL work_mem = '64MB'`); err != nil {
			return err
		}
		var read int64 // the epoch the fold read: no other transaction may have moved it since
		var err error
		if record, read, err = db.foldTracks(ctx, tx, d, f.folded, pairs); err != nil {
			return fmt.Errorf("%s/%s: %w", d.exp.Key, m.Key, err)
		}
		err = tx.QueryRow(ctx, `UPDATE agg_defs SET folded_cycle = $3, epoch = nextval('agg_epoch')
			WHERE experiment = $1 AND metric = $2 AND folded_cycle = $4 AND epoch = $5
			RETURNING epoch`, d.exp.Key, m.Key, latest, f.folded, read).Scan(&epoch)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%s/%s: folded cycle or epoch changed during its fold", d.exp.Key, m.Key)
		}
		return err
	})
	if err == nil && record != nil {
		record(epoch)
	}
	return err
}

// notRecomputed is the condition on staged events k that leaves out those
// of units recomputed whole in their cycle or a later one ($1 the
// experiment).
const notRecomputed = `
      AND NOT EXISTS (SELECT 1 FROM agg_staged_pairs p WHERE p.experiment = $1 AND p.unit_id = k.owner AND p.cycle >= k.cycle)`
