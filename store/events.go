package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/flywheel-oss/flywheel"
)

var _ flywheel.EventWriter = (*DB)(nil)

// newIDs records the ids of a group that are new and returns their
// positions. The (id, unit_id) pairs it is given are distinct (WriteEvents
// keeps the first of each); they are inserted in key order so that
// concurrent groups lock in the same order and cannot deadlock, and a
// concurrent group holding the same id makes this one wait for its outcome.
const newIDs = `
WITH k AS (
    SELECT * FROM unnest($1::int[], $2::uuid[], $3::text[], $4::timestamptz[]) AS k(seq, id, unit_id, received_at)
), new AS (
    INSERT INTO event_ids (id, unit_id, received_at)
    SELECT id, unit_id, received_at FROM k ORDER BY id, unit_id
    ON CONFLICT DO NOTHING
    RETURNING id, unit_id
)
SELECT k.seq FROM k JOIN new USING (id, unit_id)`

// eventColumns are the columns of events that WriteEvents copies, in the
// order of copyEvents.
var eventColumns = []string{"unit_type", "unit_id", "id", "type", "ts", "received_at",
	"experiment", "variant", "event", "value", "customer_id", "attributes", "properties"}

var copyEvents = "COPY events (" + strings.Join(eventColumns, ", ") + ") FROM STDIN (FORMAT binary)"

// foldNew folds the new events of a group into the tables derived from
// them, in one statement: first exposures ($1-$7, the new exposures),
// identity links ($8-$12, the new identify events) and the aggregation
// queue (store/aggregate.go: $13 the oldest receipt, $14-$18 the new track
// events).
//
// Most exposures and links repeat what is stored (a unit is exposed again
// and again, to the same variant, later): those change nothing, are
// skipped without writing, and are not queued. Only the exposures and
// links that a group inserts or changes name units for the aggregator to
// recompute; for a link, also the customer it replaced (read from the
// conflicting row itself, which may be newer than this statement's
// snapshot; the new customer is the linked id's identity root, which the
// aggregator finds itself). The NOT EXISTS filters skip what the snapshot
// shows unchanged; the upserts' WHERE skips what a concurrent group
// committed since. Rows are upserted in key order so that concurrent groups
// cannot deadlock.
//
// Each NOT EXISTS ends in OFFSET 0, which keeps PostgreSQL from turning it
// into a join: it stays one index probe per exposure or link of the
// group. As a join, the planner may hash the whole table instead (it did
// for exposures of 20,000 rows, and while a table's statistics lag behind
// its growth), and a group would then cost more the more units are stored
// (BENCHMARKS.md, "Ingestion: where an event's CPU goes").
const foldNew = `
WITH x AS (
    SELECT * FROM unnest($1::int[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::text[])
        AS x(seq, experiment, unit_id, unit_type, variant, ts, attributes)
), g AS (
    SELECT experiment, unit_id, min(unit_type) AS unit_type, (array_agg(variant ORDER BY ts, seq))[1] AS variant,
           min(ts) AS first_ts, (array_agg(attributes ORDER BY ts, seq))[1] AS attributes,
           count(DISTINCT variant) > 1 AS multiple
    FROM x GROUP BY experiment, unit_id
), ex AS (
    INSERT INTO exposures AS x (experiment, unit_id, unit_type, variant, first_ts, attributes, multiple)
    SELECT experiment, unit_id, unit_type, variant, first_ts, attributes::jsonb, multiple FROM g
    WHERE NOT EXISTS (SELECT FROM exposures e WHERE e.experiment = g.experiment AND e.unit_id = g.unit_id
        AND e.first_ts <= g.first_ts AND (e.multiple OR (e.variant = g.variant AND NOT g.multiple)) OFFSET 0)
    ORDER BY experiment, unit_id
    ON CONFLICT (experiment, unit_id) DO UPDATE SET
        variant    = CASE WHEN EXCLUDED.first_ts < x.first_ts THEN EXCLUDED.variant ELSE x.variant END,
        attributes = CASE WHEN EXCLUDED.first_ts < x.first_ts THEN EXCLUDED.attributes ELSE x.attributes END,
        first_ts   = least(x.first_ts, EXCLUDED.first_ts),
        multiple   = x.multiple OR EXCLUDED.multiple OR x.variant <> EXCLUDED.variant
    WHERE EXCLUDED.first_ts < x.first_ts OR NOT (x.multiple OR (x.variant = EXCLUDED.variant AND NOT EXCLUDED.multiple))
    RETURNING x.unit_type, x.unit_id
), i AS (
    SELECT DISTINCT ON (unit_type, unit_id) unit_type, unit_id, customer_id, ts
    FROM unnest($8::int[], $9::text[], $10::text[], $11::text[], $12::timestamptz[]) AS i(seq, unit_type, unit_id, customer_id, ts)
    ORDER BY unit_type, unit_id, ts, seq
), al AS (
    INSERT INTO aliases AS a (unit_type, unit_id, customer_id, ts)
    SELECT unit_type, unit_id, customer_id, ts FROM i
    WHERE NOT EXISTS (SELECT FROM aliases a WHERE a.unit_type = i.unit_type AND a.unit_id = i.unit_id AND a.ts <= i.ts OFFSET 0)
    ORDER BY unit_type, unit_id
    ON CONFLICT (unit_type, unit_id) DO UPDATE SET customer_id = EXCLUDED.customer_id, ts = EXCLUDED.ts, replaced = a.customer_id
    WHERE EXCLUDED.ts < a.ts
    RETURNING a.unit_type, a.unit_id, a.customer_id, a.replaced
), u AS (
    SELECT unit_type, unit_id FROM ex
    UNION SELECT unit_type, unit_id FROM al
    UNION SELECT 'customer', replaced FROM al WHERE replaced IS NOT NULL
), q AS (
    SELECT ARRAY(SELECT unit_type FROM u ORDER BY 1, unit_id) AS types, ARRAY(SELECT unit_id FROM u ORDER BY unit_type, 1) AS ids
)
INSERT INTO agg_queue (at, unit_types, unit_ids, track_types, track_ids, track_ts, track_events, track_values, events)
SELECT $13, types, ids, $14::text[], $15::text[], $16::timestamptz[], $17::text[], $18::float8[],
       cardinality(ids) + cardinality($15::text[]) FROM q
WHERE cardinality(ids) > 0 OR cardinality($15::text[]) > 0`

// WriteEvents stores a group of events in one transaction, exactly once
// (see flywheel.EventWriter): it records the new ids (recordIDs), COPYs the
// new events straight into events, and folds them into exposures, links and
// the aggregation queue (foldNew). Nothing is stored unless everything is.
func (db *DB) WriteEvents(ctx context.Context, events []flywheel.Event) ([]int, error) {
	if len(events) == 0 {
		return nil, nil
	}
	// The first of each (id, unit_id) in the group; later ones are
	// duplicates whatever the database holds.
	type key struct {
		id   [16]byte
		unit string
	}
	first := make(map[key]struct{}, len(events))
	n := len(events)
	seqs, ids, units, received := make([]int32, 0, n), make([]pgtype.UUID, 0, n), make([]string, 0, n), make([]time.Time, 0, n)
	for i := range events {
		e := &events[i]
		k := key{e.ID, e.UnitID}
		if _, dup := first[k]; dup {
			continue
		}
		first[k] = struct{}{}
		seqs, ids = append(seqs, int32(i)), append(ids, pgtype.UUID{Bytes: e.ID, Valid: true})
		units, received = append(units, e.UnitID), append(received, e.ReceivedAt)
	}
	var accepted []int
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		var err error
		if accepted, err = recordIDs(ctx, tx, seqs, ids, units, received); err != nil || len(accepted) == 0 {
			return err
		}
		slices.Sort(accepted) // positions in group order
		rows := newCopyRows(len(accepted) * 160)
		for _, j := range accepted {
			e := &events[j]
			rows.row(len(eventColumns))
			rows.text(e.UnitType)
			rows.text(e.UnitID)
			rows.uuid(e.ID)
			rows.text(string(e.Type))
			rows.timestamptz(e.Timestamp)
			rows.timestamptz(e.ReceivedAt)
			rows.textOrNull(e.Experiment)
			rows.textOrNull(e.Variant)
			rows.textOrNull(e.Name)
			rows.float8OrNull(e.Value)
			rows.textOrNull(e.CustomerID)
			rows.jsonbOrNull(e.Attributes)
			rows.jsonbOrNull(e.Properties)
		}
		copied, err := rows.copyTo(ctx, tx, copyEvents)
		if err != nil {
			return err
		}
		if int(copied) != len(accepted) {
			return fmt.Errorf("copied %d of %d events", copied, len(accepted))
		}
		return queryPrepared(ctx, tx, foldStatement, foldNew, foldArgs(events, accepted), nil)
	})
	if err != nil {
		return nil, translate("write events", err)
	}
	return accepted, nil
}

// recordIDs records the ids of a group (distinct (id, unit_id) pairs at
// positions seqs) in event_ids and returns the positions of the new ones.
// Most groups are all new, and a COPY is the cheapest way to store them; it
// runs in a savepoint, and only when an id is already there (a retry) does
// the group take the slower statement that skips the ones seen (newIDs).
// Both write in key order, so concurrent groups lock alike: a group that
// meets an id of a concurrent one waits for its outcome.
func recordIDs(ctx context.Context, tx pgx.Tx, seqs []int32, ids []pgtype.UUID, units []string, received []time.Time) ([]int, error) {
	order := make([]int, len(seqs))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		if c := bytes.Compare(ids[a].Bytes[:], ids[b].Bytes[:]); c != 0 {
			return c
		}
		return strings.Compare(units[a], units[b])
	})
	if _, err := tx.Exec(ctx, `SAVEPOINT ids`); err != nil {
		return nil, err
	}
	c := newCopyRows(len(order) * 48)
	for _, i := range order {
		c.row(3)
		c.uuid(ids[i].Bytes)
		c.text(units[i])
		c.timestamptz(received[i])
	}
	_, err := c.copyTo(ctx, tx, `COPY event_ids (id, unit_id, received_at) FROM STDIN (FORMAT binary)`)
	if err == nil {
		accepted := make([]int, len(seqs))
		for i, s := range seqs {
			accepted[i] = int(s)
		}
		return accepted, nil
	}
	if _, dup := isPgCode(err, pgUniqueViolation); !dup {
		return nil, err
	}
	if _, err := tx.Exec(ctx, `ROLLBACK TO SAVEPOINT ids`); err != nil {
		return nil, err
	}
	rows, err := tx.Query(ctx, newIDs, seqs, ids, units, received)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[int])
}

// foldArgs returns the parameters of foldNew for the accepted events, each
// in PostgreSQL's binary format (binArray), for queryPrepared.
func foldArgs(events []flywheel.Event, accepted []int) *wireParams {
	n := len(accepted)
	xSeq, xExp, xUnit, xType := newBinArray(oidInt4, 0), newBinArray(oidText, 0), newBinArray(oidText, 0), newBinArray(oidText, 0)
	xVariant, xTS, xAttrs := newBinArray(oidText, 0), newBinArray(oidTimestamptz, 0), newBinArray(oidText, 0)
	iSeq, iType, iUnit, iCustomer, iTS := newBinArray(oidInt4, 0), newBinArray(oidText, 0), newBinArray(oidText, 0),
		newBinArray(oidText, 0), newBinArray(oidTimestamptz, 0)
	tTypes, tIDs, tTS := newBinArray(oidText, n*14), newBinArray(oidText, n*16), newBinArray(oidTimestamptz, n*12)
	tEvents, tValues := newBinArray(oidText, n*16), newBinArray(oidFloat8, n*12)
	var oldest time.Time
	for _, j := range accepted {
		e := &events[j]
		if oldest.IsZero() || e.ReceivedAt.Before(oldest) {
			oldest = e.ReceivedAt
		}
		switch e.Type {
		case flywheel.EventTrack:
			tTypes.text(e.UnitType)
			tIDs.text(e.UnitID)
			tTS.timestamptz(e.Timestamp)
			tEvents.text(e.Name)
			tValues.float8OrNull(e.Value)
		case flywheel.EventExposure:
			xSeq.int4(int32(j))
			xExp.text(e.Experiment)
			xUnit.text(e.UnitID)
			xType.text(e.UnitType)
			xVariant.text(e.Variant)
			xTS.timestamptz(e.Timestamp)
			if a := nullJSON(e.Attributes); a != nil {
				xAttrs.text(string(a))
			} else {
				xAttrs.null()
			}
		case flywheel.EventIdentify:
			iSeq.int4(int32(j))
			iType.text(e.UnitType)
			iUnit.text(e.UnitID)
			iCustomer.text(e.CustomerID)
			iTS.timestamptz(e.Timestamp)
		}
	}
	p := &wireParams{}
	for _, a := range []*binArray{xSeq, xExp, xUnit, xType, xVariant, xTS, xAttrs, iSeq, iType, iUnit, iCustomer, iTS} {
		p.array(a)
	}
	p.add(binary.BigEndian.AppendUint64(nil, uint64(oldest.UnixMicro()-pgEpoch)), 1)
	for _, a := range []*binArray{tTypes, tIDs, tTS, tEvents, tValues} {
		p.array(a)
	}
	return p
}

// foldStatement is the name foldNew is prepared under on each connection.
const foldStatement = "flywheel_fold_new"

func nullJSON(b []byte) []byte {
	if len(b) == 0 || string(b) == "null" {
		return nil
	}
	return b
}
