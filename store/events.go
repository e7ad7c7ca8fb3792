package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/flywheel-oss/flywheel"
)

var _ flywheel.EventWriter = (*DB)(nil)

// stagingDDL is a per-session table that a group of events is copied into
// before one statement moves the new ones into place. ON COMMIT DELETE ROWS
// empties it at the end of every transaction.
const stagingDDL = `CREATE TEMP TABLE IF NOT EXISTS staging_events (
    seq int NOT NULL, id uuid NOT NULL, type text NOT NULL, unit_type text NOT NULL,
    unit_id text NOT NULL, ts timestamptz NOT NULL, received_at timestamptz NOT NULL,
    experiment text, variant text, event text, value double precision,
    customer_id text, attributes jsonb, properties jsonb
) ON COMMIT DELETE ROWS`

var stagingColumns = []string{"seq", "id", "type", "unit_type", "unit_id", "ts", "received_at",
	"experiment", "variant", "event", "value", "customer_id", "attributes", "properties"}

// moveStaged records the ids that are new (the first of each within the
// group), stores those events, and folds exposures and identity links into
// their tables, and queues the units for aggregation, all in one statement;
// it returns the seq of each new event.
// Rows are inserted in key order so that concurrent groups lock in the same
// order and cannot deadlock.
const moveStaged = `
WITH new AS (
    INSERT INTO event_ids (id, unit_id, received_at)
    SELECT DISTINCT ON (id, unit_id) id, unit_id, received_at
    FROM staging_events ORDER BY id, unit_id, seq
    ON CONFLICT DO NOTHING
    RETURNING id, unit_id
), winners AS (
    SELECT DISTINCT ON (s.id, s.unit_id) s.*
    FROM staging_events s JOIN new USING (id, unit_id)
    ORDER BY s.id, s.unit_id, s.seq
), ev AS (
    INSERT INTO events (unit_type, unit_id, id, type, ts, received_at, experiment, variant, event, value, customer_id, attributes, properties)
    SELECT unit_type, unit_id, id, type, ts, received_at, experiment, variant, event, value, customer_id, attributes, properties
    FROM winners
), ex AS (
    INSERT INTO exposures AS x (experiment, unit_id, unit_type, variant, first_ts, last_ts, attributes, multiple, exposures)
    SELECT experiment, unit_id, min(unit_type), (array_agg(variant ORDER BY ts, seq))[1], min(ts), max(ts),
           (array_agg(attributes ORDER BY ts, seq))[1], count(DISTINCT variant) > 1, count(*)
    FROM winners WHERE type = 'exposure'
    GROUP BY experiment, unit_id ORDER BY experiment, unit_id
    ON CONFLICT (experiment, unit_id) DO UPDATE SET
        variant    = CASE WHEN EXCLUDED.first_ts < x.first_ts THEN EXCLUDED.variant ELSE x.variant END,
        attributes = CASE WHEN EXCLUDED.first_ts < x.first_ts THEN EXCLUDED.attributes ELSE x.attributes END,
        first_ts   = least(x.first_ts, EXCLUDED.first_ts),
        last_ts    = greatest(x.last_ts, EXCLUDED.last_ts),
        multiple   = x.multiple OR EXCLUDED.multiple OR x.variant <> EXCLUDED.variant,
        exposures  = x.exposures + EXCLUDED.exposures
), al AS (
    INSERT INTO aliases AS a (unit_type, unit_id, customer_id, ts)
    SELECT DISTINCT ON (unit_type, unit_id) unit_type, unit_id, customer_id, ts
    FROM winners WHERE type = 'identify'
    ORDER BY unit_type, unit_id, ts, seq
    ON CONFLICT (unit_type, unit_id) DO UPDATE SET customer_id = EXCLUDED.customer_id, ts = EXCLUDED.ts, replaced = a.customer_id
    WHERE EXCLUDED.ts < a.ts
    RETURNING replaced
), q AS (
    -- The aggregation queue (store/aggregate.go): the units to recompute
    -- (new exposures; for identity links the unit, the customer linked to
    -- and the customer the link replaced), and the new track events. replaced comes from the conflicting
    -- row itself, which may be newer than this statement's snapshot.
    INSERT INTO agg_queue (at, unit_types, unit_ids, track_types, track_ids, track_ts, track_events, track_values)
    SELECT w.at, COALESCE(u.types, '{}'), COALESCE(u.ids, '{}'),
           COALESCE(t.types, '{}'), COALESCE(t.ids, '{}'), COALESCE(t.ts, '{}'), COALESCE(t.events, '{}'), COALESCE(t.vals, '{}')
    FROM (SELECT min(received_at) AS at FROM winners) w,
         (SELECT array_agg(t) AS types, array_agg(i) AS ids FROM (
              SELECT unit_type, unit_id FROM winners WHERE type <> 'track'
              UNION SELECT 'customer', customer_id FROM winners WHERE type = 'identify'
              UNION SELECT 'customer', replaced FROM al WHERE replaced IS NOT NULL
          ) d(t, i)) u,
         (SELECT array_agg(unit_type) AS types, array_agg(unit_id) AS ids, array_agg(ts) AS ts,
                 array_agg(event) AS events, array_agg(value) AS vals
          FROM winners WHERE type = 'track') t
    WHERE w.at IS NOT NULL
)
SELECT seq FROM winners`

// WriteEvents stores a group of events in one transaction, exactly once
// (see flywheel.EventWriter): COPY into the session's staging table, then
// moveStaged. Nothing is stored unless everything is.
func (db *DB) WriteEvents(ctx context.Context, events []flywheel.Event) ([]int, error) {
	if len(events) == 0 {
		return nil, nil
	}
	var accepted []int
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, stagingDDL); err != nil {
			return err
		}
		n, err := tx.CopyFrom(ctx, pgx.Identifier{"staging_events"}, stagingColumns, pgx.CopyFromSlice(len(events), func(i int) ([]any, error) {
			e := &events[i]
			return []any{
				int32(i), pgtype.UUID{Bytes: e.ID, Valid: true}, string(e.Type), e.UnitType, e.UnitID,
				e.Timestamp, e.ReceivedAt, nullText(e.Experiment), nullText(e.Variant), nullText(e.Name),
				e.Value, nullText(e.CustomerID), nullJSON(e.Attributes), nullJSON(e.Properties),
			}, nil
		}))
		if err != nil {
			return err
		}
		if int(n) != len(events) {
			return fmt.Errorf("copied %d of %d events", n, len(events))
		}
		rows, err := tx.Query(ctx, moveStaged)
		if err != nil {
			return err
		}
		accepted, err = pgx.CollectRows(rows, pgx.RowTo[int])
		return err
	})
	if err != nil {
		return nil, translate("write events", err)
	}
	return accepted, nil
}

func nullText(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func nullJSON(b []byte) []byte {
	if len(b) == 0 || string(b) == "null" {
		return nil
	}
	return b
}
