package store

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// partitionPrefix names the daily partitions of events: events_p20261123.
const partitionPrefix = "events_p"

// EnsurePartitions creates the daily partitions of events from `back` days
// before now to `ahead` days after it, if missing. A day whose rows already
// sit in the default partition (events older than the first partition) is
// left there: PostgreSQL cannot create a partition over them.
func (db *DB) EnsurePartitions(ctx context.Context, now time.Time, back, ahead int) (created []string, err error) {
	day := now.UTC().Truncate(24 * time.Hour)
	for d := -back; d <= ahead; d++ {
		from := day.AddDate(0, 0, d)
		name := partitionPrefix + from.Format("20060102")
		var exists bool
		if err := db.pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, name).Scan(&exists); err != nil {
			return created, translate("ensure partitions", err)
		}
		if exists {
			continue
		}
		sql := fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s PARTITION OF events FOR VALUES FROM ('%s') TO ('%s')`,
			pgx.Identifier{name}.Sanitize(), from.Format(time.RFC3339), from.AddDate(0, 0, 1).Format(time.RFC3339))
		if _, err := db.pool.Exec(ctx, sql); err != nil {
			if _, ok := isPgCode(err, "23514"); ok { // rows of that day are in the default partition
				continue
			}
			return created, translate("create partition "+name, err)
		}
		created = append(created, name)
	}
	return created, nil
}

// DropPartitionsBefore enforces retention: it drops every daily partition
// that ends on or before cutoff, deletes older rows of the default
// partition, and forgets their ids. It returns the dropped partitions.
func (db *DB) DropPartitionsBefore(ctx context.Context, cutoff time.Time) ([]string, error) {
	rows, err := db.pool.Query(ctx, `SELECT c.relname FROM pg_inherits i
		JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'events'::regclass`)
	if err != nil {
		return nil, translate("list partitions", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, translate("list partitions", err)
	}
	var dropped []string
	for _, name := range names {
		day, ok := strings.CutPrefix(name, partitionPrefix)
		if !ok {
			continue
		}
		from, err := time.Parse("20060102", day)
		if err != nil || from.AddDate(0, 0, 1).After(cutoff) {
			continue
		}
		if _, err := db.pool.Exec(ctx, `DROP TABLE `+pgx.Identifier{name}.Sanitize()); err != nil {
			return dropped, translate("drop partition "+name, err)
		}
		dropped = append(dropped, name)
	}
	if _, err := db.pool.Exec(ctx, `DELETE FROM events_default WHERE ts < $1`, cutoff); err != nil {
		return dropped, translate("retention", err)
	}
	// Ids are forgotten two days later than events, so that an event
	// timestamped ahead of its arrival cannot outlive its id.
	if _, err := db.pool.Exec(ctx, `DELETE FROM event_ids WHERE received_at < $1`, cutoff.Add(-48*time.Hour)); err != nil {
		return dropped, translate("retention", err)
	}
	return dropped, nil
}

// visibleEventsEnd returns a time that every event the transaction's
// snapshot sees is before: the end of the latest partition of events that
// holds a visible row, or +infinity when the default partition holds one
// (it takes any time), or -infinity when none does. The daily partitions
// are created days ahead (EnsurePartitions), so a unit's events up to the
// end of its metric windows would otherwise be looked up in each of the
// empty ones (a cycle's history, collectOwned).
func visibleEventsEnd(ctx context.Context, tx pgx.Tx) (pgtype.Timestamptz, error) {
	// The partitions without an end (the default one, or a bound that is
	// not a time) first, then the latest ends first: the first with a
	// visible row decides.
	rows, err := tx.Query(ctx, `SELECT name, end_ts FROM (
		    SELECT c.oid::regclass::text AS name,
		        (regexp_match(pg_get_expr(c.relpartbound, c.oid), '\) TO \(''([^'']+)''\)$'))[1]::timestamptz AS end_ts
		    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		    WHERE i.inhparent = 'events'::regclass) p
		ORDER BY end_ts IS NOT NULL, end_ts DESC`)
	if err != nil {
		return pgtype.Timestamptz{}, err
	}
	type part struct {
		name string
		end  pgtype.Timestamptz
	}
	parts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (p part, err error) {
		err = r.Scan(&p.name, &p.end)
		return p, err
	})
	if err != nil {
		return pgtype.Timestamptz{}, err
	}
	for _, p := range parts {
		var found bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM ONLY `+p.name+`)`).Scan(&found); err != nil {
			return pgtype.Timestamptz{}, err
		}
		if !found {
			continue
		}
		if !p.end.Valid {
			return pgtype.Timestamptz{InfinityModifier: pgtype.Infinity, Valid: true}, nil
		}
		return p.end, nil
	}
	return pgtype.Timestamptz{InfinityModifier: pgtype.NegativeInfinity, Valid: true}, nil
}
