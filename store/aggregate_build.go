package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Definitions built from scratch, crossover, and erasure from the
// aggregates (store/aggregate.go describes the whole).

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
			WHERE e.type = 'track' AND e.unit_type = $2 AND e.event = ANY($3)` + notLater
		if d.exp.UnitType == "customer" {
			sql = `CREATE TEMP TABLE b_owned ON COMMIT DROP AS
			WITH RECURSIVE ` + fmt.Sprintf(members, "b_pairs") + `
			SELECT $1::text AS experiment, m.owner, e.ts, e.value, e.event
			FROM events e JOIN members m ON m.unit_type = e.unit_type AND m.unit_id = e.unit_id
			WHERE e.type = 'track' AND $2 = 'customer' AND e.event = ANY($3)` + notLater
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
	// It counts every staged event (folded_cycle: the latest cycle).
	_, err := tx.Exec(ctx, `INSERT INTO agg_defs (experiment, metric, hash, cap, built_at, folded_cycle)
		VALUES ($1, $2, $3, $4, $5, (SELECT COALESCE(max(cycle), 0) FROM agg_staged_cycles))`,
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

// eraseAggregates removes erased units from the aggregates: their unit
// rows (subtracted from the variant sums and the per-variant days), the
// crossover of their customers, their names and track events in the queue,
// their staged track events, and their names in other links' replaced. The
// identity cluster is erased whole, so no other unit's value depended on
// their events.
//
// It returns what to tell this process's unit copies once the transaction
// commits: the erased units' rows are gone from every definition, and
// nothing else changed (erasure holds the aggregation lock, so no fold
// runs meanwhile).
func eraseAggregates(ctx context.Context, tx pgx.Tx, types, ids []string) (func(*unitCache), error) {
	const u = `WITH u AS (SELECT * FROM unnest($1::text[], $2::text[]) AS u(unit_type, unit_id)) `
	// Their unit rows, looked up by key in every built definition (only
	// the units definition's rows are indexed by unit alone; a definition
	// has rows only while it is in agg_defs: dropDef deletes them first).
	const rows = `, k AS MATERIALIZED (
		SELECT a.* FROM u CROSS JOIN agg_defs df CROSS JOIN LATERAL (
			SELECT a.ctid AS tid, a.* FROM agg_units a
			WHERE a.experiment = df.experiment AND a.metric = df.metric AND a.unit_id = u.unit_id AND a.unit_type = u.unit_type OFFSET 0) a
	)`
	// Their changes to the timeseries go first, read from the rows the
	// next statements delete (the metric's type from its definition: a
	// definition whose metric has changed since is rebuilt anyway).
	if _, err := tx.Exec(ctx, u+rows+`, a AS (
		SELECT a.experiment, a.metric, m.type AS typ, df.cap, a.unit_id, a.variant, a.first_ts,
			a.last_day, a.last_n, a.last_v, a.last_num, a.last_den
		FROM k a
		JOIN metrics m ON m.key = a.metric
		LEFT JOIN agg_defs df ON df.experiment = a.experiment AND df.metric = a.metric
		WHERE a.metric <> '' AND a.state = 0
	), dchange AS (
		SELECT a.experiment, a.metric, a.typ, a.cap, -1 AS sign, a.unit_id, a.variant, d.day, d.n, d.v, d.num, d.den
		FROM a JOIN agg_unit_days d ON d.unit_id = a.unit_id AND d.experiment = a.experiment AND d.metric = a.metric
		UNION ALL
		SELECT experiment, metric, typ, cap, -1, unit_id, variant, last_day, last_n, last_v, last_num, last_den
		FROM a WHERE last_day IS NOT NULL
	), uchange AS (
		SELECT experiment, metric, -1 AS sign, variant, (first_ts AT TIME ZONE 'UTC')::date AS day FROM a
	), `+dayChanges+` SELECT 1`, types, ids); err != nil {
		return nil, err
	}
	if _, err := tx.Exec(ctx, u+rows+`, gone AS (
		DELETE FROM agg_units a WHERE a.ctid = ANY(ARRAY(SELECT tid FROM k))
		RETURNING a.experiment, a.metric, a.variant, a.state, a.y, a.x, a.num, a.den, a.first_ts
	), change AS (
		SELECT g.experiment, g.metric, g.variant, g.state, -1 AS sign, g.y, g.x, g.num, g.den, d.cap, g.first_ts
		FROM gone g LEFT JOIN agg_defs d ON d.experiment = g.experiment AND d.metric = g.metric
	), `+hoursUpsert+`, `+variantUpsert, types, ids); err != nil {
		return nil, err
	}
	if _, err := tx.Exec(ctx, u+`, gone AS (
		DELETE FROM agg_crossover c USING u WHERE u.unit_type = 'customer' AND c.root = u.unit_id
		RETURNING c.experiment, c.variants
	)
	UPDATE agg_crossover_totals t SET customers = t.customers - g.n, mixed = t.mixed - g.m
	FROM (SELECT experiment, count(*) AS n, count(*) FILTER (WHERE variants > 1) AS m FROM gone GROUP BY 1) g
	WHERE t.experiment = g.experiment`, types, ids); err != nil {
		return nil, err
	}
	if _, err := tx.Exec(ctx, u+`
	DELETE FROM agg_unit_days d USING u, experiments x
	WHERE d.unit_id = u.unit_id AND x.key = d.experiment AND x.unit_type = u.unit_type`, types, ids); err != nil {
		return nil, err
	}
	// Every definition's epoch moves on: no other process's copy of its
	// unit rows (store/aggregate_fold.go) is current any more, and this
	// process's forget the erased units.
	moved, err := moveEpochsWhere(ctx, tx, `true`)
	if err != nil {
		return nil, err
	}
	pairs := map[string][]string{} // every experiment's: an id not in it is only looked up once more
	for _, mv := range moved {
		pairs[mv.key[0]] = ids
	}
	if _, err := tx.Exec(ctx, `UPDATE aliases SET replaced = NULL WHERE replaced = ANY($1)`, ids); err != nil {
		return nil, err
	}
	// Staged events of theirs would add to no unit row now, but they are
	// theirs: gone too, and with them the records of their recomputation
	// (kept where an id of another unit type, the same string, still owns
	// staged events: there the record may still be needed).
	if _, err := tx.Exec(ctx, u+`
	UPDATE agg_staged_tracks s SET (owners, ts, vals) = (
		SELECT COALESCE(array_agg(k.o ORDER BY k.n), '{}'), COALESCE(array_agg(k.ts ORDER BY k.n), '{}'),
		    COALESCE(array_agg(k.v ORDER BY k.n), '{}')
		FROM unnest(s.owners, s.ts, s.vals) WITH ORDINALITY AS k(o, ts, v, n)
		WHERE NOT EXISTS (SELECT 1 FROM u WHERE u.unit_type = s.owner_type AND u.unit_id = k.o))
	WHERE s.owners && $2::text[]`, types, ids); err != nil {
		return nil, err
	}
	if _, err := tx.Exec(ctx, `DELETE FROM agg_staged_pairs p WHERE p.unit_id = ANY($1)
		AND NOT EXISTS (SELECT 1 FROM agg_staged_tracks s WHERE s.owners @> ARRAY[p.unit_id])`, ids); err != nil {
		return nil, err
	}
	// So do the records that they have a link (store/aggregate_links.go).
	if _, err := tx.Exec(ctx, u+`DELETE FROM agg_linked l USING u WHERE l.unit_id = u.unit_id AND l.unit_type = u.unit_type`,
		types, ids); err != nil {
		return nil, err
	}
	// Their track events still queued go from the queue rows too.
	if _, err := tx.Exec(ctx, u+`
	UPDATE agg_queue q SET (track_types, track_ids, track_ts, track_events, track_values, events) = (
		SELECT COALESCE(array_agg(k.t ORDER BY k.n) FILTER (WHERE NOT k.gone), '{}'),
		    COALESCE(array_agg(k.i ORDER BY k.n) FILTER (WHERE NOT k.gone), '{}'),
		    COALESCE(array_agg(k.ts ORDER BY k.n) FILTER (WHERE NOT k.gone), '{}'),
		    COALESCE(array_agg(k.e ORDER BY k.n) FILTER (WHERE NOT k.gone), '{}'),
		    COALESCE(array_agg(k.v ORDER BY k.n) FILTER (WHERE NOT k.gone), '{}'),
		    q.events - count(*) FILTER (WHERE k.gone)
		FROM (SELECT k.*, EXISTS (SELECT 1 FROM u WHERE u.unit_type = k.t AND u.unit_id = k.i) AS gone
		      FROM unnest(q.track_types, q.track_ids, q.track_ts, q.track_events, q.track_values) WITH ORDINALITY AS k(t, i, ts, e, v, n)) k)
	WHERE q.track_ids && $2::text[]`, types, ids); err != nil {
		return nil, err
	}
	if _, err := tx.Exec(ctx, u+`
	UPDATE agg_queue q SET (unit_types, unit_ids) = (
		SELECT COALESCE(array_agg(k.t), '{}'), COALESCE(array_agg(k.i), '{}')
		FROM unnest(q.unit_types, q.unit_ids) AS k(t, i)
		WHERE NOT EXISTS (SELECT 1 FROM u WHERE u.unit_type = k.t AND u.unit_id = k.i))
	WHERE q.unit_ids && $2::text[]`, types, ids); err != nil {
		return nil, err
	}
	return func(c *unitCache) { c.recomputed(pairs, moved) }, nil
}
